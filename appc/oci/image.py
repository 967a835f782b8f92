"""App Container Images as OCI images: layers, config and manifest (format only, no transport).

An ACI becomes an OCI image with:

* one layer per image of its dependency chain (the dependencies first, as lower layers,
  each filtered by the ``pathWhitelist`` that applies to it), holding the ``rootfs/``
  tree without the ``rootfs/`` prefix; modes, owners, times, links, devices and xattrs
  kept; gzip-compressed;
* an image config from the manifest: ``exec`` → ``Entrypoint``, ``environment`` →
  ``Env``, ``workingDirectory`` → ``WorkingDir``, ``user``:``group`` → ``User``, ports →
  ``ExposedPorts`` (``80/tcp``), mount points → ``Volumes``, the ``os``/``arch`` labels
  mapped back to OCI names (``aarch64`` → ``arm64``, ``armv7l`` → ``arm``/``v7``);
* the appc labels and annotations as OCI labels under :data:`LABEL_PREFIX` and
  :data:`ANNOTATION_PREFIX`, and the whole original manifest as the label
  :data:`MANIFEST_LABEL`, so that OCI → ACI (``docker2aci``) gives the same manifest back.

Everything streams: an image is read once, and its layer is written compressed to a
file while both digests (compressed and uncompressed) are computed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any

import attrs

from appc.aci.read import ImageReader, clean_name
from appc.aci.validate import EntryChecker, image_manifest
from appc.aci.write import tar_header
from appc.errors import ImageError, ValidationError
from appc.types.labels import to_go_os_arch

__all__ = [
    "ANNOTATION_PREFIX",
    "HISTORY_CREATED_BY",
    "LABEL_PREFIX",
    "MANIFEST_LABEL",
    "MEDIA_CONFIG",
    "MEDIA_INDEX",
    "MEDIA_LAYER_GZIP",
    "MEDIA_MANIFEST",
    "Blob",
    "OCIImage",
    "build_oci_image",
    "image_config",
    "image_index",
    "layer_from_aci",
    "oci_image_from_aci",
]


def __dir__() -> list[str]:
    return __all__


MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

#: OCI label prefix of each appc label (``org.appc.label.version``).
LABEL_PREFIX = "org.appc.label."
#: OCI label prefix of each appc annotation (``org.appc.annotation.authors``).
ANNOTATION_PREFIX = "org.appc.annotation."
#: The OCI label holding the original appc image manifest (JSON).
MANIFEST_LABEL = "org.appc.manifest"
#: The ``created_by`` of each history entry (one per layer): an image built on top of
#: ours by another tool has entries of its own, and no longer matches the carried manifest.
HISTORY_CREATED_BY = "appc: layer from an App Container Image"
_BLOCK = tarfile.BLOCKSIZE


@attrs.frozen
class Blob:
    """A content-addressed blob: its digest, size, media type, and where its bytes are."""

    digest: str
    size: int
    media_type: str
    path: str | None = None  # a file (layers)
    data: bytes | None = attrs.field(default=None, repr=False)  # small blobs (config, manifests)

    def open(self) -> IO[bytes]:
        """Read the blob."""
        if self.data is not None:
            import io  # noqa: PLC0415

            return io.BytesIO(self.data)
        assert self.path is not None
        return open(self.path, "rb")

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        """The OCI descriptor of this blob."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


def _json_blob(value: Any, media_type: str) -> Blob:
    data = json.dumps(value, separators=(",", ":"), sort_keys=False).encode()
    return Blob("sha256:" + hashlib.sha256(data).hexdigest(), len(data), media_type, data=data)


@attrs.frozen
class OCIImage:
    """One OCI image (one platform): config, layers (base first) and manifest blobs."""

    config: Blob
    layers: tuple[Blob, ...]
    manifest: Blob
    platform: dict[str, str]
    name: str

    def blobs(self) -> list[Blob]:
        """Every blob the manifest references (config and layers)."""
        return [*self.layers, self.config]


