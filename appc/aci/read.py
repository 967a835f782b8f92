"""Reading image archives in one streaming pass: entries, the manifest, the image ID.

An image is never read whole into memory and never decompressed twice: the
decompressed bytes flow through a SHA-512 as ``tarfile`` parses them, so the image ID
(``sha512-`` + the hash of the *uncompressed* tar) is known when the walk ends.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import queue
import tarfile
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import IO, Any, cast

from appc.aci._compress import decompressing_reader, max_image_size
from appc.aci.filetype import SNIFF_SIZE, detect_file_type
from appc.errors import ImageError
from appc.types.hash import Hash

__all__ = [
    "MAX_COMPONENT_BYTES",
    "MAX_DEPTH",
    "MAX_EXTENDED_HEADER_SIZE",
    "MAX_MANIFEST_SIZE",
    "MAX_NAME_BYTES",
    "BoundedTarInfo",
    "ImageReader",
    "clean_name",
    "name_limit_reason",
    "compute_image_id",
    "read_manifest",
    "read_manifest_bytes",
    "rootfs_relative",
    "unsafe_name_reason",
]


def __dir__() -> list[str]:
    return __all__


#: A manifest entry larger than this is refused (real manifests are a few KB).
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
#: The largest PAX extended header or GNU long name/link accepted.  ``tarfile`` reads
#: one whole into memory: a megabyte of gzip could otherwise claim gigabytes.  Real ones
#: hold a name (at most 4 KiB) and a file's xattrs (Linux: 64 KiB of them).
MAX_EXTENDED_HEADER_SIZE = 1024 * 1024
#: The longest entry name or link target (bytes): what Linux takes as a path (PATH_MAX - 1).
MAX_NAME_BYTES = 4095
#: The longest component of an entry name (bytes): what Linux file systems take (NAME_MAX).
MAX_COMPONENT_BYTES = 255
#: The most components an entry name may have.  Deeper trees could not be removed or
#: walked by recursive code (Python's ``shutil.rmtree``) and serve no real image.
MAX_DEPTH = 256
#: What ``tarfile`` raises on hostile headers: its own errors, and ``ValueError`` from
#: the numbers of malformed PAX records (``GNU.sparse.map=``) it does not check.
_TAR_ERRORS = (tarfile.TarError, EOFError, ValueError, OverflowError)
_TAIL = 64 * 1024
_CHUNK = 1024 * 1024
_FETCH = 2 * 1024 * 1024  # the chunk size: large, so that the stages seldom meet at the GIL
_FIRST_FETCH = 64 * 1024


def clean_name(name: str) -> str:
    """Clean an entry name as Go's ``filepath.Clean``: ``./manifest`` → ``manifest``, ``rootfs/`` → ``rootfs``."""
    cleaned = posixpath.normpath(name) if name else "."
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def rootfs_relative(name: str) -> str | None:
    """A cleaned entry name relative to ``rootfs/`` (``""`` for ``rootfs`` itself), or
    ``None`` for a name outside it (``manifest``)."""
    if name == "rootfs":
        return ""
    if name.startswith("rootfs/"):
        return name[len("rootfs/") :]
    return None


def unsafe_name_reason(name: str) -> str | None:
    """Say why an entry name must never be written (absolute, or climbing with ``..``), else ``None``."""
    if name.startswith("/"):
        return "absolute path"
    if ".." in name.split("/"):
        return "path with '..'"
    return None


def name_limit_reason(name: str, *, link: bool = False) -> str | None:
    """Say why an entry name (or with *link*, a symlink target) could never be written on
    Linux or would be too deep to handle, else ``None``.

    Names are measured in bytes as they stand in the archive (UTF-8, or the raw bytes of
    a name that is not UTF-8).
    """
    raw = name.encode("utf-8", "surrogateescape")
    what = "link target" if link else "file path"
    if len(raw) > MAX_NAME_BYTES:
        return f"{what} longer than {MAX_NAME_BYTES} bytes"
    if link:
        return None
    parts = raw.split(b"/")
    if any(len(part) > MAX_COMPONENT_BYTES for part in parts):
        return f"file name component longer than {MAX_COMPONENT_BYTES} bytes"
    if len(parts) > MAX_DEPTH:
        return f"file path deeper than {MAX_DEPTH} directories"
    return None


