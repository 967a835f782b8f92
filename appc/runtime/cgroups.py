"""Resource isolators through cgroups: one cgroup per app, under one parent per pod.

Layout.  For every hierarchy used, an app's cgroup is ``<base>/appc-<pod uuid>/<app>``:

* **cgroup v1** (this machine: controllers mounted at ``/sys/fs/cgroup/<controller>``):
  ``<base>`` is the calling process's own cgroup in that hierarchy (``/proc/self/cgroup``),
  so a runtime that was itself put in a cgroup (a container, a session, a test harness)
  keeps its pods inside it.  The ``memory``, ``cpu`` and ``pids`` hierarchies are used
  (``pids`` only for tracking: it lets :func:`remove_pod_cgroups` find every task);
  ``cpuset`` is never used because its children need ``cpuset.cpus``/``mems`` set up first.
* **cgroup v2** (``/sys/fs/cgroup`` is a ``cgroup2`` file system): the same tree in the
  unified hierarchy.  The "no internal processes" rule forbids enabling controllers below a
  non-root cgroup that holds processes, and the caller sits in its own cgroup, so when a
  limit needs a controller ``<base>`` is the *parent* of the caller's cgroup (which has the
  controllers enabled, since the caller's cgroup lists them), or the root itself.  Without
  limits the pod stays below the caller's own cgroup.

If the caller already sits inside an ``appc-*`` pod cgroup (a supervisor attached to its
pod), ``<base>`` is that pod cgroup's parent, so pods never nest.

Limits (decisions):

* ``resource/memory`` limit → v1 ``memory.limit_in_bytes`` *and* ``memory.memsw.limit_in_bytes``
  when swap accounting exists (the limit covers swap too, so an app over its limit is
  OOM-killed instead of swapping); v2 ``memory.max`` and ``memory.swap.max = 0``.
* ``resource/cpu`` limit (milli-cores) → CFS quota over a 100 ms period: v1
  ``cpu.cfs_quota_us = millicores * 100`` (at least the kernel's 1 ms), v2 ``cpu.max``.
* ``os/linux/cpu-shares`` → v1 ``cpu.shares``; v2 ``cpu.weight`` by the usual conversion
  ``1 + (shares - 2) * 9999 / 262142``.
* Requests are not enforced (no reservation mechanism in cgroups), as in rkt.
* A controller that is missing (or not writable) is not an error: as rkt does, the app
  runs without that limit and :attr:`AppCgroup.warnings` says "<isolator> isolator set
  but support disabled".  A controller that exists but refuses a value (a v1 cpu quota
  above the parent's, say) *is* an error (:class:`~appc.errors.PodError`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import attrs

from appc.errors import PodError

if TYPE_CHECKING:
    from appc.types.isolators import Isolators

__all__ = [
    "CGROUP_ROOT",
    "AppCgroup",
    "Hierarchy",
    "Limits",
    "hierarchies",
    "limits_from_isolators",
    "remove_pod_cgroups",
    "supported",
]

log = logging.getLogger(__name__)

#: Where the cgroup file systems are mounted.
CGROUP_ROOT = "/sys/fs/cgroup"

#: The CFS period used for cpu limits (µs), and the kernel's smallest quota.
CFS_PERIOD_US = 100_000
_MIN_QUOTA_US = 1_000

#: v1 controllers whose hierarchies hold app cgroups.
_V1_CONTROLLERS = frozenset({"memory", "cpu", "pids"})
_POD_PREFIX = "appc-"
_UUID_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z-]*")
_APP_RE = re.compile(r"[a-z0-9][a-z0-9-]*")


# --- limits -------------------------------------------------------------------------------


@attrs.frozen
class Limits:
    """The resource limits of one app (``None``: no limit of that kind).

    :param memory_bytes: the most memory (and swap) the app's processes may use.
    :param cpu_millicores: CPU time, in thousandths of a CPU (``500`` = half a CPU).
    :param cpu_shares: the relative CPU weight (v1 ``cpu.shares``, 2..262144).
    """

    memory_bytes: int | None = None
    cpu_millicores: int | None = None
    cpu_shares: int | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.memory_bytes, self.cpu_millicores, self.cpu_shares))

    def bounded_by(self, outer: Limits) -> Limits:
        """Return these limits bounded by *outer* (the pod's): the smaller memory and cpu limit.

        ``cpu_shares`` is a weight, not a bound: the app's own value wins, else the pod's.

        >>> Limits(memory_bytes=10).bounded_by(Limits(memory_bytes=5, cpu_millicores=200))
        Limits(memory_bytes=5, cpu_millicores=200, cpu_shares=None)
        """

        def smaller(a: int | None, b: int | None) -> int | None:
            return b if a is None else a if b is None else min(a, b)

        return Limits(
            memory_bytes=smaller(self.memory_bytes, outer.memory_bytes),
            cpu_millicores=smaller(self.cpu_millicores, outer.cpu_millicores),
            cpu_shares=self.cpu_shares if self.cpu_shares is not None else outer.cpu_shares,
        )


def limits_from_isolators(isolators: Isolators) -> Limits:
    """Read the limits of ``resource/memory``, ``resource/cpu`` and ``os/linux/cpu-shares``.

    When an isolator name appears more than once, the last one wins (as
    :meth:`~appc.types.isolators.Isolators.get`).  Requests are ignored.

    :raises PodError: for a limit that is zero or negative (the spec's quantities allow
        ``-1G``; no kernel does).
    """
    memory_bytes = cpu_millicores = cpu_shares = None
    memory = isolators.get("resource/memory")
    limit = getattr(memory.parsed, "limit", None) if memory is not None else None
    if limit is not None:
        memory_bytes = limit.int_value()
        if memory_bytes <= 0:
            raise PodError(f"resource/memory limit must be positive, not {str(limit)!r}")
    cpu = isolators.get("resource/cpu")
    limit = getattr(cpu.parsed, "limit", None) if cpu is not None else None
    if limit is not None:
        cpu_millicores = limit.milli_value()
        if cpu_millicores <= 0:
            raise PodError(f"resource/cpu limit must be positive, not {str(limit)!r}")
    shares = isolators.get("os/linux/cpu-shares")
    if shares is not None and isinstance(shares.parsed, int):
        cpu_shares = shares.parsed
    return Limits(memory_bytes, cpu_millicores, cpu_shares)


# --- hierarchies ----------------------------------------------------------------------


@attrs.frozen
class Hierarchy:
    """One mounted cgroup hierarchy the calling process belongs to.

    :param version: 1 or 2.
    :param mount: where it is mounted (``/sys/fs/cgroup/memory``).
    :param controllers: v1: the controllers of this hierarchy; v2: those available to
        children of the caller's cgroup (its ``cgroup.controllers``).
    :param own_path: the caller's cgroup in it, as ``/proc/self/cgroup`` shows it but
        relative to the mount's root (``/`` or ``/a/b``).
    """

    version: int
    mount: str
    controllers: frozenset[str]
    own_path: str

    def dir(self, path: str) -> str:
        """The directory of the cgroup *path* (``/a/b``) in this hierarchy."""
        return os.path.join(self.mount, path.lstrip("/")).rstrip("/") or "/"

    @property
    def own_dir(self) -> str:
        """The directory of the caller's own cgroup."""
        return self.dir(self.own_path)


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(root, mount point, fstype, super options) of every cgroup mount."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            left, sep, right = line.partition(" - ")
            if not sep:
                continue
            fields = left.split()
            fstype, _source, options = [*right.split(), "", "", ""][:3]
            if fstype in ("cgroup", "cgroup2") and len(fields) >= 5:
                out.append(
                    (_unescape(fields[3]), _unescape(fields[4]), fstype, set(options.split(",")))
                )
    return out


def _own_cgroups() -> list[tuple[frozenset[str], str]]:
    """(controllers, path) of each line of ``/proc/self/cgroup`` (v2: empty controllers)."""
    out = []
    with open("/proc/self/cgroup", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            _id, _, rest = line.rstrip("\n").partition(":")
            names, _, path = rest.partition(":")
            out.append((frozenset(n for n in names.split(",") if n), path or "/"))
    return out


def _relative(path: str, root: str) -> str | None:
    if root in ("", "/"):
        return path
    if path == root or path.startswith(root.rstrip("/") + "/"):
        return path[len(root.rstrip("/")) :] or "/"
    return None


def _is_cgroup2(path: str, mounts: list[tuple[str, str, str, set[str]]]) -> bool:
    target = os.path.normpath(path)
    found = [fstype for _root, point, fstype, _ in mounts if os.path.normpath(point) == target]
    return bool(found) and found[-1] == "cgroup2"


def hierarchies(root: str = CGROUP_ROOT) -> tuple[Hierarchy, ...]:
    """The hierarchies app cgroups are made in: the v2 one if *root* is cgroup2, else v1's.

    v1: the mounted hierarchies holding ``memory``, ``cpu`` or ``pids`` (wherever they are
    mounted) that contain the caller's cgroup.  v2: *root* alone, with the controllers
    listed in the caller's ``cgroup.controllers``.
    """
    try:
        mounts = _mounts()
        own = _own_cgroups()
    except OSError:
        return ()
    if _is_cgroup2(root, mounts):
        path = next((p for names, p in own if not names), None)
        point_root = next(
            r for r, p, t, _ in reversed(mounts) if os.path.normpath(p) == os.path.normpath(root)
        )
        rel = _relative(path, point_root) if path is not None else None
        if rel is None:
            return ()
        hierarchy = Hierarchy(2, os.path.normpath(root), frozenset(), rel)
        controllers = frozenset(
            _read(os.path.join(hierarchy.own_dir, "cgroup.controllers")).split()
        )
        return (attrs.evolve(hierarchy, controllers=controllers),)
    out: list[Hierarchy] = []
    seen: set[frozenset[str]] = set()
    for names, path in own:
        if not names & _V1_CONTROLLERS or names in seen:
            continue
        for mount_root, point, fstype, options in mounts:
            if fstype != "cgroup" or not names <= options:
                continue
            rel = _relative(path, mount_root)
            if rel is not None and os.path.isdir(point):
                out.append(Hierarchy(1, point, names, rel))
                seen.add(names)
                break
    return tuple(out)


def _controller(layout: Sequence[Hierarchy], name: str) -> Hierarchy | None:
    for hierarchy in layout:
        if name in hierarchy.controllers:
            return hierarchy
    return None


def supported(root: str = CGROUP_ROOT) -> dict[str, bool]:
    """Which limits can be enforced here: ``{"memory": bool, "cpu": bool}``.

    v1: the controller's hierarchy is mounted, contains our cgroup, is writable and has
    the limit files (``memory.limit_in_bytes``; ``cpu.cfs_quota_us``, i.e. CFS bandwidth
    control).  v2: the controller is listed in our cgroup's ``cgroup.controllers``.
    """
    layout = hierarchies(root)
    result = {"memory": False, "cpu": False}
    files = {"memory": "memory.limit_in_bytes", "cpu": "cpu.cfs_quota_us"}
    for name in result:
        hierarchy = _controller(layout, name)
        if hierarchy is None:
            continue
        if hierarchy.version == 2:
            result[name] = True
        else:
            own = hierarchy.own_dir
            result[name] = os.access(own, os.W_OK) and os.path.exists(
                os.path.join(own, files[name])
            )
    return result


# --- small file helpers -----------------------------------------------------------------


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _write(path: str, value: str) -> None:
    """Write *value* in one write(2): cgroup files report errors there."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode("ascii"))
    finally:
        os.close(fd)


def _keyed(path: str, key: str) -> int:
    """The number after *key* in a ``key value`` file (``memory.events``), or 0."""
    for line in _read(path).splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            with contextlib.suppress(ValueError):
                return int(value)
    return 0


def _procs(directory: str) -> list[int]:
    return [int(p) for p in _read(os.path.join(directory, "cgroup.procs")).split() if p.isdigit()]


def _rmdir(directory: str, *, wait: float = 0.3) -> bool:
    """rmdir a cgroup; True when it is gone.  While it is busy but lists no task any more
    (tasks just killed are still leaving it), retries for *wait* seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            os.rmdir(directory)
            return True
        except FileNotFoundError:
            return True
        except OSError as err:
            if err.errno != errno.EBUSY or time.monotonic() >= deadline or _procs(directory):
                return False
            time.sleep(0.01)


def _base_path(own_path: str) -> str:
    parts = [p for p in own_path.split("/") if p]
    for index, part in enumerate(parts):
        if part.startswith(_POD_PREFIX):
            parts = parts[:index]
            break
    return "/" + "/".join(parts)


def _check_names(pod_uuid: str, app: str | None = None) -> None:
    if not _UUID_RE.fullmatch(pod_uuid):
        raise PodError(f"bad pod UUID {pod_uuid!r} for a cgroup name")
    if app is not None and not _APP_RE.fullmatch(app):
        raise PodError(f"bad app name {app!r} for a cgroup name")


# --- app cgroups ----------------------------------------------------------------------


@attrs.frozen
class AppCgroup:
    """The cgroup(s) of one app of a pod: one directory per hierarchy used.

    :param pod_uuid: the pod.
    :param app: the app's name in the pod.
    :param limits: the limits asked for.
    :param dirs: the app's cgroup directories (one per hierarchy; may be empty when no
        cgroup file system is usable).
    :param version: 1 or 2 (0 when *dirs* is empty).
    :param warnings: limits that could not be enforced, one message each, as rkt prints
        them ("resource/memory isolator set but support disabled").
    :param memory_dir: the directory with the memory controller's files, if any.

    The executor calls :meth:`create` and :meth:`attach` in the app's process before it
    execs, :meth:`oom_killed` after the app exits (to report an OOM kill), and
    :meth:`remove` (or :func:`remove_pod_cgroups` for the whole pod) when it is done.
    """

    pod_uuid: str
    app: str
    limits: Limits
    dirs: tuple[str, ...]
    version: int
    warnings: tuple[str, ...] = ()
    memory_dir: str | None = None

    @classmethod
    def create(
        cls,
        pod_uuid: str,
        app: str,
        limits: Limits,
        *,
        layout: Sequence[Hierarchy] | None = None,
    ) -> AppCgroup:
        """Make (or reuse) ``appc-<pod_uuid>/<app>`` in each hierarchy and apply *limits*.

        :param layout: the hierarchies to use (default: :func:`hierarchies`).
        :raises PodError: for a bad name, or a controller that refuses a limit (the
            directories made are removed again).
        """
        _check_names(pod_uuid, app)
        if layout is None:
            layout = hierarchies()
        warnings: list[str] = []
        dirs: list[str] = []
        memory_dir: str | None = None
        wanted = _wanted(limits)
        enforced: set[str] = set()
        try:
            for hierarchy in layout:
                controllers = (
                    wanted & hierarchy.controllers
                    if hierarchy.version == 2
                    else hierarchy.controllers
                )
                try:
                    directory = _make(hierarchy, pod_uuid, app, controllers)
                except OSError as err:
                    log.warning(
                        "cannot create the cgroup of app %s in %s: %s", app, hierarchy.mount, err
                    )
                    continue
                dirs.append(directory)
                enforced |= _apply(hierarchy.version, directory, limits)
                if "memory" in hierarchy.controllers and os.path.exists(
                    os.path.join(
                        directory,
                        "memory.events" if hierarchy.version == 2 else "memory.oom_control",
                    )
                ):
                    memory_dir = directory
        except BaseException:
            for directory in dirs:
                _rmdir(directory)
                _rmdir(os.path.dirname(directory), wait=0)
            raise
        for isolator, key in (
            ("resource/memory", "memory_bytes"),
            ("resource/cpu", "cpu_millicores"),
            ("os/linux/cpu-shares", "cpu_shares"),
        ):
            if getattr(limits, key) is not None and key not in enforced:
                message = f"{isolator} isolator set but support disabled"
                log.warning("app %s: %s", app, message)
                warnings.append(message)
        version = layout[0].version if dirs and layout else 0
        return cls(pod_uuid, app, limits, tuple(dirs), version, tuple(warnings), memory_dir)

    def attach(self, pid: int = 0) -> None:
        """Move process *pid* (0: the caller) into every cgroup of the app.

        :raises PodError: when the kernel refuses (the process is gone, say).
        """
        for directory in self.dirs:
            try:
                _write(os.path.join(directory, "cgroup.procs"), str(pid))
            except OSError as err:
                raise PodError(
                    f"cannot move process {pid or os.getpid()} into cgroup {directory}: {err.strerror}"
                ) from None

    def procs(self) -> list[int]:
        """The processes in the app's cgroups (as the caller's PID namespace numbers them)."""
        found: set[int] = set()
        for directory in self.dirs:
            found.update(_procs(directory))
        return sorted(found)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send *sig* to every process in the app's cgroups."""
        for pid in self.procs():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def oom_killed(self) -> bool:
        """True when the kernel's OOM killer killed a process of this app.

        Read from v1 ``memory.oom_control`` (``oom_kill N``, kernel 4.13+) or v2
        ``memory.events``; ``False`` without a memory cgroup.
        """
        if self.memory_dir is None:
            return False
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        return _keyed(os.path.join(self.memory_dir, name), "oom_kill") > 0

    def remove(self) -> None:
        """Remove the app's cgroups, and the pod's parent cgroups once empty.

        Missing directories are fine; a cgroup that still has processes stays (and is
        logged): :func:`remove_pod_cgroups` kills and removes whatever is left.
        """
        for directory in self.dirs:
            if not _rmdir(directory):
                log.warning("cgroup %s is busy; left for gc", directory)
            _rmdir(os.path.dirname(directory), wait=0)


def _wanted(limits: Limits) -> frozenset[str]:
    wanted = set()
    if limits.memory_bytes is not None:
        wanted.add("memory")
    if limits.cpu_millicores is not None or limits.cpu_shares is not None:
        wanted.add("cpu")
    return frozenset(wanted)


def _enable(directory: str, controllers: frozenset[str]) -> bool:
    """Enable *controllers* for the children of a v2 cgroup; True when all are on."""
    current = set(_read(os.path.join(directory, "cgroup.subtree_control")).split())
    for name in sorted(controllers - current):
        try:
            _write(os.path.join(directory, "cgroup.subtree_control"), f"+{name}")
        except OSError:
            return False
    return True


def _make(hierarchy: Hierarchy, pod_uuid: str, app: str, controllers: frozenset[str]) -> str:
    """Create the pod and app directories in *hierarchy*; return the app's."""
    base = _base_path(hierarchy.own_path)
    if hierarchy.version == 2 and controllers:
        candidates = [base] if base == "/" else [base, os.path.dirname(base)]
        # Our own cgroup holds processes, so it cannot enable controllers (EBUSY);
        # its parent can (it does already, for us).
        for candidate in candidates:
            if _enable(hierarchy.dir(candidate), controllers):
                base = candidate
                break
    pod_dir = os.path.join(hierarchy.dir(base), _POD_PREFIX + pod_uuid)
    app_dir = os.path.join(pod_dir, app)
    for attempt in range(3):
        try:
            os.makedirs(pod_dir, exist_ok=True)
            if hierarchy.version == 2 and controllers:
                _enable(pod_dir, controllers)
            os.mkdir(app_dir)
            break
        except FileExistsError:
            break
        except FileNotFoundError:
            if attempt == 2:  # the pod dir was removed under us (another app's remove)
                raise
    return app_dir


def _apply(version: int, directory: str, limits: Limits) -> set[str]:
    """Write *limits* into the app cgroup *directory*; return the Limits fields enforced."""
    done: set[str] = set()

    def put(name: str, value: str, *, optional: bool = False) -> bool:
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            return False
        try:
            _write(path, value)
        except OSError as err:
            if optional:
                return False
            raise PodError(f"cannot set {name}={value} in {directory}: {err.strerror}") from None
        return True

    if limits.memory_bytes is not None:
        if version == 2:
            if put("memory.max", str(limits.memory_bytes)):
                done.add("memory_bytes")
                put("memory.swap.max", "0", optional=True)
        elif put("memory.limit_in_bytes", str(limits.memory_bytes)):
            done.add("memory_bytes")
            put("memory.memsw.limit_in_bytes", str(limits.memory_bytes), optional=True)
    if limits.cpu_millicores is not None:
        quota = max(_MIN_QUOTA_US, limits.cpu_millicores * CFS_PERIOD_US // 1000)
        if version == 2:
            if put("cpu.max", f"{quota} {CFS_PERIOD_US}"):
                done.add("cpu_millicores")
        elif os.path.exists(os.path.join(directory, "cpu.cfs_quota_us")):
            put("cpu.cfs_period_us", str(CFS_PERIOD_US))
            put("cpu.cfs_quota_us", str(quota))
            done.add("cpu_millicores")
    if limits.cpu_shares is not None:
        if version == 2:
            weight = 1 + (limits.cpu_shares - 2) * 9999 // 262142
            if put("cpu.weight", str(max(1, min(10000, weight)))):
                done.add("cpu_shares")
        elif put("cpu.shares", str(limits.cpu_shares)):
            done.add("cpu_shares")
    return done


# --- garbage collection -------------------------------------------------------------------


def _pod_dirs(layout: Sequence[Hierarchy], pod_uuid: str, *, max_depth: int = 8) -> list[str]:
    """Every ``appc-<pod_uuid>`` directory in *layout*, wherever the pod was started from."""
    name = _POD_PREFIX + pod_uuid
    found: list[str] = []

    def walk(directory: str, depth: int) -> None:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                continue
            if entry.name == name:
                found.append(entry.path)
            elif not entry.name.startswith(_POD_PREFIX) and depth < max_depth:
                walk(entry.path, depth + 1)

    for hierarchy in layout:
        walk(hierarchy.mount, 0)
    return found


def _tree(directory: str) -> Iterator[str]:
    """*directory* and every cgroup below it, deepest first."""
    for current, subdirs, _files in os.walk(directory, topdown=False):
        del subdirs
        yield current


def remove_pod_cgroups(
    pod_uuid: str, *, layout: Sequence[Hierarchy] | None = None, timeout: float = 2.0
) -> None:
    """Remove every cgroup left by pod *pod_uuid* (for ``gc``), killing its remaining tasks.

    Looks in every hierarchy (not only below the caller's own cgroup: ``gc`` may run from
    elsewhere than ``run`` did).  Tasks are killed with SIGKILL (v2: ``cgroup.kill``) and
    waited for up to *timeout* seconds; what still cannot be removed is logged, not raised.
    """
    _check_names(pod_uuid)
    if layout is None:
        layout = hierarchies()
    pods = _pod_dirs(layout, pod_uuid)
    if not pods:
        return
    directories = [d for pod in pods for d in _tree(pod)]
    deadline = time.monotonic() + timeout
    while True:
        alive = False
        for directory in directories:
            kill_file = os.path.join(directory, "cgroup.kill")
            if os.path.exists(kill_file):
                with contextlib.suppress(OSError):
                    _write(kill_file, "1")
            for pid in _procs(directory):
                alive = True
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    for directory in directories:
        if not _rmdir(directory):
            log.warning("cannot remove cgroup %s", directory)
