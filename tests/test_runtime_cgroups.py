"""Resource isolators through real cgroups: limits that the kernel enforces, and cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator

import pytest

from appc.errors import PodError
from appc.runtime import cgroups
from appc.runtime.cgroups import (
    AppCgroup,
    Hierarchy,
    Limits,
    limits_from_isolators,
    remove_pod_cgroups,
)
from appc.types.isolators import Isolators

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root")
SUPPORT = cgroups.supported()
needs_memory = pytest.mark.skipif(
    not SUPPORT["memory"], reason="no usable memory cgroup controller"
)
needs_cpu = pytest.mark.skipif(not SUPPORT["cpu"], reason="no usable cpu cgroup controller")
MiB = 1 << 20


@pytest.fixture
def pod_uuid() -> Iterator[str]:
    """A fresh pod UUID whose cgroups (in every hierarchy) are removed after the test."""
    value = str(uuid.uuid4())
    yield value
    remove_pod_cgroups(value)
    for hierarchy in (*cgroups.hierarchies(), *cgroups.hierarchies(UNIFIED)):
        remove_pod_cgroups(value, layout=[hierarchy])
    assert not cgroups._pod_dirs((*cgroups.hierarchies(), *cgroups.hierarchies(UNIFIED)), value)


UNIFIED = "/sys/fs/cgroup/unified"


def run_in(
    cgroup: AppCgroup, argv: list[str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run *argv* in a child that moves itself into *cgroup* before exec."""
    return subprocess.run(
        argv, preexec_fn=cgroup.attach, capture_output=True, text=True, timeout=timeout, check=False
    )


# --- limits from isolators ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("isolators", "limits"),
    [
        ([], Limits()),
        ([{"name": "resource/memory", "value": {"limit": "32Mi"}}], Limits(memory_bytes=32 * MiB)),
        (
            [{"name": "resource/memory", "value": {"limit": "1G", "request": "1M"}}],
            Limits(memory_bytes=10**9),
        ),
        ([{"name": "resource/memory", "value": {"request": "1G"}}], Limits()),
        ([{"name": "resource/cpu", "value": {"limit": "250m"}}], Limits(cpu_millicores=250)),
        ([{"name": "resource/cpu", "value": {"limit": 2}}], Limits(cpu_millicores=2000)),
        ([{"name": "resource/cpu", "value": {"limit": "0.5"}}], Limits(cpu_millicores=500)),
        ([{"name": "os/linux/cpu-shares", "value": 512}], Limits(cpu_shares=512)),
        (
            [
                {"name": "resource/memory", "value": {"limit": "1G"}},
                {"name": "resource/memory", "value": {"limit": "2G"}},  # the last one wins
                {"name": "os/linux/no-new-privileges", "value": True},
            ],
            Limits(memory_bytes=2 * 10**9),
        ),
    ],
)
def test_limits_from_isolators(isolators: list[dict[str, object]], limits: Limits) -> None:
    assert limits_from_isolators(Isolators(isolators)) == limits


@pytest.mark.parametrize("kind", ["memory", "cpu"])
def test_non_positive_limits_are_refused(kind: str) -> None:
    with pytest.raises(PodError, match=f"resource/{kind} limit must be positive"):
        limits_from_isolators(Isolators([{"name": f"resource/{kind}", "value": {"limit": "-1"}}]))


def test_limits_bounded_by_the_pod() -> None:
    app = Limits(memory_bytes=100, cpu_millicores=None, cpu_shares=10)
    assert app.bounded_by(Limits(memory_bytes=50, cpu_millicores=300, cpu_shares=99)) == Limits(
        50, 300, 10
    )
    assert app.bounded_by(Limits()) == app
    assert not Limits() and Limits(cpu_shares=2)


def test_base_path_never_nests_pods() -> None:
    assert cgroups._base_path("/") == "/"
    assert cgroups._base_path("/a/b") == "/a/b"
    assert cgroups._base_path("/a/appc-1234/main") == "/a"


def test_bad_names_are_refused() -> None:
    with pytest.raises(PodError, match="bad pod UUID"):
        AppCgroup.create("../x", "main", Limits(), layout=[])
    with pytest.raises(PodError, match="bad app name"):
        AppCgroup.create("1234", "Main/x", Limits(), layout=[])
    with pytest.raises(PodError, match="bad pod UUID"):
        remove_pod_cgroups("a/../..", layout=[])


def test_supported_reports_both_kinds() -> None:
    assert set(SUPPORT) == {"memory", "cpu"}
    assert all(isinstance(v, bool) for v in SUPPORT.values())


