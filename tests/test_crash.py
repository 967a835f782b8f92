"""Crash and concurrency safety (issue 8, item 3): ``kill -9`` at random points, many
processes on one data directory, and a full disk.

* **kill -9** — ``actool build`` of a 20 MB tree, ``docker2aci`` of a 15 MB image from a
  local registry (squashed and ``-nosquash``), ``rkt fetch`` (a file and an HTTPS URL),
  ``rkt run`` and ``rkt gc`` are each killed several times after seeded random delays
  (pure timing, no hooks), spread over the command's measured duration.  After every
  kill: the output directory holds no partial ``.aci`` and no temporary file (a file
  there is complete and valid); the next run works and removes what a killed run left
  in its work directory; the store, reopened (which runs its cleanup), has an index that
  matches its blobs (``check()`` empty, sqlite ``integrity_check`` ok); no pod is stuck
  (``rkt gc --grace-period=0s`` twice leaves ``pods/`` with empty state directories and
  ``rkt list`` works); no mount under the test's directory and no stray process.
  A crash between an embryo's creation and its move to ``prepare`` is reproduced on disk
  (no timing reaches that window) and collected too.
* **concurrency** — eight processes at once (``rkt fetch`` of three images, ``rkt run
  --exec /bin/true``, ``rkt gc``) on one data directory, beside a long-running pod: every
  command exits 0, no image is lost, the index is intact, and ``gc`` never deletes the
  running pod.
* **disk full** — a 2 MiB tmpfs as output or data directory: ``actool build``,
  ``docker2aci`` and ``rkt fetch`` fail with one line saying "no space left" (exit 1,
  or 254 for rkt), leave nothing partial, and the store works again once space is freed.

Everything started here is stopped, and every tmpfs unmounted, even when a test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

import pytest

from appc.aci.validate import validate_archive
from appc.store import ImageStore, TreeStore
from tests import docker_images as di
from tests.fault_server import FaultServer, fault_server, make_cert
from tests.registry_fixtures import Registry, push
from tests.runtime_images import (
    Rkt,
    build_aci,
    busybox_available,
    busybox_rootfs,
    cleanup,
    image_manifest,
)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="pods and tmpfs mounts need root"),
    pytest.mark.skipif(not busybox_available(), reason="needs a static busybox"),
]

SEEDS = (8, 1, 1977)  # one random sequence of kill delays per seed
KILLS_PER_SEED = 2


# --------------------------------------------------------------------------- helpers


def tool(module: str, *args: str | os.PathLike[str]) -> list[str]:
    return [sys.executable, "-m", module, *(os.fspath(a) for a in args)]


def run(
    argv: Sequence[str], *, timeout: float = 60, **kw: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kw,  # type: ignore[call-overload]
    )


def timed(argv: Sequence[str], **kw: object) -> float:
    """Run *argv* to completion (it must succeed); return how long it took."""
    started = time.monotonic()
    proc = run(argv, **kw)
    assert proc.returncode == 0, proc.stderr
    return time.monotonic() - started


def kill_after(argv: Sequence[str], delay: float, **kw: object) -> int | None:
    """Start *argv*, ``kill -9`` it after *delay* seconds; its status, or None when it had
    already finished (then it must have succeeded)."""
    child = subprocess.Popen(  # type: ignore[call-overload]
        list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw
    )
    try:
        child.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert child.stderr is not None
        child.stderr.close()
        return child.returncode
    assert child.stderr is not None
    err = child.stderr.read().decode(errors="replace")
    child.stderr.close()
    assert child.returncode == 0, err
    return None


def delays(seed: int, duration: float, count: int = KILLS_PER_SEED) -> list[float]:
    """*count* kill delays spread over a run of *duration* seconds (seeded)."""
    rng = random.Random(seed)
    return [rng.uniform(0.03, max(0.06, duration * 0.95)) for _ in range(count)]


def hidden_or_temp(directory: pathlib.Path) -> list[str]:
    """Files a crash may have left: hidden, ``.tmp``, ``.partial`` (anywhere below)."""
    found = []
    for path in directory.rglob("*"):
        name = path.name
        if name.startswith(".") or name.endswith((".tmp", ".partial", ".part")):
            found.append(str(path.relative_to(directory)))
    return sorted(found)


def mounts_under(path: pathlib.Path) -> list[str]:
    with open("/proc/mounts", encoding="utf-8") as f:
        return [line for line in f if str(path) in line.split()[1]]


def processes_naming(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def wait_no_process(marker: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while processes_naming(marker):
        assert time.monotonic() < deadline, f"processes left: {processes_naming(marker)}"
        time.sleep(0.05)


def assert_store_consistent(data_dir: pathlib.Path) -> list[str]:
    """Reopen the store (its cleanup runs), check it and its database; return its keys."""
    with ImageStore(data_dir) as store:
        assert store.check() == []
        assert os.listdir(store.tmp_dir) == []
        keys = [image.key for image in store.list()]
        for key in keys:
            with store.open_blob(key) as blob:
                assert blob.read(512)
        db = os.path.join(store.cas, "db", "store.sqlite")
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    return keys


def assert_pods_collectable(rkt: Rkt) -> None:
    """``rkt list`` works; ``rkt gc --grace-period=0s`` twice empties every state dir."""
    code, out, err = rkt.cli("list")
    assert code == 0, err
    for _ in range(2):
        code, out, err = rkt.cli("gc", "--grace-period=0s")
        assert code == 0, (out, err)
    left = sorted(str(p.relative_to(rkt.dir)) for p in (rkt.dir / "pods").glob("*/*"))
    assert left == [], f"pods left after gc: {left}"
    assert mounts_under(rkt.dir) == []


# --------------------------------------------------------------------------- images


def write_tree(root: pathlib.Path, *, files: int, size: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    for index in range(files):
        path = root / f"d{index % 20}" / f"f{index}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))


def layout(root: pathlib.Path, name: str, *, files: int, size: int) -> pathlib.Path:
    (root / "rootfs").mkdir(parents=True)
    write_tree(root / "rootfs", files=files, size=size)
    (root / "manifest").write_text(json.dumps(image_manifest(name, None)))
    return root


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("crash")


@pytest.fixture(scope="module")
def big_layout(work: pathlib.Path) -> pathlib.Path:
    """A 20 MB layout of incompressible files (gzip takes about a second)."""
    return layout(work / "big-layout", "example.com/big", files=200, size=100_000)


@pytest.fixture(scope="module")
def big_aci(big_layout: pathlib.Path, work: pathlib.Path) -> pathlib.Path:
    out = work / "big.aci"
    proc = run(tool("appc_tools.actool", "build", big_layout, out))
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def busybox(work: pathlib.Path) -> pathlib.Path:
    layout_dir = work / "busybox-layout"
    layout_dir.mkdir()
    busybox_rootfs(layout_dir / "rootfs")
    app = {"exec": ["/bin/sh"], "user": "0", "group": "0"}
    return build_aci(layout_dir, image_manifest("example.com/busybox", app), work / "busybox.aci")


@pytest.fixture(scope="module")
def small_acis(work: pathlib.Path) -> list[pathlib.Path]:
    """Three distinct small images (for concurrent fetches)."""
    out = []
    for index in range(3):
        root = layout(work / f"small-{index}", f"example.com/small-{index}", files=5, size=20_000)
        proc = run(
            tool(
                "appc_tools.actool", "build", "--no-compression", root, work / f"small-{index}.aci"
            )
        )
        assert proc.returncode == 0, proc.stderr
        out.append(work / f"small-{index}.aci")
    return out


@pytest.fixture
def rkt(tmp_path: pathlib.Path) -> Iterator[Rkt]:
    """An rkt data directory for one test; everything in it is stopped and collected after."""
    (tmp_path / "work").mkdir()
    runner = Rkt(tmp_path / "rkt", tmp_path / "work")
    try:
        yield runner
    finally:
        for child in runner.children:  # reaped here: cleanup() waits for zombies to go
            if child.poll() is None:
                child.kill()
            child.wait(timeout=30)
        cleanup(runner)


# ===================================================================== kill -9


@pytest.mark.parametrize("overwrite", [False, True], ids=["new", "overwrite"])
def test_kill_actool_build(
    big_layout: pathlib.Path, tmp_path: pathlib.Path, overwrite: bool
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "big.aci"
    argv = tool("appc_tools.actool", "build", "--overwrite", big_layout, target)
    duration = timed(argv)
    validate_archive(target)
    if not overwrite:
        target.unlink()
    killed = 0
    for seed in SEEDS:
        for delay in delays(seed, duration):
            status = kill_after(argv, delay)
            killed += status is not None
            assert hidden_or_temp(out_dir) == [], (seed, delay)
            assert sorted(os.listdir(out_dir)) in ([], ["big.aci"]), (seed, delay)
            if overwrite:
                assert target.exists(), (seed, delay)  # the old file until the new one is whole
            if target.exists():
                validate_archive(target)  # the old file, or a complete new one
                if not overwrite:
                    target.unlink()  # the next run starts without one again
    assert killed >= len(SEEDS)
    assert timed(argv) > 0  # still works
    validate_archive(target)
    assert os.listdir(out_dir) == ["big.aci"]


@pytest.fixture(scope="module")
def big_image(registry: Registry, work: pathlib.Path) -> str:
    """A 15 MB, three-layer image in the local registry; returns its reference."""
    image = di.big_image(15, work / "blobs", layers=3, seed=11)
    push(registry, "crash/big", "v1", image)
    return registry.ref("crash/big", "v1")


@pytest.mark.parametrize("squash", [True, False], ids=["squash", "nosquash"])
def test_kill_docker2aci(big_image: str, tmp_path: pathlib.Path, squash: bool) -> None:
    out_dir, tmp_dir = tmp_path / "out", tmp_path / "tmp"
    argv = tool(
        "appc_tools.docker2aci",
        "--insecure-allow-http",
        "--compression=none",
        "-o",
        out_dir,
        "--tmp-dir",
        tmp_dir,
        *([] if squash else ["--nosquash"]),
        big_image,
    )
    duration = timed(argv, cwd=tmp_path)
    complete = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*.aci"))
    assert complete
    assert os.listdir(tmp_dir) == []
    for path in list(out_dir.rglob("*.aci")):
        path.unlink()
    killed = 0
    for seed in SEEDS:
        for delay in delays(seed, duration):
            status = kill_after(argv, delay, cwd=tmp_path)
            killed += status is not None
            assert hidden_or_temp(out_dir) == [], (seed, delay)
            present = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*.aci"))
            assert present in ([], complete), (seed, delay, present)  # all layers or none
            for name in present:
                validate_archive(out_dir / name)
            for path in present:
                (out_dir / path).unlink()
    assert killed >= len(SEEDS)
    # the next run works, and removes what the killed ones left in --tmp-dir
    assert timed(argv, cwd=tmp_path) > 0
    assert os.listdir(tmp_dir) == []
    assert sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*.aci")) == complete


@pytest.fixture(scope="module")
def aci_server(big_aci: pathlib.Path, work: pathlib.Path) -> Iterator[FaultServer]:
    with fault_server(make_cert(work / "tls")) as server:
        server.file("/big.aci", big_aci.read_bytes())
        yield server


def test_kill_rkt_fetch(rkt: Rkt, big_aci: pathlib.Path, aci_server: FaultServer) -> None:
    sources = [str(big_aci), aci_server.url("/big.aci")]
    argvs = [
        rkt.argv("--ca-file", str(aci_server.ca_file), "fetch", "--pull-policy=update", source)
        for source in sources
    ]
    durations = [timed(argv, cwd=rkt.work) for argv in argvs]
    (key,) = assert_store_consistent(rkt.dir)
    assert run(rkt.argv("image", "rm", key)).returncode == 0
    killed = 0
    for seed in SEEDS:
        for index, delay in enumerate(delays(seed, max(durations))):
            argv = argvs[index % 2]
            status = kill_after(argv, min(delay, durations[index % 2] * 0.95), cwd=rkt.work)
            killed += status is not None
            keys = assert_store_consistent(rkt.dir)
            assert keys in ([], [key]), (seed, delay, keys)
            if keys:
                assert run(rkt.argv("image", "rm", key)).returncode == 0
    assert killed >= len(SEEDS)
    wait_no_process(str(rkt.dir))
    assert timed(argvs[1], cwd=rkt.work) > 0
    assert assert_store_consistent(rkt.dir) == [key]


def test_kill_rkt_run(rkt: Rkt, busybox: pathlib.Path) -> None:
    argv = rkt.argv("run", str(busybox), "--exec", "/bin/sh", "--", "-c", "sleep 0.3")
    first = timed(argv, cwd=rkt.work)  # imports the image, renders its tree, runs
    again = timed(argv, cwd=rkt.work)
    assert_pods_collectable(rkt)
    # the first kill lands while the image is imported and rendered
    with ImageStore(rkt.dir) as store:
        for image in store.list():
            store.remove(image.key)
        trees = TreeStore(store)
        for tree_id in trees.list():
            trees.remove(tree_id)
    killed = 0
    for seed in SEEDS:
        for index, delay in enumerate(delays(seed, again)):
            status = kill_after(
                argv, delay if index or seed != SEEDS[0] else first * 0.5, cwd=rkt.work
            )
            killed += status is not None
            wait_no_process(str(rkt.dir))  # a started pod finishes its app and ends
            assert mounts_under(rkt.dir) == []
            assert_pods_collectable(rkt)
            assert len(assert_store_consistent(rkt.dir)) <= 1
    assert killed >= len(SEEDS)
    # afterwards: a run works, and image gc leaves no partial tree behind
    assert run(argv, cwd=rkt.work).returncode == 0
    assert_pods_collectable(rkt)
    assert run(rkt.argv("image", "gc")).returncode == 0
    with ImageStore(rkt.dir) as store:
        trees = TreeStore(store)
        assert all(trees.is_rendered(tree_id) for tree_id in trees.list())


def make_exited_pods(rkt: Rkt, busybox: pathlib.Path, count: int, files: int) -> list[str]:
    """*count* exited pods, each made slow to delete (*files* extra files in it)."""
    uuids = []
    for index in range(count):
        uuid_file = rkt.work / f"pod-{index}.uuid"
        proc = run(
            rkt.argv("run", f"--uuid-file-save={uuid_file}", str(busybox), "--exec", "/bin/true"),
            cwd=rkt.work,
        )
        assert proc.returncode == 0, proc.stderr
        uuid = uuid_file.read_text().strip()
        ballast = rkt.dir / "pods" / "run" / uuid / "ballast"
        for sub in range(files // 500):
            (ballast / str(sub)).mkdir(parents=True)
            for name in range(500):
                (ballast / str(sub) / str(name)).write_bytes(b"x")
        uuids.append(uuid)
    return uuids


def test_kill_rkt_gc(rkt: Rkt, busybox: pathlib.Path) -> None:
    long_running, _ = rkt.spawn(str(busybox), "--exec", "/bin/sleep", "--", "60")
    argv = rkt.argv("gc", "--grace-period=0s")
    killed = 0
    for seed in SEEDS[:2]:
        make_exited_pods(rkt, busybox, 2, files=3000)
        for delay in delays(seed, 1.0):
            status = kill_after(argv, delay, cwd=rkt.work)
            killed += status is not None
            code, _, err = rkt.cli("list")
            assert code == 0, err
        for _ in range(2):
            assert run(argv, cwd=rkt.work).returncode == 0
        left = sorted(p.name for p in (rkt.dir / "pods").glob("*/*"))
        assert left == [long_running], (seed, left)  # gc never touched the running pod
        assert (rkt.dir / "pods" / "run" / long_running / "pod").exists()
    assert killed >= 2


def test_an_embryo_left_by_a_crash_is_collected(rkt: Rkt, busybox: pathlib.Path) -> None:
    """``create_pod`` makes ``embryo/<uuid>`` and moves it to ``prepare`` microseconds
    later; a kill in between leaves an unlocked embryo, reproduced here on disk."""
    assert run(rkt.argv("run", str(busybox), "--exec", "/bin/true"), cwd=rkt.work).returncode == 0
    embryo = rkt.dir / "pods" / "embryo" / "f0e0d0c0-0000-4000-8000-000000000001"
    embryo.mkdir()
    assert_pods_collectable(rkt)


# ================================================================= concurrency


def test_concurrent_fetch_run_gc(
    rkt: Rkt, busybox: pathlib.Path, small_acis: list[pathlib.Path]
) -> None:
    assert run(rkt.argv("fetch", str(busybox)), cwd=rkt.work).returncode == 0
    long_running, _ = rkt.spawn(str(busybox), "--exec", "/bin/sleep", "--", "60")
    for _round in range(2):
        argvs = [
            *(rkt.argv("fetch", str(aci)) for aci in small_acis),
            *(rkt.argv("run", str(busybox), "--exec", "/bin/true") for _ in range(3)),
            *(rkt.argv("gc", "--grace-period=0s") for _ in range(2)),
        ]
        children = [
            subprocess.Popen(
                argv, cwd=rkt.work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for argv in argvs
        ]
        results = [
            (child.args, *child.communicate(timeout=90), child.returncode) for child in children
        ]
        failed = [(args[-4:], out, err, code) for args, out, err, code in results if code != 0]
        assert failed == []
        keys = assert_store_consistent(rkt.dir)
        assert len(keys) == 4  # busybox and the three small images: none lost
        assert (rkt.dir / "pods" / "run" / long_running / "pod").exists()
        code, out, err = rkt.cli("status", long_running)
        assert code == 0 and "state=running" in out, (out, err)
    for _ in range(2):
        assert run(rkt.argv("gc", "--grace-period=0s")).returncode == 0
    left = sorted(p.name for p in (rkt.dir / "pods").glob("*/*"))
    assert left == [long_running]


# ==================================================================== disk full


@contextlib.contextmanager
def small_tmpfs(path: pathlib.Path, size: str = "2m") -> Iterator[pathlib.Path]:
    """A tmpfs of *size* at *path*, unmounted (lazily if busy) at the end."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True
    )
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], check=False, capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def one_no_space_line(proc: subprocess.CompletedProcess[str], status: int) -> str:
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("image: skipping")]
    assert len(lines) == 1, proc.stderr
    assert "no space left" in lines[0].lower(), lines[0]
    return lines[0]


