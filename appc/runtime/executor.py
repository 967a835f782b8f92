"""The pod executor: a supervisor that becomes PID 1 of the pod's namespaces and runs its apps.

Process layout (``reference/rkt.md`` §8, the "py-ns" design verified on this machine)::

    rkt run (stage0: holds the pod lock, writes ``pid``, sets up host-side networking,
    │        forwards SIGTERM/SIGINT, exits with the pod's status)
    └── waiter (unshares the PID namespace, waits for the supervisor)
        └── supervisor = PID 1 (new mount, UTS, IPC and optionally network namespaces;
            │                   mounts each app's overlay; reaps; writes status/<app>)
            ├── metadata service (HTTP on 127.0.0.1 inside the pod's network)
            └── app (its own mount namespace: /proc, read-only /sys, a minimal /dev,
                     volumes, /etc/hosts; pivot_root; cgroup; user/groups; capabilities;
                     exec)

Every mount is made inside the pod's mount namespaces with private propagation, so the
kernel removes them all when the pod's last process exits: the host never sees one and
``gc`` only deletes directories.

Devices: an app gets the spec's device nodes, bound from the host's ``/dev``, and no
other.  A seccomp filter makes ``mknod`` of a character or block device fail with
``EPERM`` although ``CAP_MKNOD`` is in the spec's default set, and its root, its
``/dev`` and its volumes are mounted ``nodev``, so a node that is there anyway (in the
image, on a volume) opens nothing — a host disk included; rkt gets the same from
systemd-nspawn's device cgroup.  The pod lock is inherited by the waiter and the
supervisor (not by apps: it is close-on-exec), so the pod shows as running for exactly
as long as its supervisor lives, whatever kills whom.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from appc._fs import makedirs
from appc.errors import AppcError, PodError
from appc.runtime import linux
from appc.runtime.paths import resolve_in_root
from appc.runtime.pods import Pod
from appc.runtime.users import resolve_group, resolve_user, user_home, user_name

__all__ = ["DEFAULT_PATH", "AppPlan", "RuntimeConfig", "plan_pod", "run_pod"]


def __dir__() -> list[str]:
    return __all__


#: The PATH an app gets when its image sets none (spec: ACE requirements).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_MASKED_PROC = ("kcore", "kallsyms", "sched_debug", "kmem", "mem", "config.gz", "timer_list")
_READONLY_PROC = ("sys", "sysrq-trigger", "bus", "irq", "fs")
_SETUP_FAILED = 254
# An app whose command cannot be executed exits as a shell's would: 127 when it is not
# found (in the image, or on its PATH), 126 when it is there but cannot be run.  Every
# other failure to set an app up (user, working directory, mounts) exits 254.
_EXEC_NOT_FOUND = 127
_EXEC_FAILED = 126


class _ExecError(PodError):
    """The app's command could not be executed; *status* is the app's exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@attrs.frozen(kw_only=True)
