"""Rendering a stored image with its dependencies into a root filesystem (appc acirenderer).

**Dependency order.**  The flattened list is built as the reference does: the image
first, then — depth first — its dependencies.  The reference inserts each dependency
right after its parent, so the *last* listed dependency ends up first: for A→[B, C]
with C→[D] the list is A, C, D, B.  Read bottom-up that is B, D, C, A — the spec's
"each dependency's rootfs is laid down before the image's own, and later layers
overwrite earlier ones".  In a diamond (A→[B, C], B→[D], C→[D]) D appears twice
(A, C, D, B, D), each time under the whitelist of its own branch.  A dependency is
resolved by ``imageID`` when it has one (a full ID must equal the stored image ID)
and otherwise by name and labels with :meth:`ImageStore.find`.  A missing
dependency, a cycle (an image depending on one of its ancestors, possible by name),
or more than :data:`MAX_IMAGES` images is a :class:`~appc.errors.StoreError`.

**Rendering** walks that list top image first, streaming each blob once:

* only entries under ``rootfs/`` are taken (the top image's manifest is the tree's);
* the first image providing a path wins: a path already rendered is skipped (a
  directory entry may still give its metadata to a directory that was only created
  implicitly, as the parent of an upper image's file);
* an entry is skipped if any already-rendered parent path is not a directory — so a
  symlink of an upper image is never followed, and a symlink-to-directory of a lower
  image that an upper image provides as a directory is simply not laid down;
* a non-empty ``pathWhitelist`` of the image itself, and of every ancestor on its
  branch, must list a non-directory entry (as an absolute path, cleaned); directories
  are always kept (spec).  Decision: the reference applies the upper image's
  whitelist to directories too and picks the "nearest ancestor" with a bug that can
  pick a sibling's; here every ancestor's whitelist applies (the top image's
  whitelist is the "complete list of paths in the rendered rootfs"), to non-directory
  entries only.
* hard links: to a file this image rendered, a real link; to a file of this image
  that was not rendered (shadowed or filtered out), a copy of that file's contents
  read back from the blob (blobs are plain tar files); to a file of another image
  (docker2aci ``-nosquash`` layers), a link made once every image is rendered;
* entries are written with :class:`~appc.aci.extract.TreeWriter` (nothing outside the
  root, never through a symlink); device nodes are created when running as root;
* every blob is re-hashed while it is read and must equal its image ID.

Dependencies' ``app`` sections play no part.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import stat
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from typing import IO, cast

import attrs

from appc._fs import rmtree
from appc.aci.extract import ExtractOptions, TreeWriter, extract_image
from appc.aci.read import ImageReader, clean_name, rootfs_relative
from appc.aci.validate import EntryChecker
from appc.errors import ImageError, StoreError
from appc.schema.image import ImageManifest
from appc.store.images import ImageStore
from appc.types.hash import Hash

__all__ = [
    "MAX_IMAGES",
    "DependencyImage",
    "default_render_options",
    "dependency_list",
    "extract_stored",
    "render_image",
    "render_rootfs",
    "tree_digest",
]


def __dir__() -> list[str]:
    return __all__


#: The most images a flattened dependency list may hold (diamonds repeat images).
MAX_IMAGES = 256

_DIR = "dir"  # rendered from a directory entry
_IMPLICIT = "implicit"  # created as the parent of a rendered entry
_OTHER = "other"  # any non-directory


@attrs.frozen
class DependencyImage:
    """One image of a flattened dependency list.

    :param key: its store key.
    :param image_id: its full image ID.
    :param manifest: its manifest.
    :param level: 0 for the top image, 1 for its dependencies, ...
    :param parent: the index of the image that depends on it (``None`` for the top).
    :param whitelists: the non-empty ``pathWhitelist`` of this image and of each of
        its ancestors, as sets of rootfs-relative paths; a non-directory entry must be
        in every one.
    """

    key: str
    image_id: Hash
    manifest: ImageManifest
    level: int
    parent: int | None
    whitelists: tuple[frozenset[str], ...]

    @property
    def name(self) -> str:
        """The image name."""
        return str(self.manifest.name)


def _whitelist(paths: Iterable[str]) -> frozenset[str]:
    cleaned = set()
    for path in paths:
        rel = posixpath.normpath("/" + path).lstrip("/")
        if rel:
            cleaned.add(rel)
    return frozenset(cleaned)


def _describe(name: str, labels: dict[str, str]) -> str:
    if not labels:
        return repr(name)
    return repr(name) + " with labels " + ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def dependency_list(store: ImageStore, key: str) -> list[DependencyImage]:
    """The flattened dependency list of image *key* (or a prefix), top image first.

    :raises StoreError: a missing or mismatching dependency, a cycle, or a list
        longer than :data:`MAX_IMAGES`.
    """
    top = store.get(key)
    images: list[DependencyImage] = []

    def add(
        image_key: str, image_id: Hash, manifest: ImageManifest, level: int, parent: int | None
    ) -> None:
        if len(images) >= MAX_IMAGES:
            raise StoreError(
                f"image {top.key} has more than {MAX_IMAGES} images in its dependency tree"
            )
        inherited = images[parent].whitelists if parent is not None else ()
        own = _whitelist(manifest.path_whitelist)
        whitelists = (own, *inherited) if own else inherited
        index = len(images)
        images.append(DependencyImage(image_key, image_id, manifest, level, parent, whitelists))
        # The reference inserts each dependency right after its parent: the last one
        # listed comes first.
        for dependency in reversed(manifest.dependencies):
            labels = dependency.labels.as_dict()
            if dependency.image_id is not None:
                try:
                    found = store.get(str(dependency.image_id))
                except StoreError:
                    raise StoreError(
                        f"image {str(manifest.name)!r} depends on {str(dependency.image_name)!r} with image ID "
                        f"{dependency.image_id}, which is not in the store"
                    ) from None
                if dependency.image_id.is_full and found.image_id != dependency.image_id:
                    raise StoreError(  # pragma: no cover - get() compares full IDs already
                        f"dependency {str(dependency.image_name)!r}: stored image {found.image_id} does not "
                        f"match the required image ID {dependency.image_id}"
                    )
            else:
                match = store.find(str(dependency.image_name), labels)
                if match is None:
                    raise StoreError(
                        f"image {str(manifest.name)!r} depends on "
                        f"{_describe(str(dependency.image_name), labels)}, which is not in the store"
                    )
                found = match
            ancestor: int | None = index
            while ancestor is not None:
                if images[ancestor].key == found.key:
                    raise StoreError(
                        f"dependency cycle: {found.name!r} ({found.key}) depends on itself through "
                        f"{str(manifest.name)!r}"
                    )
                ancestor = images[ancestor].parent
            add(found.key, found.image_id, found.manifest, level + 1, index)

    add(top.key, top.image_id, top.manifest, 0, None)
    return images


def default_render_options() -> ExtractOptions:
    """Owners, xattrs and device nodes restored when running as root (a runtime's rootfs)."""
    root = os.geteuid() == 0
    return ExtractOptions(owners=root, devices=root, xattrs=root)


def _parents(rel: str) -> Iterable[str]:
    parent = posixpath.dirname(rel)
    while parent:
        yield parent
        parent = posixpath.dirname(parent)


class _Range:
    """Read exactly *size* bytes at *offset* of the file *fd* with ``pread`` (the
    contents of a regular file inside a blob; the descriptor's offset is untouched)."""

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self._fd = fd
        self._offset = offset
        self._left = size

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if size is None or size < 0 else min(size, self._left)
        data = os.pread(self._fd, min(want, 1024 * 1024), self._offset)
        if not data:
            raise ImageError("blob ended inside a file")
        self._offset += len(data)
        self._left -= len(data)
        return data


@attrs.define
class _ImageState:
    """One image being rendered, and what its walk did with its files (for its hard links)."""

    node: DependencyImage
    reader: ImageReader
    blob: IO[bytes]
    rendered: set[str] = attrs.field(factory=set)  # files of this image now in the tree
    unrendered: dict[str, tarfile.TarInfo] = attrs.field(factory=dict)  # skipped file -> header
    aliases: dict[str, str] = attrs.field(factory=dict)  # skipped link -> its rendered target


class _Renderer:
    """The state of one rendering: what every path is so far, and links to finish."""

    def __init__(self, store: ImageStore, rootfs: str, options: ExtractOptions) -> None:
        self.store = store
        self.writer = TreeWriter(rootfs, options)
        self.provided: dict[str, str] = {}
        self.cross_links: list[tuple[tarfile.TarInfo, str, str, str]] = []  # info, rel, target, key

    def _mark(self, rel: str, kind: str) -> None:
        self.provided[rel] = kind
        for parent in _parents(rel):
            if parent in self.provided:
                break
            self.provided[parent] = _IMPLICIT

    def _blocked(self, rel: str) -> bool:
        return any(self.provided.get(parent, _DIR) == _OTHER for parent in _parents(rel))

    def image(self, node: DependencyImage) -> None:
        try:
            self._image(node)
        except ImageError as err:
            raise StoreError(f"image {node.key} is corrupt: {err.message}") from None

    def _image(self, node: DependencyImage) -> None:
        with self.store.open_blob(node.key) as blob, ImageReader(blob) as reader:
            source = f"image {node.key}"
            checker = EntryChecker(source)
            seen = _ImageState(node, reader, blob)
            for info, name in reader.entries():
                checker.check(info, name)
                rel = rootfs_relative(name)
                if rel is None:
                    continue
                try:
                    self._entry(seen, info, rel)
                except OSError as err:
                    raise StoreError(
                        f"cannot render {name!r} of {source}: {err.strerror or err}"
                    ) from None
            got = reader.finish()
            checker.finish()
        if got != node.image_id:
            raise StoreError(
                f"image {node.key} is corrupt: its blob hashes to {got}, not to its image ID"
            )

    def _entry(self, seen: _ImageState, info: tarfile.TarInfo, rel: str) -> None:
        if rel == "":
            if "" not in self.provided:
                self.provided[""] = _DIR
                self.writer.write(info, "")
            return
        state = self.provided.get(rel)
        if info.isdir():
            if state == _IMPLICIT and not self._blocked(rel):
                self.provided[rel] = _DIR
                self.writer.write(info, rel)  # metadata for a directory created implicitly
            elif state is None and not self._blocked(rel):
                self._mark(rel, _DIR)
                self.writer.write(info, rel)
            return
        target = ""
        source = info  # the header whose contents this entry has
        if info.islnk():
            target = rootfs_relative(clean_name(info.linkname)) or ""
            target = seen.aliases.get(target, target)
            source = seen.unrendered.get(target, info)
        if (
            state is not None
            or self._blocked(rel)
            or any(rel not in whitelist for whitelist in seen.node.whitelists)
        ):
            if source.isreg():
                seen.unrendered[rel] = source
            elif info.islnk():
                seen.aliases[rel] = target
            return
        if info.islnk():
            if target in seen.rendered:
                self.writer.write(info.replace(linkname=target, deep=False), rel)
            elif source is not info:
                # The target is a file of this image that was not rendered: copy it
                # back from the blob under this name.
                copy = source.replace(name=info.name, deep=False)
                content = _Range(seen.blob.fileno(), source.offset_data, source.size)
                self.writer.write(copy, rel, cast("IO[bytes]", content))
                seen.rendered.add(rel)
            else:
                self.cross_links.append((info, rel, target, seen.node.key))
            self._mark(rel, _OTHER)
            return
        self.writer.write(info, rel, seen.reader.member(info) if info.isreg() else None)
        self._mark(rel, _OTHER)
        if info.isreg():
            seen.rendered.add(rel)

    def finish(self) -> None:
        for info, rel, target, key in self.cross_links:
            try:
                self.writer.write(info.replace(linkname=target, deep=False), rel)
            except ImageError:
                raise StoreError(
                    f"image {key}: hard link {rel!r} points to {target!r}, which no image of the "
                    "dependency tree provides as a file"
                ) from None
            except OSError as err:
                raise StoreError(
                    f"cannot render {rel!r} of image {key}: {err.strerror or err}"
                ) from None
        self.writer.close()


def render_rootfs(
    store: ImageStore,
    images: Sequence[DependencyImage],
    rootfs: str | os.PathLike[str],
    *,
    options: ExtractOptions | None = None,
) -> list[str]:
    """Render the flattened dependency list *images* into the existing directory *rootfs*.

    :returns: paths (relative to *rootfs*) that were skipped because the options do
        not allow them (device nodes when not root).
    :raises StoreError: a corrupt blob, an impossible hard link, or a write error;
        the directory is then partial and must be discarded by the caller.
        A blob that is not a valid image any more (altered on disk: blobs are checked
        at import) is reported as corrupt too.
    """
    renderer = _Renderer(store, os.fspath(rootfs), options or default_render_options())
    for node in images:
        renderer.image(node)
    renderer.finish()
    return list(renderer.writer.skipped)


def _rmtree(path: str) -> None:
    """Remove a tree whatever its modes (a rendered rootfs may have read-only directories).

    Symlinks are removed, never followed, at any depth (:func:`appc._fs.rmtree`).
    """
    if not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
        return
    try:
        rmtree(path)
    except OSError:
        # Not root: make every directory writable and searchable, then try again.
        os.chmod(path, 0o700)
        for directory, subdirs, _ in os.walk(path):
            for name in subdirs:
                child = os.path.join(directory, name)
                if not os.path.islink(child):
                    with contextlib.suppress(OSError):
                        os.chmod(child, 0o700)
        rmtree(path)


def _prepare_target(target: str, overwrite: bool) -> tuple[str, bool]:
    """Check *target* and make a work directory beside it; returns (work, target exists)."""
    exists = os.path.lexists(target)
    empty_dir = (
        exists and os.path.isdir(target) and not os.path.islink(target) and not os.listdir(target)
    )
    if exists and not overwrite and not empty_dir:
        raise StoreError(f"{target}: target exists (try --overwrite)")
    parent = os.path.dirname(os.path.abspath(target))
    try:
        os.makedirs(parent, exist_ok=True)
        work = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=parent)
    except OSError as err:
        raise StoreError(f"{target}: cannot create directory: {err.strerror or err}") from None
    return work, exists