class _LayerWriter:
    """tar framing → sha256 (diff ID) → gzip → sha256 (digest) → file, in one pass."""

    def __init__(self, out: IO[bytes], level: int) -> None:
        self._out = out
        self._compress = zlib.compressobj(level, zlib.DEFLATED, 31)
        self.diff = hashlib.sha256()
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self.diff.update(data)
        packed = self._compress.compress(data)
        if packed:
            self.digest.update(packed)
            self._out.write(packed)
            self.size += len(packed)

    def add(self, info: tarfile.TarInfo, content: IO[bytes] | None) -> None:
        self.write(tar_header(info))
        if info.isreg() and info.size:
            assert content is not None
            remaining = info.size
            while remaining:
                chunk = content.read(min(remaining, 1 << 20))
                if not chunk:
                    raise ImageError(f"truncated entry {info.name!r}")
                self.write(chunk)
                remaining -= len(chunk)
            if info.size % _BLOCK:
                self.write(bytes(_BLOCK - info.size % _BLOCK))

    def close(self) -> None:
        self.write(bytes(2 * _BLOCK))
        tail = self._compress.flush()
        self.digest.update(tail)
        self._out.write(tail)
        self.size += len(tail)


def _layer_path(name: str) -> str:
    """The path in the layer of an ACI entry under ``rootfs/``."""
    return name[len("rootfs/") :]


def _carriers(
    source: str | os.PathLike[str] | IO[bytes], allowed: Sequence[frozenset[str]]
) -> dict[str, str]:
    """A first pass over a filtered image: ``{dropped entry: kept hard link}`` for each
    entry the whitelists drop while a hard link to it is kept (the link's path then
    carries the entry's data, as rendering copies it)."""
    origin: dict[str, str] = {}  # entry -> the entry it is a hard link to, resolved
    carriers: dict[str, str] = {}
    with ImageReader(source) as image:
        for info, name in image.entries():
            if not name.startswith("rootfs/") or info.isdir():
                continue
            path = _layer_path(name)
            if not info.islnk():
                origin[path] = path
                continue
            root = origin.get(_layer_path(clean_name(info.linkname)), "")
            origin[path] = root
            kept = all(path in w for w in allowed)
            if kept and root and not all(root in w for w in allowed):
                carriers.setdefault(root, path)
    return carriers