class RuntimeConfig:
    """Options of a pod run that are not part of its manifest (saved as ``runtime-config``).

    :param net: ``host`` (default), ``none``, or ``default`` (a veth pair with NAT).
    :param hostname: the pod's host name (default ``rkt-<uuid>``).
    :param interactive: give the (single) app the terminal.
    :param all_capabilities: ``--insecure-options=capabilities``.
    :param unmasked_paths: ``--insecure-options=paths``.
    :param metadata: run the metadata service.
    :param stop_timeout: seconds between SIGTERM and SIGKILL when stopping.
    """

    net: str = "host"
    hostname: str = ""
    interactive: bool = False
    all_capabilities: bool = False
    unmasked_paths: bool = False
    metadata: bool = True
    stop_timeout: float = 10.0

    def to_json(self) -> str:
        """The ``runtime-config`` file's content."""
        return json.dumps(attrs.asdict(self), sort_keys=True)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RuntimeConfig:
        """Read a saved configuration (unknown keys ignored)."""
        names = {field.name for field in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@attrs.frozen
class VolumeMount:
    """One bind mount into an app: host source, path in the app, read-only, recursive."""

    source: str
    target: str
    read_only: bool = False
    recursive: bool = True


@attrs.frozen
class AppPlan:
    """What the supervisor needs to start one app, computed before any fork."""

    name: str
    app: Any  # appc.schema.App (effective: image app with the pod's overrides)
    lower: str  # the rendered tree's rootfs (overlay lower layer)
    image_id: str
    image_manifest: bytes
    read_only_rootfs: bool = False
    mounts: tuple[VolumeMount, ...] = ()


def plan_pod(pod: Pod) -> list[AppPlan]:
    """Read the pod manifest, the apps' image manifests and trees, and the volumes.

    :raises PodError: a missing rendered tree, a mount of an unknown volume, or an app
        without a command.
    """
    manifest = pod.manifest()
    if manifest is None:
        raise PodError(f"pod {pod.uuid} has no manifest")
    volumes = {str(v.name): v for v in manifest.volumes}
    plans = []
    for runtime_app in manifest.apps:
        name = str(runtime_app.name)
        tree_id = (pod.read("appsinfo", name, "treeStoreID") or "").strip()
        lower = os.path.join(pod.data_dir, "cas", "tree", tree_id, "rootfs")
        if not tree_id or not os.path.isdir(lower):
            raise PodError(f"app {name!r}: its rendered image ({tree_id or 'none'}) is missing")
        with open(pod.file("appsinfo", name, "manifest"), "rb") as f:
            image_manifest = f.read()
        app = runtime_app.app
        if app is None or not app.exec:
            raise PodError(f"app {name!r} has no command to run (try --exec=BINARY)")
        mounts = []
        for mount in runtime_app.mounts:
            volume = mount.app_volume or volumes.get(str(mount.volume))
            if volume is None:
                raise PodError(
                    f"app {name!r}: no volume {str(mount.volume)!r} for mount {mount.path!r}"
                )
            if volume.kind == "host":
                source = volume.source
            else:
                source = pod.file("sharedVolumes", str(volume.name))
            mounts.append(
                VolumeMount(source, mount.path, bool(volume.read_only), volume.is_recursive)
            )
        plans.append(
            AppPlan(
                name=name,
                app=app,
                lower=lower,
                image_id=str(runtime_app.image.id),
                image_manifest=image_manifest,
                read_only_rootfs=runtime_app.read_only_rootfs,
                mounts=tuple(mounts),
            )
        )
    return plans


# --- stage0 -------------------------------------------------------------------------------


def run_pod(pod: Pod, config: RuntimeConfig, *, log: Callable[[str], None] | None = None) -> int:
    """Run a prepared pod whose lock this process holds (``pods/run/<uuid>``); return its exit status.

    Blocks until the pod ends.  SIGTERM and SIGINT sent to this process stop the pod.
    """
    plans = plan_pod(pod)
    report = log or (lambda _: None)
    from_child, to_parent = os.pipe()
    from_parent, to_child = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    waiter = os.fork()
    if waiter == 0:  # pragma: no cover - runs in the child
        os.close(from_child)
        os.close(to_child)
        _waiter(pod, plans, config, to_parent, from_parent)
    os.close(to_parent)
    os.close(from_parent)
    messages = os.fdopen(from_child, "r")
    supervisor_pid = 0
    previous: dict[int, Any] = {}
    try:
        line = messages.readline()
        if line.startswith("pid "):
            supervisor_pid = int(line.split()[1])
            pod.write("pid", f"{supervisor_pid}\n", mode=0o644)

        def forward(signum: int, frame: Any) -> None:
            if supervisor_pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(supervisor_pid, signal.SIGTERM)

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            previous[signum] = signal.signal(signum, forward)
        if messages.readline().strip() == "ns":
            if config.net == "default":
                from appc.runtime import network  # noqa: PLC0415

                try:
                    info = network.setup_default(pod.data_dir, pod.uuid, supervisor_pid)
                    network.write_net_info(pod.path, [info])
                    report(f"pod network: {info.ip}/{info.mask} via {info.host_ip}")
                except AppcError as err:
                    report(f"rkt: network setup failed: {err}")
                    os.kill(supervisor_pid, signal.SIGKILL)
            os.write(to_child, b"go\n")
        os.close(to_child)
        to_child = -1
        while True:
            try:
                _, status = os.waitpid(waiter, 0)
                break
            except ChildProcessError:
                return _SETUP_FAILED
        _remove_cgroups(pod)
        return (
            os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        )
    finally:
        messages.close()
        if to_child >= 0:
            os.close(to_child)
        for number, handler in previous.items():
            signal.signal(number, handler)


def _remove_cgroups(pod: Pod) -> None:
    """The apps' cgroups go with the pod (``gc`` removes them if stage0 was killed first)."""
    with contextlib.suppress(AppcError, OSError):
        from appc.runtime.cgroups import remove_pod_cgroups  # noqa: PLC0415

        remove_pod_cgroups(str(pod.uuid))


def _waiter(
    pod: Pod, plans: list[AppPlan], config: RuntimeConfig, to_parent: int, from_parent: int
) -> None:  # pragma: no cover
    """Unshare the PID namespace, fork the supervisor (PID 1), wait for it, exit with its status.

    The supervisor itself reports its host PID and readiness to stage0 through *to_parent*.
    """
    code = _SETUP_FAILED
    try:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # stage0 forwards to the supervisor
        linux.unshare(linux.CLONE_NEWPID)
        supervisor = os.fork()
        if supervisor == 0:
            _supervisor(pod, plans, config, to_parent, from_parent)
        os.close(to_parent)
        os.close(from_parent)
        _, status = os.waitpid(supervisor, 0)
        code = (
            os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        )
    except BaseException as err:
        _say(f"rkt: cannot start the pod: {err}")
    finally:
        os._exit(code)


def _say(message: str) -> None:
    with contextlib.suppress(OSError):
        os.write(2, (message.rstrip("\n") + "\n").encode())


# --- the supervisor (PID 1) -----------------------------------------------------------


class _Supervisor:
    """State of the pod's PID 1."""

    def __init__(self, pod: Pod, plans: list[AppPlan], config: RuntimeConfig) -> None:
        self.pod = pod
        self.plans = plans
        self.config = config
        self.running: dict[int, AppPlan] = {}
        self.stopping = False
        self.stop_deadline = 0.0
        self.metadata_url = ""
        self.metadata_pid = 0
        self.wakeup = -1  # read end of the pipe every signal writes to (set_wakeup_fd)

    def terminate(self, signum: int = signal.SIGTERM, frame: Any = None) -> None:
        """Stop every app: SIGTERM now, SIGKILL after the timeout (checked by the reaper)."""
        if not self.stopping:
            self.stopping = True
            self.stop_deadline = time.monotonic() + self.config.stop_timeout
        for pid in list(self.running):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def _supervisor(
    pod: Pod, plans: list[AppPlan], config: RuntimeConfig, to_parent: int, from_parent: int
) -> None:  # pragma: no cover
    code = _SETUP_FAILED
    try:
        code = _supervise(pod, plans, config, to_parent, from_parent)
    except BaseException as err:
        _say(f"rkt: pod {pod.uuid}: {err}")
    finally:
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)  # whatever is left in the pod's PID namespace
        os._exit(code)


