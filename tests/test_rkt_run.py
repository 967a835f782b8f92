"""``rkt run`` with real pods, as root: what an app sees (spec §7, rkt's extras) and how
bad input fails.

Every pod here is started once, all of them at the same time, by the module fixture
:func:`pods` (each with a data directory of its own; a pod's run takes seconds, mostly
Python starting up, so running them side by side keeps the module quick); the tests
then read what each pod printed or wrote into a host volume, and ask ``rkt status``.
When the module ends every pod is collected with ``rkt gc --grace-period=0s`` and no
mount, process or cgroup of theirs may be left (:func:`tests.runtime_images.cleanup`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pathlib
import re
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator

import pytest

from tests.runtime_images import (
    APP_GID,
    APP_UID,
    DEFAULT_CAPBND,
    EXTRA_GID,
    OWNER_GID,
    OWNER_UID,
    Rkt,
    busybox_available,
    busybox_images,
    cleanup,
    module_missing,
)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="pods need root (namespaces, mounts, cgroups)"),
    pytest.mark.skipif(not busybox_available(), reason="needs a static busybox (busybox-static)"),
]

NO_CGROUPS = module_missing("appc.runtime.cgroups")
NO_NETWORK = module_missing("appc.runtime.network")
NO_METADATA = module_missing("appc.runtime.metadata")


def _memory_supported() -> bool:
    if NO_CGROUPS:
        return False
    from appc.runtime import cgroups

    return bool(cgroups.supported().get("memory"))


MEMORY = _memory_supported()
MEMORY_REASON = (
    "appc.runtime.cgroups is not there yet"
    if NO_CGROUPS
    else "no usable memory cgroup controller on this machine"
)

SPEC_DEVICES = {"null", "zero", "full", "random", "urandom", "tty", "console"}
#: Character devices: name -> (major, minor) as stat prints them (hex).
DEVICE_NUMBERS = {
    "null": "1:3",
    "zero": "1:5",
    "full": "1:7",
    "random": "1:8",
    "urandom": "1:9",
    "tty": "5:0",
    "console": "1:3",  # without --interactive the console is /dev/null
}


# --- running a batch of pods ------------------------------------------------------------


@dataclasses.dataclass
class Case:
    """One ``rkt run``: its arguments (after ``run``), extra environment, user."""

    args: list[str]
    env: dict[str, str] | None = None
    user: int | None = None


@dataclasses.dataclass
class Ran:
    """What one ``rkt run`` did."""

    rkt: Rkt
    out: pathlib.Path  # a host directory (mode 0777), mounted by the cases that want it
    rc: int = -1
    stdout: str = ""
    stderr: str = ""
    uuid: str = ""

    def status(self) -> dict[str, str]:
        """``rkt status UUID`` as a dict (run in this process)."""
        code, out, err = self.rkt.cli("status", self.uuid)
        assert code == 0, err
        return dict(line.split("=", 1) for line in out.splitlines())

    def sections(self) -> dict[str, list[str]]:
        """The app's output split at ``== NAME`` lines."""
        found: dict[str, list[str]] = {}
        current = ""
        for line in self.stdout.splitlines():
            if line.startswith("== "):
                current = line[3:]
                found[current] = []
            elif current:
                found[current].append(line)
        return found

    def error_line(self) -> str:
        """The last line on stderr (rkt's one-line error)."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def states(self) -> dict[str, str]:
        """``rkt list --format=json``: UUID -> state."""
        code, out, err = self.rkt.cli("list", "--format=json")
        assert code == 0, err
        return {pod["name"]: pod["state"] for pod in json.loads(out)}


def sh(script: str) -> list[str]:
    """``-- -c SCRIPT ---``: the arguments of a busybox shell app."""
    return ["--", "-c", script, "---"]


PROBE = r"""
section() { echo "== $1"; }
section pid; echo $$
section pid1; tr '\0' ' ' < /proc/1/cmdline; echo
section procs; ls /proc | grep -E '^[0-9]+$'
section hostname; hostname
section mounts; cat /proc/mounts
section dev; ls -A /dev
section devstat; for f in /dev/*; do stat -c '%n|%F|%t:%T' "$f"; done
section pts; ls -A /dev/pts
section env; env | sort
section status; grep -E '^(Uid|Gid|Groups|CapEff|CapBnd|NoNewPrivs):' /proc/self/status
section sys; touch /sys/probe 2>&1; echo "touch=$?"
section cwd; pwd
section hosts; cat /etc/hosts
section net; cat /proc/net/dev
section netns; readlink /proc/self/ns/net
section image; cat /srv/marker
exit 7
"""

IDENTITY = (
    'grep -E "^(Uid|Gid|Groups|CapEff|CapBnd):" /proc/self/status > /out/$AC_APP_NAME; '
    'echo "HOME=$HOME USER=$USER LOGNAME=$LOGNAME" >> /out/$AC_APP_NAME'
)

READ_ONLY = (
    "for f in /x /tmp/x /out/readonly.ok /dev/shm/x; do "
    "touch $f 2>/dev/null && echo $f=ok || echo $f=failed; done > /out/readonly; "
    "grep ' / ' /proc/mounts >> /out/readonly"
)


def cases(
    images: dict[str, pathlib.Path], work: pathlib.Path
) -> dict[str, Callable[[pathlib.Path], Case]]:
    """Each case gets its ``out`` directory and returns its command line."""
    bb = str(images["busybox"])
    env_file = work / "set-env-file"
    env_file.write_text("# a comment\n\nLAYER3=file\nLAYER4=file\n; another comment\n")
    conf = work / "conf"
    conf.mkdir()
    (conf / "setting").write_text("value from the host\n")
    invalid = work / "invalid.aci"
    _write_invalid_image(invalid)
    garbage = work / "garbage.aci"
    garbage.write_text("this is not an image\n")
    vol_out = "--volume=out,kind=host,source={out}"
    table: dict[str, Callable[[pathlib.Path], Case]] = {
        "probe": lambda out: Case(["--no-metadata-service", bb, "--name=probe", *sh(PROBE)]),
        "env": lambda out: Case(
            [
                "--no-metadata-service",
                "--net=none",
                "--hostname=custom-host",
                "--inherit-env",
                f"--set-env-file={env_file}",
                "--set-env=LAYER4=set-env",
                "--set-env=LAYER5=set-env",
                vol_out.format(out=out),
                "--mount=volume=out,target=/out",
                bb,
                "--name=first",
                "--environment=LAYER5=app",
                "--environment=ONLY_FIRST=yes",
                *sh(
                    "env > /out/$AC_APP_NAME.env; hostname > /out/hostname; cat /proc/net/dev > /out/net"
                ),
                bb,
                "--name=second",
                "--working-dir=/srv",
                *sh("env > /out/$AC_APP_NAME.env; pwd > /out/second.pwd"),
            ],
            env=dict(os.environ, INHERITED="parent", LAYER2="parent"),
        ),
        "identity": lambda out: Case(
            [
                "--no-metadata-service",
                vol_out.format(out=out),
                "--mount=volume=out,target=/out",
                str(images["named-user"]),
                "--name=byname",
                *sh(IDENTITY),
                bb,
                "--name=bynumber",
                "--user=1234",
                "--group=2345",
                *sh(IDENTITY),
                bb,
                "--name=bypath",
                "--user=/srv/owned",
                "--group=/srv/owned",
                *sh(IDENTITY),
                str(images["named-user"]),
                "--name=override",
                "--user=root",
                "--group=extra",
                "--supplementary-gids=5,6",
                *sh(IDENTITY),
                bb,
                "--name=retain",
                "--caps-retain=CAP_NET_ADMIN,CAP_KILL",
                *sh(IDENTITY),
                bb,
                "--name=remove",
                "--caps-remove=CAP_CHOWN,net_raw",
                *sh(IDENTITY),
                bb,
                "--name=readonly",
                "--readonly-rootfs",
                *sh(READ_ONLY),
            ]
        ),
        "volumes": lambda out: Case(
            [
                "--no-metadata-service",
                "--volume=data,kind=empty,mode=0770,uid=1000,gid=1001",
                f"--volume=conf,kind=host,source={conf},readOnly=true",
                vol_out.format(out=out),
                str(images["mountpoints"]),
                "--name=writer",
                "--mount=volume=out,target=/out",
                *sh(
                    "echo from-writer > /data/shared; cat /conf/setting > /out/conf-seen; "
                    "touch /conf/new 2> /out/ro-error; echo $? > /out/ro-status; "
                    "grep ' /data ' /proc/mounts > /out/data-mount; "
                    "stat -c '%a %u %g' /data > /out/data-stat; "
                    "for i in $(seq 200); do [ -e /data/from-reader ] && exit 0; sleep 0.05; done; exit 9"
                ),
                bb,
                "--name=reader",
                "--mount=volume=data,target=/data",
                "--mount=volume=out,target=/out",
                *sh(
                    "for i in $(seq 200); do [ -e /data/shared ] && break; sleep 0.05; done; "
                    "cat /data/shared > /out/reader-saw; touch /data/from-reader"
                ),
            ]
        ),
        "handlers": lambda out: Case(
            ["--no-metadata-service", vol_out.format(out=out), str(images["handlers"])]
        ),
        "exec-missing": lambda out: Case(["--no-metadata-service", bb, "--exec=/bin/nope"]),
        "exec-not-on-path": lambda out: Case(["--no-metadata-service", bb, "--exec=nope"]),
        "exec-not-executable": lambda out: Case(
            ["--no-metadata-service", bb, "--exec=/srv/marker"]
        ),
        "user-missing": lambda out: Case(
            ["--no-metadata-service", bb, "--user=ghost", *sh("true")]
        ),
        "group-missing": lambda out: Case(
            ["--no-metadata-service", bb, "--group=ghosts", *sh("true")]
        ),
        "workdir-missing": lambda out: Case(
            ["--no-metadata-service", bb, "--working-dir=/nowhere", *sh("true")]
        ),
        "image-missing": lambda out: Case([str(work / "missing.aci")]),
        "image-invalid": lambda out: Case([str(invalid)]),
        "image-garbage": lambda out: Case([str(garbage)]),
        "mount-undefined": lambda out: Case([bb, "--mount=volume=nope,target=/nope", *sh("true")]),
        "host-volume-missing": lambda out: Case(
            [f"--volume=gone,kind=host,source={work}/gone", bb, *sh("true")]
        ),
        "same-name": lambda out: Case([bb, *sh("true"), bb, *sh("true")]),
        "halt": lambda out: Case(
            [
                "--no-metadata-service",
                bb,
                "--name=fails",
                *sh("sleep 0.3; exit 3"),
                bb,
                "--name=runs",
                *sh('trap "exit 5" TERM; while true; do sleep 0.1; done'),
            ]
        ),
        "capability-unknown": lambda out: Case([bb, "--caps-remove=CAP_NOPE", *sh("true")]),
        "dash-first": lambda out: Case(["--", bb]),
        "empty-exec": lambda out: Case([bb, "--exec="]),
        "image-exec-empty": lambda out: Case([str(images["no-exec"]), *sh("true")]),
        "image-no-app": lambda out: Case([str(images["no-app"])]),
        "not-root": lambda out: Case([bb, *sh("true")], user=65534),
    }
    if MEMORY:
        table["memory"] = lambda out: Case(
            [
                "--no-metadata-service",
                "--volume=sync,kind=empty",
                "--mount=volume=sync,target=/sync",
                bb,
                "--name=free",
                *sh("dd if=/dev/zero of=/dev/null bs=64M count=1 && touch /sync/free"),
                bb,
                "--name=small",
                "--memory=32M",
                *sh("dd if=/dev/zero of=/dev/null bs=4M count=1 && touch /sync/small"),
                str(images["limited"]),
                "--name=big",
                *sh(
                    "while [ ! -e /sync/free ] || [ ! -e /sync/small ]; do sleep 0.05; done; "
                    "dd if=/dev/zero of=/dev/null bs=64M count=1"
                ),
            ]
        )
    if not NO_METADATA:
        table["metadata"] = lambda out: Case(
            [
                bb,
                *sh(
                    'echo "== uuid"; wget -qO- "$AC_METADATA_URL/acMetadata/v1/pod/uuid"; echo; '
                    'echo "== id"; wget -qO- "$AC_METADATA_URL/acMetadata/v1/apps/busybox/image/id"; echo; '
                    'echo "== url"; echo "$AC_METADATA_URL"'
                ),
            ]
        )
    if not NO_NETWORK:
        table["net-default"] = lambda out: Case(
            [
                "--no-metadata-service",
                "--net=default",
                bb,
                *sh(
                    'echo "== links"; cat /proc/net/dev; '
                    'echo "== addr"; ip -4 addr show eth0; '
                    "gw=$(ip route | awk '/^default/ {print $3}'); "
                    'echo "== ping"; ping -c 1 -W 5 "$gw" > /dev/null; echo "ping=$?"'
                ),
            ]
        )
    return table


def _write_invalid_image(path: pathlib.Path) -> None:
    """An archive whose manifest breaks the spec (a name that is not an AC identifier)."""
    manifest = json.dumps(
        {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "Not A Name!"}
    ).encode()
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("manifest")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        folder = tarfile.TarInfo("rootfs")
        folder.type = tarfile.DIRTYPE
        folder.mode = 0o755
        tar.addfile(folder)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    return busybox_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def pods(
    images: dict[str, pathlib.Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Ran]]:
    """Run every case (up to 8 at a time); collect all of them afterwards."""
    base = tmp_path_factory.mktemp("pods")
    shared = base / "shared"
    shared.mkdir()
    table = cases(images, shared)
    results: dict[str, Ran] = {}
    running: list[tuple[str, subprocess.Popen[bytes], pathlib.Path]] = []
    try:
        pending = list(table.items())
        deadline = time.monotonic() + 240  # a pod that hangs fails its tests, not the run
        while (pending or running) and time.monotonic() < deadline:
            while pending and len(running) < 8:
                name, make = pending.pop(0)
                root = base / name
                work = root / "work"
                work.mkdir(parents=True)
                out = root / "out"
                out.mkdir()
                os.chmod(out, 0o777)
                os.chmod(root, 0o755)
                case = make(out)
                rkt = Rkt(root / "rkt", work)
                results[name] = Ran(rkt, out)
                argv = rkt.argv("run", f"--uuid-file-save={work / 'uuid'}", *case.args)
                cwd: pathlib.Path | str = work
                if case.user is not None:
                    argv = [
                        "setpriv",
                        f"--reuid={case.user}",
                        f"--regid={case.user}",
                        "--clear-groups",
                        *argv,
                    ]
                    cwd = "/"
                with open(work / "stdout", "wb") as so, open(work / "stderr", "wb") as se:
                    proc = subprocess.Popen(
                        argv, stdin=subprocess.DEVNULL, stdout=so, stderr=se, cwd=cwd, env=case.env
                    )
                rkt.children.append(proc)
                running.append((name, proc, work))
            time.sleep(0.05)
            for entry in list(running):
                name, proc, work = entry
                if proc.poll() is None:
                    continue
                running.remove(entry)
                ran = results[name]
                ran.rc = proc.returncode
                ran.stdout = (work / "stdout").read_text()
                ran.stderr = (work / "stderr").read_text()
                uuid_file = work / "uuid"
                ran.uuid = uuid_file.read_text().strip() if uuid_file.exists() else ""
        yield results
    finally:
        for _, proc, _ in running:
            proc.kill()
        for ran in results.values():
            cleanup(ran.rkt)


# --- what an app sees ------------------------------------------------------------------


def test_exit_status_is_the_apps(pods: dict[str, Ran]) -> None:
    probe = pods["probe"]
    assert probe.rc == 7, probe.stderr
    status = probe.status()
    assert status["state"] == "exited"
    assert status["exited"] == "true"
    assert status["app-probe"] == "7"
    assert status["pid"].isdigit()
    assert set(status) >= {"created", "started", "networks"}


def test_pid_1_is_the_supervisor(pods: dict[str, Ran]) -> None:
    probe = pods["probe"]
    sections = probe.sections()
    pid1 = sections["pid1"][0]
    assert "appc_tools.rkt" in pid1 and " run " in pid1 and str(probe.rkt.dir) in pid1
    app_pid = int(sections["pid"][0])
    assert app_pid != 1
    # /proc is the pod's PID namespace: PID 1 and a few of the pod's own processes
    procs = {int(p) for p in sections["procs"]}
    assert 1 in procs and app_pid in procs
    assert len(procs) < 10
    assert int(probe.status()["pid"]) != 1  # the host sees the supervisor under another PID


def test_hostname_is_rkt_uuid(pods: dict[str, Ran]) -> None:
    probe = pods["probe"]
    assert probe.sections()["hostname"] == [f"rkt-{probe.uuid}"]
    assert f"rkt-{probe.uuid}" in " ".join(probe.sections()["hosts"])


def test_mounts_inside(pods: dict[str, Ran]) -> None:
    mounts = {}
    for line in pods["probe"].sections()["mounts"]:
        _source, target, fstype, options = line.split()[:4]
        mounts[target] = (fstype, set(options.split(",")))
    assert mounts["/"][0] == "overlay"
    assert mounts["/proc"][0] == "proc"
    assert mounts["/sys"][0] == "sysfs" and "ro" in mounts["/sys"][1]
    assert mounts["/dev"][0] == "tmpfs"
    assert mounts["/dev/pts"][0] == "devpts"
    assert mounts["/dev/shm"][0] == "tmpfs"
    assert "ro" in mounts["/proc/sys"][1]  # rkt's kernel-path protection
    assert pods["probe"].sections()["sys"][-1] == "touch=1"
    assert "Read-only file system" in " ".join(pods["probe"].sections()["sys"])
    # the host's own mounts are not visible
    assert not {t for t in mounts if t.startswith(("/work", "/tmp/pytest"))}


def test_dev_has_exactly_the_spec_nodes(pods: dict[str, Ran]) -> None:
    sections = pods["probe"].sections()
    # spec nodes + pts, ptmx, shm; and the usual fd/stdin/stdout/stderr links to /proc
    assert set(sections["dev"]) == SPEC_DEVICES | {
        "pts",
        "ptmx",
        "shm",
        "fd",
        "stdin",
        "stdout",
        "stderr",
    }
    stats = {}
    for line in sections["devstat"]:
        name, kind, numbers = line.split("|")
        stats[name.removeprefix("/dev/")] = (kind, numbers)
    for name, numbers in DEVICE_NUMBERS.items():
        assert stats[name] == ("character special file", numbers), name
    assert stats["ptmx"][0] == "symbolic link"
    assert stats["pts"][0] == stats["shm"][0] == "directory"
    assert "ptmx" in sections["pts"]


def _env(lines: list[str]) -> dict[str, str]:
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_default_environment(pods: dict[str, Ran]) -> None:
    env = _env(pods["probe"].sections()["env"])
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert env["AC_APP_NAME"] == "probe"  # the pod's app name, not the image's
    assert env["FROM_IMAGE"] == env["LAYER2"] == "image"
    assert (env["HOME"], env["USER"], env["LOGNAME"], env["SHELL"]) == (
        "/root",
        "root",
        "root",
        "/bin/sh",
    )
    assert "AC_METADATA_URL" not in env  # --no-metadata-service
    assert pods["probe"].sections()["cwd"] == ["/"]
    assert pods["probe"].sections()["image"] == ["from the image"]


def test_root_app_identity_and_default_capabilities(pods: dict[str, Ran]) -> None:
    status = _env([line.replace(":\t", "=") for line in pods["probe"].sections()["status"]])
    assert status["Uid"].split() == ["0"] * 4
    assert status["Gid"].split() == ["0"] * 4
    assert int(status["CapBnd"], 16) == DEFAULT_CAPBND
    assert int(status["CapEff"], 16) == DEFAULT_CAPBND
    assert status["NoNewPrivs"] == "0"


def test_host_network_by_default(pods: dict[str, Ran]) -> None:
    # the same network namespace as the host (interfaces may come and go meanwhile)
    assert pods["probe"].sections()["netns"] == [os.readlink("/proc/self/ns/net")]


def test_environment_precedence(pods: dict[str, Ran]) -> None:
    """parent (--inherit-env) < image < --set-env-file < --set-env < per-app --environment."""
    ran = pods["env"]
    assert ran.rc == 0, ran.stderr
    first = _env((ran.out / "first.env").read_text().splitlines())
    second = _env((ran.out / "second.env").read_text().splitlines())
    assert first["INHERITED"] == "parent"
    assert first["LAYER2"] == "image"
    assert first["LAYER3"] == "file"
    assert first["LAYER4"] == "set-env"
    assert first["LAYER5"] == "app"
    assert first["ONLY_FIRST"] == "yes"
    assert first["PATH"] == os.environ["PATH"]  # inherited, so no default
    assert first["AC_APP_NAME"] == "first"
    # --set-env is for every app, --environment for its own app only
    assert second["LAYER5"] == "set-env"
    assert "ONLY_FIRST" not in second
    assert second["AC_APP_NAME"] == "second"
    assert (ran.out / "second.pwd").read_text() == "/srv\n"


def test_hostname_flag_and_net_none(pods: dict[str, Ran]) -> None:
    ran = pods["env"]
    assert (ran.out / "hostname").read_text() == "custom-host\n"
    links = {line.split(":")[0].strip() for line in (ran.out / "net").read_text().splitlines()[2:]}
    assert links == {"lo"}  # --net=none: a namespace of its own, with loopback only


def _identity(ran: Ran, app: str) -> dict[str, str]:
    text = (ran.out / app).read_text()
    found = _env([line.replace(":\t", "=") for line in text.splitlines()[:-1]])
    found.update(_env(text.splitlines()[-1].split()))
    return found


@pytest.mark.parametrize(
    ("app", "uid", "gid", "groups", "user", "home"),
    [
        ("byname", APP_UID, APP_GID, [EXTRA_GID, 4242], "app", "/home/app"),  # image's names
        ("bynumber", 1234, 2345, [], "1234", "/"),
        ("bypath", OWNER_UID, OWNER_GID, [], "2000", "/"),  # the owner of /srv/owned
        ("override", 0, EXTRA_GID, [5, 6], "root", "/root"),  # --user/--group/--supplementary-gids
    ],
)
def test_users_and_groups(
    pods: dict[str, Ran], app: str, uid: int, gid: int, groups: list[int], user: str, home: str
) -> None:
    ran = pods["identity"]
    assert ran.rc == 0, ran.stderr
    found = _identity(ran, app)
    assert found["Uid"].split() == [str(uid)] * 4
    assert found["Gid"].split() == [str(gid)] * 4
    assert [int(g) for g in found["Groups"].split()] == groups
    assert (found["USER"], found["LOGNAME"], found["HOME"]) == (user, user, home)
    effective = int(found["CapEff"], 16)
    assert effective == (DEFAULT_CAPBND if uid == 0 else 0)
    assert int(found["CapBnd"], 16) == DEFAULT_CAPBND


def test_capability_flags(pods: dict[str, Ran]) -> None:
    ran = pods["identity"]
    retain = _identity(ran, "retain")
    net_admin, kill = 1 << 12, 1 << 5
    assert int(retain["CapBnd"], 16) == net_admin | kill
    assert int(retain["CapEff"], 16) == net_admin | kill
    remove = _identity(ran, "remove")
    chown, net_raw = 1 << 0, 1 << 13
    assert int(remove["CapBnd"], 16) == DEFAULT_CAPBND & ~(chown | net_raw)


def test_readonly_rootfs(pods: dict[str, Ran]) -> None:
    """The image has no /proc, /sys, /dev or /out: they are made before the root turns
    read-only; the volume and /dev/shm stay writable."""
    lines = (pods["identity"].out / "readonly").read_text().splitlines()
    assert lines[:4] == ["/x=failed", "/tmp/x=failed", "/out/readonly.ok=ok", "/dev/shm/x=ok"]
    assert lines[4].split()[3].split(",")[0] == "ro"


def test_one_failed_app_stops_the_pod(pods: dict[str, Ran]) -> None:
    """As rkt: when an app fails the others get SIGTERM; `rkt run` exits with the status of
    the first app that failed, and each app's own status is kept."""
    ran = pods["halt"]
    assert ran.rc == 3, ran.stderr
    status = ran.status()
    assert (status["app-fails"], status["app-runs"]) == ("3", "5")


def test_two_apps_share_an_empty_volume_and_a_read_only_host_volume(pods: dict[str, Ran]) -> None:
    ran = pods["volumes"]
    assert ran.rc == 0, ran.stderr
    status = ran.status()
    assert (status["app-writer"], status["app-reader"]) == ("0", "0")
    assert (ran.out / "reader-saw").read_text() == "from-writer\n"
    assert (ran.out / "conf-seen").read_text() == "value from the host\n"
    assert (ran.out / "ro-status").read_text() != "0\n"
    assert "Read-only file system" in (ran.out / "ro-error").read_text()
    assert " /data " in (ran.out / "data-mount").read_text()
    assert (ran.out / "data-stat").read_text() == "770 1000 1001\n"  # mode, uid, gid
    # the empty volume lives in the pod directory (and dies with it)
    shared = ran.rkt.pod_dir(ran.uuid) / "sharedVolumes" / "data"
    assert (shared / "shared").read_text() == "from-writer\n"
    assert (shared / "from-reader").exists()


def test_event_handlers_run_in_order_in_the_apps_rootfs(pods: dict[str, Ran]) -> None:
    """pre-start before the app (it reads the image's /srv/marker; the app sees what it
    made), post-stop after the app exited (it sees what the app made)."""
    ran = pods["handlers"]
    assert ran.rc == 0, ran.stderr
    assert (ran.out / "order").read_text().splitlines() == [
        "pre-start",
        "from the image",
        "main",
        "sees-prestart",
        "post-stop",
        "sees-main",
    ]


@pytest.mark.skipif(not MEMORY, reason=MEMORY_REASON)
def test_memory_limit_kills_an_app_that_exceeds_it(pods: dict[str, Ran]) -> None:
    """--memory=32M and a resource/memory isolator of 32M: 4M passes, 64M is OOM-killed;
    the same 64M without a limit passes."""
    ran = pods["memory"]
    assert ran.rc == 137, ran.stderr
    status = ran.status()
    assert (status["app-free"], status["app-small"], status["app-big"]) == ("0", "0", "137")
    manifest = json.loads(ran.rkt.cli("cat-manifest", ran.uuid)[1])
    small = next(a for a in manifest["apps"] if a["name"] == "small")
    assert {"name": "resource/memory", "value": {"limit": "32M"}} in small["app"]["isolators"]


@pytest.mark.skipif(NO_METADATA, reason="appc.runtime.metadata is not there yet")
def test_metadata_service(pods: dict[str, Ran]) -> None:
    ran = pods["metadata"]
    assert ran.rc == 0, ran.stderr
    sections = ran.sections()
    assert sections["uuid"] == [ran.uuid]
    manifest = json.loads(ran.rkt.cli("cat-manifest", ran.uuid)[1])
    assert sections["id"] == [manifest["apps"][0]["image"]["id"]]
    url = sections["url"][0]
    assert url.startswith("http://127.0.0.1:")
    token = url.rsplit("/", 1)[1]
    assert len(token) >= 32 and ran.uuid.replace("-", "") not in token


@pytest.mark.skipif(NO_NETWORK, reason="appc.runtime.network is not there yet")
def test_net_default(pods: dict[str, Ran]) -> None:
    ran = pods["net-default"]
    assert ran.rc == 0, ran.stdout + ran.stderr
    sections = ran.sections()
    links = {line.split(":")[0].strip() for line in sections["links"][2:]}
    assert links == {"lo", "eth0"}
    assert " inet " in " ".join(sections["addr"])
    assert sections["ping"] == ["ping=0"]
    assert re.fullmatch(r"default:ip4=172\.16\.28\.\d+", ran.status()["networks"])


def test_no_traceback_anywhere(pods: dict[str, Ran]) -> None:
    for name, ran in pods.items():
        assert "Traceback" not in ran.stderr, (name, ran.stderr)
        assert "Exception ignored" not in ran.stderr, (name, ran.stderr)


# --- bad input ----------------------------------------------------------------------------


def _assert_collectable(ran: Ran, state: str) -> None:
    assert ran.uuid, "--uuid-file-save was not written"
    assert ran.states() == {ran.uuid: state}


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        (
            "exec-missing",
            127,
            "rkt: app busybox: cannot execute '/bin/nope': No such file or directory",
        ),
        (
            "exec-not-on-path",
            127,
            "rkt: app busybox: cannot execute 'nope': No such file or directory",
        ),
        (
            "exec-not-executable",
            126,
            "rkt: app busybox: cannot execute '/srv/marker': Permission denied",
        ),
        (
            "user-missing",
            254,
            "rkt: app busybox: user 'ghost' not found in the image's /etc/passwd",
        ),
        (
            "group-missing",
            254,
            "rkt: app busybox: group 'ghosts' not found in the image's /etc/group",
        ),
        (
            "workdir-missing",
            254,
            "rkt: app busybox: working directory '/nowhere': No such file or directory",
        ),
    ],
)
def test_app_that_cannot_start(pods: dict[str, Ran], case: str, status: int, message: str) -> None:
    """The pod ran, its app could not start: the app's status says why (127/126 as a shell
    for a command that is missing or not executable, 254 otherwise) and the pod exited."""
    ran = pods[case]
    assert ran.rc == status
    assert ran.error_line() == message
    assert ran.status()["app-busybox"] == str(status)
    _assert_collectable(ran, "exited")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("image-missing", r"rkt run: .*missing\.aci: no such image file"),
        (
            "image-invalid",
            r"rkt run: .*invalid\.aci: image manifest validation failed: name: .*'Not A Name!'",
        ),
        ("image-garbage", r"rkt run: .*garbage\.aci: unknown image filetype"),
        ("mount-undefined", r"rkt run: app 'busybox': --mount of undefined volume 'nope'"),
        (
            "host-volume-missing",
            r"rkt run: volume 'gone': host source '.*/gone' is missing or a symlink",
        ),
        ("same-name", r"rkt run: multiple apps with same name 'busybox' \(use --name\)"),
        ("capability-unknown", r"rkt run: unknown capability 'CAP_NOPE'"),
        ("empty-exec", r"rkt run: image '.*busybox\.aci': empty --exec: give the path of a BINARY"),
        (
            "image-exec-empty",
            r"rkt run: image '.*no-exec\.aci' has no command \(exec\): try --exec=BINARY",
        ),
        ("image-no-app", r"rkt run: image '.*no-app\.aci' has no app: give --exec=BINARY"),
    ],
)
def test_pod_that_cannot_be_prepared(pods: dict[str, Ran], case: str, message: str) -> None:
    """Nothing ran and nothing was mounted; the pod waits in exited-garbage for gc."""
    ran = pods[case]
    assert ran.rc == 254, ran.stderr
    assert re.fullmatch(message, ran.error_line()), ran.stderr
    _assert_collectable(ran, "exited garbage")
    pod_dir = ran.rkt.pod_dir(ran.uuid)
    assert not (pod_dir / "pid").exists() and not (pod_dir / "rootfs").exists()