class BoundedTarInfo(tarfile.TarInfo):
    """``tarfile``'s header parsing, without its unbounded reads (``tarinfo=`` of ``tarfile.open``).

    Extended headers (PAX records, GNU long names and links) larger than
    :data:`MAX_EXTENDED_HEADER_SIZE` are refused before ``tarfile`` reads them whole, and
    sparse files — which images may not hold — before it reads their maps (GNU
    continuation blocks, or PAX 1.0 maps in the data: a list that grows with the input).

    :raises ImageError: from the iteration of the archive.
    """

    def _proc_gnulong(self, tarfile: Any) -> Any:
        self._check_extended_size()
        return super()._proc_gnulong(tarfile)  # type: ignore[misc]

    def _proc_pax(self, tarfile: Any) -> Any:
        self._check_extended_size()
        return super()._proc_pax(tarfile)  # type: ignore[misc]

    def _proc_sparse(self, tarfile: Any) -> Any:
        raise ImageError(f"unsupported entry type {self.type!r} (sparse file) for {self.name!r}")

    def _proc_gnusparse_10(self, next: Any, pax_headers: Any, tarfile: Any) -> Any:
        raise ImageError(f"unsupported entry type (PAX sparse file) for {next.name!r}")

    def _check_extended_size(self) -> None:
        if self.size > MAX_EXTENDED_HEADER_SIZE:
            raise ImageError(
                f"tar extended header of {self.size} bytes (limit {MAX_EXTENDED_HEADER_SIZE})"
            )


