"""The image store's index: an sqlite database in ``cas/db/``, its schema and migrations.

rkt kept the same two tables in an embedded ``ql`` database; sqlite is the natural
Python choice.  The tables (one row per stored image, one per remote URL):

``aciinfo(blobkey PK, imageid, name, labels, importtime, lastused, latest, size, treestoresize)``
    ``imageid`` is the full image ID (the key keeps only half the digest); ``labels`` is
    the manifest's labels as a JSON object, so that a lookup by name and labels needs no
    manifest file; times are integer nanoseconds since the epoch (rkt's JSON output
    prints ``last_used_time`` in ns).
``remote(aciurl PK, sigurl, etag, blobkey, cachemaxage, downloadtime)``
    HTTP cache metadata for ``--pull-policy=update``.
``version(version)``
    The schema version (:data:`DB_VERSION`).

Decisions:

* WAL journal mode with a long busy timeout: readers never block the writer and many
  short-lived ``rkt`` processes can share the file; ``synchronous=FULL`` so a committed
  import survives a power loss, not only ``kill -9``.
* Connections run in autocommit mode and :func:`transaction` issues ``BEGIN IMMEDIATE``:
  a write transaction takes the write lock at its start, so two importers serialize
  instead of failing with "database is locked" when upgrading a read lock.
* A migration (:data:`MIGRATIONS`) runs under an *exclusive* lock on ``cas/`` (every
  store user holds it shared), after copying the database to ``cas/db-backups/``
  (the newest :data:`BACKUPS_KEPT` copies are kept), as rkt does.  A database newer
  than this code is refused rather than guessed at.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator

from appc.errors import StoreError

__all__ = [
    "BACKUPS_KEPT",
    "BUSY_TIMEOUT",
    "DB_FILE",
    "DB_VERSION",
    "MIGRATIONS",
    "Database",
    "backup_database",
    "explain",
    "schema_version",
]


def __dir__() -> list[str]:
    return __all__


#: The schema version this code writes.
DB_VERSION = 1
#: The database file name inside ``cas/db/``.
DB_FILE = "store.sqlite"
#: How many database backups a migration keeps in ``cas/db-backups/``.
BACKUPS_KEPT = 5
#: Seconds a statement waits for another process's write lock before failing.
BUSY_TIMEOUT = 60.0

_CREATE = (
    "CREATE TABLE IF NOT EXISTS version (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS aciinfo (
        blobkey TEXT PRIMARY KEY NOT NULL,
        imageid TEXT NOT NULL,
        name TEXT NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}',
        importtime INTEGER NOT NULL,
        lastused INTEGER NOT NULL,
        latest INTEGER NOT NULL DEFAULT 0,
        size INTEGER NOT NULL DEFAULT 0,
        treestoresize INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS aciinfo_name ON aciinfo (name)",
    """CREATE TABLE IF NOT EXISTS remote (
        aciurl TEXT PRIMARY KEY NOT NULL,
        sigurl TEXT NOT NULL DEFAULT '',
        etag TEXT NOT NULL DEFAULT '',
        blobkey TEXT NOT NULL,
        cachemaxage INTEGER NOT NULL DEFAULT 0,
        downloadtime INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS remote_blobkey ON remote (blobkey)",
)

#: Schema migrations: ``MIGRATIONS[n]`` upgrades a version-*n* database to version n+1
#: inside the migration transaction.  Empty while there is only version 1.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {}


def _connect(path: str) -> sqlite3.Connection:
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
                # Switching a new database to WAL needs a moment of exclusive access;
                # with many processes opening a fresh store at once it may be refused.
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
                if (
                    mode is None or str(mode[0]).lower() != "wal"
                ):  # pragma: no cover - e.g. read-only
                    raise StoreError(f"cannot use WAL journal mode for {path}")
                conn.execute("PRAGMA synchronous = FULL")
            except BaseException:
                conn.close()
                raise
            return conn
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise StoreError(
                    f"cannot open the store database {path}: {explain(err, path)}"
                ) from None
            time.sleep(0.01)
        except sqlite3.Error as err:
            raise StoreError(
                f"cannot open the store database {path}: {explain(err, path)}"
            ) from None


#: Below this many free bytes, a failed write of the database is put down to a full disk.
_LOW_SPACE = 1024 * 1024