def test_not_root(pods: dict[str, Ran]) -> None:
    ran = pods["not-root"]
    assert ran.rc == 254
    assert ran.stderr == "rkt run: running pods needs root (namespaces, mounts and cgroups)\n"
    assert not ran.rkt.dir.exists()


def test_dash_dash_before_an_image(pods: dict[str, Ran]) -> None:
    ran = pods["dash-first"]
    assert ran.rc == 2
    assert ran.stderr.splitlines()[0] == "rkt run: '--' must follow an image"
    assert not (ran.rkt.dir / "pods").exists()


# --- the argument grammar (no pod runs) ------------------------------------------------


def test_split_apps_grammar() -> None:
    from appc_tools.rkt.pods import _split_apps

    rest = [
        "a.aci",
        "--name=x",
        "--user",
        "1",
        "--",
        "-c",
        "--name=y",
        "---",
        "---",
        "b.aci",
        "--",
        "z",
    ]
    assert _split_apps(rest) == [
        ("a.aci", ["--name=x", "--user", "1"], ["-c", "--name=y"]),
        ("b.aci", [], ["z"]),
    ]


def test_missing_set_env_file(tmp_path: pathlib.Path) -> None:
    rkt = Rkt(tmp_path / "rkt", tmp_path)
    code, _, err = rkt.cli("run", f"--set-env-file={tmp_path}/none", "a.aci")
    assert code == 254
    assert err == f"rkt run: --set-env-file {tmp_path}/none: No such file or directory\n"
    assert not (tmp_path / "rkt" / "pods").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run"], "rkt run: must provide at least one image or specify the pod manifest"),
        (
            ["run", "a.aci", "--", "x", "---", "--", "y"],
            "rkt run: only one argument list (--) per image (a.aci)",
        ),
        (
            ["run", "--net=bridge", "a.aci"],
            "rkt run: unsupported --net=bridge (host, none or default)",
        ),
        (
            ["run", "--port=www:80", "a.aci"],
            "rkt run: --port flag does not work with 'host' networking",
        ),
    ],
)
def test_usage_errors(tmp_path: pathlib.Path, argv: list[str], message: str) -> None:
    rkt = Rkt(tmp_path / "rkt", tmp_path)
    code, _out, err = rkt.cli(*argv)
    assert code == 2
    assert err.splitlines()[0] == message
    assert not (tmp_path / "rkt" / "pods").exists()