def _supervise(
    pod: Pod, plans: list[AppPlan], config: RuntimeConfig, to_parent: int, from_parent: int
) -> int:  # pragma: no cover
    # The host's procfs is still mounted: /proc/self is the PID the host sees.
    os.write(to_parent, f"pid {os.readlink('/proc/self')}\n".encode())
    flags = linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC
    if config.net != "host":
        flags |= linux.CLONE_NEWNET
    linux.unshare(flags)
    linux.mount("none", "/", None, linux.MS_REC | linux.MS_PRIVATE)
    linux.sethostname(config.hostname or f"rkt-{pod.uuid}")
    os.write(to_parent, b"ns\n")
    os.close(to_parent)
    with os.fdopen(from_parent, "r") as go:
        if go.readline().strip() != "go":
            raise PodError("stage0 went away before the pod started")
    if config.net != "host":
        from appc.runtime import network  # noqa: PLC0415

        network.loopback_up()
    state = _Supervisor(pod, plans, config)
    for plan in plans:
        _mount_overlay(pod, plan)
    makedirs(pod.file("status"), 0o750)
    if config.metadata:
        _start_metadata(state)
    state.wakeup = _wakeup_pipe()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, state.terminate)
    failures: list[int] = []
    started: list[AppPlan] = []
    for plan in plans:
        if state.stopping:
            break  # stopped while a pre-start handler ran: start nothing more
        handler = plan.app.event_handler("pre-start")
        if handler is not None and handler.exec:
            status = _run_and_wait(state, plan, list(handler.exec), stoppable=True)
            if status != 0:
                _say(f"rkt: app {plan.name}: pre-start handler exited with {status}")
                pod.write("status/" + plan.name, f"{status}\n")
                failures.append(status)
                continue
        pid = _spawn(state, plan, list(plan.app.exec), main=True)
        state.running[pid] = plan
        started.append(plan)
    if failures:
        state.terminate()
    while state.running:
        pid, status = _reap(state)
        finished = state.running.pop(pid, None)
        if finished is None:
            continue
        code = _exit_code(status)
        pod.write("status/" + finished.name, f"{code}\n")
        with contextlib.suppress(OSError):
            os.unlink(pod.file("appsinfo", finished.name, "pid"))
        if code != 0:
            failures.append(code)
            state.terminate()  # one failed app halts the pod, as rkt does
    for plan in started:  # post-stop follows a main process that ran, not a failed pre-start
        handler = plan.app.event_handler("post-stop")
        if handler is not None and handler.exec:
            _run_and_wait(state, plan, list(handler.exec), stoppable=False)
    if state.metadata_pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.metadata_pid, signal.SIGKILL)
    return failures[0] if failures else 0


