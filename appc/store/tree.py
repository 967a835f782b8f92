"""The tree store (rkt's ``cas/tree/``): rendered, ready-to-run root filesystems.

A tree is an image rendered *with its dependencies* (see :mod:`appc.store.render`)::

    cas/tree/<tree id>/rootfs/     the rendered root filesystem
    cas/tree/<tree id>/manifest    the top image's manifest
    cas/tree/<tree id>/image       the top image's store key
    cas/tree/<tree id>/hash        a digest of rootfs/ at render time (``image verify``)
    cas/tree/<tree id>/rendered    the completion flag, created last

The **tree id** is ``deps-`` + the store-key form (``sha512-`` + 64 hex digits) of the
SHA-512 of the comma-joined keys of the flattened dependency list, so the same image
whose dependencies resolve differently (a newer base image by name) gets a new tree.

**Protocol.**  A tree is rendered once, under the exclusive key lock
``cas/treestorelocks/<tree id>``: if ``rendered`` exists the tree is reused; otherwise
whatever is there is a partial render (a crash, a failed removal) and is wiped and
rendered again.  The files are flushed (``syncfs``) before ``rendered`` is created, and
the directory is flushed after, so a tree with ``rendered`` is complete even after a
power loss.  Removal deletes ``rendered`` first.  Trees are shared read-only by pods
(overlay lower directories); nothing here tracks which pod uses which tree — the
runtime passes the ids to keep to :meth:`TreeStore.gc`.
"""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import hashlib
import os
from collections.abc import Iterable

import attrs

from appc.aci.extract import ExtractOptions
from appc.errors import StoreError
from appc.schema.image import ImageManifest
from appc.store.images import ImageStore, is_key, key_for
from appc.store.locks import KeyLock, LockBusy
from appc.store.render import DependencyImage, _rmtree, dependency_list, render_rootfs, tree_digest
from appc.types.hash import Hash

__all__ = ["TREE_PREFIX", "RenderedTree", "TreeStore", "tree_id_for"]


def __dir__() -> list[str]:
    return __all__


#: Every tree id starts with this.
TREE_PREFIX = "deps-"
_RENDERED = "rendered"
_IMAGE = "image"
_HASH = "hash"
_MANIFEST = "manifest"


def tree_id_for(keys: list[str] | tuple[str, ...]) -> str:
    """The tree id of a flattened dependency list given as store keys, top image first.

    >>> tree_id_for(["sha512-" + "0" * 64]).startswith("deps-sha512-")
    True
    """
    digest = hashlib.sha512(",".join(keys).encode("ascii")).hexdigest()
    return TREE_PREFIX + key_for(Hash.from_digest(digest))


def _is_tree_id(value: str) -> bool:
    return value.startswith(TREE_PREFIX) and is_key(value[len(TREE_PREFIX) :])


@attrs.frozen
class RenderedTree:
    """A complete tree in the tree store.

    :param tree_id: its id (``deps-sha512-...``).
    :param path: the tree directory.
    :param rootfs: the rendered root filesystem (``<path>/rootfs``).
    :param manifest: the top image's manifest.
    :param image_key: the top image's store key.
    :param images: the store keys of the flattened dependency list, top first (empty
        when the tree was looked up by id rather than rendered).
    :param fresh: True when this call rendered it, False when an existing tree was reused.
    """

    tree_id: str
    path: str
    rootfs: str
    manifest: ImageManifest
    image_key: str
    images: tuple[str, ...] = ()
    fresh: bool = False