def explain(err: sqlite3.Error, path: str) -> str:
    """sqlite's message, saying so when the disk is full (sqlite reports a full disk
    as "database or disk is full", or as a "disk I/O error" when a WAL file cannot grow).
    """
    text = str(err)
    name = str(getattr(err, "sqlite_errorname", ""))
    if name.startswith("SQLITE_FULL"):
        return f"no space left on the store's device ({text})"
    if name.startswith("SQLITE_IOERR"):
        try:
            st = os.statvfs(os.path.dirname(path) or ".")
        except OSError:
            return text
        if st.f_bavail * st.f_frsize < _LOW_SPACE:
            return f"no space left on the store's device ({text})"
    return text


def schema_version(conn: sqlite3.Connection) -> int | None:
    """The version recorded in the database, or ``None`` for an empty (new) database."""
    row = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'version'"
    ).fetchone()
    if row is None:
        return None
    version = conn.execute("SELECT max(version) FROM version").fetchone()
    return None if version is None or version[0] is None else int(version[0])


def backup_database(db_path: str, backup_dir: str, *, keep: int = BACKUPS_KEPT) -> str:
    """Copy the database (consistently, with sqlite's backup API) into *backup_dir*.

    Backups are named ``<DB_FILE>.<ns timestamp>``; only the newest *keep* are kept.
    :returns: the new backup's path.
    """
    os.makedirs(backup_dir, mode=0o700, exist_ok=True)
    target = os.path.join(backup_dir, f"{DB_FILE}.{time.time_ns()}")
    source = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT)
    try:
        dest = sqlite3.connect(target)
        try:
            source.backup(dest)
        finally:
            dest.close()
    finally:
        source.close()
    os.chmod(target, 0o600)
    backups = sorted(
        (name for name in os.listdir(backup_dir) if name.startswith(f"{DB_FILE}.")),
        key=lambda name: int(name.rsplit(".", 1)[1]) if name.rsplit(".", 1)[1].isdigit() else 0,
    )
    for old in backups[:-keep] if keep > 0 else backups:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(backup_dir, old))
    return target


class Database:
    """One connection to the store database, shared by the threads of a process.

    :param path: the database file (created with mode 0640 when missing).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        if not os.path.exists(path):
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640))
        self._conn = _connect(path)
        self._lock = threading.RLock()

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """A transaction: ``BEGIN IMMEDIATE`` for writes, ``BEGIN DEFERRED`` for reads.

        Commits when the block ends, rolls back on any exception.
        :raises StoreError: for a database error.
        """
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as err:
                raise StoreError(f"store database error: {explain(err, self.path)}") from None
            try:
                yield self._conn
            except sqlite3.Error as err:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise StoreError(f"store database error: {explain(err, self.path)}") from None
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.Error as err:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise StoreError(f"store database error: {explain(err, self.path)}") from None

    def version(self) -> int | None:
        """The schema version recorded (``None``: empty database)."""
        with self.transaction(write=False) as conn:
            return schema_version(conn)

    def create(self) -> int:
        """Create the schema if the database is empty; return the version found or written."""
        with self.transaction() as conn:
            version = schema_version(conn)
            if version is not None:
                return version
            for statement in _CREATE:
                conn.execute(statement)
            conn.execute("DELETE FROM version")
            conn.execute("INSERT INTO version (version) VALUES (?)", (DB_VERSION,))
            return DB_VERSION

    def migrate(self, backup_dir: str, *, target: int | None = None) -> int:
        """Upgrade the schema to *target* (default :data:`DB_VERSION`); the caller holds
        the exclusive ``cas/`` lock.

        :returns: the version the database had before.
        :raises StoreError: a version with no migration step, or a database error.
        """
        if target is None:
            target = DB_VERSION
        before = self.version()
        if before is None or before >= target:
            return before if before is not None else target
        backup_database(self.path, backup_dir)
        with self.transaction() as conn:
            version = schema_version(conn)
            assert version is not None
            while version < target:
                step = MIGRATIONS.get(version)
                if step is None:
                    raise StoreError(f"no migration of the store database from version {version}")
                step(conn)
                version += 1
            conn.execute("DELETE FROM version")
            conn.execute("INSERT INTO version (version) VALUES (?)", (version,))
        return before
