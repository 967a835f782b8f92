"""Images and helpers for the runtime tests, made by code (nothing is downloaded).

* :func:`busybox_rootfs` lays out a static busybox root filesystem (Debian
  ``busybox-static``'s ``/bin/busybox`` with a symlink per applet), with ``/etc/passwd``
  and ``/etc/group`` naming a non-root user, and files owned by other ids so that a
  user or group can be given as a path.
* :func:`busybox_images` builds one ACI per variant the tests need (plain, running as a
  named user, with event handlers, with mount points, with a memory isolator ...) from
  that tree, swapping only the manifest.
* :func:`build_hello` compiles ``examples/hello`` (the walkthrough's Go web server)
  statically and packs it with its manifest.
* :class:`Rkt` runs ``rkt`` as a user would (a subprocess), or in this process for the
  commands that never fork (list, status, gc ...), and starts background pods.
* :func:`cleanup` kills what a test left running in its data directory, collects every
  pod, and checks that no mount and no cgroup is left behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
GO = shutil.which("go")

#: The non-root user of the busybox images, and the ids that own the test files.
APP_UID, APP_GID, EXTRA_GID = 1000, 1000, 1001
OWNER_UID, OWNER_GID = 2000, 2001

#: The capability bounding set of an app with the spec's default set (x86_64).
DEFAULT_CAPBND = 0xA80425FB

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    f"app:x:{APP_UID}:{APP_GID}:app user:/home/app:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = f"root:x:0:\napp:x:{APP_GID}:\nextra:x:{EXTRA_GID}:app\nnogroup:x:65534:\n"

__all__ = [
    "APP_GID",
    "APP_UID",
    "DEFAULT_CAPBND",
    "EXTRA_GID",
    "OWNER_GID",
    "OWNER_UID",
    "Rkt",
    "build_aci",
    "build_hello",
    "busybox_available",
    "busybox_images",
    "busybox_rootfs",
    "cleanup",
    "image_manifest",
    "module_missing",
]


def module_missing(name: str) -> bool:
    """True when the runtime module *name* (``appc.runtime.network``) is not there yet."""
    import importlib.util

    return importlib.util.find_spec(name) is None


def busybox_available() -> bool:
    """True when a static busybox binary is installed (Debian ``busybox-static``)."""
    if not os.path.isfile(BUSYBOX):
        return False
    with open(BUSYBOX, "rb") as f:
        head = f.read(4096)
    return head.startswith(b"\x7fELF") and b"/lib64/ld-linux" not in head


# --- images ---------------------------------------------------------------------------


def busybox_rootfs(root: pathlib.Path) -> pathlib.Path:
    """Write a busybox root filesystem at *root* (which must not exist) and return it."""
    root.mkdir(mode=0o755)
    (root / "bin").mkdir()
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run(
        [BUSYBOX, "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        path = root / applet
        if path.name == "busybox" or os.path.lexists(path):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink("/bin/busybox", path)
    etc = root / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(PASSWD)
    (etc / "group").write_text(GROUP)
    for name in ("tmp", "root", "home/app", "srv", "var/tmp"):
        (root / name).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    os.chown(root / "home" / "app", APP_UID, APP_GID)
    owned = root / "srv" / "owned"
    owned.write_text("owned by 2000:2001\n")
    os.chown(owned, OWNER_UID, OWNER_GID)
    (root / "srv" / "marker").write_text("from the image\n")
    return root


def image_manifest(name: str, app: Mapping[str, Any] | None, **extra: Any) -> dict[str, Any]:
    """An image manifest for linux/amd64 (``version`` 1.0.0) with *app* as its app."""
    from appc.fetch import host_os_arch

    os_, arch = host_os_arch()
    manifest: dict[str, Any] = {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": name,
        "labels": [
            {"name": "version", "value": "1.0.0"},
            {"name": "os", "value": os_},
            {"name": "arch", "value": arch},
        ],
    }
    if app is not None:
        manifest["app"] = dict(app)
    manifest.update(extra)
    return manifest


def build_aci(
    layout: pathlib.Path, manifest: Mapping[str, Any], output: pathlib.Path
) -> pathlib.Path:
    """Write *manifest* into *layout* (a dir with ``rootfs/``) and build *output* from it."""
    from appc.aci.build import build_image

    (layout / "manifest").write_text(json.dumps(manifest, indent=1))
    build_image(layout, output, overwrite=True, compression="none")
    return output


def _sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


#: The busybox image variants: file stem → (image name, app section).
#: ``busybox`` runs a shell as root with an environment of its own; the others add the
#: one feature they are named after.
BUSYBOX_VARIANTS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "busybox": (
        "example.com/busybox",
        {
            "exec": ["/bin/sh"],
            "user": "0",
            "group": "0",
            "environment": [
                {"name": "FROM_IMAGE", "value": "image"},
                {"name": "LAYER2", "value": "image"},
                {"name": "LAYER3", "value": "image"},
            ],
        },
    ),
    "named-user": (
        "example.com/named-user",
        {
            "exec": ["/bin/sh"],
            "user": "app",
            "group": "app",
            "supplementaryGIDs": [EXTRA_GID, 4242],
        },
    ),
    "handlers": (
        "example.com/handlers",
        {
            "exec": _sh(
                "echo main >> /out/order; test -e /prestart && echo sees-prestart >> /out/order; touch /main"
            ),
            "user": "0",
            "group": "0",
            "eventHandlers": [
                {
                    "name": "pre-start",
                    "exec": _sh(
                        "echo pre-start >> /out/order; cat /srv/marker >> /out/order; touch /prestart"
                    ),
                },
                {
                    "name": "post-stop",
                    "exec": _sh(
                        "echo post-stop >> /out/order; test -e /main && echo sees-main >> /out/order"
                    ),
                },
            ],
            "mountPoints": [{"name": "out", "path": "/out"}],
        },
    ),
    "mountpoints": (
        "example.com/mountpoints",
        {
            "exec": ["/bin/sh"],
            "user": "0",
            "group": "0",
            "mountPoints": [
                {"name": "data", "path": "/data"},
                {"name": "conf", "path": "/conf", "readOnly": True},
            ],
        },
    ),
    "limited": (
        "example.com/limited",
        {
            "exec": ["/bin/sh"],
            "user": "0",
            "group": "0",
            "isolators": [{"name": "resource/memory", "value": {"limit": "32M"}}],
        },
    ),
    "no-exec": ("example.com/no-exec", {"exec": [], "user": "0", "group": "0"}),
    "no-app": ("example.com/no-app", None),
}


def busybox_images(work: pathlib.Path) -> dict[str, pathlib.Path]:
    """Build every busybox variant under *work*; returns stem → ``.aci`` path."""
    layout = work / "busybox-layout"
    layout.mkdir()
    busybox_rootfs(layout / "rootfs")
    images = {}
    for stem, (name, app) in BUSYBOX_VARIANTS.items():
        images[stem] = build_aci(layout, image_manifest(name, app), work / f"{stem}.aci")
    return images


def go_env(scratch: pathlib.Path) -> dict[str, str]:
    """Go offline, static, with the user's build cache when there is one (safe to share:
    Go's cache is content-addressed and concurrency-safe, and a cold one costs tens of
    seconds)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO") and k != "CGO_ENABLED"}
    cache = ""
    if GO is not None:
        cache = subprocess.run(
            [GO, "env", "GOCACHE"], capture_output=True, text=True, check=False
        ).stdout.strip()
    env.update(
        CGO_ENABLED="0",
        GOPROXY="off",
        GOSUMDB="off",
        GOFLAGS="-mod=mod",
        GOTOOLCHAIN="local",
        GOCACHE=cache if cache not in ("", "off") else str(scratch / "gocache"),
        GOPATH=str(scratch / "gopath"),
        GOMODCACHE=str(scratch / "gomodcache"),
    )
    return env


