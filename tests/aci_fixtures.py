"""Image archives and layouts for the tests, made by code (nothing is downloaded).

* :class:`Entry` and :func:`tar_bytes` write a tar exactly as asked, byte for byte,
  including names and structures no honest tool writes (``rootfs/../evil``, two
  manifests, a hard link to a later entry); :func:`tar_structure` says where each
  header, content and padding starts, so truncation tests can cut at every boundary.
* :func:`compress` wraps a tar in every compression an image may use, as one or
  several members, optionally followed by zero padding.
* :data:`CORRUPT` is the table of broken archives with the message each must give.
* :func:`make_layout` writes an image layout directory (``manifest`` + ``rootfs/``).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import pathlib
import shutil
import tarfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import zstandard

BLOCK = tarfile.BLOCKSIZE

#: The manifest of every generated image, as a dict (see :func:`manifest_bytes`).
MANIFEST: dict[str, object] = {
    "acKind": "ImageManifest",
    "acVersion": "0.8.11",
    "name": "example.com/test",
    "labels": [
        {"name": "version", "value": "1.0.0"},
        {"name": "os", "value": "linux"},
        {"name": "arch", "value": "amd64"},
    ],
    "app": {
        "exec": ["/bin/hello", "--debug"],
        "user": "0",
        "group": "0",
        "ports": [{"name": "www", "protocol": "tcp", "port": 5000}],
    },
}

#: A pod manifest: a valid document of the wrong kind for an image.
POD_MANIFEST: dict[str, object] = {
    "acKind": "PodManifest",
    "acVersion": "0.8.11",
    "apps": [],
}

#: An image manifest without an ``app`` section.
NO_APP_MANIFEST: dict[str, object] = {
    "acKind": "ImageManifest",
    "acVersion": "0.8.11",
    "name": "example.com/noapp",
}


def manifest_bytes(manifest: dict[str, object] | None = None, **changes: object) -> bytes:
    """The JSON bytes of *manifest* (default :data:`MANIFEST`) with top-level *changes*."""
    document = dict(MANIFEST if manifest is None else manifest)
    document.update(changes)
    return json.dumps(document, indent=2).encode()


# --- tar entries ---------------------------------------------------------------------


@dataclass
class Entry:
    """One tar entry, written exactly as given (no name cleaning)."""

    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    linkname: str = ""
    mode: int = 0o644
    mtime: int = 1_500_000_000
    uid: int = 0
    gid: int = 0
    devmajor: int = 0
    devminor: int = 0
    pax: dict[str, str] = field(default_factory=dict)
    #: The size written in the header (default: ``len(data)`` for a regular file).
    size: int | None = None

    def info(self) -> tarfile.TarInfo:
        """The ``TarInfo`` of this entry."""
        info = tarfile.TarInfo(self.name)
        info.type = self.type
        info.mode = self.mode
        info.mtime = self.mtime
        info.uid, info.gid = self.uid, self.gid
        info.uname = info.gname = "root" if self.uid == 0 else ""
        info.linkname = self.linkname
        info.devmajor, info.devminor = self.devmajor, self.devminor
        info.pax_headers = dict(self.pax)
        if self.size is not None:
            info.size = self.size
        else:
            info.size = len(self.data) if self.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
        return info

    def header(self) -> bytes:
        """The header block(s) (PAX only when there are PAX records)."""
        fmt = tarfile.PAX_FORMAT if self.pax else tarfile.USTAR_FORMAT
        return self.info().tobuf(fmt, "utf-8", "surrogateescape")


def directory(name: str, mode: int = 0o755) -> Entry:
    """A directory entry."""
    return Entry(name, tarfile.DIRTYPE, mode=mode)


def regular(name: str, data: bytes = b"", mode: int = 0o644) -> Entry:
    """A regular file entry."""
    return Entry(name, tarfile.REGTYPE, data, mode=mode)


def symlink(name: str, target: str) -> Entry:
    """A symbolic link entry."""
    return Entry(name, tarfile.SYMTYPE, linkname=target, mode=0o777)


def hardlink(name: str, target: str) -> Entry:
    """A hard link entry (type 1) pointing at *target*."""
    return Entry(name, tarfile.LNKTYPE, linkname=target)


def manifest_entry(data: bytes | None = None) -> Entry:
    """The ``manifest`` entry (default: :data:`MANIFEST`)."""
    return regular("manifest", manifest_bytes() if data is None else data)


def good_entries(manifest: bytes | None = None) -> list[Entry]:
    """The entries of a small valid image, in the order ``actool build`` writes them."""
    return [
        directory("rootfs"),
        directory("rootfs/bin"),
        regular("rootfs/bin/hello", b"#!/bin/sh\necho hello\n", 0o755),
        directory("rootfs/etc"),
        regular("rootfs/etc/hosts", b"127.0.0.1 localhost\n" * 40),
        hardlink("rootfs/etc/hosts.link", "rootfs/etc/hosts"),
        symlink("rootfs/etc/motd", "hosts"),
        regular("rootfs/empty"),
        manifest_entry(manifest),
    ]


def tar_bytes(entries: Iterable[Entry], *, end: bool = True) -> bytes:
    """A tar of *entries* (each padded to a block), ending with two zero blocks if *end*."""
    out = bytearray()
    for entry in entries:
        out += entry.header()
        out += entry.data
        out += bytes(-len(entry.data) % BLOCK)
    if end:
        out += bytes(2 * BLOCK)
    return bytes(out)


@dataclass(frozen=True)
class Part:
    """Where one structure of a tar starts and ends (``kind``: header, content, padding, end)."""

    kind: str
    name: str
    start: int
    stop: int


def tar_structure(entries: Sequence[Entry]) -> list[Part]:
    """The structures of ``tar_bytes(entries)``, in order, with their byte ranges."""
    parts = []
    offset = 0
    for entry in entries:
        for kind, length in (
            ("header", len(entry.header())),
            ("content", len(entry.data)),
            ("padding", -len(entry.data) % BLOCK),
        ):
            if length:
                parts.append(Part(kind, entry.name, offset, offset + length))
                offset += length
    parts.append(Part("end", "", offset, offset + 2 * BLOCK))
    return parts


def good_tar(manifest: bytes | None = None) -> bytes:
    """The uncompressed tar of the small valid image."""
    return tar_bytes(good_entries(manifest))


def image_id(tar: bytes) -> str:
    """The image ID of an uncompressed tar, computed independently of the library."""
    return "sha512-" + hashlib.sha512(tar).hexdigest()


# --- compression ---------------------------------------------------------------------

COMPRESSIONS = ("gzip", "bzip2", "xz", "zstd", "tar")


def _split(data: bytes, members: int) -> list[bytes]:
    step = -(-len(data) // members)
    return [data[i : i + step] for i in range(0, len(data), step)] or [b""]


def compress(data: bytes, kind: str, *, members: int = 1, padding: int = 0) -> bytes:
    """*data* compressed as *kind* (one of :data:`COMPRESSIONS`), in *members* concatenated
    members (streams, or frames for zstd), followed by *padding* zero bytes."""
    chunks = _split(data, members)
    if kind == "gzip":
        out = b"".join(gzip.compress(c, compresslevel=1, mtime=0) for c in chunks)
    elif kind == "bzip2":
        out = b"".join(bz2.compress(c, 1) for c in chunks)
    elif kind == "xz":
        out = b"".join(lzma.compress(c, preset=0) for c in chunks)
    elif kind == "zstd":
        out = b"".join(zstandard.ZstdCompressor(level=1).compress(c) for c in chunks)
    elif kind == "tar":
        out = data
    else:
        raise ValueError(kind)
    return out + bytes(padding)


def gzip_bomb(size: int) -> bytes:
    """A gzip image whose tar holds a file of *size* zero bytes (a few KB compressed per MB)."""
    header = regular("rootfs/zeros").info()
    header.size = size
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [compressor.compress(tar_bytes([directory("rootfs")], end=False))]
    out.append(compressor.compress(header.tobuf(tarfile.USTAR_FORMAT)))
    chunk = bytes(1024 * 1024)
    remaining = size
    while remaining:
        step = min(remaining, len(chunk))
        out.append(compressor.compress(chunk[:step]))
        remaining -= step
    out.append(compressor.compress(bytes(-size % BLOCK) + tar_bytes([manifest_entry()])))
    out.append(compressor.flush())
    return b"".join(out)


# --- corrupted archives --------------------------------------------------------------


@dataclass(frozen=True)
class Corrupt:
    """A broken image: an id, its bytes (made on demand) and a fragment of the message."""

    id: str
    make: Callable[[], bytes]
    message: str
    #: ``max_size`` to validate with (for the decompression bomb).
    max_size: int | None = None


def _gz(entries: list[Entry]) -> bytes:
    return compress(tar_bytes(entries), "gzip")


def _replace(name: str, *new: Entry) -> list[Entry]:
    """The good entries with the one called *name* replaced by *new* (or removed)."""
    out: list[Entry] = []
    for entry in good_entries():
        out.extend(new if entry.name == name else [entry])
    return out


def _before_manifest(*extra: Entry) -> list[Entry]:
    entries = good_entries()
    return [*entries[:-1], *extra, entries[-1]]


def _truncated_gzip(fraction: float) -> Callable[[], bytes]:
    def make() -> bytes:
        data = compress(good_tar(), "gzip")
        return data[: max(11, int(len(data) * fraction))]

    return make


def _gzip_bad_crc() -> bytes:
    data = bytearray(compress(good_tar(), "gzip"))
    data[-8] ^= 0xFF
    return bytes(data)


def _gzip_bad_deflate() -> bytes:
    data = bytearray(compress(good_tar(), "gzip"))
    data[10:20] = b"\xff" * 10
    return bytes(data)


def _tar_bad_checksum() -> bytes:
    data = bytearray(good_tar())
    data[BLOCK + 100] ^= 0x01  # the mode field of the second header
    return bytes(data)


def _big_manifest() -> bytes:
    data = manifest_bytes()
    return _gz([*good_entries()[:-1], regular("manifest", data.ljust(5 * 1024 * 1024))])


def _dotdot() -> bytes:
    return _gz(_before_manifest(regular("rootfs/../evil", b"x")))


def _rootfs_x() -> bytes:
    return _gz(_before_manifest(directory("rootfsX"), regular("rootfsX/a", b"x")))


def _hardlink_later() -> bytes:
    return _gz(_before_manifest(hardlink("rootfs/early", "rootfs/late"), regular("rootfs/late")))


CORRUPT: list[Corrupt] = [
    Corrupt("bad-magic", lambda: b"\x00\x01garbage" * 100, "unknown image filetype"),
    Corrupt("empty-file", lambda: b"", "unknown image filetype"),
    Corrupt("text", manifest_bytes, "unknown image filetype"),
    Corrupt("gzip-header-only", _truncated_gzip(0.0), "truncated gzip stream"),
    Corrupt("gzip-truncated-25", _truncated_gzip(0.25), "truncated gzip stream"),
    Corrupt("gzip-truncated-50", _truncated_gzip(0.5), "truncated gzip stream"),
    Corrupt("gzip-truncated-trailer", _truncated_gzip(0.99), "truncated gzip stream"),
    Corrupt("gzip-bad-crc", _gzip_bad_crc, "corrupt gzip stream"),
    Corrupt("gzip-bad-deflate", _gzip_bad_deflate, "corrupt gzip stream"),
    Corrupt("gzip-garbage-after", lambda: compress(good_tar(), "gzip") + b"garbage",
            "garbage after the end of the gzip stream"),
    Corrupt("bzip2-truncated", lambda: compress(good_tar(), "bzip2")[:-20],
            "truncated bzip2 stream"),
    Corrupt("xz-truncated", lambda: compress(good_tar(), "xz")[:-20], "truncated xz stream"),
    Corrupt("zstd-truncated", lambda: compress(good_tar(), "zstd")[:-20],
            "truncated zstd stream"),
    Corrupt("tar-bad-checksum", _tar_bad_checksum, "corrupt tar archive"),
    Corrupt("tar-garbage-after", lambda: good_tar() + b"garbage" + bytes(1000),
            "data after the end of the archive"),
    Corrupt("gzip-tar-garbage-after", lambda: compress(good_tar() + b"\x01" * 700, "gzip"),
            "data after the end of the archive"),
    Corrupt("pod-manifest", lambda: _gz(good_entries(manifest_bytes(POD_MANIFEST))),
            "image manifest validation failed"),
    Corrupt("manifest-bad-json", lambda: _gz(good_entries(b"{not json")),
            "image manifest validation failed"),
    Corrupt("manifest-empty", lambda: _gz(good_entries(b"")),
            "image manifest validation failed"),
    Corrupt("traversal-rootfs-dotdot", _dotdot,
            "unsafe file path in archive (path with '..'): 'rootfs/../evil'"),
    Corrupt("traversal-absolute", lambda: _gz(_before_manifest(regular("/rootfs/abs", b"x"))),
            "unsafe file path in archive (absolute path): '/rootfs/abs'"),
    Corrupt("traversal-dotdot", lambda: _gz(_before_manifest(regular("../x", b"x"))),
            "unsafe file path in archive (path with '..'): '../x'"),
    Corrupt("rootfsX", _rootfs_x, "unrecognized file path in layout: 'rootfsX'"),
    Corrupt("rootfsX-file", lambda: _gz(_before_manifest(regular("rootfsX/a", b"x"))),
            "unrecognized file path in layout: 'rootfsX/a'"),
    Corrupt("outside-rootfs", lambda: _gz(_before_manifest(regular("etc/passwd", b"x"))),
            "unrecognized file path in layout: 'etc/passwd'"),
    Corrupt("duplicate-file", lambda: _gz(_before_manifest(regular("rootfs/bin/hello", b"x"))),
            "duplicate file entry in archive: 'rootfs/bin/hello'"),
    Corrupt("duplicate-file-dotslash", lambda: _gz(_before_manifest(regular("./rootfs/empty"))),
            "duplicate file entry in archive: 'rootfs/empty'"),
    Corrupt("two-manifests", lambda: _gz([*good_entries(), manifest_entry()]),
            "duplicate file entry in archive: 'manifest'"),
    Corrupt("two-rootfs-dirs", lambda: _gz(_before_manifest(directory("rootfs/"))),
            "duplicate file entry in archive: 'rootfs'"),
    Corrupt("symlinked-manifest",
            lambda: _gz(_replace("manifest", symlink("manifest", "rootfs/m"))),
            "manifest is not a regular file"),
    Corrupt("manifest-directory", lambda: _gz(_replace("manifest", directory("manifest"))),
            "manifest is not a regular file"),
    Corrupt("rootfs-not-directory", lambda: _gz([regular("rootfs", b"x"), manifest_entry()]),
            "rootfs is not a directory"),
    Corrupt("rootfs-symlink", lambda: _gz([symlink("rootfs", "/"), manifest_entry()]),
            "rootfs is not a directory"),
    Corrupt("missing-manifest", lambda: _gz(good_entries()[:-1]),
            "no image manifest found in layout"),
    Corrupt("missing-rootfs", lambda: _gz([manifest_entry()]), "no rootfs found in layout"),
    Corrupt("missing-rootfs-dir-entry",
            lambda: _gz([regular("rootfs/a", b"x"), manifest_entry()]),
            "no rootfs found in layout"),
    Corrupt("hardlink-outside-rootfs",
            lambda: _gz(_before_manifest(hardlink("rootfs/passwd", "/etc/passwd"))),
            "hard link 'rootfs/passwd' points outside rootfs: '/etc/passwd'"),
    Corrupt("hardlink-to-manifest",
            lambda: _gz([*good_entries()[:-1], manifest_entry(), hardlink("rootfs/m", "manifest")]),
            "hard link 'rootfs/m' points outside rootfs: 'manifest'"),
    Corrupt("hardlink-dotdot",
            lambda: _gz(_before_manifest(hardlink("rootfs/x", "rootfs/../../etc/passwd"))),
            "points outside rootfs"),
    Corrupt("hardlink-later-entry", _hardlink_later,
            "hard link 'rootfs/early' points to 'rootfs/late', which comes after it"),
    Corrupt("hardlink-through-symlink",
            lambda: _gz(_before_manifest(symlink("rootfs/d", "/etc"),
                                         hardlink("rootfs/h", "rootfs/d/passwd"))),
            "hard link 'rootfs/h' to 'rootfs/d/passwd' leads through a symlink or non-directory"),
    Corrupt("hardlink-through-file",
            lambda: _gz(_before_manifest(hardlink("rootfs/h", "rootfs/bin/hello/x"))),
            "hard link 'rootfs/h' to 'rootfs/bin/hello/x' leads through a symlink"),
    Corrupt("hardlink-self", lambda: _gz(_before_manifest(hardlink("rootfs/self", "rootfs/self"))),
            "hard link 'rootfs/self' points to itself"),
    Corrupt("unknown-entry-type", lambda: _gz(_before_manifest(Entry("rootfs/weird", b"Z"))),
            "unsupported entry type"),
    Corrupt("manifest-5MB", _big_manifest,
            "'manifest' is too large (5242880 bytes, limit 4194304)"),
    Corrupt("gzip-bomb", lambda: gzip_bomb(8 * 1024 * 1024),
            "uncompressed image larger than the limit of 1048576 bytes", max_size=1024 * 1024),
]


def truncations(entries: Sequence[Entry]) -> list[tuple[str, int]]:
    """Cut points of ``tar_bytes(entries)`` at and inside every header, content and
    padding: ``(label, length)``, each of which must make the archive invalid.

    Cutting exactly at the end of an entry before the manifest leaves a shorter valid
    tar without the manifest, which is still refused (no manifest).
    """
    cuts: list[tuple[str, int]] = []
    for part in tar_structure(entries):
        if part.kind == "end":
            continue
        middle = (part.start + part.stop) // 2
        cuts.append((f"{part.name}:{part.kind}@start", part.start))
        if part.start < middle:
            cuts.append((f"{part.name}:{part.kind}@middle", middle))
        cuts.append((f"{part.name}:{part.kind}@last-byte", part.stop - 1))
    # The start of the first header is an empty file; the end of the manifest's padding
    # is the end-of-archive marker, tested on its own.
    return [(label, n) for label, n in dict.fromkeys(cuts) if n > 0]


# --- layouts -------------------------------------------------------------------------


def make_layout(
    root: os.PathLike[str] | str,
    files: dict[str, bytes | str | None] | None = None,
    *,
    manifest: bytes | None = None,
) -> pathlib.Path:
    """Write an image layout at *root*: ``manifest`` and ``rootfs/`` with *files*.

    *files* maps paths under ``rootfs/`` to contents: bytes for a file, ``None`` for a
    directory, a ``str`` starting with ``->`` for a symlink to the rest.  The default is
    a small tree with a binary, a nested directory and a symlink.
    """
    base = pathlib.Path(root)
    (base / "rootfs").mkdir(parents=True)
    (base / "manifest").write_bytes(manifest_bytes() if manifest is None else manifest)
    if files is None:
        files = {
            "bin/hello": b"\x7fELF fake binary\n" * 64,
            "etc": None,
            "etc/hosts": b"127.0.0.1 localhost\n",
            "etc/motd": "->hosts",
            "var/lib/empty": None,
        }
    for rel, content in files.items():
        path = base / "rootfs" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir(exist_ok=True)
        elif isinstance(content, str):
            assert content.startswith("->")
            path.symlink_to(content[2:])
        else:
            path.write_bytes(content)
    return base


def read_tar(data: bytes) -> list[tarfile.TarInfo]:
    """The headers of a plain, gzip, bzip2 or xz tar, read by ``tarfile`` alone."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        return tar.getmembers()


