"""Small file-system helpers shared by the store, the keystore and the runtime."""

from __future__ import annotations

import os
import stat

__all__ = ["makedirs", "rmtree"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def makedirs(
    path: str | os.PathLike[str], mode: int = 0o777, *, made: list[str] | None = None
) -> None:
    """``os.makedirs`` that gives *every* directory it creates *mode* (less the umask), as
    Go's ``os.MkdirAll`` does.

    Python's gives only the last one *mode*: the others get ``0o777`` less the umask, so
    under ``umask 0`` the parents of ``/var/lib/rkt/pods/run`` or of a trusted key's
    directory would be world-writable (anyone could rename what is inside them).

    :param made: a list that receives each directory created, in order, even when the
        call fails half-way (so that a caller can remove them after a failure).
    :raises FileExistsError: a file is in the way (``filename`` names it).
    :raises OSError: a directory cannot be made (``filename`` names it).
    """
    target = os.fspath(path)
    missing = []
    while target and not os.path.isdir(target):
        missing.append(target)
        parent = os.path.dirname(target)
        if parent == target:
            break
        target = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
            continue  # made meanwhile by another process
        if made is not None:
            made.append(directory)


def rmtree(path: str | os.PathLike[str], *, ignore_errors: bool = False) -> None:
    """Remove *path* and everything under it, at any depth, never following a symlink.

    ``shutil.rmtree`` of Python 3.11 recurses once per level: past about 1000 levels (a
    depth an app in a pod creates in a moment) it raises ``RecursionError``, whatever
    ``ignore_errors`` says.  Here the walk keeps one directory open at a time and goes
    back up through ``..``; a missing *path* is not an error.

    :param ignore_errors: go on past entries that cannot be removed (then check whether
        *path* is gone).
    """
    top = os.fspath(path)
    try:
        if not stat.S_ISDIR(os.lstat(top).st_mode):
            os.unlink(top)
            return
        fd = os.open(top, _DIR_FLAGS)
    except FileNotFoundError:
        return
    except OSError:
        if ignore_errors:
            return
        raise
    names: list[str] = []  # the directories walked into, from *top* down
    pending = [_clear_files(fd, ignore_errors)]  # per level: subdirectories left to remove
    try:
        while True:
            if pending[-1]:
                name = pending[-1].pop()
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    continue
                except OSError:
                    if ignore_errors:
                        continue
                    raise
                os.close(fd)
                fd = child
                names.append(name)
                pending.append(_clear_files(fd, ignore_errors))
                continue
            pending.pop()
            if not names:
                break
            parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            try:
                os.rmdir(names.pop(), dir_fd=fd)
            except FileNotFoundError:
                pass
            except OSError:
                if not ignore_errors:
                    raise
    finally:
        os.close(fd)
    try:
        os.rmdir(top)
    except FileNotFoundError:
        pass
    except OSError:
        if not ignore_errors:
            raise


def _clear_files(fd: int, ignore_errors: bool) -> list[str]:
    """Unlink every entry of the directory open at *fd* but its subdirectories; return those."""
    subdirectories = []
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                subdirectories.append(entry.name)
                continue
            try:
                os.unlink(entry.name, dir_fd=fd)
            except FileNotFoundError:
                pass
            except OSError:
                if not ignore_errors:
                    raise
    return subdirectories
