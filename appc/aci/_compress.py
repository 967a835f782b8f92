"""Compressed streams: readers for every image compression, and the parallel gzip writer.

Readers are plain ``read(n)`` objects over a binary file.  Every one refuses to produce
more than ``max_size`` bytes (a decompression bomb stops with a clear error instead of
filling the disk or memory); where no limit is given, :func:`max_image_size` sets it:
``$APPC_MAX_IMAGE_SIZE`` (bytes, or with a ``K``/``M``/``G``/``T`` suffix, powers of
1024) or 64 GiB; the decompressors accept several concatenated members (gzip,
bzip2 and xz streams, zstd frames), as ``gzip -d`` and Go's readers do, and report
a stream cut short as truncated.

The writer compresses independent gzip members of :data:`GZIP_BLOCK_SIZE` bytes in a
thread pool (zlib releases the GIL), which is standard gzip (RFC 1952 allows many
members) at +0.03 % size, and scales with cores.

Acceleration (the ``fast`` extra, ``pip install appc[fast]``): when installed,
``zlib-ng`` deflates (same levels and format, about twice as fast, a few tenths of a
percent larger) and ``isal`` inflates (about twice as fast).  The image ID is computed
over the uncompressed tar, so it does not change; the compressed bytes may.
``APPC_NO_ACCELERATION=1`` uses the standard library's zlib only.
"""

from __future__ import annotations

import bz2
import concurrent.futures
import functools
import importlib
import lzma
import os
import re
import struct
import zlib
from collections import deque
from typing import IO, Any, Protocol

from appc.aci.filetype import FileType
from appc.errors import ImageError

__all__ = [
    "GZIP_BLOCK_SIZE",
    "DEFAULT_MAX_SIZE",
    "MAX_SIZE_ENV",
    "Compression",
    "ParallelGzipWriter",
    "PlainWriter",
    "decompressing_reader",
    "deflate_module",
    "download_limit_text",
    "inflate_module",
    "max_download_size",
    "max_image_size",
]

#: Uncompressed bytes per gzip member written by :class:`ParallelGzipWriter`.
GZIP_BLOCK_SIZE = 4 * 1024 * 1024
#: The default limit on an image's uncompressed size: 64 GiB.
DEFAULT_MAX_SIZE = 64 * 1024**3
#: The environment variable that replaces :data:`DEFAULT_MAX_SIZE`.
MAX_SIZE_ENV = "APPC_MAX_IMAGE_SIZE"
_SIZE = re.compile(r"([0-9]+)([KMGT]?)(?:i?B)?", re.IGNORECASE)
_READ_SIZE = 256 * 1024


