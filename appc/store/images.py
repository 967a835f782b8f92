"""The content-addressed image store (rkt's ``cas/``): blobs, manifests and an sqlite index.

Layout under the data directory (rkt's ``--dir``, default ``/var/lib/rkt``)::

    cas/blob/sha512/<2 hex>/<key>           the image as an uncompressed tar
    cas/imageManifest/sha512/<2 hex>/<key>  its manifest, the archive's own bytes
    cas/db/store.sqlite                     the index (see appc.store.db)
    cas/db-backups/                         copies made before a schema migration
    cas/imagelocks/<key>                    per-image key locks
    cas/treestorelocks/<tree id>            per-tree key locks (appc.store.tree)
    cas/tree/<tree id>/                     rendered trees (appc.store.tree)
    cas/tmp/                                temporary files, on the store's filesystem

A **key** is ``sha512-`` + the first 64 hex digits of the image ID's digest (half the
SHA-512, rkt's scheme, to keep paths short); the full image ID is kept in the index.

**Import** is one streaming pass: the source (any compression :class:`ImageReader`
knows) is decompressed, every entry is checked with the archive rules
(:class:`~appc.aci.validate.EntryChecker`), and the uncompressed bytes are hashed and
written to a temporary file in ``cas/tmp`` at the same time.  Then, under the image's
exclusive key lock, the file is renamed to its blob path, the manifest is written
(temporary file + rename) and the index rows are written in **one** sqlite
transaction.

**Crash safety.**  Every temporary file is held under an exclusive ``flock`` by the
process writing it, so a cleaner can tell an abandoned file (lock free: its owner
died) from a busy one.  Before an import renames a blob into place, and before a
removal deletes rows, it writes an *intent* file ``cas/tmp/<id>.key`` naming the key
(also locked).  Opening the store removes abandoned temporary files and, for each
abandoned intent, deletes the blob and manifest of that key if no index row refers to
it.  So after ``kill -9`` at any point the next opening leaves no row without its
blob and no blob without its row; :meth:`ImageStore.check` reports any such
inconsistency.

**Concurrency** follows rkt: every :class:`ImageStore` holds a shared ``flock`` on
``cas/`` for its life (a schema migration takes it exclusive); writing or removing an
image takes its key lock exclusive, opening a blob takes it shared; sqlite runs in WAL
mode with a busy timeout.  Several processes importing the same image leave exactly
one row and one blob.  An :class:`ImageStore` must not cross a ``fork``: a child
process opens its own.

Bad images raise :class:`~appc.errors.ImageError` (naming the source); everything the
store itself cannot do raises :class:`~appc.errors.StoreError`.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as _dt
import errno
import json
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import IO, Any

import attrs

from appc._fs import makedirs, rmtree
from appc.aci.read import MAX_MANIFEST_SIZE, ImageReader
from appc.aci.validate import EntryChecker
from appc.errors import ImageError, StoreError, ValidationError
from appc.schema.image import ImageManifest
from appc.store.db import DB_FILE, DB_VERSION, Database
from appc.store.locks import FileLock, KeyLock, LockBusy, lock_directory, new_locked_directory
from appc.types.hash import Hash

__all__ = [
    "DEFAULT_DATA_DIR",
    "KEY_LENGTH",
    "MIN_KEY_LENGTH",
    "ImageStore",
    "RemoteInfo",
    "StoredImage",
    "is_key",
    "key_for",
]


def __dir__() -> list[str]:
    return __all__


#: rkt's default data directory.
DEFAULT_DATA_DIR = "/var/lib/rkt"
_PREFIX = "sha512-"
#: Length of a store key: ``sha512-`` + 64 hex digits.
KEY_LENGTH = len(_PREFIX) + 64
#: The shortest accepted key prefix: ``sha512-`` + 2 hex digits.
MIN_KEY_LENGTH = len(_PREFIX) + 2
_KEY_RE = re.compile(r"sha512-[0-9a-f]{64}")
_HEX = frozenset("0123456789abcdef")
_DIR_MODE = 0o750
_PRIVATE_DIR_MODE = 0o700
_FILE_MODE = 0o640
_COPY_BUFFER = 1024 * 1024
_UTC = _dt.UTC


def key_for(image_id: str) -> str:
    """The store key of a full image ID: ``sha512-`` + the first 64 hex digits.

    >>> key_for("sha512-" + "ab" * 64) == "sha512-" + "ab" * 32
    True
    """
    image_hash = Hash(image_id)
    if not image_hash.is_full:
        raise StoreError(f"not a full image ID: {str(image_id)!r}")
    return image_hash[:KEY_LENGTH]


def is_key(value: str) -> bool:
    """True when *value* is a complete store key."""
    return _KEY_RE.fullmatch(value) is not None


def _to_ns(when: _dt.datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=_UTC)
    delta = when - _dt.datetime(1970, 1, 1, tzinfo=_UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _from_ns(ns: int) -> _dt.datetime:
    return _dt.datetime(1970, 1, 1, tzinfo=_UTC) + _dt.timedelta(microseconds=ns // 1000)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_UTC)


@attrs.frozen
class StoredImage:
    """An image in the store, as the index and its manifest describe it.

    :param key: the store key (``sha512-`` + 64 hex digits).
    :param image_id: the full image ID.
    :param name: the image name (from the manifest).
    :param manifest: the image manifest.
    :param import_time: when it was (last) imported, UTC.
    :param last_used: when it was last used (rendered, touched), UTC.
    :param latest: fetched as "latest" (no version asked).
    :param size: bytes of the stored (uncompressed) blob.
    :param tree_size: bytes of its last rendered tree (0: none).
    """

    key: str
    image_id: Hash
    name: str
    manifest: ImageManifest
    import_time: _dt.datetime
    last_used: _dt.datetime
    latest: bool
    size: int
    tree_size: int


@attrs.frozen
class RemoteInfo:
    """HTTP cache metadata for an image URL (``--pull-policy=update``).

    :param aci_url: the URL the image was downloaded from (the row's key).
    :param sig_url: the signature's URL.
    :param etag: the response's ``ETag`` (sent back in ``If-None-Match``).
    :param blob_key: the store key of the image it gave.
    :param cache_max_age: ``Cache-Control: max-age`` in seconds (0: always revalidate).
    :param download_time: when it was downloaded, UTC.
    """

    aci_url: str
    sig_url: str = ""
    etag: str = ""
    blob_key: str = ""
    cache_max_age: int = 0
    download_time: _dt.datetime = attrs.field(factory=_now)

    def is_fresh(self, now: _dt.datetime | None = None) -> bool:
        """True while ``download_time + cache_max_age`` is in the future."""
        current = now or _now()
        return self.cache_max_age > 0 and current < self.download_time + _dt.timedelta(
            seconds=self.cache_max_age
        )


def _mkdir(path: str, mode: int) -> None:
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        if not os.path.isdir(path):
            raise StoreError(f"{path} exists and is not a directory") from None


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _io_error(action: str, err: OSError) -> StoreError:
    where = f" {err.filename}" if err.filename else ""
    return StoreError(f"cannot {action}:{where} {err.strerror or err}")


class _TempFile:
    """A file in ``cas/tmp`` created and held under an exclusive lock by this process."""

    def __init__(self, tmp_dir: str, stem: str, suffix: str) -> None:
        while True:
            path = os.path.join(tmp_dir, f"{stem}{suffix}")
            fd = os.open(
                path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, _FILE_MODE
            )
            lock = FileLock(fd, path)
            lock.exclusive()
            # A cleaner may have taken and removed the file between create and lock.
            try:
                current = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:
                lock.close()
                stem = _temp_stem()
                continue
            held = os.fstat(fd)
            if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
                break
            lock.close()  # pragma: no cover - the name is random
            stem = _temp_stem()
        self.path = path
        self.lock = lock

    def writer(self) -> IO[bytes]:
        """A buffered binary writer on the locked descriptor (closing it keeps the lock)."""
        return os.fdopen(self.lock.fd, "wb", buffering=_COPY_BUFFER, closefd=False)

    def discard(self) -> None:
        """Remove the file if it is still there, then drop the lock."""
        with contextlib.suppress(OSError):
            _unlink(self.path)
        self.lock.close()


def _temp_stem() -> str:
    return f"{os.getpid()}-{secrets.token_hex(8)}"


#: The name ending of work directories in ``cas/tmp`` (:meth:`ImageStore.work_directory`).
_WORK_SUFFIX = ".work"


def _remove_tree(path: str) -> None:
    """Remove a work directory, never following a symlink out of it (errors ignored)."""
    rmtree(path, ignore_errors=True)


class ImageStore:
    """The image store of a data directory; see the module documentation.

    :param data_dir: the data directory (rkt's ``--dir``); ``cas/`` is created in it
        with modes 0750 (0700 for ``tmp`` and ``db-backups``), files are 0640.
    :param max_size: the largest uncompressed image accepted by :meth:`import_image`
        (default: :func:`~appc.aci._compress.max_image_size`, read at each import).
    :raises StoreError: the store cannot be opened (permissions, a database newer
        than this code).

    Use it as a context manager or call :meth:`close` to drop the ``cas/`` lock.
    """

    def __init__(self, data_dir: str | os.PathLike[str], *, max_size: int | None = None) -> None:
        self.data_dir = os.path.abspath(os.fspath(data_dir))
        self.cas = os.path.join(self.data_dir, "cas")
        self.max_size = max_size
        self.blob_dir = os.path.join(self.cas, "blob")
        self.manifest_dir = os.path.join(self.cas, "imageManifest")
        self.tmp_dir = os.path.join(self.cas, "tmp")
        self.image_lock_dir = os.path.join(self.cas, "imagelocks")
        self.tree_lock_dir = os.path.join(self.cas, "treestorelocks")
        self.tree_dir = os.path.join(self.cas, "tree")
        self.backup_dir = os.path.join(self.cas, "db-backups")
        self._cas_lock: FileLock | None = None
        self.db: Database | None = None
        try:
            makedirs(self.data_dir, _DIR_MODE)  # its parents too: 0750, whatever the umask
            _mkdir(self.cas, _DIR_MODE)
            for path in (
                self.blob_dir,
                self.manifest_dir,
                self.image_lock_dir,
                self.tree_lock_dir,
                self.tree_dir,
            ):
                _mkdir(path, _DIR_MODE)
            for path in (
                os.path.join(self.blob_dir, "sha512"),
                os.path.join(self.manifest_dir, "sha512"),
            ):
                _mkdir(path, _DIR_MODE)
            _mkdir(os.path.join(self.cas, "db"), _DIR_MODE)
            _mkdir(self.tmp_dir, _PRIVATE_DIR_MODE)
            self._cas_lock = lock_directory(self.cas, exclusive=False)
        except OSError as err:
            raise _io_error("open the image store", err) from None
        try:
            self.db = Database(os.path.join(self.cas, "db", DB_FILE))
            self._upgrade()
            self.clean_tmp()
        except BaseException:
            self.close()
            raise

    def _upgrade(self) -> None:
        assert self.db is not None and self._cas_lock is not None
        version = self.db.create()
        if version > DB_VERSION:
            raise StoreError(
                f"the store database has version {version}, newer than this appc understands ({DB_VERSION})"
            )
        if version < DB_VERSION:
            self._cas_lock.exclusive()
            try:
                self.db.migrate(self.backup_dir, target=DB_VERSION)
            finally:
                self._cas_lock.shared()

    def close(self) -> None:
        """Close the database and drop the shared ``cas/`` lock (idempotent)."""
        if self.db is not None:
            self.db.close()
            self.db = None
        if self._cas_lock is not None:
            self._cas_lock.close()
            self._cas_lock = None

    def __enter__(self) -> ImageStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def _db(self) -> Database:
        if self.db is None:
            raise StoreError("the image store is closed")
        return self.db

    # --- paths and locks ---------------------------------------------------------------

    @staticmethod
    def _check_key(key: str) -> str:
        if not is_key(key):
            raise StoreError(f"not a store key: {key!r}")
        return key

    def blob_path(self, key: str) -> str:
        """The path of the blob of *key* (a complete key; the file may not exist)."""
        self._check_key(key)
        return os.path.join(self.blob_dir, "sha512", key[7:9], key)

    def manifest_path(self, key: str) -> str:
        """The path of the stored manifest of *key* (a complete key)."""
        self._check_key(key)
        return os.path.join(self.manifest_dir, "sha512", key[7:9], key)

    def key_lock(self, key: str, *, exclusive: bool, blocking: bool = True) -> KeyLock:
        """The key lock of image *key* (exclusive to write or remove it, shared to read it).

        :raises LockBusy: when *blocking* is false and the lock is held elsewhere.
        """
        return KeyLock(
            self.image_lock_dir, self._check_key(key), exclusive=exclusive, blocking=blocking
        )

    # --- import --------------------------------------------------------------------

    def import_image(
        self,
        source: str | os.PathLike[str] | IO[bytes],
        *,
        latest: bool = False,
        remote: RemoteInfo | None = None,
    ) -> StoredImage:
        """Check and store an image archive; return its entry.

        Importing an image already present rewrites its blob and manifest (same bytes)
        and replaces its row: import and last-used times become now and ``latest`` the
        given value, as rkt does; its tree size is kept.

        :param source: a path or a binary file (gzip, bzip2, xz, zstd or plain tar).
        :param latest: mark the image as fetched without a version ("latest").
        :param remote: HTTP cache metadata to record in the same transaction (its
            ``blob_key`` is set to this image's key).
        :raises ImageError: a bad or unsafe archive or manifest (nothing is stored).
        :raises StoreError: the store cannot write it (no space, permissions ...).
        """
        db = self._db
        stem = _temp_stem()
        part: _TempFile | None = None
        intent: _TempFile | None = None
        try:
            try:
                part = _TempFile(self.tmp_dir, stem, ".part")
                image_id, manifest_bytes, manifest, size = self._receive(source, part)
            except OSError as err:
                if err.errno == errno.ENOSPC:
                    raise StoreError(
                        "cannot import image: no space left on the store's device"
                    ) from None
                raise _io_error("import image", err) from None
            key = key_for(image_id)
            try:
                intent = _TempFile(self.tmp_dir, stem, ".key")
                os.write(intent.lock.fd, key.encode("ascii"))
                os.fsync(intent.lock.fd)
                with self.key_lock(key, exclusive=True):
                    blob = self.blob_path(key)
                    manifest_file = self.manifest_path(key)
                    for path in (blob, manifest_file):
                        _mkdir(os.path.dirname(path), _DIR_MODE)
                    os.rename(part.path, blob)
                    _fsync_dir(os.path.dirname(blob))
                    self._write_manifest(stem, manifest_file, manifest_bytes)
                    with db.transaction() as conn:
                        now = time.time_ns()
                        old = conn.execute(
                            "SELECT treestoresize FROM aciinfo WHERE blobkey = ?", (key,)
                        ).fetchone()
                        conn.execute(
                            "INSERT OR REPLACE INTO aciinfo (blobkey, imageid, name, labels, importtime,"
                            " lastused, latest, size, treestoresize) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (
                                key,
                                str(image_id),
                                str(manifest.name),
                                json.dumps(manifest.labels.as_dict(), sort_keys=True),
                                now,
                                now,
                                int(latest),
                                size,
                                old[0] if old else 0,
                            ),
                        )
                        if remote is not None:
                            self._put_remote(conn, attrs.evolve(remote, blob_key=key))
                    intent.discard()
                    intent = None
            except OSError as err:
                if err.errno == errno.ENOSPC:
                    raise StoreError(
                        "cannot import image: no space left on the store's device"
                    ) from None
                raise _io_error("import image", err) from None
        finally:
            if part is not None:
                part.discard()
            if intent is not None:
                # Something failed between the blob rename and the commit: undo it now
                # if possible (the next opening of the store does it otherwise).
                self._finish_intent(intent.path, intent.lock)
        return self.get(key)

    def _receive(
        self, source: str | os.PathLike[str] | IO[bytes], part: _TempFile
    ) -> tuple[Hash, bytes, ImageManifest, int]:
        """Decompress, check, hash and copy *source* into *part* in one pass."""
        with part.writer() as out:
            with ImageReader(source, max_size=self.max_size, tee=out) as reader:
                checker = EntryChecker(str(reader.source))
                manifest_bytes = b""
                for info, name in reader.entries():
                    checker.check(info, name)
                    if name == "manifest":
                        manifest_bytes = reader.read_entry(info, limit=MAX_MANIFEST_SIZE)
                image_id = reader.finish()
                checker.finish()
                try:
                    manifest = ImageManifest.from_json(manifest_bytes)
                except ValidationError as err:
                    raise ImageError(
                        f"image manifest validation failed: {err}", source=checker.source
                    ) from None
            out.flush()
            size = out.tell()
        os.fsync(part.lock.fd)
        return image_id, manifest_bytes, manifest, size

    def _write_manifest(self, stem: str, target: str, data: bytes) -> None:
        temp = _TempFile(self.tmp_dir, stem, ".manifest")
        try:
            with temp.writer() as out:
                out.write(data)
            os.fsync(temp.lock.fd)
            os.rename(temp.path, target)
            _fsync_dir(os.path.dirname(target))
        finally:
            temp.discard()

    # --- lookups ---------------------------------------------------------------------

    _COLUMNS = "blobkey, imageid, name, importtime, lastused, latest, size, treestoresize"

    def _load_manifest(self, key: str) -> ImageManifest:
        try:
            with open(self.manifest_path(key), "rb") as f:
                data = f.read(MAX_MANIFEST_SIZE + 1)
        except FileNotFoundError:
            raise StoreError(f"image {key}: its manifest is missing from the store") from None
        except OSError as err:
            raise _io_error(f"read the manifest of {key}", err) from None
        try:
            # Checked in full at import; the structural (JSON Schema) pass is not repeated.
            return ImageManifest.from_json(data, structural=False)
        except ValidationError as err:
            raise StoreError(f"image {key}: the stored manifest is invalid: {err}") from None

    def _image(self, row: tuple[Any, ...]) -> StoredImage:
        key, image_id, name, importtime, lastused, latest, size, treesize = row
        return StoredImage(
            key=key,
            image_id=Hash(image_id),
            name=name,
            manifest=self._load_manifest(key),
            import_time=_from_ns(importtime),
            last_used=_from_ns(lastused),
            latest=bool(latest),
            size=size,
            tree_size=treesize,
        )

    def manifest_bytes(self, key: str) -> bytes:
        """The stored manifest of *key* (or a prefix) exactly as the archive held it."""
        image = self.resolve(key)
        try:
            with open(self.manifest_path(image), "rb") as f:
                return f.read(MAX_MANIFEST_SIZE + 1)
        except OSError as err:
            raise _io_error(f"read the manifest of {image}", err) from None

    def resolve(self, key_or_prefix: str) -> str:
        """The complete key matching a key prefix (or a full image ID) — see :meth:`get`."""
        return str(self._resolve_row(key_or_prefix)[0])

    def _resolve_row(self, key_or_prefix: str) -> tuple[Any, ...]:
        wanted = key_or_prefix.strip().lower()
        digest = wanted[len(_PREFIX) :]
        if (
            not wanted.startswith(_PREFIX)
            or len(wanted) < MIN_KEY_LENGTH
            or not set(digest) <= _HEX
        ):
            raise StoreError(
                f"bad image ID {key_or_prefix!r}: expected sha512- and at least 2 hex digits"
            )
        prefix = wanted[:KEY_LENGTH]
        with self._db.transaction(write=False) as conn:
            rows = conn.execute(
                f"SELECT {self._COLUMNS} FROM aciinfo WHERE blobkey >= ? AND blobkey < ? ORDER BY blobkey",
                (prefix, prefix + "~"),
            ).fetchall()
        if len(wanted) > KEY_LENGTH:
            # More than a key: the rest must match the full image ID too.
            rows = [row for row in rows if str(row[1]).startswith(wanted)]
        if not rows:
            raise StoreError(f"no image with ID {key_or_prefix!r} in the store")
        if len(rows) > 1:
            raise StoreError(f"ambiguous image ID {key_or_prefix!r}: it matches {len(rows)} images")
        return tuple(rows[0])

    def get(self, key_or_prefix: str) -> StoredImage:
        """The image whose key starts with *key_or_prefix* (``sha512-`` and at least 2 hex digits).

        A full image ID (128 hex digits) is accepted too: its first half selects the
        key and the whole must equal the stored image ID.

        :raises StoreError: ``no image with ID ...``, ``ambiguous image ID ...``, or a
            malformed ID.
        """
        return self._image(self._resolve_row(key_or_prefix))

    def find(self, name: str, labels: Mapping[str, str] | None = None) -> StoredImage | None:
        """The best image for a name and labels, by rkt's ``GetACI`` rules; ``None`` if none.

        Only images with exactly this name are considered, and only those whose manifest
        has every requested label with the same value (other labels do not matter).  When
        no ``version`` label is requested, images marked ``latest`` are preferred; among
        the rest the most recently imported wins (the first found on a tie).
        """
        wanted = dict(labels or {})
        with self._db.transaction(write=False) as conn:
            rows = conn.execute(
                f"SELECT {self._COLUMNS}, labels FROM aciinfo WHERE name = ? ORDER BY rowid",
                (str(name),),
            ).fetchall()
        version_requested = "version" in wanted
        best: tuple[Any, ...] | None = None
        for row in rows:
            image_labels = json.loads(row[-1])
            if any(image_labels.get(label) != value for label, value in wanted.items()):
                continue
            if best is None:
                best = row
                continue
            if not version_requested and bool(best[5]) != bool(row[5]):
                if row[5]:
                    best = row
                continue
            if row[3] > best[3]:
                best = row
        return None if best is None else self._image(tuple(best[:-1]))

    def list(self) -> list[StoredImage]:
        """Every image, oldest import first."""
        with self._db.transaction(write=False) as conn:
            rows = conn.execute(
                f"SELECT {self._COLUMNS} FROM aciinfo ORDER BY importtime, blobkey"
            ).fetchall()
        return [self._image(tuple(row)) for row in rows]

    def open_blob(self, key: str) -> IO[bytes]:
        """Open the stored uncompressed tar of *key* (or a prefix) for reading.

        The file stays readable even if the image is removed meanwhile.
        """
        resolved = self.resolve(key)
        with self.key_lock(resolved, exclusive=False):
            try:
                return open(self.blob_path(resolved), "rb")
            except FileNotFoundError:
                raise StoreError(f"image {resolved}: its blob is missing from the store") from None
            except OSError as err:
                raise _io_error(f"open the blob of {resolved}", err) from None

    def touch(self, key: str) -> None:
        """Set the last-used time of *key* (or a prefix) to now."""
        resolved = self.resolve(key)
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE aciinfo SET lastused = ? WHERE blobkey = ?", (time.time_ns(), resolved)
            )

    def set_tree_size(self, key: str, size: int) -> None:
        """Record the size of the image's rendered tree (0: none); a missing image is ignored."""
        with self._db.transaction() as conn:
            conn.execute("UPDATE aciinfo SET treestoresize = ? WHERE blobkey = ?", (int(size), key))

    # --- remote rows -----------------------------------------------------------------

    @staticmethod
    def _put_remote(conn: sqlite3.Connection, info: RemoteInfo) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO remote (aciurl, sigurl, etag, blobkey, cachemaxage, downloadtime)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                info.aci_url,
                info.sig_url,
                info.etag,
                info.blob_key,
                int(info.cache_max_age),
                _to_ns(info.download_time),
            ),
        )

    def get_remote(self, aci_url: str) -> RemoteInfo | None:
        """The cache metadata recorded for *aci_url*, if any."""
        with self._db.transaction(write=False) as conn:
            row = conn.execute(
                "SELECT aciurl, sigurl, etag, blobkey, cachemaxage, downloadtime FROM remote WHERE aciurl = ?",
                (aci_url,),
            ).fetchone()
        if row is None:
            return None
        return RemoteInfo(row[0], row[1], row[2], row[3], row[4], _from_ns(row[5]))

    def set_remote(self, info: RemoteInfo) -> None:
        """Add or replace the cache metadata of ``info.aci_url``."""
        with self._db.transaction() as conn:
            self._put_remote(conn, info)

    # --- removal ---------------------------------------------------------------------

    def remove(self, key: str) -> None:
        """Remove an image: its rows first (one transaction), then its blob and manifest.

        Rendered trees are left to the tree store's garbage collection (a running pod
        may use one).

        :raises StoreError: no such image, or files that could not be deleted (the
            image is gone from the index then; the next opening retries the deletion).
        """
        resolved = self.resolve(key)
        intent = _TempFile(self.tmp_dir, _temp_stem(), ".key")
        keep_intent = False
        try:
            os.write(intent.lock.fd, resolved.encode("ascii"))
            os.fsync(intent.lock.fd)
            with self.key_lock(resolved, exclusive=True) as lock:
                with self._db.transaction() as conn:
                    found = conn.execute(
                        "SELECT 1 FROM aciinfo WHERE blobkey = ?", (resolved,)
                    ).fetchone()
                    if found is None:
                        raise StoreError(f"no image with ID {resolved!r} in the store")
                    conn.execute("DELETE FROM aciinfo WHERE blobkey = ?", (resolved,))
                    conn.execute("DELETE FROM remote WHERE blobkey = ?", (resolved,))
                try:
                    self._delete_files(resolved)
                except OSError as err:
                    keep_intent = True  # the next opening of the store retries
                    raise StoreError(
                        f"image {resolved} was removed but some of its files were left: {err.strerror or err}"
                    ) from None
                lock.unlink()
        finally:
            if keep_intent:
                intent.lock.close()
            else:
                intent.discard()

    def _delete_files(self, key: str) -> None:
        for path in (self.blob_path(key), self.manifest_path(key)):
            if _unlink(path):
                with contextlib.suppress(OSError):
                    _fsync_dir(os.path.dirname(path))

    # --- consistency ------------------------------------------------------------------

    def _finish_intent(self, path: str, lock: FileLock) -> bool:
        """Undo an interrupted import or removal named by the intent file *path* (locked).

        :returns: False when the image's key lock is busy (left for later).
        """
        try:
            with open(path, "rb") as f:
                key = f.read(KEY_LENGTH + 1).decode("ascii", "replace")
            if is_key(key):
                try:
                    key_lock = self.key_lock(key, exclusive=True, blocking=False)
                except LockBusy:
                    return False
                with key_lock, self._db.transaction(write=False) as conn:
                    row = conn.execute("SELECT 1 FROM aciinfo WHERE blobkey = ?", (key,)).fetchone()
                    if row is None:
                        self._delete_files(key)
            _unlink(path)
            return True
        except OSError:
            return False
        finally:
            lock.close()

    def _temp_files(self) -> Iterator[tuple[str, FileLock]]:
        """Yield each abandoned file or work directory of ``cas/tmp`` with its lock taken
        (busy ones are skipped)."""
        try:
            names = sorted(os.listdir(self.tmp_dir))
        except FileNotFoundError:
            return
        for name in names:
            path = os.path.join(self.tmp_dir, name)
            try:
                lock = FileLock.open(path, directory=name.endswith(_WORK_SUFFIX), create=False)
            except OSError:  # gone meanwhile, or not a regular file (O_NOFOLLOW)
                continue
            if not lock.exclusive(blocking=False):
                lock.close()
                continue
            yield path, lock

    @contextlib.contextmanager
    def work_directory(self) -> Iterator[str]:
        """A private directory in ``cas/tmp`` (the store's filesystem) for files on their
        way into the store: downloads, conversions.

        It is held under an exclusive ``flock`` while in use and removed when the block
        ends; if the process dies instead, the next opening of the store removes it.
        :raises StoreError: it cannot be made (no space, permissions).
        """
        try:
            path, lock = new_locked_directory(
                self.tmp_dir, lambda: _temp_stem() + _WORK_SUFFIX, mode=_PRIVATE_DIR_MODE
            )
        except OSError as err:
            raise _io_error("make a work directory", err) from None
        try:
            yield path
        finally:
            _remove_tree(path)
            lock.close()

    def clean_tmp(self) -> builtins.list[str]:
        """Finish what crashed processes left in ``cas/tmp``; return the paths handled.

        Run by every opening of the store: abandoned temporary files are deleted;
        abandoned intents delete the blob and manifest of their key unless a row refers
        to it.  Files still locked by a live process are left alone.
        """
        handled = []
        for path, lock in self._temp_files():
            if path.endswith(".key"):
                if self._finish_intent(path, lock):
                    handled.append(path)
                continue
            with lock:
                if path.endswith(_WORK_SUFFIX):
                    _remove_tree(path)
                else:
                    _unlink(path)
            handled.append(path)
        return handled

    def _stored_files(self, base: str) -> Iterator[tuple[str, str]]:
        root = os.path.join(base, "sha512")
        try:
            subdirs = sorted(os.listdir(root))
        except FileNotFoundError:
            return
        for sub in subdirs:
            try:
                names = sorted(os.listdir(os.path.join(root, sub)))
            except NotADirectoryError:
                yield os.path.join(root, sub), sub
                continue
            except FileNotFoundError:  # pragma: no cover - removed meanwhile
                continue
            for name in names:
                yield os.path.join(root, sub, name), name

    def _busy(self, key: str) -> bool:
        try:
            self.key_lock(key, exclusive=False, blocking=False).close()
        except LockBusy:
            return True
        return False

    def check(self) -> builtins.list[str]:
        """Compare the index with the files; return one line per problem (empty: consistent).

        Reported: rows whose blob or manifest is missing or whose blob size differs,
        blobs and manifests no row refers to, misplaced files, remote rows pointing to
        no image, and abandoned temporary files.  Images whose key lock is held (an
        import or removal in progress) are not judged.
        """
        problems: builtins.list[str] = []
        with self._db.transaction(write=False) as conn:
            rows = {row[0]: row for row in conn.execute("SELECT blobkey, size FROM aciinfo")}
            remotes = conn.execute("SELECT aciurl, blobkey FROM remote").fetchall()
        for key, (_, size) in sorted(rows.items()):
            if not is_key(key):
                problems.append(f"row with a malformed key: {key!r}")
                continue
            try:
                st = os.stat(self.blob_path(key))
                if st.st_size != size and not self._busy(key):
                    problems.append(
                        f"image {key}: blob has {st.st_size} bytes, the index says {size}"
                    )
            except FileNotFoundError:
                if not self._busy(key):
                    problems.append(f"image {key}: blob missing")
            if not os.path.exists(self.manifest_path(key)) and not self._busy(key):
                problems.append(f"image {key}: manifest missing")
        for what, base in (("blob", self.blob_dir), ("manifest", self.manifest_dir)):
            for path, name in self._stored_files(base):
                if not is_key(name) or os.path.dirname(path) != os.path.join(
                    base, "sha512", name[7:9]
                ):
                    problems.append(f"unexpected file in the store: {path}")
                elif name not in rows and not self._busy(name):
                    with self._db.transaction(write=False) as conn:
                        if conn.execute(
                            "SELECT 1 FROM aciinfo WHERE blobkey = ?", (name,)
                        ).fetchone():
                            continue  # imported meanwhile
                    problems.append(f"{what} without an index row: {path}")
        for url, key in remotes:
            if key not in rows:
                problems.append(f"remote {url!r} refers to a missing image {key}")
        try:
            names = sorted(os.listdir(self.tmp_dir))
        except FileNotFoundError:
            names = []
        for name in names:
            path = os.path.join(self.tmp_dir, name)
            try:
                lock = FileLock.open(path, directory=name.endswith(_WORK_SUFFIX), create=False)
            except OSError:
                if os.path.lexists(path):
                    problems.append(f"unexpected file in the store's tmp: {path}")
                continue
            with lock:
                if lock.exclusive(blocking=False):
                    problems.append(f"abandoned temporary file: {path}")
        return problems

    def disk_usage(self) -> int:
        """Bytes used by blobs (the sum of the index's sizes)."""
        with self._db.transaction(write=False) as conn:
            row = conn.execute("SELECT coalesce(sum(size), 0) FROM aciinfo").fetchone()
        return int(row[0])