class _HashingReader:
    """Hash every byte of the stream, count and remember the last few bytes handed out.

    Three stages on their own threads, a few chunks apart: one decompresses (zlib,
    lzma, zstd release the GIL), one hashes (and writes the tee; hashlib releases the
    GIL too), and the caller's thread parses the hashed chunks in the small reads
    ``tarfile`` makes.  Chunks are large so that the stages seldom wait for the GIL
    while the parser holds it; memory stays bounded by the queues.
    """

    _AHEAD = 2  # chunks a stage may run ahead of the next

    def __init__(self, raw: Any, tee: IO[bytes] | None = None) -> None:
        self._raw = raw
        self._tee = tee
        self.hasher = hashlib.sha512()
        self.count = 0  # bytes handed out
        self.tail = bytearray()  # the last bytes handed out
        self._chunk = b""
        self._pos = 0
        self._eof = False
        self._stop = threading.Event()
        self._inflated: queue.Queue[bytes | BaseException] = queue.Queue(self._AHEAD)
        self._hashed: queue.Queue[bytes | BaseException] = queue.Queue(self._AHEAD)
        self._workers = [
            threading.Thread(target=self._produce, name="appc-decompress", daemon=True),
            threading.Thread(target=self._hash, name="appc-hash", daemon=True),
        ]
        for worker in self._workers:
            worker.start()

    def _put(self, into: queue.Queue[bytes | BaseException], item: bytes | BaseException) -> bool:
        while not self._stop.is_set():
            try:
                into.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, source: queue.Queue[bytes | BaseException]) -> bytes | BaseException | None:
        while not self._stop.is_set():
            try:
                return source.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def _produce(self) -> None:
        # Small chunks first, so that a read that stops at the manifest (usually the
        # first entries) decompresses little more than it needs.
        size = _FIRST_FETCH
        try:
            while not self._stop.is_set():
                data: bytes = self._raw.read(size)
                size = min(2 * size, _FETCH)
                if not self._put(self._inflated, data) or not data:
                    return
        except BaseException as err:  # handed down the pipeline to the reading thread
            self._put(self._inflated, err)

    def _hash(self) -> None:
        while True:
            item = self._get(self._inflated)
            if item is None:
                return
            if isinstance(item, bytes) and item:
                try:
                    self.hasher.update(item)
                    if self._tee is not None:
                        self._tee.write(item)
                except BaseException as err:
                    item = err
            if not self._put(self._hashed, item) or not isinstance(item, bytes) or not item:
                return

    def _fill(self) -> bool:
        if self._eof:
            return False
        item = self._hashed.get()
        if isinstance(item, BaseException):
            self._eof = True
            raise item
        if not item:
            self._eof = True
            return False
        self._chunk, self._pos = item, 0
        return True

    def read(self, size: int = -1) -> bytes:
        """Return *size* bytes (all that is left if fewer: only at the end of the stream);
        a negative *size* reads up to 64 KiB, not the whole stream."""
        if size is None or size < 0:
            size = _TAIL
        parts: list[bytes] = []
        while size > 0 and (self._pos < len(self._chunk) or self._fill()):
            part = self._chunk[self._pos : self._pos + size]
            self._pos += len(part)
            size -= len(part)
            parts.append(part)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self.count += len(data)
        self.tail += data
        if len(self.tail) > 2 * _TAIL:
            del self.tail[:-_TAIL]
        return data

    def tell(self) -> int:
        """The offset of the next byte read."""
        return self.count

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Skip forward to *offset* (hashed all the same); past the end, stop at the end.

        ``tarfile``'s random-access mode (``r:``) skips member data through this, at a
        fraction of the cost of its stream mode's reads, which copy every block.

        :raises tarfile.StreamError: a seek backwards.
        """
        if whence != os.SEEK_SET or offset < self.count:
            raise tarfile.StreamError("seeking backwards is not allowed")
        skip = offset - self.count
        while skip > 0 and (self._pos < len(self._chunk) or self._fill()):
            step = min(skip, len(self._chunk) - self._pos)
            self._pos += step
            self.count += step
            skip -= step
        return self.count

    def close(self) -> None:
        """Stop the workers (when the reader is abandoned before the end)."""
        self._stop.set()
        for worker in self._workers:
            worker.join()


class ImageReader:
    """One pass over an image archive (gzip, bzip2, xz, zstd or plain tar).

    Use as a context manager; iterate :meth:`entries`, read the current entry with
    :meth:`read_entry`, then call :meth:`finish` for the image ID::

        with ImageReader("hello.aci") as image:
            for info, name in image.entries():
                ...
            image_id = image.finish()

    :param source: a path, or a binary file positioned at the start of the image.
    :param max_size: the most uncompressed bytes accepted (a decompression-bomb guard;
        default: :func:`~appc.aci._compress.max_image_size`).
    :param tee: a binary file that receives every uncompressed byte as it is read (the
        image store keeps that copy: decompress, check, hash and store in one pass);
        after :meth:`finish` it holds exactly the bytes the image ID was computed over.
    :raises ImageError: for an unreadable file, an unknown format, corrupt or
        truncated data, or non-zero bytes after the end of the tar archive.
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | IO[bytes],
        *,
        max_size: int | None = None,
        tee: IO[bytes] | None = None,
    ) -> None:
        limit = max_image_size() if max_size is None else max_size
        self.source = (
            os.fspath(source)
            if isinstance(source, (str, os.PathLike))
            else getattr(source, "name", "<stream>")
        )
        self._owned: IO[bytes] | None = None
        try:
            raw: IO[bytes]
            if isinstance(source, (str, os.PathLike)):
                self._owned = raw = open(source, "rb")
            else:
                raw = source
            head = raw.read(SNIFF_SIZE)
        except OSError as err:
            self.close()
            raise ImageError(err.strerror or str(err), source=str(self.source)) from None
        self.kind = detect_file_type(head)
        if not self.kind.is_archive:
            self.close()
            raise ImageError("unknown image filetype", source=str(self.source))
        prefixed = cast(IO[bytes], _Prefixed(head, raw))  # it only needs read()
        self._stream = _HashingReader(
            decompressing_reader(prefixed, self.kind, max_size=limit), tee
        )
        self._tar: tarfile.TarFile | None = None
        self._finished: Hash | None = None

    def __enter__(self) -> ImageReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading, and close the file if this reader opened it."""
        stream = getattr(self, "_stream", None)
        if stream is not None:
            stream.close()
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def _error(self, message: str) -> ImageError:
        return ImageError(message, source=str(self.source))

    def entries(self) -> Iterator[tuple[tarfile.TarInfo, str]]:
        """Yield each entry's header and cleaned name, in archive order."""
        try:
            self._tar = tarfile.open(
                fileobj=self._stream,
                mode="r:",
                encoding="utf-8",
                errors="surrogateescape",
                tarinfo=BoundedTarInfo,
            )  # type: ignore[call-overload]
            for info in self._tar:
                _forget_headers(self._tar)
                yield info, clean_name(info.name)
        except ImageError as err:
            raise self._error(err.message) from None
        except _TAR_ERRORS as err:
            raise self._error(f"corrupt tar archive: {err}") from None

    def read_entry(self, info: tarfile.TarInfo, *, limit: int) -> bytes:
        """Read the current entry's contents; more than *limit* bytes is an error."""
        if info.size > limit:
            raise self._error(f"{info.name!r} is too large ({info.size} bytes, limit {limit})")
        assert self._tar is not None
        member = self._tar.extractfile(info)
        if member is None:
            return b""
        try:
            data = member.read()
        except ImageError as err:
            raise self._error(err.message) from None
        except (*_TAR_ERRORS, OSError) as err:
            raise self._error(f"corrupt tar archive: {err}") from None
        if len(data) != info.size:
            raise self._error(f"truncated tar archive in {info.name!r}")
        return data

    def member(self, info: tarfile.TarInfo) -> IO[bytes]:
        """A file object over the current regular entry's contents (valid until the next entry).

        Read errors surface as :class:`ImageError`.
        """
        assert self._tar is not None
        member = self._tar.extractfile(info)
        if member is None:
            raise self._error(f"{info.name!r} is not a regular file")
        return cast(IO[bytes], _MemberFile(member, self))  # read() and readinto() are enough

    def finish(self) -> Hash:
        """Read to the end of the stream and return the image ID.

        Entries not yet walked are skipped (and hashed).  After the tar's end, only zero
        bytes may follow: anything else is refused, as it would be an image ID over
        bytes nobody sees.
        """
        if self._finished is not None:
            return self._finished
        if self._tar is None:
            for _ in self.entries():
                pass
        assert self._tar is not None
        try:
            for _ in self._tar:  # skip what the caller did not walk
                _forget_headers(self._tar)
            end = self._tar.offset
            beyond = self._stream.count - end
            if beyond > len(self._stream.tail):
                raise self._error("corrupt tar archive: lost track of the end of the archive")
            after = bytes(self._stream.tail[len(self._stream.tail) - beyond :]) if beyond else b""
            while True:
                if after.strip(b"\x00"):
                    raise self._error(
                        f"corrupt tar archive: truncated or invalid header, or data after the end "
                        f"of the archive (offset {end})"
                    )
                after = self._stream.read(_CHUNK)
                if not after:
                    break
        except ImageError as err:
            raise self._error(err.message) from None
        except _TAR_ERRORS as err:
            raise self._error(f"corrupt tar archive: {err}") from None
        self._finished = Hash.from_digest(self._stream.hasher.hexdigest())
        return self._finished