def test_no_cgroup_file_system_means_warnings_not_errors() -> None:
    cg = AppCgroup.create(
        "1234", "main", Limits(memory_bytes=MiB, cpu_millicores=100, cpu_shares=5), layout=[]
    )
    assert cg.dirs == () and cg.version == 0
    assert cg.warnings == (
        "resource/memory isolator set but support disabled",
        "resource/cpu isolator set but support disabled",
        "os/linux/cpu-shares isolator set but support disabled",
    )
    cg.attach()  # nothing to do
    assert not cg.oom_killed() and cg.procs() == []
    cg.remove()


# --- v1 (this machine) --------------------------------------------------------------------


@needs_root
@needs_memory
def test_layout_is_below_our_own_cgroup(pod_uuid: str) -> None:
    cg = AppCgroup.create(pod_uuid, "main", Limits())
    assert cg.warnings == ()
    own = {h.mount: h.own_dir for h in cgroups.hierarchies()}
    assert len(cg.dirs) == len(own)
    for directory in cg.dirs:
        mount = next(m for m in own if directory.startswith(m + "/"))
        assert directory == os.path.join(own[mount], f"appc-{pod_uuid}", "main")
        assert os.path.isdir(directory)
    cg.remove()
    assert not any(os.path.exists(d) for d in cg.dirs)
    assert not any(os.path.exists(os.path.dirname(d)) for d in cg.dirs)


@needs_root
@needs_memory
def test_memory_limit_kills_an_app_that_exceeds_it(pod_uuid: str) -> None:
    cg = AppCgroup.create(pod_uuid, "hog", Limits(memory_bytes=32 * MiB))
    assert cg.warnings == ()
    assert cg.memory_dir is not None
    with open(os.path.join(cg.memory_dir, "memory.limit_in_bytes")) as f:
        assert int(f.read()) == 32 * MiB
    assert not cg.oom_killed()
    result = run_in(cg, ["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"])
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert cg.oom_killed()
    cg.remove()
    assert not any(os.path.exists(d) for d in cg.dirs)


@needs_root
@needs_memory
def test_memory_limit_lets_a_small_app_run(pod_uuid: str) -> None:
    cg = AppCgroup.create(pod_uuid, "small", Limits(memory_bytes=32 * MiB))
    result = run_in(cg, ["dd", "if=/dev/zero", "of=/dev/null", "bs=8M", "count=4"])
    assert result.returncode == 0, result.stderr
    assert not cg.oom_killed()
    cg.remove()


@needs_root
@needs_cpu
def test_cpu_limit_throttles(pod_uuid: str) -> None:
    cg = AppCgroup.create(pod_uuid, "busy", Limits(cpu_millicores=100, cpu_shares=256))
    assert cg.warnings == ()
    cpu_dir = next(d for d in cg.dirs if os.path.exists(os.path.join(d, "cpu.cfs_quota_us")))
    with open(os.path.join(cpu_dir, "cpu.cfs_quota_us")) as f:
        assert int(f.read()) == 10_000
    with open(os.path.join(cpu_dir, "cpu.shares")) as f:
        assert int(f.read()) == 256
    spin = (
        "import time\n"
        "end = time.monotonic() + 1.0\n"
        "while time.monotonic() < end: pass\n"
        "print(time.process_time())\n"
    )
    result = run_in(cg, [sys.executable, "-S", "-c", spin])
    assert result.returncode == 0, result.stderr
    used = float(result.stdout)
    assert used < 0.4  # 10% of a CPU over ~1 s (plus start-up), not ~1 s
    with open(os.path.join(cpu_dir, "cpu.stat")) as f:
        stat = dict(line.split() for line in f)
    assert int(stat["nr_throttled"]) > 0
    cg.remove()


@needs_root
@needs_memory
def test_two_apps_share_the_pod_parent(pod_uuid: str) -> None:
    a = AppCgroup.create(pod_uuid, "a", Limits(memory_bytes=64 * MiB))
    b = AppCgroup.create(pod_uuid, "b", Limits())
    assert {os.path.dirname(d) for d in a.dirs} == {os.path.dirname(d) for d in b.dirs}
    again = AppCgroup.create(pod_uuid, "a", Limits(memory_bytes=64 * MiB))  # reused, not an error
    assert again.dirs == a.dirs
    a.remove()
    assert all(os.path.isdir(os.path.dirname(d)) for d in b.dirs)
    b.remove()
    assert not any(os.path.exists(os.path.dirname(d)) for d in b.dirs)


