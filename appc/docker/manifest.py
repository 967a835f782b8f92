"""Docker image configuration → appc ImageManifest, with the original docker2aci's rules.

See ``reference/docker2aci.md`` §4.  Deliberate differences from the original, each
tested:

* the image's own os/architecture (and ARM variant) decide the ``os``/``arch`` labels;
  an unmappable pair (e.g. windows) leaves the labels out instead of claiming the
  converting host's platform;
* Docker ``Labels`` become ``userLabels`` for schema2/OCI images too (the original
  dropped them);
* ``created`` is kept only when it is a valid RFC 3339 time;
* clashing volume names get their ``-1``, ``-2`` suffixes in path order (the original
  used Go map order, which is random);
* an image without Entrypoint and Cmd gets an ``app`` without ``exec`` (the original
  wrote ``"exec": null``; both mean the same to the spec).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from appc.docker.image import ImageLayer, SourceImage
from appc.errors import ImageError, ValidationError
from appc.schema.image import App, ImageManifest
from appc.types.acidentifier import sanitize_acidentifier
from appc.types.acname import sanitize_acname
from appc.types.date import parse_rfc3339
from appc.types.labels import VALID_OS_ARCH, to_appc_os_arch
from appc.types.mountpoints import MountPoint
from appc.types.ports import Port

__all__ = [
    "ANNOTATION_PREFIX",
    "app_from_config",
    "carried_manifest",
    "image_name",
    "layer_image_name",
    "manifest_for_image",
    "os_arch_labels",
    "parse_user",
]


def __dir__() -> list[str]:
    return __all__


#: The prefix of the provenance annotations docker2aci writes.
ANNOTATION_PREFIX = "appc.io/docker/"
_PORT = re.compile(r"([0-9]+)(?:/([A-Za-z]+))?")


def parse_user(user: str) -> tuple[str, str]:
    """Docker ``User`` → appc (user, group): ``""`` → 0/0, ``a:b`` → a/b, ``a`` → a/a.

    :raises ImageError: ``1000:`` or ``:1000`` (an empty side), as the original fails.
    """
    if not user:
        return "0", "0"
    name, sep, group = user.partition(":")
    if not sep:
        return name, name
    group = group.split(":")[0]
    if not name:
        raise ImageError(f"user is required (image user {user!r})")
    if not group:
        raise ImageError(f"group is required (image user {user!r})")
    return name, group


def _environment(env: Sequence[Any]) -> list[tuple[str, str]]:
    variables: dict[str, str] = {}
    for item in env:
        if not isinstance(item, str) or "=" not in item:
            continue  # entries without '=' are dropped, as by the original
        key, _, value = item.partition("=")
        variables[key] = value  # a repeated name keeps its first position, last value
    return list(variables.items())


def _mount_points(volumes: Mapping[str, Any]) -> list[MountPoint]:
    taken: set[str] = set()
    points = []
    for path in sorted(volumes):
        base = str(sanitize_acname("volume" + path))
        name, counter = base, 0
        while name in taken:
            counter += 1
            name = f"{base}-{counter}"
        taken.add(name)
        points.append(MountPoint(name=name, path=path))
    return sorted(points, key=lambda p: str(p.name))


def _ports(exposed: Sequence[str]) -> list[Port]:
    ports = []
    for key in exposed:
        match = _PORT.fullmatch(key)
        if match is None:
            raise ImageError(f"cannot convert exposed port {key!r} (only single ports)")
        number = int(match.group(1))
        if not 1 <= number <= 65535:
            raise ImageError(f"exposed port {key!r} out of range")
        ports.append(
            Port(name=str(sanitize_acname(key)), protocol=match.group(2) or "tcp", port=number)
        )
    return sorted(ports, key=lambda p: str(p.name))


def app_from_config(config: Mapping[str, Any], *, v1: bool) -> App:
    """The ``app`` section from a container config (``Entrypoint``, ``Cmd``, ``User``, ...).

    :raises ImageError: a config the spec cannot express (bad user, port range, ...).
    """
    entrypoint = config.get("Entrypoint") or []
    cmd = config.get("Cmd") or []
    user, group = parse_user(str(config.get("User") or ""))
    exposed = config.get("ExposedPorts") or {}
    port_keys = list(exposed) if isinstance(exposed, Mapping) else []
    if v1 and not port_keys and isinstance(config.get("PortSpecs"), list):
        port_keys = [str(p) for p in config["PortSpecs"]]
    volumes = config.get("Volumes") or {}
    labels = config.get("Labels") or {}
    try:
        return App(
            exec=[str(a) for a in [*entrypoint, *cmd]]
            if isinstance(entrypoint, list) and isinstance(cmd, list)
            else [],
            user=user,
            group=group,
            environment=_environment(config.get("Env") or []),
            working_directory=str(config.get("WorkingDir") or ""),
            mount_points=_mount_points(volumes if isinstance(volumes, Mapping) else {}),
            ports=_ports(port_keys),
            user_labels={str(k): str(v) for k, v in labels.items()}
            if isinstance(labels, Mapping)
            else {},
        )
    except ValidationError as err:
        raise ImageError(f"cannot convert the image config: {err}") from None


def os_arch_labels(os_: str, arch: str, variant: str = "") -> dict[str, str]:
    """``os``/``arch`` labels for a Go/OCI platform, or ``{}`` when appc has no name for it."""
    goarm = variant[1:] if variant.startswith("v") and arch == "arm" else ""
    try:
        appc_os, appc_arch = to_appc_os_arch(os_, arch, goarm)
    except ValidationError:
        return {}
    if appc_arch not in VALID_OS_ARCH.get(appc_os, ()):
        return {}
    return {"os": appc_os, "arch": appc_arch}


def image_name(image: SourceImage) -> str:
    """The ACI name: the sanitized ``registry/repository`` (``127.0.0.1_5000/library/busybox``)."""
    ref = image.reference
    if ref is None:
        return "image"
    raw = f"{ref.registry}/{ref.repository}" if ref.registry else ref.repository
    return str(sanitize_acidentifier(raw))


def layer_image_name(image: SourceImage, layer_id: str) -> str:
    """The name of one layer's ACI in ``-nosquash`` output: ``<image name>-<layer id>``."""
    ref = image.reference
    base = (
        f"{ref.registry}/{ref.repository}"
        if ref and ref.registry
        else (ref.repository if ref else "image")
    )
    return str(sanitize_acidentifier(f"{base}-{layer_id}"))


