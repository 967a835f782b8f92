"""The image model every source produces and the converter consumes.

Sources (a registry, a ``docker save`` file, an OCI layout) differ in transport and
format; each yields a :class:`SourceImage`: the image configuration, the layers base
first (each with an opener for its blob), and what the original tool recorded about
provenance (manifest hash, registry, reference).  The Docker/OCI manifest formats
shared by the registry and the OCI layout are read here.

Unlike the original, layer media types are checked (Docker's and OCI's tar, gzip and
zstd layers; anything else is refused instead of being read as it comes), and manifest
lists and OCI indexes are resolved for a platform (the original never asked for them).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any, Literal

import attrs

from appc.docker.reference import DockerReference
from appc.docker.registry import MediaType
from appc.errors import FetchError, ImageError
from appc.store.locks import FileLock, new_locked_directory

__all__ = [
    "ImageLayer",
    "Platform",
    "SourceImage",
    "check_digest",
    "is_index",
    "layers_from_manifest",
    "parse_schema1",
    "select_platform",
    "v1_layer",
    "work_directory",
]


def __dir__() -> list[str]:
    return __all__


@attrs.frozen
class Platform:
    """The os/architecture[/variant] wanted from a multi-platform image (Go/OCI names)."""

    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@attrs.frozen
class ImageLayer:
    """One layer: its blob digest and media type, and how to open the (compressed) blob.

    :ivar layer_id: what names the layer in ``-nosquash`` output and annotations: the v1
        image ID for schema1 and ``docker save`` images, else the blob digest.
    :ivar v1: the layer's v1 JSON (schema1 and classic ``docker save`` images).
    """

    digest: str
    media_type: str
    opener: Callable[[], IO[bytes]] = attrs.field(repr=False)
    size: int | None = None
    layer_id: str = ""
    parent_id: str = ""
    v1: Mapping[str, Any] | None = attrs.field(default=None, repr=False)

    def open(self) -> IO[bytes]:
        """Open the blob (waiting for its download if it is still running)."""
        return self.opener()


@attrs.frozen
class SourceImage:
    """An image ready for conversion.

    :ivar config: the image configuration (for ``v1`` style: the top layer's v1 JSON).
    :ivar layers: base first.
    :ivar style: ``v22`` (schema2/OCI config) or ``v1`` (schema1, classic docker save):
        which generator the original used, which decides some annotation names.
    :ivar manifest_hash: what the original recorded as ``appc.io/docker/manifesthash``.
    :ivar reference: the reference converted (``None`` for an archive read without one).
    """

    config: Mapping[str, Any]
    layers: tuple[ImageLayer, ...]
    style: Literal["v22", "v1"]
    manifest_hash: str = ""
    reference: DockerReference | None = None

    @property
    def container_config(self) -> Mapping[str, Any]:
        """The ``config`` section (entrypoint, cmd, env, user, ...), or ``{}``."""
        section = self.config.get("config")
        return section if isinstance(section, Mapping) else {}

    @property
    def platform(self) -> Platform:
        """The image's os/architecture as its configuration states them (Go names)."""
        os_ = self.config.get("os")
        arch = self.config.get("architecture")
        variant = self.config.get("variant")
        return Platform(
            os_ if isinstance(os_, str) else "",
            arch if isinstance(arch, str) else "",
            variant if isinstance(variant, str) else "",
        )


_LAYER_TYPES = frozenset(
    {
        MediaType.DOCKER_LAYER,
        MediaType.DOCKER_LAYER_TAR,
        MediaType.DOCKER_FOREIGN_LAYER,
        MediaType.OCI_LAYER,
        MediaType.OCI_LAYER_GZIP,
        MediaType.OCI_LAYER_ZSTD,
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)
_INDEX_TYPES = frozenset({MediaType.OCI_INDEX, MediaType.DOCKER_LIST})
_DIGEST = re.compile(r"(sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})")


def check_digest(value: object, where: str) -> str:
    """Return *value* if it is a well-formed digest (it becomes part of file paths and URLs)."""
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise FetchError(f"invalid digest {value!r} in {where}")
    return value


def is_index(media_type: str) -> bool:
    """True for a manifest list or an OCI image index."""
    return media_type in _INDEX_TYPES


def select_platform(index: Mapping[str, Any], platform: Platform, where: str) -> Mapping[str, Any]:
    """Choose the descriptor of *index* (a manifest list or OCI index) for *platform*.

    An entry without a variant matches any variant asked for; one naming a variant
    must match it when a variant was asked for.

    :raises FetchError: no entry for the platform (the message lists those available).
    """
    manifests = index.get("manifests")
    if not isinstance(manifests, list):
        raise FetchError(f"index without a manifests list in {where}")
    available = []
    for descriptor in manifests:
        if not isinstance(descriptor, Mapping):
            continue
        plat = descriptor.get("platform") if isinstance(descriptor.get("platform"), Mapping) else {}
        assert isinstance(plat, Mapping)
        entry = Platform(
            str(plat.get("os", "")), str(plat.get("architecture", "")), str(plat.get("variant", ""))
        )
        available.append(str(entry))
        if (
            entry.os == platform.os
            and entry.architecture == platform.architecture
            and (not platform.variant or not entry.variant or entry.variant == platform.variant)
        ):
            return descriptor
    raise FetchError(
        f"no image for {platform} in {where} (available: {', '.join(available) or 'none'})"
    )


def layers_from_manifest(
    manifest: Mapping[str, Any], where: str
) -> tuple[Mapping[str, Any], list[Mapping[str, Any]]]:
    """Return the config descriptor and the layer descriptors (base first) of a schema2/OCI manifest.

    :raises FetchError: malformed manifest, bad digest, or an unsupported layer type.
    """
    config = manifest.get("config")
    layers = manifest.get("layers")
    if not isinstance(config, Mapping) or not isinstance(layers, list):
        raise FetchError(f"malformed image manifest in {where}: needs config and layers")
    check_digest(config.get("digest"), where)
    result = []
    for layer in layers:
        if not isinstance(layer, Mapping):
            raise FetchError(f"malformed layer descriptor in {where}")
        check_digest(layer.get("digest"), where)
        media_type = layer.get("mediaType", MediaType.OCI_LAYER_GZIP)
        if media_type not in _LAYER_TYPES:
            raise FetchError(f"unsupported layer media type {media_type!r} in {where}")
        result.append(layer)
    return config, result


_V1_ID = re.compile(r"[a-f0-9]{64}")


def parse_schema1(
    data: Mapping[str, Any], repository: str, tag: str, where: str
) -> list[tuple[str, dict[str, Any]]]:
    """Check a schema1 manifest and return ``(blobSum, v1 JSON)`` per layer, base first.

    The rules are the original's: the name must be the repository asked for (and the
    tag, when one was asked for); the history forms one parent chain (adjacent repeats
    are folded, other repeats refused, the base has no parent).
    """
    if data.get("name") != repository:
        raise FetchError(
            f"name doesn't match what was requested, expected: {repository}, downloaded: {data.get('name')}"
        )
    if tag and data.get("tag") not in (None, tag):
        raise FetchError(
            f"tag doesn't match what was requested, expected: {tag}, downloaded: {data.get('tag')}"
        )
    fs_layers = data.get("fsLayers")
    history = data.get("history")
    if (
        not isinstance(fs_layers, list)
        or not isinstance(history, list)
        or len(fs_layers) != len(history)
        or not fs_layers
    ):
        raise FetchError(f"malformed schema1 manifest in {where}")
    entries: list[tuple[str, dict[str, Any]]] = []
    for layer, item in zip(fs_layers, history, strict=True):
        try:
            blob = check_digest(layer["blobSum"], where)
            v1 = json.loads(item["v1Compatibility"])
        except (KeyError, TypeError, ValueError):
            raise FetchError(f"malformed schema1 history in {where}") from None
        if (
            not isinstance(v1, dict)
            or not isinstance(v1.get("id"), str)
            or not _V1_ID.fullmatch(v1["id"])
        ):
            raise FetchError(f"invalid layer id in {where}")
        if entries and entries[-1][1]["id"] == v1["id"]:
            continue  # an adjacent repeat: the same layer listed twice
        entries.append((blob, v1))
    seen = set()
    for index, (_, v1) in enumerate(entries):
        if v1["id"] in seen:
            raise FetchError(f"layer {v1['id']} appears twice in the history of {where}")
        seen.add(v1["id"])
        parent = v1.get("parent", "")
        expected = entries[index + 1][1]["id"] if index + 1 < len(entries) else ""
        if (parent or "") != expected:
            raise FetchError(
                f"broken layer chain in {where}: {v1['id']} has parent {parent!r}, expected {expected!r}"
            )
    entries.reverse()
    return entries


def v1_layer(
    blob: str, v1: Mapping[str, Any], opener: Callable[[], IO[bytes]], size: int | None = None
) -> ImageLayer:
    """An :class:`ImageLayer` of a v1-style image (schema1, classic docker save)."""
    return ImageLayer(
        digest=blob,
        media_type=MediaType.DOCKER_LAYER,
        opener=opener,
        size=size,
        layer_id=str(v1.get("id", "")),
        parent_id=str(v1.get("parent", "") or ""),
        v1=v1,
    )


#: Work directories are named ``docker2aci-appc-*``: the original Go tool names its own
#: ``docker2aci-<digits>``, which are never touched here.
_WORK_PREFIX = "docker2aci-appc-"


@contextlib.contextmanager
def work_directory(workdir: str | None) -> Iterator[str]:
    """A temporary directory ``docker2aci-appc-*`` for downloads and decompressed
    archives, removed when the block ends.

    It is held under an ``flock`` while in use; one left by a killed process (unlocked)
    is removed when the next one is made in the same place.

    :param workdir: where to make it (created if missing); default ``$TMPDIR``.
    :raises ImageError: when it cannot be made (a clear error, not an ``OSError``).
    """
    parent = workdir or tempfile.gettempdir()
    try:
        if workdir:
            os.makedirs(workdir, exist_ok=True)
        _remove_abandoned(parent)
        path, lock = new_locked_directory(parent, lambda: _WORK_PREFIX + secrets.token_hex(6))
    except OSError as err:
        raise ImageError(
            f"cannot create a temporary directory: {err.strerror or err}", source=parent
        ) from None
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        lock.close()


def _remove_abandoned(parent: str) -> None:
    """Remove the work directories in *parent* whose process died (ours, unlocked)."""
    for name in os.listdir(parent):
        path = os.path.join(parent, name)
        if not name.startswith(_WORK_PREFIX) or os.path.islink(path):
            continue
        try:
            lock = FileLock.open(path, directory=True)
        except OSError:
            continue
        with lock:
            if lock.exclusive(blocking=False):
                shutil.rmtree(path, ignore_errors=True)
