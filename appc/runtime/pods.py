"""Pods on disk, with rkt's daemonless protocol (``reference/rkt.md`` §2).

A pod is a directory ``<data dir>/pods/<state dir>/<uuid>``; it moves between state
directories by atomic ``rename(2)``, and an exclusive ``flock`` on the directory is held
for as long as the pod is being prepared or runs.  The state is therefore *derived*,
never stored: which directory holds the pod, and whether its lock is held.  A pod whose
processes all died (even by ``kill -9``) has its lock released by the kernel, so it
shows as exited and ``gc`` can collect it.

Inside a pod directory (rkt's layout, flattened: no separate stage1 image):
``pod`` (the pod manifest), ``pod-created``, ``pid`` (host PID of the pod's PID 1; its
mtime is the start time), ``net-info.json``, ``runtime-config``,
``appsinfo/<app>/{manifest,treeStoreID,imageKey,pid}``, ``status/<app>`` (exit
code), ``env/<app>``, ``overlay/<app>/{upper,work}``, ``rootfs/<app>`` (mount
points), ``sharedVolumes/<volume>``.
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import json
import os
from collections.abc import Iterator
from typing import Any

import attrs

from appc._fs import makedirs, rmtree
from appc.errors import PodError
from appc.store.locks import FileLock
from appc.types.uuid import UUID, new_uuid

__all__ = [
    "STATE_DIRS",
    "Pod",
    "PodState",
    "create_pod",
    "find_pod",
    "get_pod",
    "list_pods",
]


def __dir__() -> list[str]:
    return __all__


#: The state directories, in lifecycle order.
STATE_DIRS = ("embryo", "prepare", "prepared", "run", "exited-garbage", "garbage")
_LISTED = ("prepare", "prepared", "run", "exited-garbage")


class PodState(str, enum.Enum):
    """rkt's pod states (the strings ``rkt list`` and ``rkt status`` print)."""

    EMBRYO = "embryo"
    PREPARING = "preparing"
    ABORTED_PREPARE = "aborted prepare"
    PREPARED = "prepared"
    RUNNING = "running"
    DELETING = "deleting"
    EXITED_DELETING = "exited deleting"
    EXITED = "exited"
    EXITED_GARBAGE = "exited garbage"
    GARBAGE = "garbage"

    def __str__(self) -> str:
        return self.value

    @property
    def after_run(self) -> bool:
        """True once the pod has run and stopped (exited, or marked for collection)."""
        return self in (PodState.EXITED, PodState.EXITED_GARBAGE, PodState.EXITED_DELETING)


# The state of a pod in each directory, when its lock is held (busy) and when it is not.
_STATES = {
    "embryo": (PodState.EMBRYO, PodState.EMBRYO),
    "prepare": (PodState.PREPARING, PodState.ABORTED_PREPARE),
    "prepared": (PodState.PREPARED, PodState.PREPARED),
    "run": (PodState.RUNNING, PodState.EXITED),
    "exited-garbage": (PodState.EXITED_DELETING, PodState.EXITED_GARBAGE),
    "garbage": (PodState.DELETING, PodState.GARBAGE),
}


def pods_root(data_dir: str) -> str:
    """``<data dir>/pods``."""
    return os.path.join(data_dir, "pods")


def _mkdirs(data_dir: str) -> None:
    for state in STATE_DIRS:
        makedirs(os.path.join(pods_root(data_dir), state), 0o750)  # pods/ too, whatever the umask