def _json_compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _created(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parse_rfc3339(value)
    except ValidationError:
        return None
    return value


def _annotations(
    image: SourceImage, config: Mapping[str, Any], layer: ImageLayer | None
) -> list[tuple[str, str]]:
    ref = image.reference
    container = config.get("config") if isinstance(config.get("config"), Mapping) else {}
    assert isinstance(container, Mapping)
    top = layer or (image.layers[-1] if image.layers else None)
    pairs: list[tuple[str, object]] = []
    if image.style == "v22":
        pairs += [("author", config.get("author")), ("created", _created(config.get("created")))]
    else:
        created = _created(config.get("created"))
        pairs += [
            ("authors", config.get("author")),
            ("created", created),
            ("docker-comment", config.get("comment")),
        ]
    pairs += [
        (ANNOTATION_PREFIX + "originalname", ref.original if ref else ""),
        (ANNOTATION_PREFIX + "registryurl", ref.registry if ref else ""),
        (ANNOTATION_PREFIX + "repository", ref.repository if ref else ""),
        (ANNOTATION_PREFIX + "imageid", top.layer_id if top else ""),
    ]
    if image.style == "v1" and top is not None:
        pairs.append((ANNOTATION_PREFIX + "parentimageid", top.parent_id))
    pairs.append((ANNOTATION_PREFIX + "manifesthash", image.manifest_hash))
    entrypoint, cmd = container.get("Entrypoint"), container.get("Cmd")
    if entrypoint:
        pairs.append((ANNOTATION_PREFIX + "entrypoint", _json_compact(entrypoint)))
    if cmd:
        pairs.append((ANNOTATION_PREFIX + "cmd", _json_compact(cmd)))
    if image.style == "v1" and top is not None and top.parent_id and ref is not None and ref.tag:
        pairs.append((ANNOTATION_PREFIX + "tag", ref.tag))
    return [(k, str(v)) for k, v in pairs if v]


#: The run-config fields ``actool push`` derives from the manifest (see
#: :func:`appc.oci.image.image_config`); ``Cmd`` is never set by it.
_DERIVED_FIELDS = ("Entrypoint", "Cmd", "Env", "WorkingDir", "User", "ExposedPorts", "Volumes")


def carried_manifest(image: SourceImage) -> ImageManifest | None:
    """The appc manifest an image pushed by ``actool push`` carries (OCI label
    ``org.appc.manifest``), so that converting it back gives the original manifest.

    Its dependencies and path whitelist are dropped: the squashed ACI already holds the
    files of its dependencies.  The label is used only while the image is still the one
    pushed: one history entry of ``actool push`` per layer and no other, and a run
    configuration and labels equal to those derived from the carried manifest.  An image
    built on top of it (``FROM`` in a Dockerfile inherits the label) or with a changed
    configuration, or a label that does not hold a valid manifest, is converted from its
    configuration as any other.
    """
    from appc.oci.image import HISTORY_CREATED_BY, MANIFEST_LABEL, image_config  # noqa: PLC0415

    container = image.container_config
    labels = container.get("Labels")
    text = labels.get(MANIFEST_LABEL) if isinstance(labels, Mapping) else None
    if not isinstance(text, str):
        return None
    try:
        manifest = ImageManifest.from_json(text)
    except ValidationError:
        return None
    history = image.config.get("history")
    if (
        not isinstance(history, list)
        or len(history) != len(image.layers)
        or not all(
            isinstance(entry, Mapping)
            and entry.get("created_by") == HISTORY_CREATED_BY
            and not entry.get("empty_layer")
            for entry in history
        )
    ):
        return None
    expected = image_config(manifest, ())["config"]
    if any(container.get(key) != expected.get(key) for key in (*_DERIVED_FIELDS, "Labels")):
        return None
    return attrs.evolve(manifest, dependencies=(), path_whitelist=())


def manifest_for_image(
    image: SourceImage,
    *,
    layer: ImageLayer | None = None,
    name: str | None = None,
    extra_labels: Mapping[str, str] | None = None,
) -> ImageManifest:
    """The ImageManifest of *image* (of one of its layers for ``-nosquash`` v1 output).

    :raises ImageError: when the configuration cannot be expressed in appc terms.
    """
    if layer is None and name is None:
        original = carried_manifest(image)
        if original is not None:
            return original
    config = layer.v1 if layer is not None and layer.v1 is not None else image.config
    container = config.get("config") if isinstance(config.get("config"), Mapping) else None
    platform = image.platform if layer is None else None
    labels: dict[str, str] = {}
    ref = image.reference
    if ref is not None and ref.tag:
        labels["version"] = ref.tag
    if platform is not None:
        labels.update(os_arch_labels(platform.os, platform.architecture, platform.variant))
    else:
        labels.update(
            os_arch_labels(str(config.get("os", "")), str(config.get("architecture", "")))
        )
    labels.update(extra_labels or {})
    try:
        return ImageManifest(
            name=name or image_name(image),
            labels=labels,
            app=None if container is None else app_from_config(container, v1=image.style == "v1"),
            annotations=_annotations(image, config, layer),
        )
    except ValidationError as err:
        raise ImageError(f"cannot convert the image config: {err}") from None
