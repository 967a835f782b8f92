"""The image store: import, lookups, removal, remote rows, locks, concurrency and crash safety."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import pathlib
import signal
import sqlite3
import stat
import subprocess
import textwrap
import time

import pytest

from appc.errors import ImageError, StoreError
from appc.store import (
    FileLock,
    ImageStore,
    KeyLock,
    LockBusy,
    RemoteInfo,
    is_key,
    key_for,
    lock_directory,
    lock_file,
)
from appc.store import db as store_db
from tests.aci_fixtures import COMPRESSIONS, CORRUPT, compress, good_tar
from tests.store_fixtures import image_id, image_tar, make_image, run_python


@pytest.fixture
def data_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "rkt"


@pytest.fixture
def store(data_dir: pathlib.Path):
    with ImageStore(data_dir) as opened:
        yield opened


def _files(root: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _blobs(data_dir: pathlib.Path) -> list[str]:
    return _files(data_dir / "cas" / "blob")


def _tmp(data_dir: pathlib.Path) -> list[str]:
    return sorted(os.listdir(data_dir / "cas" / "tmp"))


# --- layout and import ---------------------------------------------------------------


def test_layout_and_modes(store: ImageStore, data_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    image = store.import_image(_aci(tmp_path, "example.com/a"))
    cas = data_dir / "cas"
    for name in ("blob", "imageManifest", "db", "imagelocks", "treestorelocks", "tree"):
        assert stat.S_IMODE((cas / name).stat().st_mode) & 0o027 == 0, name
    assert stat.S_IMODE((cas / "tmp").stat().st_mode) == 0o700
    blob = pathlib.Path(store.blob_path(image.key))
    assert blob == cas / "blob" / "sha512" / image.key[7:9] / image.key
    assert stat.S_IMODE(blob.stat().st_mode) & 0o037 == 0
    assert stat.S_IMODE(pathlib.Path(store.manifest_path(image.key)).stat().st_mode) & 0o037 == 0
    assert stat.S_IMODE((cas / "db" / store_db.DB_FILE).stat().st_mode) & 0o037 == 0


def _aci(tmp_path: pathlib.Path, name: str, *, compression: str = "gzip", **manifest: object) -> pathlib.Path:
    path = tmp_path / f"{name.replace('/', '_')}-{len(list(tmp_path.iterdir()))}.aci"
    make_image(path, name, [("dir", "etc"), ("file", "etc/name", name.encode())],
               compression=compression, **manifest)  # type: ignore[arg-type]
    return path


@pytest.mark.parametrize("kind", COMPRESSIONS)
def test_import_every_compression(store: ImageStore, tmp_path: pathlib.Path, kind: str) -> None:
    tar = good_tar()
    source = tmp_path / "image.aci"
    source.write_bytes(compress(tar, kind, members=2, padding=512 if kind != "tar" else 0))
    image = store.import_image(source)
    assert image.image_id == image_id(tar)
    assert image.key == key_for(image.image_id) == image.image_id[:71]
    assert image.name == "example.com/test"
    assert image.manifest.labels.get("version") == "1.0.0"
    assert image.size == len(tar)
    assert not image.latest
    assert image.import_time == image.last_used
    with store.open_blob(image.key) as blob:
        assert blob.read() == tar
    assert [i.key for i in store.list()] == [image.key]
    assert store.check() == []


def test_import_from_a_stream(store: ImageStore) -> None:
    tar = image_tar("example.com/stream", [("file", "a", b"a")])
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read)
        os.write(write, compress(tar, "xz"))
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        image = store.import_image(pipe)
    os.waitpid(pid, 0)
    assert image.image_id == image_id(tar)
    assert store.manifest_bytes(image.key) == json.dumps(json.loads(_manifest_of(tar))).encode()


def _manifest_of(tar: bytes) -> bytes:
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        member = archive.extractfile("manifest")
        assert member is not None
        return member.read()


def test_manifest_bytes_are_the_archives(store: ImageStore, tmp_path: pathlib.Path) -> None:
    tar = image_tar("example.com/m", labels={"version": "1"})
    (tmp_path / "m.aci").write_bytes(tar)
    image = store.import_image(tmp_path / "m.aci")
    assert store.manifest_bytes(image.key[:12]) == _manifest_of(tar)


def test_reimport_updates_the_row(store: ImageStore, tmp_path: pathlib.Path) -> None:
    path = _aci(tmp_path, "example.com/a")
    first = store.import_image(path, latest=True)
    store.set_tree_size(first.key, 1234)
    time.sleep(0.01)
    again = store.import_image(path)
    assert again.key == first.key
    assert again.import_time > first.import_time
    assert not again.latest  # replaced, as rkt does
    assert again.tree_size == 1234
    assert len(store.list()) == 1
    assert len(_blobs(store_dir(store))) == 1
    assert store.check() == []


def store_dir(store: ImageStore) -> pathlib.Path:
    return pathlib.Path(store.data_dir)


@pytest.mark.parametrize("case", CORRUPT, ids=[c.id for c in CORRUPT])
def test_a_bad_archive_leaves_nothing(data_dir: pathlib.Path, tmp_path: pathlib.Path, case) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "bad.aci"
    source.write_bytes(case.make())
    kwargs = {"max_size": case.max_size} if case.max_size else {}
    with ImageStore(data_dir, **kwargs) as store:
        with pytest.raises(ImageError) as err:
            store.import_image(source)
        assert case.message in str(err.value)
        assert store.list() == []
        assert _blobs(data_dir) == []
        assert _files(data_dir / "cas" / "imageManifest") == []
        assert _tmp(data_dir) == []
        assert store.check() == []


def test_disk_full(tmp_path: pathlib.Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                            capture_output=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {result.stderr.decode().strip()}")
    try:
        big = tmp_path / "big.aci"
        make_image(big, "example.com/big", [("file", "zeros", bytes(3 * 1024 * 1024))], compression="gzip")
        with ImageStore(mount / "rkt") as store:
            with pytest.raises(StoreError, match="no space left"):
                store.import_image(big)
            assert store.list() == []
            assert _tmp(mount / "rkt") == []
            small = store.import_image(_aci(tmp_path, "example.com/small"))
            assert store.check() == []
            assert store.get(small.key).name == "example.com/small"
    finally:
        subprocess.run(["umount", str(mount)], check=True)


# --- lookups ---------------------------------------------------------------------


def _colliding_tars() -> tuple[bytes, bytes]:
    """Two images whose keys share their first two hex digits."""
    seen: dict[str, bytes] = {}
    n = 0
    while True:
        tar = image_tar(f"example.com/x{n}")
        prefix = image_id(tar)[:9]
        if prefix in seen:
            return seen[prefix], tar
        seen[prefix] = tar
        n += 1


def test_get_by_prefix_and_ambiguity(store: ImageStore, tmp_path: pathlib.Path) -> None:
    first, second = _colliding_tars()
    (tmp_path / "1.aci").write_bytes(first)
    (tmp_path / "2.aci").write_bytes(second)
    one = store.import_image(tmp_path / "1.aci")
    two = store.import_image(tmp_path / "2.aci")
    common = one.key[:9]
    assert two.key.startswith(common)
    with pytest.raises(StoreError, match=f"ambiguous image ID '{common}': it matches 2 images"):
        store.get(common)
    split = next(i for i in range(9, 71) if one.key[i] != two.key[i]) + 1
    assert store.get(one.key[:split]).key == one.key
    assert store.get(two.key[:split].upper().replace("SHA512", "sha512")).key == two.key
    assert store.get(one.image_id).key == one.key  # a full image ID
    assert store.get(one.key).image_id == one.image_id
    wrong = one.image_id[:-1] + ("0" if one.image_id[-1] != "0" else "1")
    with pytest.raises(StoreError, match="no image with ID"):
        store.get(wrong)
    missing = "sha512-" + ("0" if one.key[7] != "0" and two.key[7] != "0" else "f") * 10
    with pytest.raises(StoreError, match=f"no image with ID '{missing}' in the store"):
        store.get(missing)
    for bad in ("sha512-", "sha512-a", "sha512-zz", "sha256-abcd", "abcdef"):
        with pytest.raises(StoreError, match="bad image ID"):
            store.get(bad)


def test_find_rules(store: ImageStore, tmp_path: pathlib.Path) -> None:
    def add(version: str, *, latest: bool = False, os_: str = "linux") -> str:
        labels = {"version": version, "os": os_, "arch": "amd64"}
        return store.import_image(_aci(tmp_path, "example.com/app", labels=labels), latest=latest).key

    assert store.find("example.com/app") is None
    v1 = add("1.0", latest=True)
    time.sleep(0.002)
    v2 = add("2.0")
    time.sleep(0.002)
    v3 = add("3.0", os_="freebsd")
    # No version asked: the "latest" image wins over newer imports.
    assert _key(store.find("example.com/app")) == v1
    assert _key(store.find("example.com/app", {"os": "linux"})) == v1
    # A version asked: exactly that one.
    assert _key(store.find("example.com/app", {"version": "2.0"})) == v2
    assert _key(store.find("example.com/app", {"os": "freebsd"})) == v3
    assert store.find("example.com/app", {"version": "9"}) is None
    assert store.find("example.com/app", {"os": "linux", "arch": "arm64"}) is None
    assert store.find("example.com/other") is None
    assert store.find("example.com") is None  # exact names only
    # Without a "latest" row, the most recent import wins.
    time.sleep(0.002)
    store.import_image(store.blob_path(v1))  # re-import: no longer latest, imported now
    assert _key(store.find("example.com/app")) == v1
    time.sleep(0.002)
    store.import_image(store.blob_path(v2))
    assert _key(store.find("example.com/app")) == v2
    assert _key(store.find("example.com/app", {"os": "linux"})) == v2
    # Marking latest again takes precedence once more.
    store.import_image(store.blob_path(v3), latest=True)
    assert _key(store.find("example.com/app")) == v3
    assert _key(store.find("example.com/app", {"version": "2.0"})) == v2


def _key(image: object) -> str:
    assert image is not None
    return str(image.key)  # type: ignore[attr-defined]


def test_list_touch_and_usage(store: ImageStore, tmp_path: pathlib.Path) -> None:
    a = store.import_image(_aci(tmp_path, "example.com/a"))
    time.sleep(0.002)
    b = store.import_image(_aci(tmp_path, "example.com/b"))
    assert [i.name for i in store.list()] == ["example.com/a", "example.com/b"]
    time.sleep(0.002)
    store.touch(a.key[:20])
    touched = store.get(a.key)
    assert touched.last_used > touched.import_time
    assert touched.import_time == a.import_time
    assert touched.import_time.tzinfo is dt.UTC
    assert store.disk_usage() == a.size + b.size


# --- removal ---------------------------------------------------------------------


def test_remove(store: ImageStore, data_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    keep = store.import_image(_aci(tmp_path, "example.com/keep"))
    gone = store.import_image(_aci(tmp_path, "example.com/gone"),
                              remote=RemoteInfo("https://example.com/gone.aci", etag='"x"'))
    blob = store.open_blob(gone.key)  # stays readable after the removal
    store.remove(gone.key)
    assert blob.read(512)
    blob.close()
    with pytest.raises(StoreError, match="no image with ID"):
        store.get(gone.key)
    assert store.get_remote("https://example.com/gone.aci") is None
    assert not os.path.exists(store.blob_path(gone.key))
    assert not os.path.exists(store.manifest_path(gone.key))
    assert not (data_dir / "cas" / "imagelocks" / gone.key).exists()
    assert [i.key for i in store.list()] == [keep.key]
    with pytest.raises(StoreError, match="no image with ID"):
        store.remove(gone.key)
    assert _tmp(data_dir) == []
    assert store.check() == []


def test_open_blob_of_a_missing_image(store: ImageStore) -> None:
    with pytest.raises(StoreError, match="no image with ID"):
        store.open_blob("sha512-abcd")
    with pytest.raises(StoreError, match="not a store key"):
        store.blob_path("sha512-abcd")


# --- remote rows -----------------------------------------------------------------


def test_remote_rows(store: ImageStore, tmp_path: pathlib.Path) -> None:
    url = "https://example.com/app-1.0.aci"
    assert store.get_remote(url) is None
    when = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
    image = store.import_image(
        _aci(tmp_path, "example.com/app"),
        remote=RemoteInfo(url, sig_url=url + ".asc", etag='"v1"', cache_max_age=60, download_time=when),
    )
    remote = store.get_remote(url)
    assert remote == RemoteInfo(url, url + ".asc", '"v1"', image.key, 60, when)
    assert not remote.is_fresh()
    assert remote.is_fresh(when + dt.timedelta(seconds=30))
    fresh = RemoteInfo(url, etag='"v2"', blob_key=image.key, cache_max_age=10)
    store.set_remote(fresh)
    assert store.get_remote(url) == fresh
    assert fresh.is_fresh()
    assert RemoteInfo(url).is_fresh() is False  # no max-age: always revalidate
    assert store.check() == []


# --- database --------------------------------------------------------------------


def test_newer_database_is_refused(data_dir: pathlib.Path) -> None:
    ImageStore(data_dir).close()
    with sqlite3.connect(data_dir / "cas" / "db" / store_db.DB_FILE) as conn:
        conn.execute("UPDATE version SET version = 99")
    conn.close()
    with pytest.raises(StoreError, match="version 99, newer than this appc understands"):
        ImageStore(data_dir)


def test_migration_backs_up_and_upgrades(data_dir: pathlib.Path, tmp_path: pathlib.Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with ImageStore(data_dir) as store:
        key = store.import_image(_aci(tmp_path, "example.com/a")).key
    steps: list[int] = []

    def step(conn: sqlite3.Connection) -> None:
        steps.append(1)
        conn.execute("ALTER TABLE aciinfo ADD COLUMN extra TEXT")

    monkeypatch.setattr(store_db, "DB_VERSION", 2)
    monkeypatch.setattr("appc.store.images.DB_VERSION", 2)
    monkeypatch.setitem(store_db.MIGRATIONS, 1, step)
    with ImageStore(data_dir) as store:
        assert store.get(key).name == "example.com/a"
        assert store.db is not None and store.db.version() == 2
    with ImageStore(data_dir):
        pass
    assert steps == [1]  # migrated once
    backups = os.listdir(data_dir / "cas" / "db-backups")
    assert len(backups) == 1
    with sqlite3.connect(data_dir / "cas" / "db-backups" / backups[0]) as conn:
        assert conn.execute("SELECT version FROM version").fetchone() == (1,)
    conn.close()


def test_backups_are_pruned(tmp_path: pathlib.Path) -> None:
    db_path = tmp_path / "x.sqlite"
    sqlite3.connect(db_path).close()
    for _ in range(7):
        store_db.backup_database(str(db_path), str(tmp_path / "backups"), keep=5)
    assert len(os.listdir(tmp_path / "backups")) == 5


# --- consistency checks and cleaning ------------------------------------------------


def test_check_reports_inconsistencies(store: ImageStore, data_dir: pathlib.Path,
                                       tmp_path: pathlib.Path) -> None:
    a = store.import_image(_aci(tmp_path, "example.com/a"))
    b = store.import_image(_aci(tmp_path, "example.com/b"))
    os.unlink(store.blob_path(a.key))
    os.unlink(store.manifest_path(b.key))
    orphan = "sha512-" + "ab" * 32
    os.makedirs(os.path.dirname(store.blob_path(orphan)), exist_ok=True)
    pathlib.Path(store.blob_path(orphan)).write_bytes(b"x")
    (data_dir / "cas" / "tmp" / "stale.part").write_bytes(b"x")
    store.set_remote(RemoteInfo("https://x/y.aci", blob_key="sha512-" + "cd" * 32))
    problems = store.check()
    assert f"image {a.key}: blob missing" in problems
    assert f"image {b.key}: manifest missing" in problems
    assert f"blob without an index row: {store.blob_path(orphan)}" in problems
    assert f"abandoned temporary file: {data_dir}/cas/tmp/stale.part" in problems
    assert any(p.startswith("remote 'https://x/y.aci' refers to a missing image") for p in problems)
    assert len(problems) == 5


def test_clean_tmp_leaves_busy_files(store: ImageStore, data_dir: pathlib.Path) -> None:
    tmp = data_dir / "cas" / "tmp"
    (tmp / "abandoned.part").write_bytes(b"x")
    busy = lock_file(tmp / "busy.part", exclusive=True)
    try:
        assert store.clean_tmp() == [str(tmp / "abandoned.part")]
        assert _tmp(data_dir) == ["busy.part"]
    finally:
        busy.close()
    assert store.clean_tmp() == [str(tmp / "busy.part")]


def test_an_abandoned_intent_removes_its_orphan_blob(data_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    with ImageStore(data_dir) as store:
        kept = store.import_image(_aci(tmp_path, "example.com/kept"))
        orphan = "sha512-" + "ef" * 32
        os.makedirs(os.path.dirname(store.blob_path(orphan)), exist_ok=True)
        pathlib.Path(store.blob_path(orphan)).write_bytes(b"x")
    for key, name in ((orphan, "1.key"), (kept.key, "2.key")):
        (data_dir / "cas" / "tmp" / name).write_text(key)
    with ImageStore(data_dir) as store:
        assert not os.path.exists(store.blob_path(orphan))
        assert os.path.exists(store.blob_path(kept.key))  # a row refers to it
        assert _tmp(data_dir) == []
        assert store.check() == []


# --- locks -----------------------------------------------------------------------


def test_new_locked_directory(tmp_path: pathlib.Path) -> None:
    from appc.store.locks import new_locked_directory

    names = iter(["taken", "fresh"])
    (tmp_path / "taken").mkdir()
    path, lock = new_locked_directory(str(tmp_path), lambda: next(names))
    with lock:
        assert path == str(tmp_path / "fresh") and lock.mode == "exclusive"
        assert not FileLock.open(path, directory=True).exclusive(blocking=False)
    # A parent that is gone is an error, not an endless search for a free name.
    with pytest.raises(FileNotFoundError):
        new_locked_directory(str(tmp_path / "gone"), lambda: "x")


def test_file_locks(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "lock"
    first = FileLock.open(path)
    second = FileLock.open(path)  # another open file description: an independent lock
    assert first.shared() and second.shared(blocking=False)
    assert not first.exclusive(blocking=False)
    second.close()
    assert first.exclusive(blocking=False)
    with pytest.raises(LockBusy):
        lock_file(path, exclusive=False, blocking=False)
    first.unlock()
    with lock_file(path, exclusive=False, blocking=False) as third:
        assert third.mode == "shared"
    first.close()
    assert first.closed and repr(first).endswith("closed>")
    directory = lock_directory(tmp_path, exclusive=True)
    with pytest.raises(LockBusy):
        lock_directory(tmp_path, exclusive=False, blocking=False)
    directory.close()
    with pytest.raises(FileNotFoundError):
        FileLock.open(tmp_path / "missing", create=False)


def test_key_lock_survives_unlink(tmp_path: pathlib.Path) -> None:
    holder = KeyLock(tmp_path, "k", exclusive=True)
    with pytest.raises(LockBusy):
        KeyLock(tmp_path, "k", exclusive=False, blocking=False)
    holder.unlink()
    # The file is gone: a new locker gets a new file, not the removed one.
    other = KeyLock(tmp_path, "k", exclusive=True, blocking=False)
    assert (tmp_path / "k").exists()
    other.close()
    holder.close()
    with pytest.raises(ValueError):
        KeyLock(tmp_path, "../x", exclusive=True)
    shared = KeyLock(tmp_path, "k", exclusive=False)
    with pytest.raises(ValueError):
        shared.unlink()
    shared.close()


def test_key_lock_waiter_follows_a_recreated_file(tmp_path: pathlib.Path) -> None:
    holder = KeyLock(tmp_path, "k", exclusive=True)
    waiter = run_python(textwrap.dedent(f"""
        import sys
        from appc.store.locks import KeyLock
        print("waiting", flush=True)
        lock = KeyLock({str(tmp_path)!r}, "k", exclusive=True)
        import os
        print(os.fstat(lock.fd).st_ino == os.stat({str(tmp_path / "k")!r}).st_ino, flush=True)
    """))
    assert waiter.stdout is not None
    assert waiter.stdout.readline().strip() == b"waiting"
    time.sleep(0.3)  # the waiter opened the old file and blocks on it
    holder.unlink()
    holder.close()
    out, err = waiter.communicate(timeout=30)
    assert out.strip() == b"True", err


# --- several processes -----------------------------------------------------------------

_IMPORT = textwrap.dedent("""
    import os, sys, time
    from appc.store import ImageStore
    data_dir, source, go = sys.argv[1:4]
    while not os.path.exists(go):
        time.sleep(0.005)
    with ImageStore(data_dir) as store:
        print(store.import_image(source).key)