def _exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _wakeup_pipe() -> int:  # pragma: no cover
    """Make every signal the supervisor gets, SIGCHLD included, wake up :func:`_wait_signal`.

    A signal handler cannot interrupt a blocking ``waitpid``: Python retries it (PEP 475),
    so a supervisor blocked there would never notice that a stop timed out.  Instead it
    polls ``waitpid(WNOHANG)`` and sleeps in ``select`` on this pipe, which Python writes
    a byte to whenever a signal arrives.  Returns the read end.
    """
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, _ignore_signal)
    return read_end


def _ignore_signal(signum: int, frame: Any) -> None:  # pragma: no cover
    """A Python-level handler: the signal still reaches the wakeup pipe."""


def _wait_signal(state: _Supervisor) -> None:  # pragma: no cover
    """Sleep until a signal arrives, or until the stop deadline (then every 50 ms)."""
    timeout = max(0.05, state.stop_deadline - time.monotonic()) if state.stopping else None
    select.select([state.wakeup], [], [], timeout)
    with contextlib.suppress(BlockingIOError):
        while os.read(state.wakeup, 4096):
            pass


def _reap(state: _Supervisor) -> tuple[int, int]:  # pragma: no cover
    """Wait for any child; escalate to SIGKILL once a stop has timed out."""
    while True:
        if state.stopping and time.monotonic() > state.stop_deadline:
            for pid in list(state.running):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pid = next(iter(state.running))
            return pid, 0x7F00  # lost: report as failed
        if pid:
            if pid == state.metadata_pid:
                state.metadata_pid = 0
                continue
            return pid, status
        _wait_signal(state)