def layer_from_aci(
    source: str | os.PathLike[str] | IO[bytes],
    directory: str,
    *,
    whitelists: Iterable[frozenset[str]] = (),
    level: int = 6,
) -> tuple[Blob, str, Any]:
    """Write the ``rootfs/`` of one ACI as a gzip OCI layer into *directory*.

    Hard links point at the first kept entry of their file; when the whitelists drop
    the file a kept link points to, the first such link carries the data (a regular
    file), as rendering copies it.  That needs a first pass over the image: a stream
    *source* must then be seekable.

    :param whitelists: rootfs-relative path sets (no leading ``/``); a non-directory
        entry is kept only if every set holds it (the image's own ``pathWhitelist`` and
        those of the images that depend on it).
    :returns: the layer blob, its diff ID and the image manifest.
    :raises ImageError: an invalid archive (it is checked as it streams), or a name an
        OCI runtime would take for a whiteout (``.wh.*``).
    """
    allowed = [w for w in whitelists if w]
    carriers: dict[str, str] = {}
    if allowed:
        start = None if isinstance(source, (str, os.PathLike)) else source.tell()
        carriers = _carriers(source, allowed)
        if start is not None:
            assert not isinstance(source, (str, os.PathLike))
            source.seek(start)
    fd, path = tempfile.mkstemp(prefix="layer-", suffix=".tar.gz", dir=directory)
    manifest_bytes = b""
    try:
        with os.fdopen(fd, "wb") as out, ImageReader(source) as image:
            writer = _LayerWriter(out, level)
            checker = EntryChecker(str(image.source))
            written: dict[str, str | None] = {}  # entry -> where its file is in the layer
            for info, name in image.entries():
                checker.check(info, name)
                if name == "manifest":
                    manifest_bytes = image.read_entry(info, limit=4 * 1024 * 1024)
                    continue
                if name in ("rootfs", "."):
                    continue
                path_in_layer = _layer_path(name)
                if posixpath.basename(path_in_layer).startswith(".wh."):
                    raise ImageError(
                        f"{name!r}: an OCI runtime would take this name for a whiteout",
                        source=str(image.source),
                    )
                changes: dict[str, Any] = {"name": path_in_layer}
                if not info.isdir():
                    kept = all(path_in_layer in w for w in allowed)
                    if info.islnk():
                        # the file this link shares: where it is in the layer, if anywhere
                        target = written.get(_layer_path(clean_name(info.linkname)))
                        written[path_in_layer] = target
                        if not kept or target is None or target == path_in_layer:
                            continue  # dropped, or the carrier of a dropped file (written)
                        changes["linkname"] = target
                    elif kept:
                        written[path_in_layer] = path_in_layer
                    elif path_in_layer in carriers:
                        changes["name"] = written[path_in_layer] = carriers[path_in_layer]
                    else:
                        written[path_in_layer] = None
                        continue
                header = info.replace(deep=False, **changes)
                header.pax_headers = {
                    k: v for k, v in info.pax_headers.items() if k.startswith("SCHILY.xattr.")
                }
                writer.add(header, image.member(info) if info.isreg() else None)
            image.finish()
            checker.finish()
            writer.close()
            manifest = image_manifest(manifest_bytes, str(image.source))
    except BaseException:
        os.unlink(path)
        raise
    final = os.path.join(directory, writer.digest.hexdigest())
    os.replace(path, final)
    blob = Blob("sha256:" + writer.digest.hexdigest(), writer.size, MEDIA_LAYER_GZIP, path=final)
    return blob, "sha256:" + writer.diff.hexdigest(), manifest


def _platform(manifest: Any) -> dict[str, str]:
    """The OCI platform of an image from its ``os``/``arch`` labels (Go names; linux and
    amd64 stand in for a missing label).

    :raises ImageError: an os/arch pair without an OCI (Go) name (``armv7b``).
    """
    os_ = manifest.labels.get("os") or "linux"
    arch = manifest.labels.get("arch")
    if not arch:
        return {"os": os_, "architecture": "amd64"}
    try:
        goos, goarch, goarm = to_go_os_arch(os_, arch)
    except ValidationError as err:
        raise ImageError(f"no OCI platform for the image's os/arch: {err}") from None
    platform = {"os": goos, "architecture": goarch}
    if goarm:
        platform["variant"] = f"v{goarm}"
    elif goarch == "arm64":
        platform["variant"] = "v8"
    return platform


def image_config(
    manifest: Any, diff_ids: Sequence[str], *, created: str | None = None
) -> dict[str, Any]:
    """The OCI image config of an appc *manifest* whose layers have *diff_ids* (base first)."""
    config: dict[str, Any] = {}
    labels: dict[str, str] = {
        f"{LABEL_PREFIX}{label.name}": label.value for label in manifest.labels
    }
    labels.update({f"{ANNOTATION_PREFIX}{a.name}": a.value for a in manifest.annotations})
    labels[MANIFEST_LABEL] = manifest.to_json()
    app = manifest.app
    if app is not None:
        if app.exec:
            config["Entrypoint"] = list(app.exec)
        env = app.environment.as_dict()
        if env:
            config["Env"] = [f"{k}={v}" for k, v in env.items()]
        if app.working_directory:
            config["WorkingDir"] = app.working_directory
        config["User"] = f"{app.user}:{app.group}"
        if app.ports:
            config["ExposedPorts"] = {
                f"{port.port + offset}/{port.protocol or 'tcp'}": {}
                for port in app.ports
                for offset in range(port.count)
            }
        if app.mount_points:
            config["Volumes"] = {point.path: {} for point in app.mount_points if point.path}
        labels.update(app.user_labels)
    config["Labels"] = labels
    document: dict[str, Any] = dict(_platform(manifest))
    if created:
        document["created"] = created
    document["config"] = config
    document["rootfs"] = {"type": "layers", "diff_ids": list(diff_ids)}
    document["history"] = [{"created_by": HISTORY_CREATED_BY, "comment": str(manifest.name)}] * len(
        diff_ids
    )
    return document