def _put_in_place(work: str, target: str, exists: bool) -> None:
    os.chmod(work, 0o755)
    if exists:
        old = tempfile.mkdtemp(
            prefix=f".{os.path.basename(target)}.", suffix=".old", dir=os.path.dirname(work)
        )
        os.rename(target, os.path.join(old, "x"))
        os.rename(work, target)
        _rmtree(old)
    else:
        os.rename(work, target)


def render_image(
    store: ImageStore,
    key: str,
    target_dir: str | os.PathLike[str],
    *,
    rootfs_only: bool = False,
    overwrite: bool = False,
    options: ExtractOptions | None = None,
) -> list[DependencyImage]:
    """Render image *key* (or a prefix) with its dependencies into *target_dir* (``rkt image render``).

    The result is an image layout (``manifest`` — the top image's — and ``rootfs/``),
    or with *rootfs_only* the contents of the rootfs.  It is rendered into a work
    directory beside the target and renamed into place, so a failure leaves nothing.

    :param overwrite: replace an existing target (an empty directory is always fine).
    :returns: the flattened dependency list used.
    :raises StoreError: unknown image, missing dependency, target exists, write error.
    """
    images = dependency_list(store, key)
    target = os.path.abspath(os.fspath(target_dir))
    work, exists = _prepare_target(target, overwrite)
    try:
        rootfs = work if rootfs_only else os.path.join(work, "rootfs")
        if not rootfs_only:
            os.mkdir(rootfs, 0o755)
            with open(os.path.join(work, "manifest"), "wb") as f:
                f.write(store.manifest_bytes(images[0].key))
        render_rootfs(store, images, rootfs, options=options)
        _put_in_place(work, target, exists)
    except OSError as err:
        _rmtree(work)
        raise StoreError(f"{target}: cannot render: {err.strerror or err}") from None
    except BaseException:
        _rmtree(work)
        raise
    store.touch(images[0].key)
    return images


