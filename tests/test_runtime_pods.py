"""rkt's pod protocol on disk (``appc.runtime.pods``): the state of a pod is derived from the
directory that holds it and whether its ``flock`` is held, transitions are renames, a
held lock survives the rename, and UUID prefixes are matched as rkt matches them.

No namespaces here: these tests need neither root nor a real pod.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from appc.errors import PodError
from appc.runtime.pods import (
    STATE_DIRS,
    Pod,
    PodState,
    create_pod,
    find_pod,
    get_pod,
    list_pods,
    locked,
    read_uuid_file,
)
from appc.store.locks import FileLock


@pytest.fixture
def data_dir(tmp_path: pathlib.Path) -> str:
    return str(tmp_path / "rkt")


def put_pod(data_dir: str, state_dir: str, uuid: str) -> str:
    """A bare pod directory in *state_dir* (as another process would have left it)."""
    path = os.path.join(data_dir, "pods", state_dir, uuid)
    os.makedirs(path)
    return path


def state_of(data_dir: str, uuid: str) -> PodState:
    return get_pod(data_dir, uuid).state


# --- states derived from directory + lock -----------------------------------------------


@pytest.mark.parametrize(
    ("state_dir", "free", "busy"),
    [
        ("embryo", PodState.EMBRYO, PodState.EMBRYO),
        ("prepare", PodState.ABORTED_PREPARE, PodState.PREPARING),
        ("prepared", PodState.PREPARED, PodState.PREPARED),
        ("run", PodState.EXITED, PodState.RUNNING),
        ("exited-garbage", PodState.EXITED_GARBAGE, PodState.EXITED_DELETING),
        ("garbage", PodState.GARBAGE, PodState.DELETING),
    ],
)
def test_state_is_directory_plus_lock(
    data_dir: str, state_dir: str, free: PodState, busy: PodState
) -> None:
    uuid = "6733c088-4e4e-4c3c-b1b2-0c5bd43f8a9b"
    path = put_pod(data_dir, state_dir, uuid)
    assert state_of(data_dir, uuid) is free
    with FileLock.open(path, directory=True) as lock:
        assert lock.exclusive(blocking=False)
        assert state_of(data_dir, uuid) is busy
    assert state_of(data_dir, uuid) is free


def test_probing_does_not_disturb_the_holder(data_dir: str) -> None:
    uuid = "6733c088-4e4e-4c3c-b1b2-0c5bd43f8a9b"
    path = put_pod(data_dir, "run", uuid)
    with FileLock.open(path, directory=True) as lock:
        assert lock.exclusive(blocking=False)
        for _ in range(3):
            assert state_of(data_dir, uuid) is PodState.RUNNING
        assert lock.mode == "exclusive"


def test_state_strings_are_rkts() -> None:
    assert [str(s) for s in PodState] == [
        "embryo",
        "preparing",
        "aborted prepare",
        "prepared",
        "running",
        "deleting",
        "exited deleting",
        "exited",
        "exited garbage",
        "garbage",
    ]
    assert STATE_DIRS == ("embryo", "prepare", "prepared", "run", "exited-garbage", "garbage")


def test_unknown_pod(data_dir: str) -> None:
    with pytest.raises(PodError, match="no pod 6733c088"):
        get_pod(data_dir, "6733c088-4e4e-4c3c-b1b2-0c5bd43f8a9b")
    with pytest.raises(ValueError):
        get_pod(data_dir, "not-a-uuid")


# --- transitions ------------------------------------------------------------------------


def test_prepare_then_run_then_exit(data_dir: str, tmp_path: pathlib.Path) -> None:
    uuid_file = tmp_path / "uuid"
    pod = create_pod(data_dir, uuid_file=str(uuid_file))
    # the UUID is saved at once, so even a pod whose preparation fails can be found
    assert read_uuid_file(str(uuid_file)) == pod.uuid
    assert pod.state_dir == "prepare" and pod.lock is not None
    assert state_of(data_dir, pod.uuid) is PodState.PREPARING
    assert os.path.isfile(pod.file("pod-created"))
    assert oct(os.stat(pod.path).st_mode & 0o777) == "0o750"
    assert not os.listdir(os.path.join(data_dir, "pods", "embryo"))

    pod.to_prepared()
    assert pod.lock is None
    assert state_of(data_dir, pod.uuid) is PodState.PREPARED

    again = get_pod(data_dir, pod.uuid)
    again.to_run()  # run-prepared: lock first, then rename
    assert state_of(data_dir, pod.uuid) is PodState.RUNNING
    again.release()
    assert state_of(data_dir, pod.uuid) is PodState.EXITED


def test_prepare_released_is_an_aborted_prepare(data_dir: str) -> None:
    pod = create_pod(data_dir)
    pod.release()
    assert state_of(data_dir, pod.uuid) is PodState.ABORTED_PREPARE


def test_marking_renames_and_sets_the_mark_time(data_dir: str) -> None:
    pod = create_pod(data_dir)
    pod.to_run()
    pod.release()
    exited = get_pod(data_dir, pod.uuid)
    before = os.stat(exited.path).st_ctime
    time.sleep(0.02)
    exited.to_exited_garbage()
    assert exited.path.endswith(f"pods/exited-garbage/{pod.uuid}")
    assert state_of(data_dir, pod.uuid) is PodState.EXITED_GARBAGE
    assert exited.marked_at().timestamp() >= before
    with locked(exited):
        assert state_of(data_dir, pod.uuid) is PodState.EXITED_DELETING
    assert state_of(data_dir, pod.uuid) is PodState.EXITED_GARBAGE


def test_a_busy_prepared_pod_is_not_run_twice(data_dir: str) -> None:
    pod = create_pod(data_dir)
    pod.to_prepared()
    first, second = get_pod(data_dir, pod.uuid), get_pod(data_dir, pod.uuid)
    first.to_run()
    with pytest.raises(PodError, match=r"busy|moved"):
        second.to_run()
    assert second.lock is None
    first.release()


def test_a_pod_moved_meanwhile_is_reported(data_dir: str) -> None:
    pod = create_pod(data_dir)
    pod.to_prepared()
    stale = get_pod(data_dir, pod.uuid)
    get_pod(data_dir, pod.uuid).to_garbage()
    with pytest.raises(PodError, match="moved or removed by another process"):
        stale.to_garbage()


def test_locked_refuses_a_busy_pod(data_dir: str) -> None:
    pod = create_pod(data_dir)  # holds the lock
    with pytest.raises(PodError, match="is busy"), locked(get_pod(data_dir, pod.uuid)):
        pass
    pod.release()


_HOLDER = textwrap.dedent(
    """
    import fcntl, os, sys
    src, dst = sys.argv[1], sys.argv[2]
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(src, dst)
    print("locked", flush=True)
    sys.stdin.read()
    """
)


def test_a_held_lock_survives_rename_and_dies_with_its_holder(data_dir: str) -> None:
    """What a pod's supervisor relies on: lock in prepare/, rename to run/, keep running;
    when the holder dies (even by SIGKILL) the kernel drops the lock: the pod has exited."""
    pod = create_pod(data_dir)
    pod.release()
    src = pod.path
    dst = os.path.join(data_dir, "pods", "run", pod.uuid)
    with subprocess.Popen(
        [sys.executable, "-c", _HOLDER, src, dst],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == "locked\n"
            assert not os.path.exists(src)
            assert state_of(data_dir, pod.uuid) is PodState.RUNNING
            assert [p.uuid for p in list_pods(data_dir)] == [pod.uuid]
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(timeout=10)
            assert state_of(data_dir, pod.uuid) is PodState.EXITED
        finally:
            if holder.poll() is None:
                holder.kill()


def test_a_lock_is_inherited_by_a_forked_child(data_dir: str) -> None:
    """The supervisor inherits stage0's lock over fork: the pod runs while either lives."""
    pod = create_pod(data_dir)
    pod.to_run()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child only waits
        os.close(write_end)
        os.read(read_end, 1)
        os._exit(0)
    os.close(read_end)
    try:
        pod.release()  # stage0 lets go; the child still holds the same lock
        assert state_of(data_dir, pod.uuid) is PodState.RUNNING
    finally:
        os.close(write_end)
        os.waitpid(child, 0)
    assert state_of(data_dir, pod.uuid) is PodState.EXITED


