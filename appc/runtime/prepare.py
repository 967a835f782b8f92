"""Preparing a pod: fetch and render its images, name its apps, bind volumes, write its manifest.

This is stage0's work (``rkt prepare`` / ``rkt run``): after it the pod directory holds
everything the executor needs, and nothing is mounted yet.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from appc.errors import PodError, ValidationError
from appc.runtime.executor import RuntimeConfig
from appc.runtime.linux import capability_number
from appc.runtime.pods import Pod, create_pod
from appc.schema.image import App
from appc.schema.pod import Mount, PodManifest, RuntimeApp, RuntimeImage
from appc.types.acname import ACName, sanitize_acname
from appc.types.isolators import Isolator, Isolators
from appc.types.volumes import Volume

__all__ = ["AppSpec", "PodSpec", "app_name_for", "prepare_pod", "read_env_file"]


def __dir__() -> list[str]:
    return __all__


@attrs.frozen(kw_only=True)
class AppSpec:
    """One app of a pod as asked for on the command line (``IMAGE`` and its per-app flags)."""

    image: str
    name: str | None = None
    exec: str | None = None
    args: tuple[str, ...] | None = None
    user: str | None = None
    group: str | None = None
    supplementary_gids: tuple[int, ...] | None = None
    working_dir: str | None = None
    environment: Mapping[str, str] = attrs.field(factory=dict)
    mounts: tuple[tuple[str, str], ...] = ()  # (volume, target)
    memory: str | None = None
    cpu: str | None = None
    caps_retain: tuple[str, ...] = ()
    caps_remove: tuple[str, ...] = ()
    readonly_rootfs: bool = False
    signature: str | None = None
    user_annotations: Mapping[str, str] = attrs.field(factory=dict)
    user_labels: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class PodSpec:
    """A whole pod as asked for: its apps and the pod-wide flags."""

    apps: tuple[AppSpec, ...]
    volumes: tuple[Volume, ...] = ()
    mounts: tuple[tuple[str, str], ...] = ()  # --mount before the first image: every app
    set_env: Mapping[str, str] = attrs.field(factory=dict)
    inherit_env: bool = False
    annotations: Mapping[str, str] = attrs.field(factory=dict)


def app_name_for(image_name: str) -> str:
    """rkt's default app name: the last path component of the image name, as an ACName.

    >>> app_name_for("coreos.com/etcd")
    'etcd'
    """
    return str(sanitize_acname(image_name.rsplit("/", 1)[-1]))


def read_env_file(path: str) -> dict[str, str]:
    """Read ``--set-env-file``: ``KEY=VALUE`` lines; blank lines and ``#``/``;`` comments skipped."""
    env = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or err
        raise ValidationError(f"--set-env-file {path}: {reason}") from None
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValidationError(f"{path}: bad line {line!r} (KEY=VALUE)")
        env[key] = value
    return env


def _effective_app(image_app: App | None, spec: AppSpec, pod: PodSpec) -> App:
    """The image's app with the command line's overrides (what goes into the pod manifest).

    :raises PodError: no command to run: no app and no ``--exec``, an image whose
        ``exec`` is empty, or an empty ``--exec`` (arguments after ``--`` never stand in
        for the command).
    """
    if spec.exec is not None and not spec.exec.strip():
        raise PodError(f"image {spec.image!r}: empty --exec: give the path of a BINARY")
    if image_app is None:
        if spec.exec is None:
            raise PodError(f"image {spec.image!r} has no app: give --exec=BINARY")
        image_app = App(exec=[spec.exec], user="0", group="0")
    fields: dict[str, Any] = attrs.asdict(image_app, recurse=False)
    argv = list(image_app.exec)
    if spec.exec is not None:
        argv = [spec.exec, *argv[1:]]
    if not argv or not argv[0]:
        raise PodError(f"image {spec.image!r} has no command (exec): try --exec=BINARY")
    if spec.args is not None:
        argv = [argv[0], *spec.args]
    fields["exec"] = argv
    for key, value in (
        ("user", spec.user),
        ("group", spec.group),
        ("working_directory", spec.working_dir),
    ):
        if value is not None:
            fields[key] = value
    if spec.supplementary_gids is not None:
        fields["supplementary_gids"] = spec.supplementary_gids
    env = dict(os.environ) if pod.inherit_env else {}
    env.update(image_app.environment.as_dict())
    env.update(pod.set_env)
    env.update(spec.environment)
    fields["environment"] = list(env.items())
    isolators = list(image_app.isolators)
    if spec.memory is not None:
        isolators = [i for i in isolators if i.name != "resource/memory"]
        isolators.append(Isolator("resource/memory", {"limit": spec.memory}))
    if spec.cpu is not None:
        isolators = [i for i in isolators if i.name != "resource/cpu"]
        isolators.append(Isolator("resource/cpu", {"limit": spec.cpu}))
    caps = ("os/linux/capabilities-retain-set", "os/linux/capabilities-remove-set")
    if spec.caps_retain or spec.caps_remove:
        if spec.caps_retain and spec.caps_remove:
            raise ValidationError("--caps-retain and --caps-remove cannot be combined")
        for cap in (*spec.caps_retain, *spec.caps_remove):
            try:
                capability_number(cap)
            except ValueError as err:
                raise ValidationError(str(err)) from None
        isolators = [i for i in isolators if i.name not in caps]
        kind, names = (
            (caps[0], spec.caps_retain) if spec.caps_retain else (caps[1], spec.caps_remove)
        )
        isolators.append(Isolator(kind, {"set": list(names)}))
    fields["isolators"] = Isolators(isolators)
    fields["user_annotations"] = {**image_app.user_annotations, **spec.user_annotations}
    fields["user_labels"] = {**image_app.user_labels, **spec.user_labels}
    return App(**fields)