def test_disk_full_actool_build(tmp_path: pathlib.Path) -> None:
    source = layout(tmp_path / "layout", "example.com/full", files=30, size=100_000)
    with small_tmpfs(tmp_path / "small") as small:
        proc = run(tool("appc_tools.actool", "build", source, small / "full.aci"))
        one_no_space_line(proc, 1)
        assert os.listdir(small) == []
        proc = run(
            tool("appc_tools.actool", "build", "--no-compression", source, small / "full.aci")
        )
        one_no_space_line(proc, 1)
        assert os.listdir(small) == []
    assert mounts_under(tmp_path) == []


@pytest.fixture(scope="module")
def six_mb_image(registry: Registry, work: pathlib.Path) -> str:
    image = di.big_image(6, work / "blobs-6mb", layers=1, seed=5)
    push(registry, "crash/six-mb", "v1", image)
    return registry.ref("crash/six-mb", "v1")


@pytest.mark.parametrize("where", ["output", "tmp-dir"])
def test_disk_full_docker2aci(six_mb_image: str, tmp_path: pathlib.Path, where: str) -> None:
    with small_tmpfs(tmp_path / "small") as small:
        out = small if where == "output" else tmp_path / "out"
        tmp = small if where == "tmp-dir" else tmp_path / "tmp"
        argv = tool(
            "appc_tools.docker2aci",
            "--insecure-allow-http",
            "--compression=none",
            "-o",
            out,
            "--tmp-dir",
            tmp,
            six_mb_image,
        )
        one_no_space_line(run(argv, cwd=tmp_path), 1)
        assert list(small.rglob("*")) == []
        assert not out.exists() or list(out.rglob("*")) == []
    assert mounts_under(tmp_path) == []