# --- listing and UUID prefixes ------------------------------------------------------------


UUIDS = {
    "embryo": "aaaa0000-0000-4000-8000-000000000001",
    "prepare": "abcd0000-0000-4000-8000-000000000002",
    "prepared": "abce0000-0000-4000-8000-000000000003",
    "run": "b0000000-0000-4000-8000-000000000004",
    "exited-garbage": "c0000000-0000-4000-8000-000000000005",
    "garbage": "aaaa1111-0000-4000-8000-000000000006",
}


@pytest.fixture
def six_pods(data_dir: str) -> str:
    for state_dir, uuid in UUIDS.items():
        put_pod(data_dir, state_dir, uuid)
    return data_dir


def test_list_shows_prepare_prepared_run_and_exited_garbage(six_pods: str) -> None:
    listed = {p.uuid: p.state for p in list_pods(six_pods)}
    assert listed == {
        UUIDS["prepare"]: PodState.ABORTED_PREPARE,
        UUIDS["prepared"]: PodState.PREPARED,
        UUIDS["run"]: PodState.EXITED,
        UUIDS["exited-garbage"]: PodState.EXITED_GARBAGE,
    }
    states = tuple(STATE_DIRS)
    assert {p.uuid for p in list_pods(six_pods, states=states)} == set(UUIDS.values())