def build_oci_image(
    chain: Sequence[tuple[str | os.PathLike[str] | IO[bytes], Iterable[frozenset[str]]]],
    directory: str,
    *,
    level: int = 6,
    log: Callable[[str], None] | None = None,
) -> OCIImage:
    """Make the OCI image of an ACI and its dependencies.

    :param chain: ``(ACI, whitelists)`` pairs, the dependencies first and the image
        itself last (see :func:`layer_from_aci` for the whitelists).
    :param directory: where the layer blobs are written.
    """
    layers, diff_ids = [], []
    manifest = None
    for index, (source, whitelists) in enumerate(chain):
        if log is not None:
            log(
                f"layer {index + 1}/{len(chain)}: {source if isinstance(source, str) else 'stream'}"
            )
        blob, diff_id, manifest = layer_from_aci(
            source, directory, whitelists=whitelists, level=level
        )
        layers.append(blob)
        diff_ids.append(diff_id)
    if manifest is None:
        raise ImageError("no image to convert")
    created = manifest.annotations.get("created")
    config = _json_blob(image_config(manifest, diff_ids, created=created), MEDIA_CONFIG)
    annotations = {"org.opencontainers.image.title": str(manifest.name)}
    version = manifest.labels.get("version")
    if version:
        annotations["org.opencontainers.image.version"] = version
    document = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
        "annotations": annotations,
    }
    return OCIImage(
        config,
        tuple(layers),
        _json_blob(document, MEDIA_MANIFEST),
        _platform(manifest),
        str(manifest.name),
    )


def image_index(images: Sequence[OCIImage]) -> Blob:
    """An OCI image index over several platforms of one image.

    :raises ImageError: two images for the same platform, or different names.
    """
    seen = set()
    for image in images:
        key = tuple(sorted(image.platform.items()))
        if key in seen:
            raise ImageError(f"two images for the platform {'/'.join(image.platform.values())}")
        seen.add(key)
    if len({image.name for image in images}) > 1:
        raise ImageError("an index groups platforms of one image: the names differ")
    document = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [image.manifest.descriptor(platform=image.platform) for image in images],
    }
    return _json_blob(document, MEDIA_INDEX)


def oci_image_from_aci(
    path: str | os.PathLike[str],
    directory: str,
    *,
    store: Any = None,
    level: int = 6,
    log: Callable[[str], None] | None = None,
) -> OCIImage:
    """The OCI image of the ACI file at *path*, its dependencies as lower layers.

    :param store: an :class:`appc.store.ImageStore` holding the dependencies (the image
        is imported into it to resolve them); needed only when the image has any.
    :raises ImageError: dependencies without a store; :raises StoreError: a missing one.
    """
    from appc.aci.read import read_manifest  # noqa: PLC0415

    try:
        manifest = read_manifest(path)
    except ValidationError as err:
        raise ImageError(
            f"image manifest validation failed: {err}", source=os.fspath(path)
        ) from None
    if not manifest.dependencies:
        whitelist = {posixpath.normpath("/" + p).lstrip("/") for p in manifest.path_whitelist}
        return build_oci_image(
            [(path, [frozenset(whitelist - {""})])], directory, level=level, log=log
        )
    if store is None:
        raise ImageError(
            "the image has dependencies: give a store that holds them (--dir)",
            source=os.fspath(path),
        )
    from appc.store import dependency_list  # noqa: PLC0415

    stored = store.import_image(path)
    with contextlib.ExitStack() as blobs:
        chain: list[tuple[Any, Iterable[frozenset[str]]]] = [
            (blobs.enter_context(store.open_blob(dependency.key)), dependency.whitelists)
            for dependency in reversed(dependency_list(store, stored.key))
        ]
        return build_oci_image(chain, directory, level=level, log=log)