@needs_root
@needs_memory
def test_remove_tolerates_busy_and_missing(pod_uuid: str) -> None:
    cg = AppCgroup.create(pod_uuid, "main", Limits())
    sleeper = subprocess.Popen(["sleep", "60"], preexec_fn=cg.attach)  # noqa: PLW1509 - no threads here
    try:
        assert cg.procs() == [sleeper.pid]
        cg.remove()  # busy: logged, left for gc
        assert all(os.path.isdir(d) for d in cg.dirs)
        remove_pod_cgroups(pod_uuid)
        assert sleeper.wait(5) == -signal.SIGKILL
        assert not any(os.path.exists(d) for d in cg.dirs)
        cg.remove()  # missing: fine
    finally:
        sleeper.kill()
        sleeper.wait()


@needs_root
@needs_memory
def test_remove_pod_cgroups_kills_every_task(pod_uuid: str) -> None:
    main = AppCgroup.create(pod_uuid, "main", Limits(memory_bytes=64 * MiB))
    side = AppCgroup.create(pod_uuid, "side", Limits(cpu_millicores=500))
    # A shell that leaves a background child behind: gc must find that one too.
    first = subprocess.Popen(["sh", "-c", "sleep 60 & exec sleep 61"], preexec_fn=main.attach)  # noqa: PLW1509
    second = subprocess.Popen(["sleep", "60"], preexec_fn=side.attach)  # noqa: PLW1509
    try:
        for _ in range(100):
            if len(main.procs()) == 2:
                break
            subprocess.run(["sleep", "0.01"], check=True)
        tasks = main.procs() + side.procs()
        assert len(tasks) == 3
        remove_pod_cgroups(pod_uuid)
        assert first.wait(5) == -signal.SIGKILL
        assert second.wait(5) == -signal.SIGKILL
        for pid in tasks:
            assert not os.path.exists(f"/proc/{pid}") or _state(pid) == "Z"
        assert not any(os.path.exists(d) for d in main.dirs + side.dirs)
        assert not cgroups._pod_dirs(cgroups.hierarchies(), pod_uuid)
        remove_pod_cgroups(pod_uuid)  # again: nothing left, fine
    finally:
        for process in (first, second):
            process.kill()
            process.wait()


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


@needs_root
@needs_memory
def test_gc_finds_pods_started_from_another_cgroup(pod_uuid: str) -> None:
    """``rkt gc`` may run in another cgroup than ``rkt run`` did: pods are found anywhere."""
    memory = next(h for h in cgroups.hierarchies() if "memory" in h.controllers)
    elsewhere = Hierarchy(1, memory.mount, memory.controllers, "/")
    cg = AppCgroup.create(pod_uuid, "main", Limits(), layout=[elsewhere])
    assert cg.dirs == (os.path.join(memory.mount, f"appc-{pod_uuid}", "main"),)
    remove_pod_cgroups(pod_uuid)
    assert not os.path.exists(os.path.dirname(cg.dirs[0]))


@needs_root
def test_create_failure_leaves_nothing(pod_uuid: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if not SUPPORT["memory"]:
        pytest.skip("no memory controller")
    real_write: Callable[[str, str], None] = cgroups._write

    def refuse_limits(path: str, value: str) -> None:
        if path.endswith("memory.limit_in_bytes"):
            raise OSError(22, "Invalid argument")
        real_write(path, value)

    monkeypatch.setattr(cgroups, "_write", refuse_limits)
    with pytest.raises(
        PodError, match=r"cannot set memory.limit_in_bytes=1048576 in .*: Invalid argument"
    ):
        AppCgroup.create(pod_uuid, "main", Limits(memory_bytes=MiB))
    assert not cgroups._pod_dirs(cgroups.hierarchies(), pod_uuid)


# --- v2 code paths, on this machine's unified hierarchy (no memory/cpu controllers) ---------


@needs_root
@pytest.mark.skipif(not cgroups.hierarchies(UNIFIED), reason=f"no cgroup2 at {UNIFIED}")
def test_v2_hierarchy_groups_warns_and_kills(pod_uuid: str) -> None:
    layout = cgroups.hierarchies(UNIFIED)
    assert [h.version for h in layout] == [2]
    cg = AppCgroup.create(pod_uuid, "main", Limits(memory_bytes=MiB), layout=layout)
    assert cg.version == 2
    if "memory" not in layout[0].controllers:
        assert cg.warnings == ("resource/memory isolator set but support disabled",)
        assert cg.memory_dir is None
    sleeper = subprocess.Popen(["sleep", "60"], preexec_fn=cg.attach)  # noqa: PLW1509 - no threads here
    try:
        assert cg.procs() == [sleeper.pid]
        assert not cg.oom_killed()
        remove_pod_cgroups(pod_uuid, layout=layout)  # cgroup.kill
        assert sleeper.wait(5) == -signal.SIGKILL
        assert not os.path.exists(os.path.dirname(cg.dirs[0]))
    finally:
        sleeper.kill()
        sleeper.wait()
