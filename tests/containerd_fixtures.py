"""A real containerd for tests: Debian ``containerd`` + ``runc``, private to the test session.

The session fixture :func:`containerd` starts ``containerd --config CONFIG`` as root with its
own root, state, gRPC (and ttrpc) socket and ``opt`` directory under a temporary directory,
waits until ``ctr version`` answers, and yields a :class:`Containerd`:

* ``.address`` — the gRPC socket; ``.namespace`` — the containerd namespace the tests use;
* ``ctr(*args)`` — runs ``ctr --address … --namespace … ARGS`` and returns the
  ``CompletedProcess`` (``check=True`` raises :class:`ContainerdError` with ctr's output);
  ``ctr run`` gets ``--runc-root`` and ``--fifo-dir`` under the temporary directory, so
  runc's state and the IO FIFOs stay there too;
* ``spawn(*args)`` — the same, as a background ``Popen`` (``ctr run --rm`` of a server).

Afterwards (also when a test failed, and when containerd died) it kills every task in every
namespace, stops containerd, kills whatever it started that is still alive (shims, container
processes: found by the socket address in their command line and by their cgroup), unmounts everything mounted under the temporary directory (deepest
first) and checks ``/proc/mounts`` is clean of it, removes the namespace's empty cgroups, and
deletes the directory.

The CRI plugin is disabled: no Kubernetes networking (CNI) is needed for ``ctr``.  The one
path outside the temporary directory is the shim's socket, ``/run/containerd/s/HASH`` (a
fixed place in containerd 1.6); the shim removes it when it exits, the teardown when a
shim was killed.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence

import attrs
import pytest

__all__ = [
    "Containerd",
    "ContainerdError",
    "containerd",
    "mounts_under",
    "port_is_free",
    "running_containerd",
]

CONTAINERD_BIN = "containerd"
CTR_BIN = "ctr"
RUNC_BIN = "runc"
START_TIMEOUT = 30.0
#: The containerd namespace of this test process (also the top of the cgroups runc makes).
NAMESPACE = f"appc-tests-{os.getpid()}"


class ContainerdError(AssertionError):
    """containerd did not start, or a ``ctr`` command failed (its output is in the message)."""


def mounts_under(directory: os.PathLike[str] | str) -> list[str]:
    """Mount points in ``/proc/mounts`` at or below *directory*, deepest first."""
    base = os.path.realpath(directory)
    found = []
    with open("/proc/mounts", encoding="utf-8", errors="replace") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) < 2:
                continue
            # /proc/mounts escapes blanks as octal (\040); our paths have none.
            point = fields[1].encode().decode("unicode_escape")
            if point == base or point.startswith(base + "/"):
                found.append(point)
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on *host*:*port* and it can be bound."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _config(base: pathlib.Path) -> str:
    return f"""version = 2
root = "{base / "root"}"
state = "{base / "state"}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{base / "containerd.sock"}"

[ttrpc]
  address = "{base / "containerd.sock.ttrpc"}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"
"""


@attrs.define(eq=False)
class Containerd:
    """A running containerd (see the module documentation)."""

    base: pathlib.Path
    process: subprocess.Popen[bytes] = attrs.field(repr=False)
    log_path: pathlib.Path
    namespace: str = NAMESPACE

    @property
    def address(self) -> str:
        """The gRPC socket."""
        return str(self.base / "containerd.sock")

    @property
    def runc_root(self) -> pathlib.Path:
        return self.base / "runc"

    @property
    def fifo_dir(self) -> pathlib.Path:
        return self.base / "fifo"

    def argv(self, *args: str) -> list[str]:
        """``ctr --address … --namespace … ARGS`` (``run`` gets its runc root and FIFO dir)."""
        args_list = list(args)
        if args_list[:1] == ["run"]:
            args_list[1:1] = [f"--runc-root={self.runc_root}", f"--fifo-dir={self.fifo_dir}"]
        return [CTR_BIN, "--address", self.address, "--namespace", self.namespace, *args_list]

    def ctr(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run ``ctr ARGS``; with *check*, a failure raises :class:`ContainerdError`."""
        argv = self.argv(*args)
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise ContainerdError(
                f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )
        return proc

    def spawn(self, *args: str, output: pathlib.Path | None = None) -> subprocess.Popen[bytes]:
        """Start ``ctr ARGS`` in the background (its output to *output*, or discarded)."""
        with open(output or os.devnull, "wb") as out:
            return subprocess.Popen(
                self.argv(*args), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    # --- teardown ---------------------------------------------------------------------

    def _namespaces(self) -> list[str]:
        proc = self.ctr("namespaces", "list", "--quiet", check=False, timeout=20)
        names = proc.stdout.split() if proc.returncode == 0 else []
        return sorted({self.namespace, *names})

    def remove_everything(self) -> None:
        """Kill and delete every task and container, then every image (best effort)."""
        if self.process.poll() is not None:
            return
        for namespace in self._namespaces():
            self.namespace, saved = namespace, self.namespace
            try:
                tasks = self.ctr("tasks", "list", "--quiet", check=False, timeout=20).stdout
                for task in tasks.split():
                    self.ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False, timeout=20)
                for task in tasks.split():
                    for _ in range(50):
                        if self.ctr("tasks", "delete", task, check=False, timeout=20).returncode:
                            time.sleep(0.1)
                        else:
                            break
                containers = self.ctr("containers", "list", "--quiet", check=False).stdout
                for container in containers.split():
                    self.ctr("containers", "delete", container, check=False, timeout=20)
            finally:
                self.namespace = saved