def _run_and_wait(
    state: _Supervisor, plan: AppPlan, argv: list[str], *, stoppable: bool
) -> int:  # pragma: no cover
    """Run an event handler to its end; a *stoppable* one (pre-start) is stopped with the
    pod: SIGTERM, then SIGKILL after the stop timeout."""
    pid = _spawn(state, plan, argv, main=False)
    terminated = False
    while True:
        try:
            reaped, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return _SETUP_FAILED
        if reaped == pid:
            return _exit_code(status)
        if stoppable and state.stopping:
            late = time.monotonic() > state.stop_deadline
            if late or not terminated:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL if late else signal.SIGTERM)
                terminated = True
        _wait_signal(state)


def _mount_overlay(pod: Pod, plan: AppPlan) -> None:  # pragma: no cover
    upper = pod.file("overlay", plan.name, "upper")
    work = pod.file("overlay", plan.name, "work")
    target = pod.file("rootfs", plan.name)
    for directory in (upper, work, target):
        makedirs(directory, 0o755)  # overlay/ and rootfs/ too, whatever the umask
    options = f"lowerdir={plan.lower},upperdir={upper},workdir={work}"
    # Always read-write here: each app process makes its mount points first, then makes
    # its own view of the root read-only (``--readonly-rootfs``, see _exec_app).
    linux.mount("overlay", target, "overlay", 0, options)


def _start_metadata(state: _Supervisor) -> None:  # pragma: no cover
    """Start the pod's metadata service; without it the apps simply get no AC_METADATA_URL."""
    try:
        from appc.runtime.metadata import MetadataService, start_in_child  # noqa: PLC0415

        manifest = state.pod.manifest_bytes() or b"{}"
        service = MetadataService(
            manifest,
            str(state.pod.uuid),
            {p.name: p.image_manifest for p in state.plans},
            {p.name: p.image_id for p in state.plans},
        )
        pid, port = start_in_child(service)
    except Exception as err:
        _say(f"rkt: metadata service unavailable: {err}")
        return
    state.metadata_pid = pid
    state.metadata_url = f"http://127.0.0.1:{port}/{service.token}"


# --- an app process ---------------------------------------------------------------------


def _spawn(
    state: _Supervisor, plan: AppPlan, argv: list[str], *, main: bool
) -> int:  # pragma: no cover
    pid = os.fork()
    if pid == 0:
        code = _SETUP_FAILED
        try:
            _exec_app(state, plan, argv, main=main)
        except _ExecError as err:
            _say(f"rkt: app {plan.name}: {err}")
            code = err.status
        except BaseException as err:
            _say(f"rkt: app {plan.name}: {err}")
        finally:
            os._exit(code)
    return pid


def _bind(
    source: str,
    target: str,
    *,
    read_only: bool = False,
    recursive: bool = False,
    nodev: bool = False,
) -> None:  # pragma: no cover
    flags = linux.MS_BIND | (linux.MS_REC if recursive else 0)
    linux.mount(source, target, None, flags)
    if read_only or nodev:
        extra = (linux.MS_RDONLY if read_only else 0) | (linux.MS_NODEV if nodev else 0)
        linux.mount(source, target, None, flags | linux.MS_REMOUNT | extra)


def _touch(path: str) -> None:
    if not os.path.lexists(path):
        with open(path, "a"):
            pass


def _setup_dev(root: str, interactive: bool) -> None:  # pragma: no cover
    dev = resolve_in_root(root, "/dev")
    if os.path.lexists(dev) and not os.path.isdir(dev):
        os.unlink(dev)
    os.makedirs(dev, mode=0o755, exist_ok=True)
    # nodev: the device files bound below keep the host /dev's flags; nodes made here do not open.
    linux.mount(
        "tmpfs",
        dev,
        "tmpfs",
        linux.MS_NOSUID | linux.MS_NOEXEC | linux.MS_NODEV,
        "mode=755,size=65536k",
    )
    for name in _DEVICES:
        _touch(os.path.join(dev, name))
        _bind(f"/dev/{name}", os.path.join(dev, name))
    console = os.path.join(dev, "console")
    _touch(console)
    tty = os.ttyname(0) if interactive and os.isatty(0) else "/dev/null"
    _bind(tty, console)
    os.mkdir(os.path.join(dev, "pts"), 0o755)
    linux.mount(
        "devpts",
        os.path.join(dev, "pts"),
        "devpts",
        linux.MS_NOSUID | linux.MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=620",
    )
    os.symlink("pts/ptmx", os.path.join(dev, "ptmx"))
    os.mkdir(os.path.join(dev, "shm"), 0o1777)
    linux.mount(
        "shm",
        os.path.join(dev, "shm"),
        "tmpfs",
        linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC,
        "mode=1777,size=65536k",
    )
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, os.path.join(dev, name))


