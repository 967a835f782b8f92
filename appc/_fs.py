"""Small file-system helpers shared by the store, the keystore and the runtime."""

from __future__ import annotations

import os

__all__ = ["makedirs"]


def makedirs(path: str | os.PathLike[str], mode: int) -> None:
    """``os.makedirs`` that gives *every* directory it creates *mode* (less the umask), as
    Go's ``os.MkdirAll`` does.

    Python's gives only the last one *mode*: the others get ``0o777`` less the umask, so
    under ``umask 0`` the parents of ``/var/lib/rkt/pods/run`` or of a trusted key's
    directory would be world-writable (anyone could rename what is inside them).
    """
    target = os.path.abspath(os.fspath(path))
    missing = []
    while not os.path.isdir(target):
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
