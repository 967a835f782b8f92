"""Docker/OCI layers → App Container Images: squashed (the default) or one ACI per layer.

Squashing applies the layers base first, as a container runtime would, following
the OCI layer rules: a ``.wh.NAME`` entry deletes NAME (and what is under it) from the
layers below; ``.wh..wh..opq`` hides everything the layers below put in its
directory (the original ignored it); an upper entry replaces a lower one, a
non-directory replacing a directory deletes the directory's contents.  It runs in two
streaming passes over the layer blobs and writes the result straight into the ACI:

1. read every layer's headers, base first, keeping only the final tree: for each path,
   which layer's entry (by position) provides it;
2. write ``manifest``, ``rootfs``, every directory (parents first), then each layer's
   surviving entries in their own order, so a hard link always follows its target.

Hard links survive across layers (the original dropped a link whose target was in a
lower layer); a link whose target was deleted or replaced by an upper layer becomes a
regular file holding the original target's data.  ``.`` entries are skipped and names
that climb out of the root with ``..`` are refused (the original looped forever), as are
the names, link targets and owners an image archive may not hold (see
:class:`appc.aci.validate.EntryChecker`), so that every ACI written is valid.

Other deliberate differences from the original's output: directories come first and
the layers' entries follow base to top (the original wrote top to base, children
before their parents); a ``rootfs/dev`` directory entry holds the stdio links (the
original wrote the links without it); a directory a layer whites out while adding
entries under it stays for them (as a directory of that layer).  A layer blob the
original did not recognise was read as empty; here only an empty blob or one of zero
blocks (docker save's layers without files) is an empty layer, and anything else that
is no tar, gzip, bzip2, xz or zstd is an error.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tarfile
from collections.abc import Callable, Iterator
from typing import IO, Any, cast

import attrs

from appc._fs import makedirs
from appc.aci._compress import Compression, max_image_size
from appc.aci.read import ImageReader, clean_name, name_limit_reason
from appc.aci.validate import EntryChecker
from appc.aci.write import DEFAULT_LEVEL, ImageWriter, atomic_output
from appc.docker.image import ImageLayer, SourceImage
from appc.docker.manifest import carried_manifest, manifest_for_image
from appc.errors import ImageError
from appc.schema.image import ImageManifest

__all__ = ["ConvertOptions", "ConvertResult", "convert_image", "layer_entries"]


def __dir__() -> list[str]:
    return __all__


#: Symlinks an ACI of a Docker image gets unless the image has the path (as the original).
STDIO_LINKS = (
    ("dev/stdin", "/proc/self/fd/0"),
    ("dev/stdout", "/dev/console"),
    ("dev/stderr", "/dev/console"),
    ("dev/fd", "/proc/self/fd"),
)
_WHITEOUT = ".wh."
_CHUNK = 1024 * 1024
_OPAQUE = ".wh..wh..opq"


@attrs.frozen(kw_only=True)
class ConvertOptions:
    """How to write the ACIs.

    :param squash: one ACI for the image (default), or one per layer.
    :param compression: ``gzip`` or ``none``.
    :param log: called with progress lines (``--debug``).
    :param max_size: the most uncompressed bytes of a layer (default:
        :func:`~appc.aci._compress.max_image_size`).
    """

    squash: bool = True
    compression: str = Compression.GZIP
    level: int = DEFAULT_LEVEL
    log: Callable[[str], None] | None = None
    max_size: int | None = None


@attrs.frozen
class ConvertResult:
    """The ACIs written (paths, in dependency order: the image itself last) and the final manifest."""

    paths: tuple[str, ...]
    manifest: ImageManifest


def _clean(name: str, where: str) -> str | None:
    """A layer entry name relative to the root (``None`` for the root itself)."""
    cleaned = posixpath.normpath("/" + name).lstrip("/")
    if ".." in name.split("/") and posixpath.normpath(name.lstrip("/")).startswith(".."):
        raise ImageError(f"entry {_short(name)!r} climbs out of the image root", source=where)
    reason = name_limit_reason(f"rootfs/{cleaned}") if cleaned else None
    if reason is not None:
        raise ImageError(
            f"unsupported file path in layer ({reason}): {_short(name)!r}", source=where
        )
    return cleaned or None


def _short(name: str, limit: int = 120) -> str:
    """*name*, shortened in the middle for a one-line message."""
    return name if len(name) <= limit else f"{name[: limit // 2]}...{name[-limit // 2 :]}"


#: The largest user or group ID Linux takes (as :class:`~appc.aci.validate.EntryChecker`).
_MAX_ID = 2**32 - 2


def _check_entry(info: tarfile.TarInfo, where: str) -> None:
    """Refuse what an ACI may not hold beyond its name: a link target, owner or device number
    Linux cannot take."""
    if info.issym():
        reason = name_limit_reason(info.linkname, link=True)
        if reason is not None:
            raise ImageError(f"unsupported symlink {_short(info.name)!r} ({reason})", source=where)
    numbers = [("uid", info.uid, _MAX_ID), ("gid", info.gid, _MAX_ID)]
    if info.ischr() or info.isblk():  # what Linux takes: a 12-bit major, a 20-bit minor
        numbers += [("device major", info.devmajor, 2**12 - 1)]
        numbers += [("device minor", info.devminor, 2**20 - 1)]
    for kind, number, highest in numbers:
        if not 0 <= number <= highest:
            raise ImageError(
                f"{kind} {number} out of range for {_short(info.name)!r}", source=where
            )


@contextlib.contextmanager
def _open_layer(layer: ImageLayer, max_size: int | None = None) -> Iterator[ImageReader | None]:
    where = f"layer {layer.digest}"
    try:
        blob = layer.open()
    except OSError as err:
        raise ImageError(f"cannot read: {err.strerror or err}", source=where) from None
    with blob:
        head = blob.read(tarfile.BLOCKSIZE)
        if not head.strip(b"\0"):
            # An empty blob, or a tar of end-of-archive blocks only (what docker save
            # writes for a layer without files): an empty layer.  Read to the end, so
            # that a verified blob checks its digest, and refuse data after the zeros
            # (or zeros without end: the size limit holds here too).
            limit = max_image_size() if max_size is None else max_size
            total = len(head)
            while chunk := blob.read(_CHUNK):
                total += len(chunk)
                if chunk.strip(b"\0"):
                    raise ImageError(
                        "corrupt layer: data after end-of-archive blocks", source=where
                    )
                if total > limit:
                    raise ImageError(
                        f"uncompressed image larger than the limit of {limit} bytes", source=where
                    )
            yield None
            return
        try:
            with ImageReader(cast(IO[bytes], _Rewound(head, blob)), max_size=max_size) as reader:
                yield reader
        except ImageError as err:
            raise ImageError(err.message, source=where) from None


class _Rewound:
    """Give back the bytes already read, then read on."""

    def __init__(self, head: bytes, raw: IO[bytes]) -> None:
        self._head = head
        self._raw = raw
        self.name = f"<{getattr(raw, 'name', 'layer')}>"

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._raw.read(size)
        if size is None or size < 0:
            head, self._head = self._head, b""
            return head + self._raw.read()
        out, self._head = self._head[:size], self._head[size:]
        if len(out) < size:
            out += self._raw.read(size - len(out))
        return out


def layer_entries(
    reader: ImageReader | None, where: str
) -> Iterator[tuple[int, tarfile.TarInfo, str | None]]:
    """Yield ``(position, header, cleaned name)`` for every entry of a layer (name ``None``: the root)."""
    if reader is None:
        return
    for position, (info, _) in enumerate(reader.entries()):
        _check_entry(info, where)
        yield position, info, _clean(info.name, where)


class _CheckedWriter(ImageWriter):
    """An :class:`ImageWriter` that applies the image archive rules to every entry it
    writes (:class:`~appc.aci.validate.EntryChecker`), so that a layer breaking them (a
    file under a symlink of the same layer, in ``-nosquash`` output) fails the
    conversion instead of producing an invalid ACI; errors name *where*.
    """

    def __init__(self, out: IO[bytes], where: str, **options: Any) -> None:
        super().__init__(out, **options)
        self._checker = EntryChecker(where)

    def add(self, info: tarfile.TarInfo, content: IO[bytes] | None = None) -> None:
        self._checker.check(info, clean_name(info.name))
        super().add(info, content)


@attrs.define(slots=True)
class _Node:
    layer: int
    position: int  # -1 for a directory made up because a child needed it
    is_dir: bool
    header: tarfile.TarInfo | None = None  # kept for directories
    link: tuple[int, int] | None = None  # a hard link: the (layer, position) of its file


def _made_directory(path: str) -> tarfile.TarInfo:
    """The header of a directory no layer wrote but an entry needs (mode 0755, root's)."""
    header = tarfile.TarInfo(path)
    header.type, header.mode = tarfile.DIRTYPE, 0o755
    return header


class _Tree:
    """The squashed file tree being computed: path → the entry that provides it."""

    def __init__(self) -> None:
        self.nodes: dict[str, _Node] = {}
        self.children: dict[str, set[str]] = {"": set()}

    def _attach(self, path: str, node: _Node) -> None:
        self.nodes[path] = node
        self.children.setdefault(posixpath.dirname(path), set()).add(path)
        if node.is_dir:
            self.children.setdefault(path, set())

    def delete(self, path: str, below: int | None = None) -> None:
        """Remove *path* and its subtree (only entries from layers under *below*, if given)."""
        node = self.nodes.get(path)
        if node is None:
            return
        for child in list(self.children.get(path, ())):
            self.delete(child, below)
        if below is not None and node.layer >= below:
            return
        if below is not None and self.children.get(path):
            # The deleting layer itself put entries under this lower directory: they
            # stay, in a directory of that layer (as if it had been made for them).
            self.nodes[path] = _Node(below, -1, True, _made_directory(path))
            return
        del self.nodes[path]
        self.children.get(posixpath.dirname(path), set()).discard(path)
        self.children.pop(path, None)

    def hide_below(self, directory: str, layer: int) -> None:
        """An opaque directory: drop everything under it that lower layers put there."""
        for child in list(self.children.get(directory, ())):
            self.delete(child, below=layer)

    def ensure_parents(self, path: str, layer: int) -> None:
        parent = posixpath.dirname(path)
        if not parent:
            return
        node = self.nodes.get(parent)
        if node is not None and node.is_dir:
            return
        if node is not None:
            self.delete(
                parent
            )  # an upper entry under a lower non-directory: it becomes a directory
        self.ensure_parents(parent, layer)
        self._attach(parent, _Node(layer, -1, True, _made_directory(parent)))

    def add(self, path: str, node: _Node) -> None:
        existing = self.nodes.get(path)
        if existing is not None:
            if existing.is_dir and node.is_dir:
                existing.layer, existing.position, existing.header = (
                    node.layer,
                    node.position,
                    node.header,
                )
                return
            self.delete(path)
        self._attach(path, node)


def _check_dev(path: str, info: tarfile.TarInfo, where: str) -> None:
    if path == "dev" and not info.isdir():
        raise ImageError("/dev exists in the image but is not a directory", source=where)


def _scan(image: SourceImage, log: Callable[[str], None], max_size: int | None = None) -> _Tree:
    """Pass 1: the final tree, from every layer's headers, base first."""
    tree = _Tree()
    for index, layer in enumerate(image.layers):
        where = f"layer {layer.digest}"
        log(f"Reading layer {index + 1}/{len(image.layers)} {layer.digest[:19]}...")
        with _open_layer(layer, max_size) as reader:
            for position, info, path in layer_entries(reader, where):
                if path is None:
                    continue
                base = posixpath.basename(path)
                if base == _OPAQUE:
                    tree.hide_below(posixpath.dirname(path), index)
                    continue
                if base.startswith(_WHITEOUT):
                    target = posixpath.join(posixpath.dirname(path), base[len(_WHITEOUT) :])
                    tree.delete(target, below=index)
                    continue
                _check_dev(path, info, where)
                tree.ensure_parents(path, index)
                if info.islnk():
                    linked = tree.nodes.get(_clean(info.linkname, where) or "")
                    if linked is None or linked.is_dir:
                        raise ImageError(
                            f"hard link {path!r} to missing file {info.linkname!r}", source=where
                        )
                    key = linked.link or (linked.layer, linked.position)
                    tree.add(path, _Node(index, position, False, link=key))
                else:
                    tree.add(
                        path, _Node(index, position, info.isdir(), info if info.isdir() else None)
                    )
            if reader is not None:
                reader.finish()  # drains the layer, so a verified blob's digest is checked too
    return tree


def _output_header(info: tarfile.TarInfo, path: str, **changes: Any) -> tarfile.TarInfo:
    header = info.replace(name=f"rootfs/{path}", deep=False, **changes)
    # Keep xattrs; other PAX records (path, linkpath, ...) described the old name.
    header.pax_headers = {
        k: v for k, v in info.pax_headers.items() if k.startswith("SCHILY.xattr.")
    }
    return header


def _plan(tree: _Tree) -> tuple[dict[tuple[int, int], str], dict[tuple[int, int], tuple[str, str]]]:
    """Which entry positions are written under which path, and where hard links point.

    :returns: ``(writes, links)``: ``writes[(layer, position)]`` is the output path of
        a file entry; ``links[(layer, position)]`` is ``(path, target path)`` for a hard
        link entry.
    """
    writes: dict[tuple[int, int], str] = {}
    link_nodes: list[tuple[str, _Node]] = []
    for path, node in tree.nodes.items():
        if node.is_dir:
            continue
        if node.link is not None:
            link_nodes.append((path, node))
        else:
            writes[(node.layer, node.position)] = path
    links: dict[tuple[int, int], tuple[str, str]] = {}
    for path, node in sorted(link_nodes):
        assert node.link is not None
        target = writes.get(node.link)
        if target is None:
            # The file this link shared was deleted or replaced above: the link becomes
            # the file, written from the original entry's data.
            writes[node.link] = path
            continue
        links[(node.layer, node.position)] = (path, target)
    return writes, links


def _write_squashed(
    image: SourceImage,
    tree: _Tree,
    manifest: ImageManifest,
    writer: ImageWriter,
    log: Callable[[str], None],
    max_size: int | None = None,
) -> None:
    # An image pushed from an ACI (it carries its appc manifest) gets back exactly its
    # own files: no stdio links added.
    stdio = () if carried_manifest(image) is not None else STDIO_LINKS
    for path, _ in stdio:
        if path not in tree.nodes:
            tree.ensure_parents(path, len(image.layers))
    writes, links = _plan(tree)
    manifest_header = tarfile.TarInfo("manifest")
    manifest_header.mode, manifest_header.uname, manifest_header.gname = 0o644, "0", "0"
    writer.add_bytes(manifest_header, manifest.to_json().encode("utf-8"))
    root = tarfile.TarInfo("rootfs")
    root.type, root.mode, root.uname, root.gname = tarfile.DIRTYPE, 0o755, "0", "0"
    writer.add(root)
    for path in sorted(p for p, n in tree.nodes.items() if n.is_dir):
        header = tree.nodes[path].header
        assert header is not None
        writer.add(_output_header(header, path))
    for index, layer in enumerate(image.layers):
        where = f"layer {layer.digest}"
        log(f"Writing layer {index + 1}/{len(image.layers)} {layer.digest[:19]}...")
        with _open_layer(layer, max_size) as reader:
            for position, info, _ in layer_entries(reader, where):
                key = (index, position)
                if key in links:
                    path, target = links[key]
                    writer.add(_output_header(info, path, linkname=f"rootfs/{target}"))
                    continue
                written = writes.get(key)
                if written is None:
                    continue
                path = written
                if info.isreg():
                    assert reader is not None
                    writer.add(_output_header(info, path), reader.member(info))
                elif info.islnk():
                    raise ImageError(
                        f"internal error: unresolved hard link {info.name!r}", source=where
                    )
                else:
                    writer.add(_output_header(info, path))
    for path, target in stdio:
        if path not in tree.nodes:
            link = tarfile.TarInfo(f"rootfs/{path}")
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, target, 0o777
            writer.add(link)


def _squash(
    image: SourceImage, output: str, options: ConvertOptions, log: Callable[[str], None]
) -> ConvertResult:
    manifest = manifest_for_image(image)
    tree = _scan(image, log, options.max_size)
    log("Writing squashed ACI...")
    with atomic_output(output, overwrite=True) as out:
        writer = _CheckedWriter(
            out, os.path.basename(output), compression=options.compression, level=options.level
        )
        try:
            _write_squashed(image, tree, manifest, writer, log, options.max_size)
            writer.close()
        except BaseException:
            writer.abort()
            raise
    log("ACI squashed!")
    return ConvertResult((output,), manifest)


def convert_image(
    image: SourceImage, output_dir: str, options: ConvertOptions | None = None
) -> ConvertResult:
    """Write *image* as ACI(s) into *output_dir* (made if missing); files appear only once complete.

    :raises ImageError: a layer that cannot be read or applied, a configuration appc
        cannot express, an output directory that cannot be made; nothing is left behind
        (not even the output directories this call made).
    """
    options = options or ConvertOptions()
    log = options.log or (lambda _: None)
    if image.reference is None:
        raise ImageError("the image has no name")
    made: list[str] = []
    try:
        _make_directories(output_dir, made)
        if options.squash:
            output = os.path.join(output_dir, image.reference.output_name())
            return _squash(image, output, options, log)
        from appc.docker.nosquash import convert_layers  # noqa: PLC0415

        paths, manifest = convert_layers(image, output_dir, options, log)
        return ConvertResult(tuple(paths), manifest)
    except BaseException:
        for directory in reversed(made):
            with contextlib.suppress(OSError):
                os.rmdir(directory)
        raise


def _make_directories(directory: str, made: list[str]) -> None:
    """``os.makedirs``, noting each directory created (so a failure can remove them)."""
    try:
        makedirs(directory, made=made)
    except FileExistsError as err:
        raise ImageError(
            "cannot create directory: a file is in the way", source=err.filename
        ) from None
    except OSError as err:
        raise ImageError(
            f"cannot create directory: {err.strerror or err}", source=err.filename or directory
        ) from None