""")


def test_concurrent_imports_of_one_image(data_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    source = tmp_path / "same.aci"
    make_image(source, "example.com/same", [("file", f"f{i}", os.urandom(2048)) for i in range(200)],
               compression="gzip")
    go = tmp_path / "go"
    workers = [run_python(_IMPORT, str(data_dir), str(source), str(go)) for _ in range(6)]
    time.sleep(0.5)
    go.touch()
    keys = set()
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err.decode()
        keys.add(out.decode().strip())
    assert len(keys) == 1
    with ImageStore(data_dir) as store:
        assert [i.key for i in store.list()] == list(keys)
        assert len(_blobs(data_dir)) == 1
        assert _tmp(data_dir) == []
        assert store.check() == []


def test_concurrent_imports_of_different_images(data_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    go = tmp_path / "go"
    sources = [_aci(tmp_path, f"example.com/img{i}") for i in range(5)]
    workers = [run_python(_IMPORT, str(data_dir), str(s), str(go)) for s in sources]
    go.touch()
    for worker in workers:
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err.decode()
    with ImageStore(data_dir) as store:
        assert len(store.list()) == 5
        assert store.check() == []


# --- kill -9 ---------------------------------------------------------------------------

_CRASH = textwrap.dedent("""
    import os, signal, sys
    import appc.store.images as images
    from appc.store import ImageStore
    data_dir, point, source = sys.argv[1:4]

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    def after(function):
        def wrapper(*args, **kwargs):
            result = function(*args, **kwargs)
            die()
            return result
        return wrapper

    if point == "after-rename":
        images._fsync_dir = die  # the first call follows the blob's rename
    elif point == "after-manifest":
        images.ImageStore._write_manifest = after(images.ImageStore._write_manifest)
    elif point == "after-commit":
        # Discarded in turn: the manifest's temporary file, then the intent (after the commit).
        calls = []
        original = images._TempFile.discard
        def discard(self):
            calls.append(self.path)
            if len(calls) == 2:
                assert self.path.endswith(".key")
                die()
            original(self)
        images._TempFile.discard = discard
    elif point == "remove-after-rows":
        images.ImageStore._delete_files = die
    store = ImageStore(data_dir)
    if point == "remove-after-rows":
        store.remove(source)
    elif point == "mid-stream":
        print("started", flush=True)
        store.import_image(sys.stdin.buffer)
    else:
        store.import_image(source)
    print("not killed", flush=True)