def max_image_size() -> int:
    """The limit on the uncompressed size of an image or layer when none is given:
    ``$APPC_MAX_IMAGE_SIZE`` (``1073741824``, ``512M``, ``2G``: powers of 1024), else
    :data:`DEFAULT_MAX_SIZE`.

    :raises ImageError: a value that is not a size.
    """
    text = os.environ.get(MAX_SIZE_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_SIZE
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ImageError(f"{MAX_SIZE_ENV}={text!r} is not a size (such as 1073741824, 512M or 2G)")
    number, unit = match.groups()
    multiplier: int = 1024 ** " KMGT".index(unit.upper() or " ")
    return int(number) * multiplier


def max_download_size(max_size: int | None = None) -> int:
    """The most compressed bytes worth downloading for an image or layer of at most
    *max_size* uncompressed bytes (default: :func:`max_image_size`).

    gzip, bzip2, xz and zstd grow incompressible data by well under 1 %, and a plain tar
    not at all: a download beyond ``max_size + max_size / 64 + 1 MiB`` could never be
    read within the limit, so it is stopped instead of filling the disk.

    :raises ImageError: ``$APPC_MAX_IMAGE_SIZE`` is not a size.
    """
    limit = max_image_size() if max_size is None else max_size
    return limit + limit // 64 + 1024 * 1024


def download_limit_text(limit: int) -> str:
    """How errors name the limit of :func:`max_download_size` (and what sets it)."""
    return f"the download limit of {limit} bytes (set by {MAX_SIZE_ENV})"


def _accelerator(module: str) -> Any:
    if os.environ.get("APPC_NO_ACCELERATION") == "1":
        return None
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


@functools.cache
def deflate_module() -> Any:
    """The deflate implementation: ``zlib_ng`` when installed, else ``zlib``."""
    return _accelerator("zlib_ng.zlib_ng") or zlib


@functools.cache
def inflate_module() -> Any:
    """The inflate implementation: ``isal``, else ``zlib_ng``, when installed, else ``zlib``."""
    return _accelerator("isal.isal_zlib") or _accelerator("zlib_ng.zlib_ng") or zlib


class Compression(str):
    """Names of the output compressions: ``gzip`` (default) or ``none``."""

    GZIP = "gzip"
    NONE = "none"


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


_MEMBER_MAGIC = {
    FileType.GZIP: b"\x1f\x8b",
    FileType.BZIP2: b"BZh",
    FileType.XZ: b"\xfd7zXZ\x00",
    FileType.ZSTD: b"\x28\xb5\x2f\xfd",
}
#: Compressed bytes given to a zstd decompression object at once.  It has no output
#: limit, and a zstd block expands at most about 32768 times: 1 KiB gives ≤ 32 MiB.
_ZSTD_SLICE = 1024


class _ZstdFrame:
    """One zstd frame behind the interface of ``zlib.decompressobj`` (``max_length``,
    ``unconsumed_tail``), so that :class:`_MemberReader` reads zstd as the others.

    zstandard's stream reader ends quietly on a truncated frame; a decompression object
    tells a complete frame (``eof``) from a cut one.
    """

    def __init__(self) -> None:
        import zstandard  # noqa: PLC0415 - only zstd images need it

        self._obj = zstandard.ZstdDecompressor().decompressobj()
        self._error = zstandard.ZstdError
        self._out = b""  # decompressed, not yet returned from self._pos on
        self._pos = 0
        self.unconsumed_tail: bytes | memoryview = b""

    @property
    def needs_input(self) -> bool:
        """False while decompressed bytes are still waiting to be returned."""
        return self._pos == len(self._out)

    @property
    def eof(self) -> bool:
        """True once the frame ended and all its bytes were returned."""
        return bool(self._obj.eof) and self.needs_input

    @property
    def unused_data(self) -> bytes:
        """Compressed bytes after the end of the frame."""
        return bytes(self._obj.unused_data) + bytes(self.unconsumed_tail)

    def decompress(self, data: bytes | memoryview, max_length: int = -1) -> bytes:
        """Return at most *max_length* decompressed bytes, keeping the rest of *data* in
        ``unconsumed_tail``.

        :raises ImageError: corrupt data.
        """
        if self.needs_input and not self._obj.eof:
            # Slice after slice until max_length is reached: at most one slice's worth more.
            view = memoryview(data)
            goal = max_length if max_length > 0 else _READ_SIZE
            chunks: list[bytes] = []
            produced = used = 0
            try:
                while used < len(view) and produced < goal and not self._obj.eof:
                    chunk = self._obj.decompress(view[used : used + _ZSTD_SLICE])
                    used += _ZSTD_SLICE
                    chunks.append(chunk)
                    produced += len(chunk)
            except self._error as err:
                raise ImageError(f"corrupt zstd stream: {err}") from None
            self._out = b"".join(chunks)
            self._pos = 0
            self.unconsumed_tail = view[used:]
        else:
            self.unconsumed_tail = data
        end = len(self._out) if max_length < 0 else min(len(self._out), self._pos + max_length)
        out = self._out[self._pos : end]
        self._pos = end
        return out


class _MemberReader:
    """Decompress concatenated members (gzip, bzip2, xz streams or zstd frames) from a binary file.

    Zero bytes between or after members are skipped (tape padding); anything else
    after a member must start a new one.
    """

    def __init__(self, raw: IO[bytes], kind: FileType, max_size: int) -> None:
        self._raw = raw
        self._kind = kind
        self._max = max_size
        self._total = 0
        self._input = b""  # compressed bytes not yet given to a decompressor
        self._dec: _Decompressor | None = self._new()
        self._done = False

    def _new(self) -> _Decompressor:
        if self._kind is FileType.GZIP:
            inflate = inflate_module()
            return inflate.decompressobj(16 + inflate.MAX_WBITS)  # type: ignore[no-any-return]
        if self._kind is FileType.BZIP2:
            return bz2.BZ2Decompressor()
        if self._kind is FileType.ZSTD:
            return _ZstdFrame()
        return lzma.LZMADecompressor()

    def read(self, size: int = -1) -> bytes:
        want = _READ_SIZE if size is None or size < 0 else size
        while not self._done:
            dec = self._dec
            # bz2/lzma buffer input themselves; zlib hands it back in unconsumed_tail.
            buffered = dec is not None and not getattr(dec, "needs_input", True)
            if not self._input and not buffered:
                # Input for about *want* bytes of output (deflate shrinks a tar ~4x).
                self._input = self._raw.read(max(_READ_SIZE, want // 4))
                if not self._input:
                    if dec is not None:
                        raise ImageError(f"truncated {self._kind} stream")
                    self._done = True
                    break
            if dec is None:
                data = self._input.lstrip(b"\x00")
                if not data:
                    self._input = b""
                    continue
                magic = _MEMBER_MAGIC[self._kind]
                if data[: len(magic)] != magic[: len(data[: len(magic)])]:
                    raise ImageError(f"garbage after the end of the {self._kind} stream")
                self._input = data
                dec = self._dec = self._new()
            try:
                out = dec.decompress(self._input, want)
            except (zlib.error, inflate_module().error, OSError, EOFError, lzma.LZMAError) as err:
                raise ImageError(f"corrupt {self._kind} stream: {err}") from None
            if dec.eof:
                self._input = dec.unused_data
                self._dec = None
            else:
                self._input = getattr(dec, "unconsumed_tail", b"")
            if out:
                self._total += len(out)
                if self._total > self._max:
                    raise ImageError(
                        f"uncompressed image larger than the limit of {self._max} bytes"
                    )
                return out
        return b""


class _LimitedReader:
    def __init__(self, raw: IO[bytes], max_size: int) -> None:
        self._raw = raw
        self._max = max_size
        self._total = 0

    def read(self, size: int = -1) -> bytes:
        out = self._raw.read(_READ_SIZE if size is None or size < 0 else size)
        self._total += len(out)
        if self._total > self._max:
            raise ImageError(f"image larger than the limit of {self._max} bytes")
        return out


def decompressing_reader(raw: IO[bytes], kind: FileType, *, max_size: int | None = None) -> Any:
    """Return a reader of the uncompressed bytes of *raw*, compressed as *kind*.

    :param max_size: the most uncompressed bytes (default: :func:`max_image_size`).
    :raises ImageError: (when read) for corrupt or truncated data, garbage after the
        last member, or more than *max_size* uncompressed bytes.
    """
    if max_size is None:
        max_size = max_image_size()
    if kind is FileType.TAR:
        return _LimitedReader(raw, max_size)
    if kind in (FileType.GZIP, FileType.BZIP2, FileType.XZ, FileType.ZSTD):
        return _MemberReader(raw, kind, max_size)
    raise ImageError(f"unknown image filetype {kind}")


class PlainWriter:
    """Pass bytes straight to the output file (``--no-compression``)."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out

    def write(self, data: bytes | memoryview) -> None:
        self._out.write(data)

    def close(self) -> None:
        """Nothing to flush beyond the file itself."""


def _gzip_member(data: bytes, level: int, mtime: int) -> bytes:
    deflate = deflate_module()
    compressor = deflate.compressobj(level, deflate.DEFLATED, -deflate.MAX_WBITS, 9)
    body = compressor.compress(data) + compressor.flush()
    xfl = 2 if level == 9 else 4 if level == 1 else 0
    header = struct.pack("<BBBBIBB", 0x1F, 0x8B, 8, 0, mtime, xfl, 255)
    trailer = struct.pack("<II", deflate.crc32(data), len(data) & 0xFFFFFFFF)
    member: bytes = header + body + trailer
    return member


class ParallelGzipWriter:
    """Write gzip as independent members compressed in a thread pool, in order.

    Memory stays bounded: at most ``threads + 1`` blocks are in flight (one waiting
    for each thread that finishes, more bought no speed).  Each member
    header carries *mtime* (0 by default) and no file name, so output is reproducible.
    """

    def __init__(
        self,
        out: IO[bytes],
        *,
        level: int = 6,
        threads: int | None = None,
        block_size: int = GZIP_BLOCK_SIZE,
        mtime: int = 0,
    ) -> None:
        self._out = out
        self._level = level
        self._mtime = mtime
        self._block_size = block_size
        self._threads = threads or max(1, os.cpu_count() or 1)
        self._pool = concurrent.futures.ThreadPoolExecutor(self._threads, "appc-gzip")
        self._inflight: deque[concurrent.futures.Future[bytes]] = deque()
        self._buffer = bytearray()

    def write(self, data: bytes | memoryview) -> None:
        self._buffer += data
        while len(self._buffer) >= self._block_size:
            with memoryview(self._buffer) as view:  # one copy, not a slice and a copy
                block = bytes(view[: self._block_size])
            del self._buffer[: self._block_size]
            self._submit(block)

    def _submit(self, block: bytes) -> None:
        self._inflight.append(self._pool.submit(_gzip_member, block, self._level, self._mtime))
        while len(self._inflight) > self._threads + 1:
            self._out.write(self._inflight.popleft().result())

    def close(self) -> None:
        """Compress what is buffered and write every pending member."""
        try:
            if self._buffer or not self._inflight:
                self._submit(bytes(self._buffer))
                self._buffer.clear()
            while self._inflight:
                self._out.write(self._inflight.popleft().result())
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> None:
        """Drop pending work (after an error)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
