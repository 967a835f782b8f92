"""Images for the store tests, written by code with :class:`appc.aci.write.ImageWriter`.

:func:`make_image` writes an ACI from a short description of its rootfs::

    make_image(tmp / "a.aci", "example.com/a", [
        ("dir", "etc"),
        ("file", "etc/hosts", b"127.0.0.1 localhost\\n"),
        ("symlink", "lib", "usr/lib"),
        ("hardlink", "etc/hosts2", "etc/hosts"),
        ("fifo", "run/pipe"),
        ("chr", "dev/null", 1, 3),
    ], labels={"version": "1.0"}, dependencies=[{"imageName": "example.com/base"}])
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import subprocess
import sys
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from appc.aci.write import ImageWriter
from appc.types.hash import Hash
from tests.aci_fixtures import compress

REPO = pathlib.Path(__file__).resolve().parents[1]


def manifest_json(
    name: str,
    *,
    labels: Mapping[str, str] | None = None,
    dependencies: Sequence[Mapping[str, Any]] = (),
    whitelist: Sequence[str] = (),
    app: bool = True,
) -> bytes:
    """The JSON of an image manifest."""
    document: dict[str, Any] = {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": name}
    if labels:
        document["labels"] = [{"name": k, "value": v} for k, v in labels.items()]
    if app:
        document["app"] = {"exec": ["/bin/true"], "user": "0", "group": "0"}
    if dependencies:
        document["dependencies"] = [dict(d) for d in dependencies]
    if whitelist:
        document["pathWhitelist"] = list(whitelist)
    return json.dumps(document).encode()


def _info(name: str, kind: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 1_600_000_000
    info.uname = info.gname = "root"
    return info


def image_tar(
    name: str,
    entries: Iterable[tuple[Any, ...]] = (),
    *,
    labels: Mapping[str, str] | None = None,
    dependencies: Sequence[Mapping[str, Any]] = (),
    whitelist: Sequence[str] = (),
    rootfs_mode: int = 0o755,
) -> bytes:
    """An uncompressed image archive: ``rootfs``, the described entries, then the manifest."""
    out = io.BytesIO()
    writer = ImageWriter(out, compression="none")
    writer.add(_info("rootfs", tarfile.DIRTYPE, rootfs_mode))
    for entry in entries:
        kind, path = entry[0], "rootfs/" + entry[1]
        if kind == "dir":
            writer.add(_info(path, tarfile.DIRTYPE, entry[2] if len(entry) > 2 else 0o755))
        elif kind == "file":
            info = _info(path, tarfile.REGTYPE, entry[3] if len(entry) > 3 else 0o644)
            writer.add_bytes(info, entry[2])
        elif kind == "symlink":
            info = _info(path, tarfile.SYMTYPE, 0o777)
            info.linkname = entry[2]
            writer.add(info)
        elif kind == "hardlink":
            info = _info(path, tarfile.LNKTYPE, 0o644)
            info.linkname = "rootfs/" + entry[2]
            writer.add(info)
        elif kind == "fifo":
            writer.add(_info(path, tarfile.FIFOTYPE, 0o644))
        elif kind == "chr":
            info = _info(path, tarfile.CHRTYPE, 0o666)
            info.devmajor, info.devminor = entry[2], entry[3]
            writer.add(info)
        else:
            raise ValueError(kind)
    manifest = _info("manifest", tarfile.REGTYPE, 0o644)
    writer.add_bytes(
        manifest,
        manifest_json(name, labels=labels, dependencies=dependencies, whitelist=whitelist),
    )
    writer.close()
    return out.getvalue()


def make_image(
    path: os.PathLike[str] | str,
    name: str,
    entries: Iterable[tuple[Any, ...]] = (),
    *,
    compression: str = "tar",
    **manifest: Any,
) -> Hash:
    """Write an image archive to *path* (compressed as *compression*); return its image ID."""
    data = image_tar(name, entries, **manifest)
    pathlib.Path(path).write_bytes(compress(data, compression))
    return image_id(data)


def image_id(tar: bytes) -> Hash:
    """The image ID of an uncompressed archive."""
    import hashlib

    return Hash.from_digest(hashlib.sha512(tar).hexdigest())


def run_python(code: str, *args: str, timeout: float = 60, **popen: Any) -> subprocess.Popen[bytes]:
    """Start ``python -c code args...`` with the repository importable; returns the process."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **popen,
    )