#: Broken layouts: ``(case, message fragment)`` for :func:`make_bad_layout`.
BAD_LAYOUTS: list[tuple[str, str]] = [
    ("extra-file", "unrecognized file path in layout: 'extra'"),
    ("rootfsX", "unrecognized file path in layout: 'rootfsX'"),
    ("no-manifest", "no image manifest found in layout"),
    ("no-rootfs", "no rootfs found in layout"),
    ("rootfs-file", "rootfs is not a directory"),
    ("rootfs-symlink", "rootfs is not a directory"),
    ("manifest-dir", "manifest is not a regular file"),
    ("manifest-symlink", "manifest is not a regular file"),
    ("manifest-invalid", "image manifest validation failed: "),
    ("manifest-pod", "image manifest validation failed: acKind"),
    ("manifest-empty", "image manifest validation failed: "),
]


def make_bad_layout(root: os.PathLike[str] | str, case: str) -> pathlib.Path:
    """A layout at *root* broken as *case* says (one of :data:`BAD_LAYOUTS`)."""
    layout = make_layout(root)
    if case == "extra-file":
        (layout / "extra").write_text("x")
    elif case == "rootfsX":
        (layout / "rootfsX").mkdir()
    elif case == "no-manifest":
        (layout / "manifest").unlink()
    elif case in ("no-rootfs", "rootfs-file"):
        shutil.rmtree(layout / "rootfs")
        if case == "rootfs-file":
            (layout / "rootfs").write_text("x")
    elif case == "rootfs-symlink":
        (layout / "rootfs").rename(layout.parent / "real-rootfs")
        (layout / "rootfs").symlink_to(layout.parent / "real-rootfs")
    elif case == "manifest-dir":
        (layout / "manifest").unlink()
        (layout / "manifest").mkdir()
    elif case == "manifest-symlink":
        (layout / "manifest").rename(layout.parent / "real-manifest")
        (layout / "manifest").symlink_to(layout.parent / "real-manifest")
    elif case == "manifest-invalid":
        (layout / "manifest").write_bytes(manifest_bytes(name="Bad Name"))
    elif case == "manifest-pod":
        (layout / "manifest").write_bytes(manifest_bytes(POD_MANIFEST))
    elif case == "manifest-empty":
        (layout / "manifest").write_bytes(b"")
    else:
        raise ValueError(case)
    return layout