def _forget_headers(tar: tarfile.TarFile) -> None:
    """Drop the headers ``tarfile`` keeps of every entry it read.

    A forward-only walk never needs them back, and they cost about half a kilobyte an
    entry (150 MB for an archive of 300,000 empty files, gzip: 2 MB).  Its iterator asks
    for the next header once its list is used up, so the walk goes on unchanged.
    (``getmembers()`` would read the whole archive first; typeshed omits ``members``.)
    """
    tar.members.clear()  # type: ignore[attr-defined]


class _MemberFile:
    """Wrap a tar member's reader so that corrupt data raises :class:`ImageError`."""

    def __init__(self, member: IO[bytes], image: ImageReader) -> None:
        self._member = member
        self._image = image

    def _call(self, method: Any, arg: Any) -> Any:
        try:
            return method(arg)
        except ImageError as err:
            raise self._image._error(err.message) from None
        except _TAR_ERRORS as err:
            raise self._image._error(f"corrupt tar archive: {err}") from None

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._call(self._member.read, size)
        return data

    def readinto(self, buffer: Any) -> int:
        count: int = self._call(self._member.readinto, buffer)  # type: ignore[attr-defined]
        return count


class _Prefixed:
    """A binary reader that first returns *head* (bytes already read for detection)."""

    def __init__(self, head: bytes, raw: IO[bytes]) -> None:
        self._head = head
        self._raw = raw

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size is None or size < 0 or size >= len(self._head):
                head, self._head = self._head, b""
                rest = (
                    self._raw.read(size - len(head))
                    if size is not None and size > len(head)
                    else b""
                )
                return head + rest
            head, self._head = self._head[:size], self._head[size:]
            return head
        return self._raw.read(size)


def read_manifest_bytes(
    source: str | os.PathLike[str] | IO[bytes], *, max_size: int | None = None
) -> bytes:
    """Return the raw bytes of the first entry named ``manifest`` (stops reading there).

    :raises ImageError: ``missing manifest`` when there is none, or if it is not a file.
    """
    with ImageReader(source, max_size=max_size) as image:
        for info, name in image.entries():
            if name == "manifest":
                if not info.isreg():
                    raise ImageError("manifest is not a regular file", source=str(image.source))
                return image.read_entry(info, limit=MAX_MANIFEST_SIZE)
        image.finish()  # a corrupt header ends tarfile's walk early: say so, not "missing"
        raise ImageError("missing manifest", source=str(image.source))


def read_manifest(source: str | os.PathLike[str] | IO[bytes]) -> Any:
    """Return the :class:`~appc.schema.ImageManifest` of an image (not otherwise validated).

    :raises ImageError: no manifest; :raises appc.errors.InvalidManifest: a bad one.
    """
    from appc.schema.image import ImageManifest  # noqa: PLC0415 - keep reading import-light

    return ImageManifest.from_json(read_manifest_bytes(source))


def compute_image_id(
    source: str | os.PathLike[str] | IO[bytes], *, max_size: int | None = None
) -> Hash:
    """Return the image ID of an archive: ``sha512-`` + hex SHA-512 of its uncompressed tar."""
    with ImageReader(source, max_size=max_size) as image:
        return image.finish()
