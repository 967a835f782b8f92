"""File locks (``flock(2)``) on files and directories, as rkt takes them.

rkt has no daemon: processes coordinate through advisory ``flock`` locks that the
kernel drops when the last descriptor of the open file description is closed — so a
process killed with ``kill -9`` never leaves a lock behind.  Three kinds are used:

* a lock on a **directory** (``cas/`` shared by every store user and exclusive for a
  schema migration; a pod directory exclusive while the pod runs);
* a lock on a **file** (a temporary import file, held while it is being written, so
  that a cleaner can tell an abandoned one from a busy one);
* a **key lock**: the file ``<lock dir>/<key>`` (``cas/imagelocks/<image key>``,
  ``cas/treestorelocks/<tree id>``), created on demand.

A key lock file may be deleted by the holder of its exclusive lock (:meth:`KeyLock.unlink`),
when the thing it guards is removed.  To stay correct with that, acquiring a key lock
checks, once locked, that the path still names the locked inode and retries otherwise
(without the check, a process that opened the old file and one that created the new
one would both believe they hold "the" lock).

Decisions:

* Locks are ``flock``, not ``fcntl`` record locks: ``flock`` locks belong to the open
  file description, survive ``rename(2)`` of a directory, are inherited over ``fork``
  and ``exec`` when the descriptor is (``RKT_LOCK_FD``), and a process's second
  ``open`` of the same file gets an independent lock (record locks would be merged and
  dropped by any ``close``).
* Changing a held lock between shared and exclusive is not atomic (the kernel drops the
  old lock first); callers that upgrade must re-check what they found under the
  weaker lock.
* Non-blocking attempts report "busy" by returning ``False`` from :meth:`FileLock.shared`
  / :meth:`FileLock.exclusive`, or raise :class:`LockBusy` from the helper constructors
  when asked to.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Callable
from types import TracebackType
from typing import Self

from appc.errors import AppcError

__all__ = [
    "FileLock",
    "KeyLock",
    "LockBusy",
    "lock_directory",
    "lock_file",
    "new_locked_directory",
]


def __dir__() -> list[str]:
    return __all__


class LockBusy(AppcError):
    """A non-blocking lock attempt found the lock held by another process.

    :param path: the file or directory whose lock is busy.
    """

    def __init__(self, path: str) -> None:
        super().__init__(f"{path}: lock is held by another process")
        self.path = path


class FileLock:
    """An open file or directory on which ``flock`` locks are taken.

    Create one with :meth:`open` (or the helpers :func:`lock_file`,
    :func:`lock_directory`); close it (or leave the ``with`` block) to drop the lock.
    The descriptor is close-on-exec; a runtime that hands the lock to a child makes it
    inheritable itself (``os.set_inheritable(lock.fd, True)``).

    :param fd: an open descriptor, owned (closed) by this object from now on.
    :param path: the path it was opened from, for messages.
    """

    def __init__(self, fd: int, path: str) -> None:
        self._fd: int | None = fd
        self.path = path
        self.mode: str | None = None  # "shared", "exclusive" or None (unlocked)

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, directory: bool = False, create: bool = True
    ) -> FileLock:
        """Open *path* for locking (no lock is taken yet).

        :param directory: *path* is a directory (opened read-only with ``O_DIRECTORY``).
        :param create: create a missing regular file (mode 0640); never for a directory.
        :raises OSError: when *path* cannot be opened (``FileNotFoundError`` when missing).
        """
        where = os.fspath(path)
        if directory:
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
        else:
            flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_CREAT if create else 0)
        fd = os.open(where, flags, 0o640)
        return cls(fd, where)

    @property
    def fd(self) -> int:
        """The descriptor; :class:`ValueError` once closed."""
        if self._fd is None:
            raise ValueError(f"lock on {self.path} is closed")
        return self._fd

    def fileno(self) -> int:
        """The descriptor (so a lock can be passed where a file is expected)."""
        return self.fd

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._fd is None

    def _flock(self, operation: int, blocking: bool) -> bool:
        if not blocking:
            operation |= fcntl.LOCK_NB
        while True:
            try:
                fcntl.flock(self.fd, operation)
                return True
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
            except OSError as err:
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN) and not blocking:
                    return False
                raise

    def shared(self, *, blocking: bool = True) -> bool:
        """Take (or convert to) a shared lock; ``False`` if *blocking* is false and it is busy."""
        if self._flock(fcntl.LOCK_SH, blocking):
            self.mode = "shared"
            return True
        return False

    def exclusive(self, *, blocking: bool = True) -> bool:
        """Take (or convert to) an exclusive lock; ``False`` if *blocking* is false and it is busy."""
        if self._flock(fcntl.LOCK_EX, blocking):
            self.mode = "exclusive"
            return True
        return False

    def unlock(self) -> None:
        """Drop the lock but keep the descriptor open."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self.mode = None

    def close(self) -> None:
        """Close the descriptor, which drops the lock (idempotent)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self.mode = None
            os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # A forgotten lock must not leak a descriptor for the life of the process.
        if getattr(self, "_fd", None) is not None:
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._fd is None else (self.mode or "unlocked")
        return f"<{type(self).__name__} {self.path!r} {state}>"


def _take(lock: FileLock, exclusive: bool, blocking: bool) -> None:
    ok = lock.exclusive(blocking=blocking) if exclusive else lock.shared(blocking=blocking)
    if not ok:
        lock.close()
        raise LockBusy(lock.path)


def lock_file(
    path: str | os.PathLike[str], *, exclusive: bool, blocking: bool = True, create: bool = True
) -> FileLock:
    """Open the regular file *path* and lock it.

    :raises LockBusy: when *blocking* is false and the lock is held elsewhere.
    :raises OSError: when the file cannot be opened.
    """
    lock = FileLock.open(path, create=create)
    _take(lock, exclusive, blocking)
    return lock


def lock_directory(
    path: str | os.PathLike[str], *, exclusive: bool, blocking: bool = True
) -> FileLock:
    """Open the directory *path* and lock it.

    :raises LockBusy: when *blocking* is false and the lock is held elsewhere.
    :raises OSError: when the directory cannot be opened.
    """
    lock = FileLock.open(path, directory=True)
    _take(lock, exclusive, blocking)
    return lock


def _still_named(lock: FileLock, path: str) -> bool:
    """Whether *path* still names the file or directory *lock* holds open."""
    try:
        current = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(lock.fd)
    return (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino)


def new_locked_directory(
    parent: str, name: Callable[[], str], *, mode: int = 0o700
) -> tuple[str, FileLock]:
    """Make a new directory in *parent*, named by *name()*, and lock it exclusively.

    For work directories that a cleaner removes when it finds them unlocked (their
    process died): a cleaner may take the directory between ``mkdir`` and the lock;
    then, as with a name already taken, another name is tried.  No lock on *parent* is
    needed (a caller may hold one on it already).

    :returns: the path and the held lock (closing it drops the lock).
    :raises OSError: the directory cannot be made.
    """
    while True:
        path = os.path.join(parent, name())
        try:
            os.mkdir(path, mode)  # a missing parent is an error (FileNotFoundError)
        except FileExistsError:
            continue  # a name taken
        try:
            lock = FileLock.open(path, directory=True)
        except FileNotFoundError:
            continue  # a cleaner took it between mkdir and open
        lock.exclusive()
        if _still_named(lock, path):
            return path, lock
        lock.close()  # removed (and maybe the name made again) meanwhile


class KeyLock(FileLock):
    """A lock on the file ``<lock_dir>/<key>``, safe against concurrent deletion of that file.

    :param lock_dir: the directory of lock files (created beforehand).
    :param key: the locked name: an image key or a tree id (no ``/``).
    :param exclusive: exclusive (write, remove) or shared (read) lock.
    :param blocking: wait for the lock; otherwise raise :class:`LockBusy` at once.
    :raises LockBusy: when *blocking* is false and the lock is held elsewhere.
    :raises ValueError: for a key that is not a plain file name.
    """

    def __init__(
        self, lock_dir: str | os.PathLike[str], key: str, *, exclusive: bool, blocking: bool = True
    ) -> None:
        if not key or "/" in key or key in (".", ".."):
            raise ValueError(f"bad lock key {key!r}")
        path = os.path.join(os.fspath(lock_dir), key)
        while True:
            lock = FileLock.open(path)
            _take(lock, exclusive, blocking)
            if _still_named(lock, path):
                break
            lock.close()  # the file was unlinked (and maybe re-created) meanwhile
        super().__init__(lock.fd, path)
        lock._fd = None  # ownership moved to self
        self.mode = "exclusive" if exclusive else "shared"
        self.key = key

    def unlink(self) -> None:
        """Delete the lock file (only under the exclusive lock); the lock stays held until closed."""
        if self.mode != "exclusive":
            raise ValueError("a key lock file may only be removed under its exclusive lock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
