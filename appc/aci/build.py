"""Building an image archive from a layout directory (``actool build``).

One pass: a sorted walk of ``rootfs/`` → tar headers and contents → SHA-512 (the image
ID) → gzip members compressed in parallel → a temporary file renamed into place.  The
archive looks like the reference's: ``rootfs`` first, then its tree in byte order of
names, and a freshly serialized manifest as the *last* entry.  Hard links become a
regular file plus link entries; sockets are skipped; xattrs are kept (PAX records);
devices and FIFOs are kept.

Reproducibility: with ``mtime`` (or ``SOURCE_DATE_EPOCH`` in the environment) every
entry gets that time, so the same tree gives the same image ID on any machine; the
gzip member headers carry no time or name either way.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
import time
from collections.abc import Iterator

import attrs

from appc.aci._compress import Compression
from appc.aci.validate import validate_layout
from appc.aci.write import DEFAULT_LEVEL, ImageWriter, atomic_output
from appc.errors import ImageError
from appc.types.hash import Hash

__all__ = ["BuildResult", "build_image", "source_date_epoch", "walk_tree"]


def __dir__() -> list[str]:
    return __all__


@attrs.frozen
class BuildResult:
    """What a build wrote: the image ID, the manifest, the entry count and tar size."""

    image_id: Hash
    manifest: object
    entries: int
    tar_size: int


def source_date_epoch() -> int | None:
    """The ``SOURCE_DATE_EPOCH`` environment variable as an int, if set and valid."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else None


def _sorted_names(path: str) -> list[str]:
    # Go's filepath.Walk order: names compared as bytes.
    return sorted(os.listdir(path), key=os.fsencode)


def walk_tree(root: str, prefix: str) -> Iterator[tuple[str, str, os.stat_result]]:
    """Yield ``(archive name, path, lstat)`` for *root* and everything under it, depth first
    in byte order of names, each directory before its contents.

    :raises ImageError: naming the path that cannot be read.
    """
    stack: list[tuple[str, str]] = [(root, prefix)]
    while stack:
        path, name = stack.pop()
        try:
            st = os.lstat(path)
        except OSError as err:
            raise ImageError(err.strerror or str(err), source=path) from None
        yield name, path, st
        if stat.S_ISDIR(st.st_mode):
            try:
                children = _sorted_names(path)
            except OSError as err:
                raise ImageError(f"cannot read directory: {err.strerror or err}", source=path) from None
            stack.extend((os.path.join(path, c), f"{name}/{c}") for c in reversed(children))


def _xattrs(path: str) -> dict[str, str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as err:
        if err.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            return {}
        raise ImageError(f"cannot read xattrs: {err.strerror or err}", source=path) from None
    records = {}
    for name in sorted(names):
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError as err:
            raise ImageError(f"cannot read xattr {name}: {err.strerror or err}", source=path) from None
        # Binary values travel as surrogate-escaped text; tarfile writes them back as bytes.
        records[f"SCHILY.xattr.{name}"] = value.decode("utf-8", "surrogateescape")
    return records


def _tar_info(
    name: str, path: str, st: os.stat_result, *, owner_root: bool, mtime: int | None
) -> tarfile.TarInfo | None:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime) if mtime is None else mtime
    if owner_root:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
    else:
        info.uid, info.gid = st.st_uid, st.st_gid
    kind = stat.S_IFMT(st.st_mode)
    if kind == stat.S_IFREG:
        info.size = st.st_size
    elif kind == stat.S_IFDIR:
        info.type = tarfile.DIRTYPE
    elif kind == stat.S_IFLNK:
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
    elif kind in (stat.S_IFCHR, stat.S_IFBLK):
        info.type = tarfile.CHRTYPE if kind == stat.S_IFCHR else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif kind == stat.S_IFIFO:
        info.type = tarfile.FIFOTYPE
    else:
        return None  # sockets (and anything else) have no place in an image
    info.pax_headers = _xattrs(path)
    return info


def build_image(
    layout: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    compression: str = Compression.GZIP,
    level: int = DEFAULT_LEVEL,
    owner_root: bool = False,
    mtime: int | None = None,
    threads: int | None = None,
) -> BuildResult:
    """Build the image archive *output* from the layout directory *layout*.

    :param overwrite: replace an existing *output*.
    :param compression: ``"gzip"`` (default) or ``"none"``.
    :param level: gzip level 1-9.
    :param owner_root: record every file as owned by 0:0 (root/root).
    :param mtime: the modification time of every entry (default: each file's own, or
        ``SOURCE_DATE_EPOCH`` when set).
    :raises ImageError: a bad layout, an unreadable file, an existing output; no
        partial output is left behind.
    """
    layout_dir = os.fspath(layout)
    target = os.fspath(output)
    if not target.endswith(".aci"):
        raise ImageError(f"extension must be .aci (given {os.path.splitext(target)[1] or 'none'})", source=target)
    manifest = validate_layout(layout_dir, structural=False)
    if mtime is None:
        mtime = source_date_epoch()
    with atomic_output(target, overwrite=overwrite) as out:
        writer = ImageWriter(out, compression=compression, level=level, threads=threads)
        own = os.fstat(out.fileno())
        try:
            first_path: dict[tuple[int, int], str] = {}
            for name, path, st in walk_tree(os.path.join(layout_dir, "rootfs"), "rootfs"):
                if (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino):
                    continue  # the archive being written, when the output is inside rootfs/
                info = _tar_info(name, path, st, owner_root=owner_root, mtime=mtime)
                if info is None:
                    continue
                if info.isreg() and st.st_nlink > 1:
                    key = (st.st_dev, st.st_ino)
                    if key in first_path:
                        info.type, info.linkname, info.size = tarfile.LNKTYPE, first_path[key], 0
                        writer.add(info)
                        continue
                    first_path[key] = name
                if info.isreg():
                    try:
                        with open(path, "rb") as content:
                            writer.add(info, content)
                    except OSError as err:
                        raise ImageError(err.strerror or str(err), source=path) from None
                    except ImageError as err:
                        raise ImageError(err.message, source=path) from None
                else:
                    writer.add(info)
            manifest_info = tarfile.TarInfo("manifest")
            manifest_info.mode = 0o644
            manifest_info.uname = manifest_info.gname = "root"
            manifest_info.mtime = int(time.time()) if mtime is None else mtime
            writer.add_bytes(manifest_info, manifest.to_json().encode("utf-8"))
            image_id = writer.close()
        except BaseException:
            writer.abort()
            raise
    return BuildResult(image_id, manifest, writer.entries, writer.size)
