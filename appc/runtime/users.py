"""Resolving an app's ``user`` and ``group`` inside its root filesystem (spec: app user/group).

A user or group is a name (looked up in the image's ``/etc/passwd`` / ``/etc/group``,
first), a number, or an absolute path inside the image whose owner (or group) is used.
Paths are resolved inside the image's root (symlinks cannot lead to host files).
"""

from __future__ import annotations

import os

from appc.errors import PodError
from appc.runtime.paths import resolve_in_root

__all__ = ["resolve_group", "resolve_user", "user_home", "user_name"]


def _entries(path: str) -> list[list[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [
                line.rstrip("\n").split(":")
                for line in f
                if line.strip() and not line.startswith("#")
            ]
    except OSError:
        return []


def _owner(root: str, path: str, field: str) -> int:
    try:
        st = os.stat(resolve_in_root(root, path))
    except OSError as err:
        raise PodError(f"{field} path {path!r} in the image: {err.strerror}") from None
    return st.st_uid if field == "user" else st.st_gid


def resolve_user(user: str, root: str = "/") -> int:
    """The UID of *user* in the image at *root* (name, number, or ``/path`` whose owner is used).

    :raises PodError: a name that is not in the image's passwd file, or a missing path.
    """
    for fields in _entries(resolve_in_root(root, "/etc/passwd")):
        if fields[0] == user and len(fields) > 2 and fields[2].isdigit():
            return int(fields[2])
    if user.isdigit():
        return int(user)
    if user.startswith("/"):
        return _owner(root, user, "user")
    raise PodError(f"user {user!r} not found in the image's /etc/passwd")


def resolve_group(group: str, root: str = "/") -> int:
    """The GID of *group* in the image at *root* (name, number, or ``/path`` whose group is used)."""
    for fields in _entries(resolve_in_root(root, "/etc/group")):
        if fields[0] == group and len(fields) > 2 and fields[2].isdigit():
            return int(fields[2])
    if group.isdigit():
        return int(group)
    if group.startswith("/"):
        return _owner(root, group, "group")
    raise PodError(f"group {group!r} not found in the image's /etc/group")


def user_name(uid: int, root: str = "/") -> str | None:
    """The name of *uid* in the image at *root*, if its passwd has one."""
    for fields in _entries(resolve_in_root(root, "/etc/passwd")):
        if len(fields) > 2 and fields[2] == str(uid) and fields[0]:
            return fields[0]
    return None


def user_home(uid: int, root: str = "/") -> str | None:
    """The home directory of *uid* in the image at *root*, if its passwd names one."""
    for fields in _entries(resolve_in_root(root, "/etc/passwd")):
        if len(fields) > 5 and fields[2] == str(uid):
            return fields[5] or None
    return None