def _processes_of(address: str, namespace: str) -> list[int]:
    """Processes containerd started that may outlive it: shims (their command line names
    the socket) and container processes (in a cgroup ``/NAMESPACE/ID``)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = pathlib.Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            cgroups = pathlib.Path(f"/proc/{entry}/cgroup").read_text()
        except OSError:
            continue
        if address.encode() in cmdline or f":/{namespace}/" in cgroups:
            found.append(int(entry))
    return found


def _kill_all(pids: Sequence[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in pids):
        for pid in pids:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)


SHIM_SOCKET_DIR = pathlib.Path("/run/containerd/s")


def _shim_sockets(base: pathlib.Path, address: str) -> list[pathlib.Path]:
    """The sockets of the shims of the tasks in the state directory: containerd 1.6 names
    them ``/run/containerd/s/<sha256 of ADDRESS/NAMESPACE/ID>``.  A shim removes its own
    socket when it exits, but not when it is killed."""
    import hashlib

    sockets = []
    for task in (base / "state" / "io.containerd.runtime.v2.task").glob("*/*"):
        key = os.path.join(address, task.parent.name, task.name)
        sockets.append(SHIM_SOCKET_DIR / hashlib.sha256(key.encode()).hexdigest())
    return sockets


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _unmount_all(base: pathlib.Path) -> list[str]:
    """Unmount every mount under *base*; returns those still mounted afterwards."""
    for _ in range(3):
        points = mounts_under(base)
        if not points:
            return []
        for point in points:
            if subprocess.run(["umount", point], capture_output=True, check=False).returncode:
                subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
    return mounts_under(base)


def _remove_cgroups(namespace: str) -> None:
    """Remove the (empty) cgroups runc made for *namespace* (``/NAMESPACE/ID`` in each
    hierarchy); a cgroup still holding a process stays."""
    for hierarchy in pathlib.Path("/sys/fs/cgroup").glob("*"):
        group = hierarchy / namespace
        if not group.is_dir():
            continue
        for child in sorted(group.glob("**/"), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                child.rmdir()


def _wait_until_up(instance: Containerd) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if instance.process.poll() is not None:
            raise ContainerdError(
                f"containerd exited with {instance.process.returncode}:\n{instance.log_text()}"
            )
        if os.path.exists(instance.address):
            proc = instance.ctr("version", check=False, timeout=10)
            if proc.returncode == 0 and "Server:" in proc.stdout:
                return
        if time.monotonic() > deadline:
            raise ContainerdError(
                f"containerd did not answer within {START_TIMEOUT}s:\n{instance.log_text()}"
            )
        time.sleep(0.1)


@contextlib.contextmanager
def running_containerd(workdir: os.PathLike[str] | str | None = None) -> Iterator[Containerd]:
    """Start a private containerd under *workdir* (a new temporary directory by default),
    yield it once ``ctr version`` answers, and tear everything down afterwards (see the
    module documentation).  A unix socket path is limited to 108 bytes: keep *workdir* short.

    :raises ContainerdError: containerd/ctr/runc are missing, containerd does not start,
        or a mount under the directory survives the teardown.
    """
    for binary in (CONTAINERD_BIN, CTR_BIN, RUNC_BIN):
        if shutil.which(binary) is None:
            raise ContainerdError(f"{binary} is not installed (apt-get install containerd runc)")
    base = pathlib.Path(workdir or tempfile.mkdtemp(prefix="appc-ctrd-")).resolve()
    base.mkdir(parents=True, exist_ok=True)
    config = base / "config.toml"
    config.write_text(_config(base))
    log_path = base / "containerd.log"
    setpriv = shutil.which("setpriv")
    argv = [CONTAINERD_BIN, "--config", str(config)]
    if setpriv:  # containerd gets SIGTERM if the test process dies, even by SIGKILL
        argv = [setpriv, "--pdeathsig", "TERM", "--", *argv]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    instance = Containerd(base, process, log_path)
    try:
        _wait_until_up(instance)
        yield instance
    finally:
        try:
            instance.remove_everything()
        finally:
            _stop(process)
            _kill_all(_processes_of(instance.address, instance.namespace))
            for socket_path in _shim_sockets(base, instance.address):
                with contextlib.suppress(FileNotFoundError):
                    socket_path.unlink()
            left = _unmount_all(base)
            _remove_cgroups(instance.namespace)
            if left:
                raise ContainerdError(f"mounts left under {base} after teardown: {left}")
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def containerd() -> Iterator[Containerd]:
    """A private containerd (root needed; see the module documentation)."""
    if os.geteuid() != 0:
        pytest.skip("containerd needs root")
    with running_containerd() as instance:
        yield instance