def test_disk_full_rkt_fetch(
    tmp_path: pathlib.Path, work: pathlib.Path, small_acis: list[pathlib.Path]
) -> None:
    big = layout(tmp_path / "layout", "example.com/three-mb", files=30, size=100_000)
    big_aci = tmp_path / "three-mb.aci"
    assert run(tool("appc_tools.actool", "build", big, big_aci)).returncode == 0
    with small_tmpfs(tmp_path / "small") as small:
        data = small / "rkt"
        rkt = Rkt(data, tmp_path)
        one_no_space_line(run(rkt.argv("fetch", str(big_aci))), 254)
        assert assert_store_consistent(data) == []
        # fill the disk, fail, free the space: the store works again
        filler = small / "filler"
        with open(filler, "wb") as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        one_no_space_line(run(rkt.argv("fetch", str(small_acis[0]))), 254)
        filler.unlink()
        assert assert_store_consistent(data) == []
        proc = run(rkt.argv("fetch", str(small_acis[0])))
        assert proc.returncode == 0, proc.stderr
        assert len(assert_store_consistent(data)) == 1
    assert mounts_under(tmp_path) == []


# ====================================================== what a killed process leaves


def test_store_work_directory_of_a_dead_process(tmp_path: pathlib.Path) -> None:
    """A work directory whose process died is reported by check() and removed by the
    next opening of the store; one still in use is left alone."""
    script = (
        "import os, sys\n"
        "from appc.store import ImageStore\n"
        "store = ImageStore(sys.argv[1])\n"
        "with store.work_directory() as work:\n"
        "    open(os.path.join(work, 'image.aci'), 'wb').write(b'partial')\n"
        "    print(work, flush=True)\n"
        "    if sys.argv[2] == 'die':\n"
        "        os._exit(9)\n"
        "    sys.stdin.readline()\n"
    )
    data = tmp_path / "rkt"
    dead = run([sys.executable, "-c", script, str(data), "die"])
    abandoned = pathlib.Path(dead.stdout.strip())
    assert abandoned.is_dir() and abandoned.parent.name == "tmp"
    busy = subprocess.Popen(
        [sys.executable, "-c", script, str(data), "wait"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert busy.stdout is not None and busy.stdin is not None
        in_use = pathlib.Path(busy.stdout.readline().strip())
        with ImageStore(data) as store:  # opening cleans: the dead one goes, the busy one stays
            assert not abandoned.exists()
            assert in_use.is_dir()
            assert store.check() == []
        busy.communicate("\n", timeout=30)
        assert busy.returncode == 0
    finally:
        if busy.poll() is None:
            busy.kill()
        busy.communicate()
    assert not in_use.exists()


def test_docker2aci_work_directories_of_dead_processes(tmp_path: pathlib.Path) -> None:
    """Only our own abandoned work directories are removed: named ours and unlocked."""
    from appc.docker.image import work_directory

    foreign = tmp_path / "docker2aci-123456789"  # the Go tool's, in use or not: kept
    foreign.mkdir()
    # Killed between making its directory and locking it (under the parent's lock):
    # nothing marks it as in use, so it goes.
    unlocked = tmp_path / "docker2aci-appc-killedearly"
    unlocked.mkdir()
    with work_directory(str(tmp_path)) as first:
        (pathlib.Path(first) / "blob").write_bytes(b"partial")
        with work_directory(str(tmp_path)) as second:  # the first is in use: kept
            assert pathlib.Path(first).is_dir()
        assert not pathlib.Path(second).exists()
        script = (
            "import os, sys\n"
            "from appc.docker.image import work_directory\n"
            "with work_directory(sys.argv[1]) as work:\n"
            "    print(work, flush=True)\n"
            "    os._exit(9)\n"
        )
        dead = pathlib.Path(run([sys.executable, "-c", script, str(tmp_path)]).stdout.strip())
        assert dead.is_dir()
        with work_directory(str(tmp_path)):
            assert not dead.exists()
            assert not unlocked.exists()
            assert pathlib.Path(first).is_dir()
            assert foreign.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docker2aci-123456789"]