def _setup_proc_sys(root: str, unmasked: bool) -> None:  # pragma: no cover
    proc = resolve_in_root(root, "/proc")
    os.makedirs(proc, mode=0o555, exist_ok=True)
    linux.mount("proc", proc, "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    if not unmasked:
        for name in _READONLY_PROC:
            path = os.path.join(proc, name)
            if os.path.exists(path):
                _bind(path, path, read_only=True, recursive=True)
        for name in _MASKED_PROC:
            path = os.path.join(proc, name)
            if os.path.isfile(path):
                _bind("/dev/null", path)
    sys_dir = resolve_in_root(root, "/sys")
    os.makedirs(sys_dir, mode=0o555, exist_ok=True)
    flags = linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
    try:
        linux.mount("sysfs", sys_dir, "sysfs", flags)
    except OSError:
        _bind("/sys", sys_dir, read_only=True, recursive=True)


def _setup_volumes(root: str, plan: AppPlan) -> None:  # pragma: no cover
    targets: set[str] = set()
    for mount in plan.mounts:
        target = resolve_in_root(root, mount.target)
        if target in targets:
            raise PodError(f"two volumes mounted on {mount.target!r}")
        targets.add(target)
        if os.path.islink(mount.source) or not os.path.exists(mount.source):
            raise PodError(f"volume source {mount.source!r} is missing or a symlink")
        if os.path.isdir(mount.source):
            if os.path.lexists(target) and not os.path.isdir(target):
                _say(
                    f"rkt: app {plan.name}: replacing file {mount.target} by a directory for a volume"
                )
                os.unlink(target)
            os.makedirs(target, mode=0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            _touch(target)
        _bind(
            mount.source, target, read_only=mount.read_only, recursive=mount.recursive, nodev=True
        )


def _setup_etc(root: str, hostname: str, net: str) -> None:  # pragma: no cover
    etc = resolve_in_root(root, "/etc")
    if not os.path.isdir(etc):
        os.makedirs(etc, mode=0o755, exist_ok=True)
    hosts = resolve_in_root(root, "/etc/hosts")
    if not os.path.lexists(hosts):  # spec: never modify the image's own file
        with open(hosts, "w", encoding="ascii") as f:
            f.write(f"127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    resolv = resolve_in_root(root, "/etc/resolv.conf")
    if net != "none" and not os.path.lexists(resolv) and os.path.isfile("/etc/resolv.conf"):
        shutil.copyfile("/etc/resolv.conf", resolv)


def _capabilities(plan: AppPlan, everything: bool) -> set[int]:
    """The app's capability set, as numbers: the spec's default set, or its retain set, or
    the default set less its remove set.

    Names match in any case, with or without ``CAP_`` (``net_raw`` is ``CAP_NET_RAW``).

    :raises PodError: an unknown capability name (a typo in a remove set must not
        silently leave the capability in place).
    """
    from appc.types.isolators import DEFAULT_CAPABILITIES  # noqa: PLC0415

    if everything:
        return set(linux.CAPABILITIES.values())

    def numbers(names: Iterable[str]) -> set[int]:
        try:
            return {linux.capability_number(name) for name in names}
        except ValueError as err:
            raise PodError(str(err)) from None

    retain = plan.app.isolators.get("os/linux/capabilities-retain-set")
    remove = plan.app.isolators.get("os/linux/capabilities-remove-set")
    if retain is not None:
        return numbers(retain.parsed.names)
    caps = numbers(DEFAULT_CAPABILITIES)
    if remove is not None:
        caps -= numbers(remove.parsed.names)
    return caps


def app_environment(
    plan: AppPlan, uid: int, home: str | None, metadata_url: str, name: str | None = None
) -> dict[str, str]:
    """The environment of an app (and of its event handlers): spec defaults, rkt's extras,
    then the app's own ``environment``.

    ``USER`` and ``LOGNAME`` are the user's *name* in the image's passwd file (its number
    when it has none; ``root`` for UID 0); ``HOME`` its home there.
    """
    login = name or ("root" if uid == 0 else str(uid))
    env = {
        "PATH": DEFAULT_PATH,
        "SHELL": "/bin/sh",
        "USER": login,
        "LOGNAME": login,
        "HOME": home or ("/root" if uid == 0 else "/"),
        "container": "rkt",
    }
    env.update(plan.app.environment.as_dict())
    env["AC_APP_NAME"] = plan.name
    if metadata_url:
        env["AC_METADATA_URL"] = metadata_url
    return env


def _exec_app(
    state: _Supervisor, plan: AppPlan, argv: list[str], *, main: bool
) -> None:  # pragma: no cover
    pod, config = state.pod, state.config
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount("none", "/", None, linux.MS_REC | linux.MS_PRIVATE)
    root = pod.file("rootfs", plan.name)
    host_pid = os.readlink("/proc/self")  # the host's procfs: the PID the host sees
    if main:
        pod.write(f"appsinfo/{plan.name}/pid", f"{host_pid}\n", mode=0o644)
    app = plan.app
    uid = resolve_user(app.user, root)
    gid = resolve_group(app.group, root)
    env = app_environment(plan, uid, user_home(uid, root), state.metadata_url, user_name(uid, root))
    pod.write(f"env/{plan.name}", "".join(f"{k}={v}\n" for k, v in env.items()))
    from appc.runtime.cgroups import AppCgroup, limits_from_isolators  # noqa: PLC0415

    limits = limits_from_isolators(app.isolators)
    if limits.memory_bytes or limits.cpu_millicores or limits.cpu_shares:
        AppCgroup.create(str(pod.uuid), plan.name, limits).attach(0)
    _setup_etc(root, config.hostname or f"rkt-{pod.uuid}", config.net)
    _setup_volumes(root, plan)
    _setup_proc_sys(root, config.unmasked_paths)
    _setup_dev(root, config.interactive)
    # Only this app's mount namespace sees its root nodev (and read-only with
    # --readonly-rootfs); the mounts on it (/proc, /dev, volumes) keep their own flags.
    read_only = linux.MS_RDONLY if plan.read_only_rootfs else 0
    linux.mount(root, root, None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_NODEV | read_only)
    workdir = app.working_directory or "/"
    # Everything that may import a module or look up a codec happens before pivot_root:
    # after it, the host's Python library is out of reach.
    caps = _capabilities(plan, config.all_capabilities)
    last_cap = linux.last_capability()
    device_filter = linux.device_node_filter()
    os.chdir(root)
    linux.pivot_root(".", ".")
    linux.umount(".", linux.MNT_DETACH)
    os.chdir("/")
    try:
        os.chdir(workdir)
    except OSError as err:
        raise PodError(f"working directory {workdir!r}: {err.strerror}") from None
    if not config.interactive:
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    if device_filter is not None:
        linux.deny_device_nodes(device_filter)  # while CAP_SYS_ADMIN allows it
    linux.drop_bounding_set(caps, last_cap)
    os.setgroups([g for g in app.supplementary_gids])
    os.setgid(gid)
    os.setuid(uid)
    if uid == 0:
        linux.set_capabilities(caps)
    nnp = app.isolators.get("os/linux/no-new-privileges")
    if nnp is not None and nnp.parsed is True:
        linux.set_no_new_privs()
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as err:
        status = _EXEC_NOT_FOUND if err.errno == errno.ENOENT else _EXEC_FAILED
        raise _ExecError(f"cannot execute {argv[0]!r}: {err.strerror}", status) from None
