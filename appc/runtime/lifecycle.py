"""What happens to pods after they start: status, stop, enter, remove, garbage collection.

``gc`` follows rkt (``reference/rkt.md`` §1): mark exited pods (rename ``run`` →
``exited-garbage``, whose ctime is the mark time), move aborted prepares to
``garbage``, expire old prepared pods, then delete marked pods once their grace period
has passed — each under the pod's exclusive lock, skipping busy ones, tolerating
missing files and going on past a pod it cannot remove.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import attrs

from appc.errors import AppcError, PodError
from appc.runtime import linux
from appc.runtime.pods import Pod, PodState, get_pod, list_pods, locked
from appc.store.locks import FileLock

__all__ = [
    "GcReport",
    "app_state",
    "enter_pod",
    "gc_pods",
    "pod_json",
    "remove_pod",
    "stop_pod",
    "wait_for_exit",
]


def __dir__() -> list[str]:
    return __all__


def app_state(pod: Pod, app: str, statuses: dict[str, int]) -> str:
    """An app's state as rkt derives it for immutable pods."""
    if app in statuses:
        return "exited"
    if pod.state is PodState.PREPARED:
        return "created"
    if pod.state is PodState.RUNNING:
        return "running"
    if pod.state.after_run:
        return "exited"
    return "unknown"


def pod_json(pod: Pod) -> dict[str, Any]:
    """The pod object of ``rkt list/status --format=json`` (pod times in seconds, app times in ns)."""
    manifest = pod.manifest()
    statuses = pod.exit_statuses()
    created, started = pod.created(), pod.started()
    apps = []
    for runtime_app in manifest.apps if manifest is not None else ():
        name = str(runtime_app.name)
        entry: dict[str, Any] = {
            "name": name,
            "state": app_state(pod, name, statuses),
            "image_id": str(runtime_app.image.id),
        }
        if created:
            entry["created_at"] = int(created.timestamp() * 1e9)
        if started:
            entry["started_at"] = int(started.timestamp() * 1e9)
        if name in statuses:
            entry["exit_code"] = statuses[name]
        if runtime_app.mounts:
            entry["mounts"] = [
                {"name": str(m.volume), "container_path": m.path, "read_only": False}
                for m in runtime_app.mounts
            ]
        apps.append(entry)
    document: dict[str, Any] = {"name": str(pod.uuid), "state": str(pod.state)}
    networks = _networks(pod)
    if networks:
        document["networks"] = networks
    if apps:
        document["app_names"] = [a["name"] for a in apps]
        document["apps"] = apps
    if created:
        document["created_at"] = int(created.timestamp())
    if started:
        document["started_at"] = int(started.timestamp())
    return document


def _networks(pod: Pod) -> list[dict[str, Any]]:
    try:
        from appc.runtime.network import read_net_info  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        return []
    try:
        infos = read_net_info(pod.path)
    except (AppcError, OSError, ValueError):
        return []
    return [{"netName": i.net_name, "ifName": i.if_name, "ip": i.ip, "mask": i.mask} for i in infos]