def build_hello(work: pathlib.Path) -> pathlib.Path:
    """Compile ``examples/hello`` statically and build ``hello.aci`` from its manifest."""
    assert GO is not None
    layout = work / "hello-layout"
    (layout / "rootfs" / "bin").mkdir(parents=True)
    source = work / "hello-src"
    shutil.copytree(REPO / "examples" / "hello", source)
    subprocess.run(
        [
            GO,
            "build",
            "-trimpath",
            "-ldflags",
            "-s -w",
            "-o",
            str(layout / "rootfs/bin/hello-web"),
            ".",
        ],
        cwd=source,
        env=go_env(work),
        check=True,
        capture_output=True,
        timeout=300,
    )
    manifest = json.loads((REPO / "examples" / "hello" / "manifest").read_text())
    return build_aci(layout, manifest, work / "hello.aci")


# --- running rkt ------------------------------------------------------------------------


class Rkt:
    """``rkt --dir DIR --insecure-options=image ...`` for one test's data directory.

    :meth:`__call__` runs a subprocess (what a user runs; every ``run`` goes through it);
    :meth:`cli` runs the command in this process (quick, for commands that never fork);
    :meth:`spawn` starts a background pod and returns once its app runs.
    """

    def __init__(self, data_dir: pathlib.Path, work: pathlib.Path) -> None:
        self.dir = data_dir
        self.work = work
        self.children: list[subprocess.Popen[bytes]] = []
        self._spawned = 0

    def argv(self, *args: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "appc_tools.rkt",
            "--dir",
            str(self.dir),
            "--insecure-options=image",
            *args,
        ]

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 60,
        user: int | None = None,
    ) -> subprocess.CompletedProcess[str]:
        argv = self.argv(*args)
        if user is not None:
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
        return subprocess.run(
            argv,
            check=False,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.work,
            env=dict(env) if env is not None else None,
        )

    def cli(self, *args: str) -> tuple[int, str, str]:
        """Run ``rkt ARGS`` in this process: (exit status, stdout, stderr)."""
        from appc_tools.rkt import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["--dir", str(self.dir), *args])
        return code, out.getvalue(), err.getvalue()

    def spawn(
        self, *args: str, app: str | None = None, ready: str | None = None, timeout: float = 30
    ) -> tuple[str, pathlib.Path]:
        """Start ``rkt run ARGS`` in the background; wait until its apps (or *app*) have
        started and, with *ready*, until a line *ready* appears in the output (an app's
        PID is known before it execs: a signal sent then would not meet its traps).
        Returns the pod UUID and the file holding its output."""
        self._spawned += 1
        uuid_file = self.work / f"spawn-{self._spawned}.uuid"
        log = self.work / f"spawn-{self._spawned}.log"
        with open(log, "wb") as out:
            child = subprocess.Popen(
                self.argv("run", f"--uuid-file-save={uuid_file}", *args),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.work,
            )
        self.children.append(child)
        deadline = time.monotonic() + timeout
        while True:
            text = uuid_file.read_text().strip() if uuid_file.exists() else ""
            if text:
                run_dir = self.dir / "pods" / "run" / text
                apps = run_dir / "appsinfo"
                names = [app] if app else (os.listdir(apps) if apps.is_dir() else [])
                started = names and all((apps / n / "pid").exists() for n in names)
                if started and (ready is None or ready in log.read_text().splitlines()):
                    return text, log
            if child.poll() is not None:
                raise AssertionError(f"rkt run ended with {child.returncode}: {log.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"pod not running after {timeout}s: {log.read_text()}")
            time.sleep(0.05)

    def pod_dir(self, uuid: str) -> pathlib.Path:
        """The directory of pod *uuid*, whatever its state."""
        found = list((self.dir / "pods").glob(f"*/{uuid}"))
        assert len(found) == 1, found
        return found[0]


# --- cleaning up ------------------------------------------------------------------------


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _processes_using(data_dir: pathlib.Path) -> list[int]:
    """PIDs (other than ours) whose command line names *data_dir*: the test's rkt
    commands, pod waiters and supervisors (apps die with their supervisor)."""
    marker = str(data_dir)
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid() and marker in _cmdline(int(entry)):
            found.append(int(entry))
    return found


def _pod_uuids(data_dir: pathlib.Path) -> set[str]:
    pods = data_dir / "pods"
    return {p.name for p in pods.glob("*/*")} if pods.is_dir() else set()


def _cgroups_of(uuids: set[str]) -> list[str]:
    found = []
    for current, dirs, _ in os.walk("/sys/fs/cgroup"):
        for name in list(dirs):
            if name.startswith("appc-"):
                if name[len("appc-") :] in uuids:
                    found.append(os.path.join(current, name))
                dirs.remove(name)
    return found


def _alive(pid: int) -> bool:
    """True while *pid* runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pids: Sequence[int], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.02)


def cleanup(rkt: Rkt, *, check: bool = True) -> None:
    """Kill what the test left running, ``rkt gc --grace-period=0s``, and check that no
    pod, mount or cgroup of the data directory is left."""
    uuids = _pod_uuids(rkt.dir)
    networked = {p.parent.name for p in (rkt.dir / "pods").glob("*/*/net-info.json")}
    supervisors = []
    for pid_file in (rkt.dir / "pods").glob("*/*/pid"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text())
            if str(rkt.dir) in _cmdline(pid):
                supervisors.append(pid)
    for pid in [*supervisors, *_processes_using(rkt.dir)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _wait_gone([*supervisors, *_processes_using(rkt.dir)])
    for child in rkt.children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=10)
    if not (rkt.dir / "pods").is_dir():
        return
    code, out, err = rkt.cli("gc", "--grace-period=0s", "--expire-prepared=0s")
    if not check:
        return
    assert code == 0, (out, err)
    left = sorted(str(p.relative_to(rkt.dir)) for p in (rkt.dir / "pods").glob("*/*"))
    assert left == [], f"pods left after gc: {left}"
    with open("/proc/mounts", encoding="utf-8") as f:
        mounts = [line for line in f if str(rkt.dir) in line]
    assert mounts == [], f"mounts left behind: {mounts}"
    assert _cgroups_of(uuids) == [], "cgroups left behind"
    if networked:
        _check_network_gone(networked)


def _check_network_gone(uuids: set[str]) -> None:
    """No host veth and no NAT rule of these pods is left (``--net=default``)."""
    from appc.runtime import network

    for uuid in uuids:
        assert not os.path.exists(f"/sys/class/net/{network.host_interface(uuid)}"), uuid
    iptables = shutil.which("iptables")
    if iptables is not None:
        rules = subprocess.run(
            [iptables, "-t", "nat", "-S", "POSTROUTING"], capture_output=True, text=True, check=True
        ).stdout
        assert not [u for u in uuids if u in rules], rules


@contextlib.contextmanager
def rkt_for(tmp: pathlib.Path) -> Iterator[Rkt]:
    """A fresh data directory for one test (or one module's shared pods), cleaned after."""
    work = tmp / "work"
    work.mkdir(parents=True, exist_ok=True)
    rkt = Rkt(tmp / "rkt", work)
    try:
        yield rkt
    finally:
        cleanup(rkt)