def test_list_skips_names_that_are_not_uuids(six_pods: str) -> None:
    os.makedirs(os.path.join(six_pods, "pods", "run", "lost+found"))
    assert len(list_pods(six_pods)) == 4


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("b", UUIDS["run"]),
        ("B0000", UUIDS["run"]),  # any case
        ("c0000000-0000", UUIDS["exited-garbage"]),  # dashes as typed
        ("c00000000000", UUIDS["exited-garbage"]),  # or not
        ("abcd", UUIDS["prepare"]),
        (UUIDS["prepared"], UUIDS["prepared"]),
        (f"  {UUIDS['run']}\n", UUIDS["run"]),  # as read from a --uuid-file
    ],
)
def test_prefix_matching(six_pods: str, prefix: str, expected: str) -> None:
    assert find_pod(six_pods, prefix).uuid == expected


def test_ambiguous_prefix(six_pods: str) -> None:
    with pytest.raises(PodError, match=r"^ambiguous uuid, 2 matches$"):
        find_pod(six_pods, "abc")


@pytest.mark.parametrize("prefix", ["aaaa", "d", "abcf"])
def test_no_match(six_pods: str, prefix: str) -> None:
    """Embryo and garbage pods are never matched (``aaaa`` names only those)."""
    with pytest.raises(PodError, match=f'^no matches found for "{prefix}"$'):
        find_pod(six_pods, prefix)


def test_empty_prefix(six_pods: str) -> None:
    with pytest.raises(PodError, match="empty pod UUID"):
        find_pod(six_pods, "  ")


def test_unreadable_uuid_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(PodError, match=r"cannot read UUID file .*No such file"):
        read_uuid_file(str(tmp_path / "missing"))


# --- pod contents ---------------------------------------------------------------------


def test_pod_files(data_dir: str) -> None:
    pod = create_pod(data_dir)
    assert pod.read("pid") is None and pod.pid() is None and pod.started() is None
    assert pod.manifest() is None and pod.app_names() == []
    pod.write("pid", "1234\n")
    pod.write("status/web", "0\n")
    pod.write("status/worker", "137\n")
    pod.write("status/broken", "garbage\n")
    pod.write("appsinfo/web/pid", "99\n")
    pod.write("runtime-config", '{"net": "none"}')
    assert pod.pid() == 1234 and pod.app_pid("web") == 99 and pod.app_pid("worker") is None
    assert pod.exit_statuses() == {"web": 0, "worker": 137}
    assert pod.runtime_config() == {"net": "none"}
    assert pod.started() is not None and pod.created() is not None
    assert not [n for n in os.listdir(pod.path) if n.endswith(".tmp")]
    pod.write("runtime-config", "[1]")
    assert pod.runtime_config() == {}
    pod.release()


def test_delete_never_follows_symlinks_out_of_the_pod(
    data_dir: str, tmp_path: pathlib.Path
) -> None:
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep").write_text("keep me")
    pod = create_pod(data_dir)
    os.makedirs(pod.file("rootfs"))
    os.symlink(outside, pod.file("rootfs", "app"))
    os.symlink(outside / "keep", pod.file("link"))
    pod.delete()
    assert not os.path.lexists(pod.path)
    assert (outside / "keep").read_text() == "keep me"


def test_pod_repr_fields(data_dir: str) -> None:
    pod = Pod(UUIDS["run"], data_dir, "run", PodState.EXITED)  # type: ignore[arg-type]
    assert pod.path == os.path.join(data_dir, "pods", "run", UUIDS["run"])
    assert pod.file("status", "x") == os.path.join(pod.path, "status", "x")