def wait_for_exit(pod: Pod, timeout: float | None = None) -> Pod:
    """Wait until the pod is no longer preparing or running (polling its lock every 100 ms).

    :raises PodError: when *timeout* seconds pass first.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        current = get_pod(pod.data_dir, pod.uuid)
        if current.state not in (
            PodState.RUNNING,
            PodState.PREPARING,
            PodState.EMBRYO,
            PodState.PREPARED,
        ):
            return current
        if deadline is not None and time.monotonic() >= deadline:
            raise PodError(f"pod {pod.uuid} is still {current.state} after {timeout:g}s")
        time.sleep(0.1)


def stop_pod(pod: Pod, *, force: bool = False) -> bool:
    """Ask a running pod to stop (SIGTERM to its PID 1; SIGKILL with *force*).

    :returns: False when the pod had already stopped.
    :raises PodError: a pod that is not running (prepared, deleted, ...).
    """
    if pod.state.after_run:
        return False
    if pod.state is not PodState.RUNNING:
        raise PodError(f"pod {pod.uuid} is not running (state {pod.state})")
    pid = pod.pid()
    if pid is None:
        raise PodError(f"pod {pod.uuid} has no PID yet")
    try:
        os.kill(pid, signal.SIGKILL if force else signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def _collect(pod: Pod) -> None:
    """Delete a pod whose lock the caller holds: network, cgroups, then the directory."""
    if pod.read("net-info.json") is not None:
        with contextlib.suppress(AppcError, OSError, ImportError):
            from appc.runtime.network import teardown_default  # noqa: PLC0415

            teardown_default(pod.data_dir, pod.uuid)
    with contextlib.suppress(AppcError, OSError, ImportError):
        from appc.runtime.cgroups import remove_pod_cgroups  # noqa: PLC0415

        remove_pod_cgroups(str(pod.uuid))
    pod.delete()


def remove_pod(pod: Pod) -> None:
    """Remove a pod now (``rkt rm``): exited, prepared or aborted pods only.

    :raises PodError: running, preparing or being deleted.
    """
    if pod.state in (
        PodState.RUNNING,
        PodState.PREPARING,
        PodState.EMBRYO,
        PodState.DELETING,
        PodState.EXITED_DELETING,
    ):
        raise PodError(f"pod {pod.uuid} is {pod.state}: cannot remove it")
    if pod.state in (PodState.PREPARED, PodState.ABORTED_PREPARE):
        pod.to_garbage()
    elif pod.state is PodState.EXITED:
        pod.to_exited_garbage()
    with locked(pod) as held:
        _collect(held)


@attrs.define
class GcReport:
    """What a ``gc`` run did (for the command to print)."""

    marked: list[str] = attrs.field(factory=list)
    collected: list[str] = attrs.field(factory=list)
    within_grace: list[str] = attrs.field(factory=list)
    errors: list[str] = attrs.field(factory=list)


def gc_pods(
    data_dir: str,
    *,
    grace_period: float = 1800.0,
    expire_prepared: float = 86400.0,
    mark_only: bool = False,
    log: Callable[[str], None] | None = None,
) -> GcReport:
    """Collect pods as ``rkt gc`` does; never stops at a pod it cannot handle."""
    report = GcReport()
    say = log or (lambda _: None)
    now = datetime.datetime.now(datetime.UTC)
    for pod in list_pods(data_dir, states=("embryo",)):
        # An embryo is locked from its creation until it moves to prepare: an unlocked
        # one was left by a process killed in between.
        try:
            with locked(pod):
                say(f"moving abandoned embryo {pod.uuid} to garbage")
                pod.to_garbage()
        except (AppcError, OSError) as err:
            if not _taken_by_another(pod):
                report.errors.append(f"{pod.uuid}: {err}")
    for pod in list_pods(data_dir, states=("run", "prepare", "prepared")):
        try:
            if pod.state is PodState.EXITED:
                say(f"moving pod {pod.uuid} to garbage")
                pod.to_exited_garbage()
                report.marked.append(str(pod.uuid))
            elif pod.state is PodState.ABORTED_PREPARE:
                say(f"moving failed prepare {pod.uuid} to garbage")
                pod.to_garbage()
            elif (
                pod.state is PodState.PREPARED
                and not mark_only
                and (now - pod.marked_at()).total_seconds() > expire_prepared
            ):
                say(f"moving expired prepared pod {pod.uuid} to garbage")
                pod.to_garbage()
        except (AppcError, OSError) as err:
            if not _taken_by_another(pod):
                report.errors.append(f"{pod.uuid}: {err}")
    if mark_only:
        return report
    for pod in list_pods(data_dir, states=("exited-garbage", "garbage")):
        try:
            if pod.state in (PodState.DELETING, PodState.EXITED_DELETING):
                continue
            if pod.state is PodState.EXITED_GARBAGE:
                # measured now, not when gc started: a pod marked above is 0s old, not
                # negative, so --grace-period=0s collects it in the same run
                age = (datetime.datetime.now(datetime.UTC) - pod.marked_at()).total_seconds()
                if age < grace_period:
                    report.within_grace.append(str(pod.uuid))
                    continue
            with locked(pod) as held:
                _collect(held)
            report.collected.append(str(pod.uuid))
        except (AppcError, OSError) as err:
            if not _taken_by_another(pod):
                report.errors.append(f"{pod.uuid}: {err}")
    return report


def _taken_by_another(pod: Pod) -> bool:
    """True when another process (a concurrent ``gc``, ``rm``) moved or removed *pod*
    from where this process found it, or holds its lock: not an error of this run."""
    try:
        lock = FileLock.open(pod.path, directory=True)
    except OSError:
        return not os.path.lexists(pod.path)
    try:
        return not lock.shared(blocking=False)
    finally:
        lock.close()


_NAMESPACES = ("ipc", "uts", "net", "pid")


def enter_pod(pod: Pod, app: str, argv: list[str]) -> int:
    """Run *argv* inside a running pod's app (``rkt enter``) and return its exit status.

    Joins the pod's IPC, UTS, network and PID namespaces and the app's mount namespace
    (so the app's root, /proc and volumes are what the command sees), with the app's
    environment.

    :raises PodError: the pod or app is not running.
    """
    if pod.state is not PodState.RUNNING:
        raise PodError(f"pod {pod.uuid} is not running")
    pid1, app_pid = pod.pid(), pod.app_pid(app)
    if pid1 is None or app_pid is None:
        raise PodError(f"app {app!r} of pod {pod.uuid} is not running")
    env_text = pod.read("env", app) or ""
    env = dict(line.split("=", 1) for line in env_text.splitlines() if "=" in line)
    try:
        fds = [os.open(f"/proc/{pid1}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC) for ns in _NAMESPACES]
        fds.append(os.open(f"/proc/{app_pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC))
    except OSError as err:
        raise PodError(f"cannot open the pod's namespaces: {err.strerror}") from None
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the entering child
        code = 126
        try:
            for fd in fds:
                linux.setns(fd)
            inner = os.fork()  # the PID namespace applies to children only
            if inner == 0:
                os.chdir("/")
                try:
                    os.execvpe(argv[0], argv, env)
                except OSError as err:
                    os.write(2, f"rkt enter: cannot execute {argv[0]!r}: {err.strerror}\n".encode())
                    os._exit(127)
            _, status = os.waitpid(inner, 0)
            code = os.waitstatus_to_exitcode(status)
        except BaseException as err:
            os.write(2, f"rkt enter: {err}\n".encode())
        finally:
            os._exit(code)
    for fd in fds:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