def _syncfs(path: str) -> None:
    """Flush the filesystem holding *path* (``syncfs(2)``; ``sync()`` where unavailable)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            result = libc.syncfs(fd)
        except (OSError, AttributeError):  # pragma: no cover - not Linux/glibc
            result = -1
        if result != 0:  # pragma: no cover
            os.sync()
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read(4096).strip()
    except OSError:
        return None


class TreeStore:
    """Rendered trees of the images of *store*; see the module documentation.

    :param store: the image store (the trees live in its ``cas/tree/``).
    :param hash_trees: write the ``hash`` file (a second read of the rendered tree).
    :param options: how entries are restored (default: owners, xattrs and device
        nodes when running as root).
    """

    def __init__(
        self, store: ImageStore, *, hash_trees: bool = True, options: ExtractOptions | None = None
    ) -> None:
        self.store = store
        self.root = store.tree_dir
        self.lock_dir = store.tree_lock_dir
        self.hash_trees = hash_trees
        self.options = options

    def tree_path(self, tree_id: str) -> str:
        """The directory of *tree_id* (whether or not it exists)."""
        if not _is_tree_id(tree_id):
            raise StoreError(f"not a tree id: {tree_id!r}")
        return os.path.join(self.root, tree_id)

    def _lock(self, tree_id: str, *, exclusive: bool, blocking: bool = True) -> KeyLock:
        self.tree_path(tree_id)  # validates the id
        return KeyLock(self.lock_dir, tree_id, exclusive=exclusive, blocking=blocking)

    def tree_id(self, key: str) -> str:
        """The tree id image *key* (or a prefix) renders to, with its dependencies as they resolve now."""
        return tree_id_for([image.key for image in dependency_list(self.store, key)])

    def is_rendered(self, tree_id: str) -> bool:
        """True when the tree exists and is complete."""
        return os.path.exists(os.path.join(self.tree_path(tree_id), _RENDERED))

    def get(self, tree_id: str) -> RenderedTree | None:
        """The complete tree *tree_id*, or ``None`` if it is missing or partial."""
        path = self.tree_path(tree_id)
        if not self.is_rendered(tree_id):
            return None
        image_key = _read_text(os.path.join(path, _IMAGE)) or ""
        try:
            with open(os.path.join(path, _MANIFEST), "rb") as f:
                manifest = ImageManifest.from_json(f.read(), structural=False)
        except (OSError, ValueError):
            return None
        return RenderedTree(tree_id, path, os.path.join(path, "rootfs"), manifest, image_key)

    def render(self, key: str, *, rebuild: bool = False) -> RenderedTree:
        """Render image *key* (or a prefix) with its dependencies, or reuse its complete tree.

        Concurrent calls for the same tree render it once; the others wait and reuse it.
        The image's last-used time and tree size are updated.

        :param rebuild: render again even if a complete tree exists.
        :raises StoreError: unknown image, missing dependency, corrupt blob, write error
            (a failed render removes its partial tree; one left by a crash is wiped by
            the next call).
        """
        images = dependency_list(self.store, key)
        top = images[0]
        keys = tuple(image.key for image in images)
        tree_id = tree_id_for(keys)
        path = self.tree_path(tree_id)
        rootfs = os.path.join(path, "rootfs")
        fresh = False
        with self._lock(tree_id, exclusive=True):
            if rebuild or not self.is_rendered(tree_id):
                fresh = True
                try:
                    try:
                        self._render(path, rootfs, images)
                    except BaseException:
                        with contextlib.suppress(OSError):
                            self._wipe(path)
                        raise
                except OSError as err:
                    raise StoreError(
                        f"cannot render tree {tree_id}: {err.strerror or err}"
                    ) from None
        if fresh:
            with contextlib.suppress(StoreError, OSError):
                self.store.set_tree_size(top.key, self.size(tree_id))
        with contextlib.suppress(StoreError):
            self.store.touch(top.key)
        return RenderedTree(tree_id, path, rootfs, top.manifest, top.key, keys, fresh)

    def _render(self, path: str, rootfs: str, images: list[DependencyImage]) -> None:
        self._wipe(path)
        os.mkdir(path, 0o750)
        os.mkdir(rootfs, 0o755)
        top = images[0]
        render_rootfs(self.store, images, rootfs, options=self.options)
        _write_file(os.path.join(path, _MANIFEST), self.store.manifest_bytes(top.key))
        _write_file(os.path.join(path, _IMAGE), top.key.encode("ascii"))
        if self.hash_trees:
            _write_file(os.path.join(path, _HASH), str(tree_digest(rootfs)).encode("ascii"))
        _syncfs(path)
        _write_file(os.path.join(path, _RENDERED), b"")
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _wipe(self, path: str) -> None:
        flag = os.path.join(path, _RENDERED)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(flag)
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _rmtree(path)

    def verify(self, tree_id: str) -> Hash:
        """Re-hash a complete tree and compare with its ``hash`` file (``rkt image verify``).

        :returns: the digest.
        :raises StoreError: missing or partial tree, no hash recorded, or a mismatch.
        """
        path = self.tree_path(tree_id)
        with self._lock(tree_id, exclusive=False):
            if not self.is_rendered(tree_id):
                raise StoreError(f"tree {tree_id} is not rendered")
            recorded = _read_text(os.path.join(path, _HASH))
            if not recorded:
                raise StoreError(f"tree {tree_id} has no recorded hash")
            current = tree_digest(os.path.join(path, "rootfs"))
        if current != recorded:
            raise StoreError(
                f"tree {tree_id} was modified: its hash is {current}, expected {recorded}"
            )
        return current

    def remove(self, tree_id: str) -> None:
        """Remove a tree (complete or partial); a missing one is not an error."""
        path = self.tree_path(tree_id)
        with self._lock(tree_id, exclusive=True) as lock:
            self._remove_locked(tree_id, path)
            lock.unlink()

    def _remove_locked(self, tree_id: str, path: str) -> None:
        if not os.path.lexists(path):
            return
        image_key = _read_text(os.path.join(path, _IMAGE))
        try:
            self._wipe(path)
        except OSError as err:
            raise StoreError(f"cannot remove tree {tree_id}: {err.strerror or err}") from None
        if image_key and is_key(image_key):
            with contextlib.suppress(StoreError):
                self.store.set_tree_size(image_key, 0)

    def list(self) -> list[str]:
        """The ids of every tree present, complete or partial."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(name for name in names if _is_tree_id(name))

    def size(self, tree_id: str) -> int:
        """Bytes of the tree's files (each inode counted once; directories not counted)."""
        path = self.tree_path(tree_id)
        total = 0
        seen: set[tuple[int, int]] = set()
        for directory, dirs, files in os.walk(path):
            for name in files + [d for d in dirs if os.path.islink(os.path.join(directory, d))]:
                try:
                    st = os.lstat(os.path.join(directory, name))
                except FileNotFoundError:
                    continue
                inode = (st.st_dev, st.st_ino)
                if inode not in seen:
                    seen.add(inode)
                    total += st.st_size
        return total

    def gc(self, keep: Iterable[str]) -> builtins.list[str]:
        """Remove every tree whose id is not in *keep*; return the removed ids.

        A tree being rendered or removed right now (its lock busy) is left alone.  A
        tree just rendered for a pod that does not reference it yet is not protected:
        the caller serializes ``gc`` against pod preparation (rkt's exclusive
        ``prepareLock`` in ``locks/``).
        """
        wanted = set(keep)
        removed = []
        for tree_id in self.list():
            if tree_id in wanted:
                continue
            try:
                lock = self._lock(tree_id, exclusive=True, blocking=False)
            except LockBusy:
                continue
            with lock:
                self._remove_locked(tree_id, self.tree_path(tree_id))
                lock.unlink()
            removed.append(tree_id)
        return removed