@attrs.define
class Pod:
    """A pod directory and what this process knows of it.

    :ivar lock: the pod's lock, when this process holds it (exclusive).
    """

    uuid: UUID
    data_dir: str
    state_dir: str
    state: PodState
    lock: FileLock | None = None

    @property
    def path(self) -> str:
        """The pod directory as it is now."""
        return os.path.join(pods_root(self.data_dir), self.state_dir, self.uuid)

    def file(self, *parts: str) -> str:
        """A path inside the pod directory."""
        return os.path.join(self.path, *parts)

    # --- transitions --------------------------------------------------------------------

    def _rename(self, to_dir: str) -> None:
        target = os.path.join(pods_root(self.data_dir), to_dir, self.uuid)
        try:
            os.rename(self.path, target)
        except FileNotFoundError:
            raise PodError(f"pod {self.uuid} was moved or removed by another process") from None
        self.state_dir = to_dir

    def to_prepared(self) -> None:
        """A prepared pod waits for ``run-prepared``: move it and release its lock."""
        self._rename("prepared")
        self.state = PodState.PREPARED
        self.release()

    def to_run(self) -> None:
        """Start running: from ``prepare`` (lock held) or ``prepared`` (lock taken first).

        :raises PodError: another process holds the pod, or moved it (two racing
            ``run-prepared``: one wins, the other fails cleanly).
        """
        if self.lock is None:
            try:
                self.lock = FileLock.open(self.path, directory=True)
            except FileNotFoundError:
                raise PodError(f"pod {self.uuid} was moved or removed by another process") from None
            if not self.lock.exclusive(blocking=False):
                self.release()
                raise PodError(f"pod {self.uuid} is busy")
        self._rename("run")
        self.state = PodState.RUNNING

    def to_garbage(self) -> None:
        """Move a pod that never ran (aborted or expired prepare) to ``garbage``."""
        self._rename("garbage")
        self.state = PodState.GARBAGE

    def to_exited_garbage(self) -> None:
        """Mark an exited pod for collection; the rename's ctime is the mark time."""
        self._rename("exited-garbage")
        self.state = PodState.EXITED_GARBAGE

    def release(self) -> None:
        """Close this process's lock on the pod."""
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    def delete(self) -> None:
        """Remove the pod directory (its lock must be held, or the pod must be unlocked garbage).

        Never follows symlinks out of the pod, and tolerates missing files and trees of
        any depth (an app may leave thousands of nested directories in its overlay).
        """
        rmtree(self.path, ignore_errors=True)
        if os.path.lexists(self.path):
            raise PodError(f"pod {self.uuid}: could not remove {self.path}")
        self.release()

    # --- contents -----------------------------------------------------------------------

    def read(self, *parts: str) -> str | None:
        """The text of a pod file, or ``None`` when it does not exist."""
        try:
            with open(self.file(*parts), encoding="utf-8") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def write(self, name: str, data: bytes | str, *, mode: int = 0o640) -> None:
        """Write a pod file atomically (temp file + rename)."""
        path = self.file(name)
        makedirs(os.path.dirname(path), 0o750)
        tmp = f"{path}.tmp"
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)

    def manifest_bytes(self) -> bytes | None:
        """The pod manifest as stored (``None`` while preparing)."""
        try:
            with open(self.file("pod"), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def manifest(self) -> Any:
        """The :class:`~appc.schema.PodManifest`, or ``None`` while preparing."""
        from appc.schema.pod import PodManifest  # noqa: PLC0415

        data = self.manifest_bytes()
        return None if data is None else PodManifest.from_json(data, structural=False)

    def app_names(self) -> list[str]:
        """The names of the pod's apps (from its manifest)."""
        manifest = self.manifest()
        return [] if manifest is None else [str(app.name) for app in manifest.apps]

    def _mtime(self, name: str) -> datetime.datetime | None:
        try:
            stamp = os.stat(self.file(name)).st_mtime
        except OSError:
            return None
        return datetime.datetime.fromtimestamp(stamp, datetime.UTC)

    def created(self) -> datetime.datetime | None:
        """When the pod was created."""
        return self._mtime("pod-created") or self._mtime("pod")

    def started(self) -> datetime.datetime | None:
        """When the pod started running (the ``pid`` file's time)."""
        return self._mtime("pid")

    def pid(self) -> int | None:
        """The host PID of the pod's PID 1, once it was written."""
        text = self.read("pid")
        return int(text) if text and text.strip().isdigit() else None

    def app_pid(self, app: str) -> int | None:
        """The host PID of an app's process, while it runs."""
        text = self.read("appsinfo", app, "pid")
        return int(text) if text and text.strip().isdigit() else None

    def exit_statuses(self) -> dict[str, int]:
        """The exit code of each app that has finished."""
        statuses = {}
        try:
            names = os.listdir(self.file("status"))
        except OSError:
            return {}
        for name in sorted(names):
            text = self.read("status", name)
            if text is not None and text.strip().lstrip("-").isdigit():
                statuses[name] = int(text)
        return statuses

    def runtime_config(self) -> dict[str, Any]:
        """The runtime options saved at prepare time (``runtime-config``)."""
        text = self.read("runtime-config")
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def marked_at(self) -> datetime.datetime:
        """When the pod entered its current state directory (the directory's ctime)."""
        return datetime.datetime.fromtimestamp(os.stat(self.path).st_ctime, datetime.UTC)


def _probe(data_dir: str, uuid: UUID) -> Pod | None:
    for state_dir in STATE_DIRS:
        path = os.path.join(pods_root(data_dir), state_dir, uuid)
        if not os.path.isdir(path):
            continue
        busy_state, free_state = _STATES[state_dir]
        try:
            lock = FileLock.open(path, directory=True)
        except FileNotFoundError:
            continue  # moved meanwhile: look again from the start
        try:
            free = lock.shared(blocking=False)
        finally:
            lock.close()
        if state_dir in ("embryo", "prepared"):
            return Pod(uuid, data_dir, state_dir, busy_state)
        return Pod(uuid, data_dir, state_dir, free_state if free else busy_state)
    return None


def get_pod(data_dir: str, uuid: str) -> Pod:
    """The pod with this exact UUID, its state read from disk and locks.

    :raises PodError: no such pod.
    """
    full = UUID(uuid)
    for _ in range(3):  # a pod renamed between two probes is simply probed again
        pod = _probe(data_dir, full)
        if pod is not None:
            return pod
    raise PodError(f"no pod {full}")


def list_pods(data_dir: str, *, states: tuple[str, ...] = _LISTED) -> list[Pod]:
    """Every pod in the given state directories (by default those ``rkt list`` shows)."""
    pods = []
    seen = set()
    for state_dir in states:
        try:
            names = os.listdir(os.path.join(pods_root(data_dir), state_dir))
        except FileNotFoundError:
            continue
        for name in sorted(names):
            try:
                uuid = UUID(name)
            except ValueError:
                continue
            if uuid in seen:
                continue
            with contextlib.suppress(PodError):
                pod = get_pod(data_dir, uuid)
                if pod.state_dir in states:
                    pods.append(pod)
                    seen.add(uuid)
    return pods


def find_pod(data_dir: str, text: str) -> Pod:
    """The pod whose UUID starts with *text* (any case; dashes optional), as rkt matches.

    :raises PodError: ``no matches found for "X"`` or ``ambiguous uuid, N matches``.
    """
    wanted = text.strip().lower().replace("-", "")
    if not wanted:
        raise PodError("empty pod UUID")
    matches = []
    for state_dir in _LISTED:
        try:
            names = os.listdir(os.path.join(pods_root(data_dir), state_dir))
        except FileNotFoundError:
            continue
        matches += [n for n in names if n.replace("-", "").startswith(wanted)]
    unique = sorted(set(matches))
    if not unique:
        raise PodError(f'no matches found for "{text}"')
    if len(unique) > 1:
        raise PodError(f"ambiguous uuid, {len(unique)} matches")
    return get_pod(data_dir, unique[0])


def read_uuid_file(path: str) -> str:
    """A pod UUID saved by ``--uuid-file-save`` (surrounding blanks ignored)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError as err:
        raise PodError(f"cannot read UUID file {path}: {err.strerror or err}") from None


def create_pod(data_dir: str, *, uuid_file: str | None = None) -> Pod:
    """Create a pod: ``embryo/<uuid>``, locked exclusively, then moved to ``prepare``.

    The UUID is written to *uuid_file* right away, so even a pod that fails to prepare
    can be found and removed.  An embryo whose creator died before moving it on is
    unlocked, and ``gc`` collects it; one taken that way before this process locked it
    is given up for a new UUID.
    """
    _mkdirs(data_dir)
    while True:
        uuid = new_uuid()
        embryo = os.path.join(pods_root(data_dir), "embryo", uuid)
        os.mkdir(embryo, 0o750)
        try:
            lock = FileLock.open(embryo, directory=True)
        except FileNotFoundError:
            continue  # gc took it for an embryo left by a crash before it was locked
        lock.exclusive()
        # gc collects unlocked embryos: check it did not move this one before the lock.
        try:
            current = os.stat(embryo)
        except FileNotFoundError:
            lock.close()
            continue
        held = os.fstat(lock.fd)
        if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
            break
        lock.close()  # pragma: no cover - the UUID is random
    pod = Pod(uuid, data_dir, "embryo", PodState.EMBRYO, lock)
    if uuid_file:
        with open(uuid_file, "w", encoding="utf-8") as f:
            f.write(f"{uuid}\n")
    pod._rename("prepare")
    pod.state = PodState.PREPARING
    pod.write("pod-created", b"")
    return pod


@contextlib.contextmanager
def locked(pod: Pod, *, blocking: bool = False) -> Iterator[Pod]:
    """Hold *pod*'s exclusive lock for a block (gc, rm).

    :raises PodError: when another process holds it and *blocking* is false.
    """
    lock = FileLock.open(pod.path, directory=True)
    if not lock.exclusive(blocking=blocking):
        lock.close()
        raise PodError(f"pod {pod.uuid} is busy")
    pod.lock = lock
    try:
        yield pod
    finally:
        pod.release()