def extract_stored(
    store: ImageStore,
    key: str,
    target_dir: str | os.PathLike[str],
    rootfs_only: bool = False,
    *,
    overwrite: bool = False,
    options: ExtractOptions | None = None,
) -> None:
    """Unpack the stored image *key* (or a prefix) itself, without dependencies (``rkt image extract``).

    The blob is re-hashed while it is unpacked and must equal the image ID.  Like
    :func:`render_image`, the work happens beside the target and is renamed into place.

    :param rootfs_only: unpack only the rootfs contents (no manifest).
    :param overwrite: replace an existing target (an empty directory is always fine).
    :raises StoreError: unknown image, corrupt blob, target exists, write error.
    """
    image = store.get(key)
    target = os.path.abspath(os.fspath(target_dir))
    work, exists = _prepare_target(target, overwrite)
    try:
        try:
            with store.open_blob(image.key) as blob:
                got = extract_image(
                    blob, work, rootfs_only=rootfs_only, options=options or default_render_options()
                )
        except ImageError as err:
            raise StoreError(f"image {image.key} is corrupt: {err.message}") from None
        if got != image.image_id:
            raise StoreError(
                f"image {image.key} is corrupt: its blob hashes to {got}, not to its image ID"
            )
        _put_in_place(work, target, exists)
    except OSError as err:
        _rmtree(work)
        raise StoreError(f"{target}: cannot extract: {err.strerror or err}") from None
    except BaseException:
        _rmtree(work)
        raise


