"""Paths inside a root filesystem, resolved as the app would see them, never leaving it."""

from __future__ import annotations

import os
import stat

from appc.errors import PodError

__all__ = ["resolve_in_root"]


def resolve_in_root(root: str, path: str, *, limit: int = 40) -> str:
    """The host path of *path* as seen inside *root* (symlinks followed *within* root).

    Like ``openat2(RESOLVE_IN_ROOT)``: an absolute symlink target restarts at *root*,
    ``..`` stops at *root*; missing trailing components are allowed (the result is
    where they would be created).

    :raises PodError: too many symlinks (a loop).
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > limit:
                raise PodError(f"too many levels of symbolic links in {path!r}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)