""")


@pytest.mark.parametrize("point", ["mid-stream", "after-rename", "after-manifest", "after-commit",
                                   "remove-after-rows"])
def test_kill_9_leaves_a_consistent_store(data_dir: pathlib.Path, tmp_path: pathlib.Path, point: str) -> None:
    with ImageStore(data_dir) as store:
        other = store.import_image(_aci(tmp_path, "example.com/other"))
    source = tmp_path / "victim.aci"
    tar = image_tar("example.com/victim", [("file", f"f{i}", os.urandom(4096)) for i in range(300)])
    source.write_bytes(compress(tar, "gzip"))
    victim_key = key_for(image_id(tar))
    if point == "remove-after-rows":
        with ImageStore(data_dir) as store:
            store.import_image(source)
        argument = victim_key
    else:
        argument = str(source)
    if point == "mid-stream":
        child = run_python(_CRASH, str(data_dir), point, argument, stdin=subprocess.PIPE)
        assert child.stdin is not None and child.stdout is not None
        assert child.stdout.readline().strip() == b"started"
        data = source.read_bytes()
        child.stdin.write(data[: len(data) // 2])
        child.stdin.flush()
        deadline = time.time() + 10
        while not any(n.endswith(".part") for n in _tmp(data_dir)):
            assert time.time() < deadline
            time.sleep(0.01)
        time.sleep(0.2)  # let it decompress and write what it got
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    else:
        child = run_python(_CRASH, str(data_dir), point, argument)
        out, err = child.communicate(timeout=60)
        assert b"not killed" not in out, err.decode()
    assert child.returncode == -signal.SIGKILL
    assert _tmp(data_dir)  # the crash left something behind
    with ImageStore(data_dir) as store:
        assert store.check() == []
        assert _tmp(data_dir) == []
        keys = {i.key for i in store.list()}
        assert other.key in keys
        present = victim_key in keys
        assert present == os.path.exists(store.blob_path(victim_key))
        assert present == (point == "after-commit")
        # The store still works: import and remove the victim again.
        store.import_image(source)
        store.remove(victim_key)
        assert store.check() == []


def test_is_key() -> None:
    assert is_key("sha512-" + "0" * 64)
    assert not is_key("sha512-" + "0" * 63)
    assert not is_key("sha512-" + "A" * 64)
    with pytest.raises(StoreError, match="not a full image ID"):
        key_for("sha512-abc")
