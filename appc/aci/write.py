"""Writing image archives: tar framing, SHA-512 and compression in one pass, atomically.

:class:`ImageWriter` takes entries (``tarfile.TarInfo`` headers plus contents) and
streams them through the image-ID hash into the compressor; :func:`atomic_output`
writes to a file without a name (``O_TMPFILE``) and links it into place only when the
whole image was written, so a failed, interrupted or killed build leaves no partial
``.aci`` and no temporary file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import queue
import secrets
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from typing import IO

from appc.aci._compress import Compression, ParallelGzipWriter, PlainWriter
from appc.errors import ImageError
from appc.types.hash import Hash

__all__ = ["DEFAULT_LEVEL", "ImageWriter", "PendingOutput", "atomic_output", "tar_header"]


def __dir__() -> list[str]:
    return __all__


#: The default gzip level (6, as ``gzip`` itself; tarfile's default of 9 is 7x slower).
DEFAULT_LEVEL = 6
_BLOCK = tarfile.BLOCKSIZE
_CHUNK = 1024 * 1024
_AHEAD = 4  # chunks queued for the hashing/compressing thread


_NUL = b"\0"
_USTAR_MAGIC = b"ustar\x0000"


def _octal(value: int, digits: int) -> bytes:
    return b"%0*o\0" % (digits - 1, value)


def _text(value: str, length: int) -> bytes | None:
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError:
        return None
    return raw + _NUL * (length - len(raw)) if len(raw) <= length else None


def _fast_header(info: tarfile.TarInfo, name: str) -> bytes | None:
    """The USTAR header of a plain entry, byte for byte what ``tarfile`` writes for it in
    PAX format; ``None`` when the entry needs PAX records (long or non-ASCII names,
    xattrs, large numbers, fractional times)."""
    if info.pax_headers or not isinstance(info.mtime, int):
        return None
    fields = (
        _text(name, 100),
        _text(info.linkname, 100),
        _text(info.uname, 32),
        _text(info.gname, 32),
    )
    name_field, link_field, uname_field, gname_field = fields
    if name_field is None or link_field is None or uname_field is None or gname_field is None:
        return None
    if not 0 <= info.uid < 8**7 or not 0 <= info.gid < 8**7:
        return None
    if not 0 <= info.size < 8**11 or not 0 <= info.mtime < 8**11:
        return None
    if info.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        devices = _octal(info.devmajor, 8) + _octal(info.devminor, 8)
    else:
        devices = _NUL * 16
    header = b"".join(
        (
            name_field,
            _octal(info.mode & 0o7777, 8),
            _octal(info.uid, 8),
            _octal(info.gid, 8),
            _octal(info.size, 12),
            _octal(info.mtime, 12),
            b"        ",
            info.type,
            link_field,
            _USTAR_MAGIC,
            uname_field,
            gname_field,
            devices,
            _NUL * 167,
        )
    )
    checksum = b"%06o\0" % sum(header)
    return header[:148] + checksum + header[155:]


def tar_header(info: tarfile.TarInfo) -> bytes:
    """The header block(s) of *info*: USTAR, with PAX records only where needed.

    Unlike ``TarInfo.tobuf`` no ``/`` is appended to directory names: like the
    reference, ``tar tf`` lists ``rootfs``, not ``rootfs/``.  Plain entries take a fast
    path that writes the same bytes as ``tarfile`` (whose per-entry work dominated the
    build profile).
    """
    name = info.name.rstrip("/") or info.name
    fast = _fast_header(info, name)
    if fast is not None:
        return fast
    fields = dict(info.get_info())
    fields["name"] = name
    return info.create_pax_header(fields, "utf-8")


class ImageWriter:
    """Write an image archive entry by entry; :meth:`close` returns the image ID.

    :param out: the binary file to write the (compressed) archive to.
    :param compression: ``"gzip"`` (parallel independent members) or ``"none"``.
    :param level: the gzip level, 1 (fast) to 9 (small).
    :param threads: compression threads (default: one per CPU).

    Entries are written as given; the archive ends with two zero blocks, as Go's tar
    writer does (no padding to a 10 KiB record, which would change the image ID).
    """

    def __init__(
        self,
        out: IO[bytes],
        *,
        compression: str = Compression.GZIP,
        level: int = DEFAULT_LEVEL,
        threads: int | None = None,
    ) -> None:
        if compression == Compression.GZIP:
            if not 1 <= level <= 9:
                raise ValueError(f"gzip level must be 1-9, not {level}")
            self._sink: ParallelGzipWriter | PlainWriter = ParallelGzipWriter(
                out, level=level, threads=threads
            )
        elif compression == Compression.NONE:
            self._sink = PlainWriter(out)
        else:
            raise ValueError(f"unknown compression {compression!r} (gzip or none)")
        self._hash = hashlib.sha512()
        self._pending: list[bytes] = []  # headers and contents not yet handed over
        self._pending_size = 0
        # A second thread joins, hashes and compresses (or writes) chunks of about 1 MiB
        # while this one walks and frames: sha512 and the compressors release the GIL,
        # and this thread copies nothing (the join happens over there).
        self._chunks: queue.Queue[list[bytes] | None] = queue.Queue(_AHEAD)
        self._failure: BaseException | None = None
        self._worker = threading.Thread(target=self._drain, name="appc-image-writer", daemon=True)
        self._worker.start()
        self.entries = 0
        self.size = 0  # uncompressed bytes written

    def _drain(self) -> None:
        while True:
            parts = self._chunks.get()
            if parts is None:
                return
            if self._failure is not None:
                continue  # keep taking chunks so the producer never blocks forever
            try:
                chunk = parts[0] if len(parts) == 1 else b"".join(parts)
                self._hash.update(chunk)
                self._sink.write(chunk)
            except BaseException as err:  # handed to the producing thread
                self._failure = err

    def _check(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            self._chunks.put(None)
            raise failure

    def _write(self, data: bytes) -> None:
        self._pending.append(data)
        self._pending_size += len(data)
        self.size += len(data)
        if self._pending_size >= _CHUNK:
            self._hand_over()

    def _hand_over(self) -> None:
        self._check()
        self._chunks.put(self._pending)
        self._pending = []
        self._pending_size = 0

    def add(self, info: tarfile.TarInfo, content: IO[bytes] | None = None) -> None:
        """Append one entry; *content* supplies exactly ``info.size`` bytes for a regular file.

        :raises ImageError: when *content* gives fewer or more bytes than ``info.size``.
        """
        self._write(tar_header(info))
        self.entries += 1
        if not info.isreg() or info.size == 0:
            return
        if content is None:
            raise ImageError(f"no content given for {info.name!r}")
        remaining = info.size
        while remaining:
            data = content.read(min(remaining, _CHUNK))
            if not data:
                raise ImageError(f"{info.name!r} shrank while it was being read")
            self._write(data)
            remaining -= len(data)
        if content.read(1):
            raise ImageError(f"{info.name!r} grew while it was being read")
        padding = -info.size % _BLOCK
        if padding:
            self._write(bytes(padding))

    def add_bytes(self, info: tarfile.TarInfo, data: bytes) -> None:
        """Append a regular file whose contents are *data* (``info.size`` is set from it)."""
        import io  # noqa: PLC0415

        info.size = len(data)
        self.add(info, io.BytesIO(data))

    def close(self) -> Hash:
        """End the archive, flush the compressor and return the image ID."""
        self._write(bytes(2 * _BLOCK))
        if self._pending:
            self._hand_over()
        self._chunks.put(None)
        self._worker.join()
        self._check()
        self._sink.close()
        return Hash.from_digest(self._hash.hexdigest())

    def abort(self) -> None:
        """Stop the worker and compression threads after an error (the output is then discarded)."""
        if self._worker.is_alive():
            self._failure = self._failure or ImageError("aborted")
            self._chunks.put(None)
            self._worker.join()
        if isinstance(self._sink, ParallelGzipWriter):
            self._sink.abort()


class PendingOutput:
    """A file being written for *path* that gets its name only by :meth:`publish`.

    The data goes to a file without a name in the target's directory (``O_TMPFILE``),
    so even ``kill -9`` leaves nothing behind.  A filesystem without ``O_TMPFILE`` gets
    a hidden temporary file beside the target instead (removed by :meth:`close` when not
    published; only a kill can leave it).  Several pending outputs published one after
    the other appear (almost) together: ``docker2aci -nosquash``'s layer ACIs.

    :param overwrite: :meth:`publish` replaces an existing *path* (by ``rename(2)``:
        readers see the old file or the new one).
    :param durable: ``fsync`` the data before naming the file, so that even a power
        failure cannot leave the name with partial content.  Off by default, like
        ``tar`` and ``gzip``: the name already appears only once the data is written
        (a killed process leaves nothing), and the flush cost a fifth of a build.
    :raises OSError: the file cannot be created.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, overwrite: bool = False, durable: bool = False
    ) -> None:
        self.target = os.fspath(path)
        self.overwrite = overwrite
        self.durable = durable
        self.published = False
        self._synced = False
        directory = os.path.dirname(os.path.abspath(self.target))
        self._tmp: str | None = None  # the named temporary file, without O_TMPFILE
        try:
            # The kernel applies the umask to the mode, as for any new file.
            self._fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o644)
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
            self._fd, self._tmp = tempfile.mkstemp(
                prefix=f".{os.path.basename(self.target)}.", suffix=".tmp", dir=directory
            )
        #: The buffered binary stream to write to.
        self.file: IO[bytes] = os.fdopen(self._fd, "wb", closefd=False)

    def sync(self) -> None:
        """Flush the data to disk (:meth:`publish` does it too, if not done before).

        :raises OSError: an I/O error (no space).
        """
        if not self._synced:
            self.file.flush()
            if self.durable:
                os.fsync(self._fd)
            self._synced = True

    def publish(self) -> None:
        """Flush the data to disk and give the file its name.

        To name several files at (almost) the same moment, :meth:`sync` them all first:
        the flush is what takes time.

        :raises ImageError: the target exists (without *overwrite*).
        :raises OSError: an I/O error.
        """
        self.sync()
        if self._tmp is None:
            _link_into_place(self._fd, self.target, overwrite=self.overwrite, durable=self.durable)
        else:
            os.chmod(self._tmp, 0o644 & ~_umask())
            if not self.overwrite and os.path.lexists(self.target):
                raise ImageError("target file exists (try --overwrite)", source=self.target)
            os.replace(self._tmp, self.target)
            self._tmp = None
        self.published = True

    def close(self) -> None:
        """Close the file; one never published disappears (idempotent)."""
        if self._fd < 0:
            return
        with contextlib.suppress(OSError, ValueError):
            self.file.close()
        os.close(self._fd)
        self._fd = -1
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            self._tmp = None


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[IO[bytes]]:
    """Write *path* atomically: it appears complete, or not at all — not even a
    temporary file is left by ``kill -9`` (see :class:`PendingOutput`).

    :raises ImageError: when *path* exists and *overwrite* is false, or on an I/O error
        (``cannot write output: No space left on device``).
    """
    target = os.fspath(path)
    if not overwrite and os.path.lexists(target):
        raise ImageError("target file exists (try --overwrite)", source=target)
    try:
        pending = PendingOutput(target, overwrite=overwrite)
    except OSError as err:
        raise ImageError(f"cannot create output: {err.strerror or err}", source=target) from None
    try:
        yield pending.file
        pending.publish()
    except OSError as err:
        raise ImageError(f"cannot write output: {err.strerror or err}", source=target) from None
    finally:
        pending.close()


def _link_into_place(fd: int, target: str, *, overwrite: bool, durable: bool = False) -> None:
    """Give the anonymous file *fd* the name *target* (replacing it with *overwrite*)."""
    directory, name = os.path.split(os.path.abspath(target))
    source = f"/proc/self/fd/{fd}"
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # With dst_dir_fd, os.link is linkat(AT_SYMLINK_FOLLOW): it links the file the
        # /proc symlink stands for (plain link(2) would try the symlink itself).
        if not overwrite:
            try:
                os.link(source, name, dst_dir_fd=dir_fd)
            except FileExistsError:
                raise ImageError("target file exists (try --overwrite)", source=target) from None
        else:
            while True:  # a hidden name for an instant, then rename(2) over the target
                temporary = f".{name}.{secrets.token_hex(6)}.tmp"
                try:
                    os.link(source, temporary, dst_dir_fd=dir_fd)
                    break
                except FileExistsError:  # pragma: no cover - the name is random
                    continue
            try:
                os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary, dir_fd=dir_fd)
                raise
        if durable:
            with contextlib.suppress(OSError):
                os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _umask() -> int:
    # Read the umask without os.umask(), which would change it for every thread meanwhile.
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022