def _prepare_volumes(pod: Pod, manifest_volumes: Sequence[Volume]) -> None:
    for volume in manifest_volumes:
        if volume.kind == "host":
            if os.path.islink(volume.source) or not os.path.exists(volume.source):
                raise PodError(
                    f"volume {str(volume.name)!r}: host source {volume.source!r} is missing or a symlink"
                )
            continue
        path = pod.file("sharedVolumes", str(volume.name))
        os.makedirs(path, exist_ok=True)
        os.chmod(path, int(volume.mode or "0755", 8))
        os.chown(path, volume.uid or 0, volume.gid or 0)


def prepare_pod(
    data_dir: str,
    spec: PodSpec,
    fetcher: Any,
    config: RuntimeConfig,
    *,
    uuid_file: str | None = None,
) -> Pod:
    """Create and prepare a pod; it is returned locked, in ``prepare``.

    :param fetcher: an :class:`appc.fetch.Fetcher` (images not in the store are fetched).
    :raises AppcError: a missing or invalid image, duplicate app names, a mount without
        a volume, a bad override; the pod is then moved to ``exited-garbage`` for ``gc``.
    """
    if not spec.apps:
        raise PodError("must provide at least one image or specify the pod manifest")
    if config.interactive and len(spec.apps) > 1:
        raise PodError("interactive option only supports one image")
    pod = create_pod(data_dir, uuid_file=uuid_file)
    try:
        _fill(pod, spec, fetcher, config)
    except BaseException:
        pod.to_exited_garbage()
        pod.release()
        raise
    return pod


def _fill(pod: Pod, spec: PodSpec, fetcher: Any, config: RuntimeConfig) -> None:
    from appc.store import TreeStore  # noqa: PLC0415

    trees = TreeStore(fetcher.store)
    runtime_apps = []
    volumes = {str(v.name): v for v in spec.volumes}
    names: set[str] = set()
    for app_spec in spec.apps:
        stored = fetcher.fetch(app_spec.image, signature=app_spec.signature)
        manifest = stored.manifest
        name = app_spec.name or app_name_for(str(manifest.name))
        ACName(name)
        if name in names:
            raise PodError(f"multiple apps with same name {name!r} (use --name)")
        names.add(name)
        tree = trees.render(stored.key)
        app = _effective_app(manifest.app, app_spec, spec)
        mounts = []
        wanted = [*spec.mounts, *app_spec.mounts]
        targets = {target for _, target in wanted}
        for volume_name, target in wanted:
            if volume_name not in volumes:
                raise PodError(f"app {name!r}: --mount of undefined volume {volume_name!r}")
            mounts.append(Mount(volume=volume_name, path=target))
        for point in app.mount_points:
            if point.path in targets or not point.name:
                continue
            if str(point.name) not in volumes:
                # rkt: a mount point without a volume gets an implicit empty volume
                volumes[str(point.name)] = Volume(name=point.name, kind="empty")
            volume = volumes[str(point.name)]
            read_only = point.read_only or bool(volume.read_only)
            if read_only and not volume.read_only:
                volumes[str(point.name)] = attrs.evolve(volume, read_only=True)
            mounts.append(Mount(volume=point.name, path=point.path))
        info = os.path.join("appsinfo", name)
        pod.write(os.path.join(info, "manifest"), manifest.to_json())
        pod.write(os.path.join(info, "treeStoreID"), tree.tree_id + "\n")
        pod.write(os.path.join(info, "imageKey"), stored.key + "\n")
        runtime_apps.append(
            RuntimeApp(
                name=name,
                image=RuntimeImage(name=manifest.name, id=stored.image_id, labels=manifest.labels),
                app=app,
                read_only_rootfs=app_spec.readonly_rootfs,
                mounts=mounts,
            )
        )
    pod_manifest = PodManifest(
        apps=runtime_apps,
        volumes=list(volumes.values()),
        annotations=dict(spec.annotations),
    )
    _prepare_volumes(pod, pod_manifest.volumes)
    pod.write("pod", pod_manifest.to_json())
    pod.write("runtime-config", config.to_json())
