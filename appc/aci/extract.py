"""Unpacking an image archive into a directory, safely.

Nothing is ever written outside the target: names that are absolute or climb with
``..`` are refused, no path is written *through* a symlink (a symlink already in the
tree is replaced, never followed), and hard links must point at entries already
extracted inside the tree.  Device nodes are created only when the caller asks for
them and runs as root; owners, setuid bits and xattrs are restored only as root.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable
from typing import IO

import attrs

from appc.aci.read import MAX_MANIFEST_SIZE, ImageReader, clean_name, rootfs_relative
from appc.aci.validate import EntryChecker, image_manifest
from appc.errors import ImageError
from appc.types.hash import Hash

__all__ = ["ExtractOptions", "TreeWriter", "extract_image"]


def __dir__() -> list[str]:
    return __all__


@attrs.frozen(kw_only=True)
class ExtractOptions:
    """How entries are restored.

    :param owners: set uid/gid (default: when running as root).
    :param devices: create device nodes (needs root); otherwise they are skipped.
    :param xattrs: restore extended attributes (default: when running as root).
    """

    owners: bool = attrs.field(factory=lambda: os.geteuid() == 0)
    devices: bool = False
    xattrs: bool = attrs.field(factory=lambda: os.geteuid() == 0)


class TreeWriter:
    """Write tar entries under a root directory without ever leaving it.

    Used for image extraction, rendering, and docker layer application.  Directory
    modes and times are applied by :meth:`close`, after their contents are written.
    """

    def __init__(self, root: str, options: ExtractOptions | None = None) -> None:
        self.root = os.path.abspath(root)
        self.options = options or ExtractOptions()
        self._dirs: set[str] = {""}  # relative paths verified to be real directories
        self._dir_meta: dict[str, tarfile.TarInfo] = {}
        self.skipped: list[str] = []

    def _path(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else self.root

    def ensure_dir(self, rel: str) -> None:
        """Make *rel* a real directory (creating parents), replacing a non-directory."""
        missing = []
        while rel not in self._dirs:  # "" (the root) always is
            missing.append(rel)
            rel = os.path.dirname(rel)
        for rel in reversed(missing):
            path = self._path(rel)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                os.mkdir(path, 0o755)
            else:
                if not stat.S_ISDIR(st.st_mode):
                    # A symlink (or file) where a directory is needed is replaced, not followed.
                    os.unlink(path)
                    os.mkdir(path, 0o755)
            self._dirs.add(rel)

    def _crosses_link(self, rel: str) -> bool:
        """True when a directory above *rel* is not a real directory of the tree: the path
        would be resolved through a symlink, possibly to outside the root."""
        parent = os.path.dirname(rel)
        while parent and parent not in self._dirs:  # ancestors of a known directory are real
            try:
                if not stat.S_ISDIR(os.lstat(self._path(parent)).st_mode):
                    return True
            except FileNotFoundError:
                pass  # missing (the target is then missing too): look further up
            parent = os.path.dirname(parent)
        return False

    def remove(self, rel: str) -> None:
        """Remove whatever is at *rel* (a whole tree for a directory)."""
        path = self._path(rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path)
            prefix = rel + "/"
            self._dirs = {d for d in self._dirs if d != rel and not d.startswith(prefix)}
            self._dir_meta = {
                d: m for d, m in self._dir_meta.items() if d != rel and not d.startswith(prefix)
            }
        else:
            os.unlink(path)

    def _clear(self, rel: str, keep_dir: bool) -> None:
        path = self._path(rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if keep_dir and stat.S_ISDIR(st.st_mode):
            return
        self.remove(rel)

    def write(self, info: tarfile.TarInfo, rel: str, content: IO[bytes] | None = None) -> None:
        """Create the entry *info* at the relative path *rel* (already cleaned and checked).

        For a hard link, ``info.linkname`` must already be the *relative* path of its
        target inside this tree.
        """
        if rel in ("", "."):
            if info.isdir():
                self._dir_meta[""] = info
            return
        self.ensure_dir(os.path.dirname(rel))
        path = self._path(rel)
        self._clear(rel, keep_dir=info.isdir())
        if info.isdir():
            self.ensure_dir(rel)
            self._dir_meta[rel] = info
            return
        self._dirs.discard(rel)
        if info.isreg():
            fd = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
            with os.fdopen(fd, "wb") as out:
                if content is not None:
                    shutil.copyfileobj(content, out, 1024 * 1024)
        elif info.issym():
            os.symlink(info.linkname, path)
        elif info.islnk():
            if self._crosses_link(info.linkname):
                raise ImageError(
                    f"hard link {rel!r} to {info.linkname!r} leads through a symlink "
                    "or non-directory"
                )
            target = self._path(info.linkname)
            if not os.path.lexists(target) or stat.S_ISDIR(os.lstat(target).st_mode):
                raise ImageError(
                    f"hard link {rel!r} to missing or directory target {info.linkname!r}"
                )
            os.link(target, path, follow_symlinks=False)
            return  # the link shares its target's inode: metadata is the target's
        elif info.ischr() or info.isblk():
            if not (self.options.devices and os.geteuid() == 0):
                self.skipped.append(rel)
                return
            kind = stat.S_IFCHR if info.ischr() else stat.S_IFBLK
            os.mknod(path, kind | 0o600, os.makedev(info.devmajor, info.devminor))
        elif info.isfifo():
            os.mkfifo(path, 0o600)
        else:
            raise ImageError(f"unsupported entry type {info.type!r} for {rel!r}")
        self._apply_meta(path, info)

    def _apply_meta(self, path: str, info: tarfile.TarInfo) -> None:
        symlink = info.issym()
        if self.options.owners:
            os.chown(path, info.uid, info.gid, follow_symlinks=False)
        if self.options.xattrs:
            for key, value in info.pax_headers.items():
                if key.startswith("SCHILY.xattr."):
                    with contextlib.suppress(OSError):
                        os.setxattr(
                            path,
                            key[13:],
                            value.encode("utf-8", "surrogateescape"),
                            follow_symlinks=False,
                        )
        if not symlink:
            mode = info.mode if self.options.owners else info.mode & 0o1777
            os.chmod(path, mode)
        # A time no file system can hold (2**70 seconds) is not worth failing for.
        with contextlib.suppress(OSError, OverflowError, ValueError):
            os.utime(path, (info.mtime, info.mtime), follow_symlinks=False)

    def close(self) -> None:
        """Apply directory metadata, deepest first (so writing into them was possible)."""
        for rel in sorted(
            self._dir_meta, key=lambda r: r.count("/") + (1 if r else 0), reverse=True
        ):
            self._apply_meta(self._path(rel), self._dir_meta[rel])


def extract_image(
    source: str | os.PathLike[str] | IO[bytes],
    target: str | os.PathLike[str],
    *,
    rootfs_only: bool = False,
    options: ExtractOptions | None = None,
    keep: Callable[[str], bool] | None = None,
    max_size: int | None = None,
) -> Hash:
    """Check and unpack an image archive into the directory *target*.

    The archive is checked as by :func:`~appc.aci.validate.validate_archive`, manifest
    included.  When *target* does not exist, the image is unpacked into a temporary
    directory beside it that is renamed into place only once the whole archive was
    checked, so a bad image leaves nothing behind.  An existing *target* is unpacked
    into as is.

    :param rootfs_only: unpack the contents of ``rootfs/`` at the top of *target*,
        leaving the manifest out; otherwise the layout (``manifest`` + ``rootfs/``).
    :param keep: called with each path relative to the rootfs; entries it rejects are
        skipped (directories are always kept: that is how a ``pathWhitelist`` applies).
    :returns: the image ID.
    :raises ImageError: for an invalid or unsafe archive, a write error, or a *target*
        that exists and is not a directory.
    """
    final = os.fspath(target)
    if os.path.isdir(final):
        return _extract_into(source, final, rootfs_only, options, keep, max_size)
    if os.path.lexists(final):
        raise ImageError("exists and is not a directory", source=final)
    parent = os.path.dirname(os.path.abspath(final))
    try:
        os.makedirs(parent, exist_ok=True)
        work = tempfile.mkdtemp(prefix=f".{os.path.basename(final)}.", dir=parent)
    except OSError as err:
        raise ImageError(f"cannot create directory: {err.strerror or err}", source=final) from None
    try:
        image_id = _extract_into(source, work, rootfs_only, options, keep, max_size)
        os.chmod(work, 0o755)
        os.rename(work, final)
    except OSError as err:  # the rename: *final* appeared meanwhile
        shutil.rmtree(work, ignore_errors=True)
        raise ImageError(f"cannot create directory: {err.strerror or err}", source=final) from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return image_id


def _extract_into(
    source: str | os.PathLike[str] | IO[bytes],
    target: str,
    rootfs_only: bool,
    options: ExtractOptions | None,
    keep: Callable[[str], bool] | None,
    max_size: int | None,
) -> Hash:
    writer = TreeWriter(target, options)
    with ImageReader(source, max_size=max_size) as image:
        checker = EntryChecker(str(image.source))
        manifest = b""
        for entry, name in image.entries():
            checker.check(entry, name)
            info = entry
            content: IO[bytes] | None = None
            if name == "manifest":
                manifest = image.read_entry(info, limit=MAX_MANIFEST_SIZE)
                content = io.BytesIO(manifest)
            elif info.isreg():
                content = image.member(info)
            relative = rootfs_relative(name)
            if relative and keep is not None and not info.isdir() and not keep(relative):
                continue
            dest = relative if rootfs_only else name
            if dest is None or name == ".":
                continue
            if info.islnk():
                link = rootfs_relative(clean_name(info.linkname)) or ""
                info = info.replace(linkname=link if rootfs_only else f"rootfs/{link}", deep=False)
            try:
                writer.write(info, dest, content)
            except OSError as err:
                raise ImageError(
                    f"cannot extract {name!r}: {err.strerror or err}", source=checker.source
                ) from None
            except ImageError as err:
                if err.source:
                    raise
                raise ImageError(err.message, source=checker.source) from None
        image_id = image.finish()
        checker.finish()
        image_manifest(manifest, checker.source)
    writer.close()
    return image_id