def tree_digest(root: str | os.PathLike[str]) -> Hash:
    """A SHA-512 over a directory tree: names, types, modes, owners, links, devices, xattrs, contents.

    The walk is in byte order of names; a regular file with several links is hashed
    once and later paths record the first one.  Used for a rendered tree's ``hash``
    file and ``rkt image verify``.
    """
    from appc.aci.build import walk_tree  # noqa: PLC0415 - avoids a cycle at import time

    digest = hashlib.sha512()
    first: dict[tuple[int, int], str] = {}
    for name, path, st in walk_tree(os.fspath(root), "."):
        mode = st.st_mode
        record = [name, oct(mode), str(st.st_uid), str(st.st_gid)]
        content = False
        if stat.S_ISLNK(mode):
            record.append(os.readlink(path))
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            record.append(f"{os.major(st.st_rdev)},{os.minor(st.st_rdev)}")
        elif stat.S_ISREG(mode):
            inode = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and inode in first:
                record.append("link:" + first[inode])
            else:
                first[inode] = name
                record.append(str(st.st_size))
                content = True
        with contextlib.suppress(OSError):
            for attr in sorted(os.listxattr(path, follow_symlinks=False)):
                record.append(attr + "=" + os.getxattr(path, attr, follow_symlinks=False).hex())
        digest.update("\0".join(record).encode("utf-8", "surrogateescape") + b"\n")
        if content:
            with open(path, "rb") as f:
                while chunk := f.read(1024 * 1024):
                    digest.update(chunk)
    return Hash.from_digest(digest.hexdigest())
