"""appc.aci.build: layout → image archive, like the reference's ``actool build``."""

from __future__ import annotations

import errno
import gzip
import os
import pathlib
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator

import pytest

from appc.aci import build_image, compute_image_id, extract_image, validate_archive
from appc.aci.build import walk_tree
from appc.aci.extract import ExtractOptions
from appc.errors import ImageError
from tests import aci_fixtures as fx

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def build(layout: pathlib.Path, output: pathlib.Path, **kwargs: object) -> str:
    kwargs.setdefault("level", 1)
    return str(build_image(layout, output, **kwargs).image_id)  # type: ignore[arg-type]


def members(path: pathlib.Path) -> list[tarfile.TarInfo]:
    return fx.read_tar(path.read_bytes())


def leftovers(directory: pathlib.Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".tmp"))


@pytest.fixture
def layout(tmp_path: pathlib.Path) -> pathlib.Path:
    return fx.make_layout(tmp_path / "layout")


# --- what the archive looks like -----------------------------------------------------


def test_walk_order_and_names(tmp_path: pathlib.Path, layout: pathlib.Path) -> None:
    rootfs = layout / "rootfs"
    for name in ("b", "B", "_", "a", "a.b", "a-b", "é", "z"):
        (rootfs / name).write_text(name)
    (rootfs / "a").unlink()
    (rootfs / "a").mkdir()
    (rootfs / "a" / "inner").write_text("x")
    output = tmp_path / "out.aci"
    build(layout, output)
    names = [m.name for m in members(output)]
    assert names[0] == "rootfs"
    assert names[-1] == "manifest"
    assert names.count("manifest") == 1
    # Go's filepath.Walk order: byte order of names, each directory before its contents.
    assert names[1:-1] == [
        "rootfs/B", "rootfs/_", "rootfs/a", "rootfs/a/inner", "rootfs/a-b", "rootfs/a.b",
        "rootfs/b", "rootfs/bin", "rootfs/bin/hello", "rootfs/etc", "rootfs/etc/hosts",
        "rootfs/etc/motd", "rootfs/var", "rootfs/var/lib", "rootfs/var/lib/empty", "rootfs/z",
        "rootfs/é",
    ]
    # GNU tar lists directories without a trailing slash, as for the reference's images.
    listed = subprocess.run(["tar", "tzf", output], check=True, capture_output=True,
                            text=True).stdout.splitlines()
    assert listed[:4] == ["rootfs", "rootfs/B", "rootfs/_", "rootfs/a"]
    assert listed == names
    assert not any(name.endswith("/") or name.startswith("./") for name in listed)


def test_walk_tree_directly(layout: pathlib.Path) -> None:
    walked = [(name, stat.S_ISDIR(st.st_mode)) for name, _, st in
              walk_tree(str(layout / "rootfs"), "rootfs")]
    assert walked[:3] == [("rootfs", True), ("rootfs/bin", True), ("rootfs/bin/hello", False)]


def test_manifest_entry(tmp_path: pathlib.Path, layout: pathlib.Path) -> None:
    # The manifest from the layout is re-serialized, compact, and written last as root.
    output = tmp_path / "out.aci"
    result = build_image(layout, output, level=1)
    info = members(output)[-1]
    assert info.name == "manifest"
    assert (info.mode, info.uid, info.gid, info.uname, info.gname) == (0o644, 0, 0, "root", "root")
    assert abs(info.mtime - time.time()) < 60
    with tarfile.open(output) as tar:
        data = tar.extractfile("manifest").read()  # type: ignore[union-attr]
    assert data == result.manifest.to_json().encode()  # type: ignore[attr-defined]
    assert b"\n" not in data
    assert b'"count":1' in data


def test_result(tmp_path: pathlib.Path, layout: pathlib.Path) -> None:
    output = tmp_path / "out.aci"
    result = build_image(layout, output, level=1)
    assert str(result.image_id) == str(compute_image_id(output))
    assert result.entries == len(members(output)) == 10
    assert result.tar_size == len(gzip.decompress(output.read_bytes()))
    assert result.tar_size % 512 == 0
    report = validate_archive(output)
    assert report.image_id == result.image_id
    assert oct(stat.S_IMODE(output.stat().st_mode)) == oct(0o644 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_file_metadata(tmp_path: pathlib.Path, layout: pathlib.Path) -> None:
    hello = layout / "rootfs/bin/hello"
    if os.geteuid() == 0:
        os.chown(hello, 1234, 5678)
    hello.chmod(0o4755)
    os.utime(hello, (1_000_000_000, 1_234_567_890))
    output = tmp_path / "out.aci"
    build(layout, output)
    info = {m.name: m for m in members(output)}
    assert info["rootfs/bin/hello"].mode == 0o4755
    assert info["rootfs/bin/hello"].mtime == 1_234_567_890
    assert info["rootfs/bin/hello"].size == hello.stat().st_size
    assert info["rootfs/etc/motd"].issym() and info["rootfs/etc/motd"].linkname == "hosts"
    if os.geteuid() == 0:
        assert (info["rootfs/bin/hello"].uid, info["rootfs/bin/hello"].gid) == (1234, 5678)


def test_owner_root(tmp_path: pathlib.Path, layout: pathlib.Path) -> None:
    if os.geteuid() == 0:
        for path in (layout / "rootfs").rglob("*"):
            os.chown(path, 1000, 1000, follow_symlinks=False)
    output = tmp_path / "out.aci"
    build(layout, output, owner_root=True)
    for info in members(output):
        assert (info.uid, info.gid, info.uname, info.gname) == (0, 0, "root", "root"), info.name


def test_hard_links(tmp_path: pathlib.Path, layout: pathlib.Path) -> None:
    rootfs = layout / "rootfs"
    os.link(rootfs / "bin/hello", rootfs / "bin/zz")
    os.link(rootfs / "bin/hello", rootfs / "aa")
    output = tmp_path / "out.aci"
    build(layout, output)
    info = {m.name: m for m in members(output)}
    # The first path in walk order holds the data; later ones are type-1 links to it.
    assert info["rootfs/aa"].isreg() and info["rootfs/aa"].size > 0
    for later in ("rootfs/bin/hello", "rootfs/bin/zz"):
        assert info[later].islnk()
        assert info[later].linkname == "rootfs/aa"
        assert info[later].size == 0
    extract_image(output, tmp_path / "x")
    extracted = tmp_path / "x/rootfs"
    assert os.path.samefile(extracted / "aa", extracted / "bin/zz")
    assert (extracted / "bin/hello").read_bytes() == (rootfs / "aa").read_bytes()


def test_fifo_kept_socket_skipped(tmp_path: pathlib.Path, layout: pathlib.Path) -> None:
    rootfs = layout / "rootfs"
    os.mkfifo(rootfs / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(rootfs / "sock"))
        output = tmp_path / "out.aci"
        build(layout, output)
    finally:
        sock.close()
    info = {m.name: m for m in members(output)}
    assert info["rootfs/fifo"].isfifo()
    assert "rootfs/sock" not in info
    extract_image(output, tmp_path / "x")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "x/rootfs/fifo").st_mode)


@needs_root
def test_device_nodes(tmp_path: pathlib.Path, layout: pathlib.Path) -> None:
    rootfs = layout / "rootfs"
    os.mknod(rootfs / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(rootfs / "loop", 0o660 | stat.S_IFBLK, os.makedev(7, 200))
    (rootfs / "null").chmod(0o666)
    output = tmp_path / "out.aci"
    build(layout, output)
    info = {m.name: m for m in members(output)}
    null, loop = info["rootfs/null"], info["rootfs/loop"]
    assert null.type == tarfile.CHRTYPE and (null.devmajor, null.devminor) == (1, 3)
    assert null.mode == 0o666
    assert loop.type == tarfile.BLKTYPE and (loop.devmajor, loop.devminor) == (7, 200)
    validate_archive(output)
    # Skipped unless asked for.
    extract_image(output, tmp_path / "plain")
    assert not os.path.lexists(tmp_path / "plain/rootfs/null")
    extract_image(output, tmp_path / "dev", options=ExtractOptions(devices=True))
    st = os.lstat(tmp_path / "dev/rootfs/null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(st.st_mode) == 0o666


@needs_root
def test_xattrs_survive_build_and_extract(tmp_path: pathlib.Path, layout: pathlib.Path) -> None:
    hosts = layout / "rootfs/etc/hosts"
    try:
        os.setxattr(hosts, "user.appc.test", b"value \xff\x00 binary")
        os.setxattr(layout / "rootfs/etc", "user.appc.dir", b"on a directory")
    except OSError as err:
        if err.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            pytest.skip(f"the filesystem refuses user xattrs: {err}")
        raise
    output = tmp_path / "out.aci"
    build(layout, output)
    info = {m.name: m for m in members(output)}
    assert "SCHILY.xattr.user.appc.test" in info["rootfs/etc/hosts"].pax_headers
    validate_archive(output)
    extract_image(output, tmp_path / "x")
    extracted = tmp_path / "x/rootfs/etc"
    assert os.getxattr(extracted / "hosts", "user.appc.test") == b"value \xff\x00 binary"
    assert os.getxattr(extracted, "user.appc.dir") == b"on a directory"


# --- compression and reproducibility -------------------------------------------------


def test_no_compression(tmp_path: pathlib.Path, layout: pathlib.Path) -> None:
    output = tmp_path / "out.aci"
    image_id = build(layout, output, compression="none")
    data = output.read_bytes()
    assert data[257:262] == b"ustar"
    assert fx.image_id(data) == image_id
    with tarfile.open(output, "r:") as tar:
        assert tar.getnames()[-1] == "manifest"
        assert all(m.name.startswith("rootfs") for m in tar.getmembers()[:-1])


def test_gzip_output_is_standard(tmp_path: pathlib.Path, layout: pathlib.Path) -> None:
    output = tmp_path / "out.aci"
    image_id = build(layout, output)
    subprocess.run(["gzip", "-t", output], check=True)
    assert fx.image_id(gzip.decompress(output.read_bytes())) == image_id
    with gzip.open(output) as f:
        assert fx.image_id(f.read()) == image_id


def _gzip_members(data: bytes) -> int:
    count = 0
    while data:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        decompressor.decompress(data)
        assert decompressor.eof
        data = decompressor.unused_data
        count += 1
    return count


def test_several_gzip_members(tmp_path: pathlib.Path, layout: pathlib.Path) -> None:
    (layout / "rootfs/random").write_bytes(os.urandom(9 * 1024 * 1024))
    output = tmp_path / "out.aci"
    image_id = build(layout, output, threads=2)
    data = output.read_bytes()
    assert _gzip_members(data) == 3  # 4 MiB blocks of uncompressed tar
    subprocess.run(["gzip", "-t", output], check=True)
    tar = gzip.decompress(data)
    assert fx.image_id(tar) == image_id == str(compute_image_id(output))
    out = subprocess.run(f"gzip -dc {output} | sha512sum", shell=True, check=True,
                         capture_output=True, text=True).stdout
    assert "sha512-" + out.split()[0] == image_id


@pytest.mark.parametrize("level", [1, 9])
def test_levels_give_the_same_image_id(tmp_path: pathlib.Path, layout: pathlib.Path,
                                       level: int) -> None:
    one = build(layout, tmp_path / "one.aci", mtime=0, level=1)
    assert build(layout, tmp_path / f"l{level}.aci", mtime=0, level=level) == one
    with pytest.raises(ValueError, match="gzip level must be 1-9"):
        build(layout, tmp_path / "bad.aci", level=0)
    assert leftovers(tmp_path) == []


def test_mtime_makes_builds_reproducible(tmp_path: pathlib.Path, layout: pathlib.Path) -> None:
    first, second = tmp_path / "first.aci", tmp_path / "second.aci"
    (layout / "rootfs/big").write_bytes(os.urandom(5 * 1024 * 1024))  # two gzip members
    assert build(layout, first, mtime=1_600_000_000, threads=1) == build(
        layout, second, mtime=1_600_000_000, threads=4)
    # The same bytes whatever the number of compression threads.
    assert first.read_bytes() == second.read_bytes()
    assert all(m.mtime == 1_600_000_000 for m in members(first))


def test_copies_made_at_different_times(tmp_path: pathlib.Path) -> None:
    copy1 = fx.make_layout(tmp_path / "copy1")
    copy2 = fx.make_layout(tmp_path / "copy2")
    # The second copy was "made" an hour later.
    for path in (copy2, *copy2.rglob("*")):
        os.utime(path, (time.time() + 3600,) * 2, follow_symlinks=False)
    assert (copy1 / "rootfs/bin").stat().st_mtime != (copy2 / "rootfs/bin").stat().st_mtime
    a, b = tmp_path / "a.aci", tmp_path / "b.aci"
    assert build(copy1, a, mtime=86400) == build(copy2, b, mtime=86400)
    assert a.read_bytes() == b.read_bytes()
    # Without --mtime the times differ, and so do the images.
    assert build(copy1, tmp_path / "c.aci") != build(copy2, tmp_path / "d.aci")


def test_source_date_epoch(tmp_path: pathlib.Path, layout: pathlib.Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    first, second = tmp_path / "first.aci", tmp_path / "second.aci"
    assert build(layout, first) == build(layout, second)
    assert first.read_bytes() == second.read_bytes()
    assert {m.mtime for m in members(first)} == {1_700_000_000}
    # An explicit mtime wins; a bad value is ignored.
    build(layout, tmp_path / "explicit.aci", mtime=5)
    assert {m.mtime for m in members(tmp_path / "explicit.aci")} == {5}
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    os.utime(layout / "rootfs/bin/hello", (1234, 1234))
    build(layout, tmp_path / "bad.aci")
    times = {m.name: m.mtime for m in members(tmp_path / "bad.aci")}
    assert times["rootfs/bin/hello"] == 1234
    assert times["rootfs/etc/hosts"] != 1234


# --- failures leave nothing behind ---------------------------------------------------


def test_output_must_end_in_aci(tmp_path: pathlib.Path, layout: pathlib.Path) -> None:
    for name in ("out.tar", "out.aci.tmp", "out"):
        with pytest.raises(ImageError) as info:
            build(layout, tmp_path / name)
        assert "extension must be .aci" in str(info.value)
        assert str(info.value).startswith(str(tmp_path / name))
        assert not (tmp_path / name).exists()
    assert leftovers(tmp_path) == []


def test_existing_output(tmp_path: pathlib.Path, layout: pathlib.Path) -> None:
    output = tmp_path / "out.aci"
    output.write_bytes(b"precious")
    with pytest.raises(ImageError) as info:
        build(layout, output)
    assert str(info.value) == f"{output}: target file exists (try --overwrite)"
    assert output.read_bytes() == b"precious"
    assert leftovers(tmp_path) == []
    image_id = build(layout, output, overwrite=True)
    assert str(compute_image_id(output)) == image_id
    # A dangling symlink in the way counts as existing too.
    link = tmp_path / "link.aci"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(ImageError, match="target file exists"):
        build(layout, link)


@pytest.mark.parametrize(
    "case",
    ["extra-file", "rootfsX", "no-manifest", "no-rootfs", "rootfs-file", "manifest-invalid",
     "manifest-pod", "manifest-symlink"],
)
def test_bad_layout_leaves_no_output(tmp_path: pathlib.Path, case: str) -> None:
    layout = fx.make_bad_layout(tmp_path / "layout", case)
    output = tmp_path / "out.aci"
    with pytest.raises(ImageError) as info:
        build(layout, output)
    assert str(info.value).startswith(f"{layout}")
    assert not output.exists()
    assert leftovers(tmp_path) == []


def test_layout_missing(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ImageError, match="No such file or directory"):
        build(tmp_path / "missing", tmp_path / "out.aci")
    assert os.listdir(tmp_path) == []


def test_file_vanishing_during_the_walk(tmp_path: pathlib.Path, layout: pathlib.Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # A file listed by the walk but gone when it is read: a clean error, no output.
    import appc.aci.build as build_module

    real_walk = build_module.walk_tree

    def walk(root: str, prefix: str) -> Iterator[tuple[str, str, os.stat_result]]:
        for name, path, st in real_walk(root, prefix):
            if name == "rootfs/etc/hosts":
                os.unlink(path)
            yield name, path, st

    monkeypatch.setattr(build_module, "walk_tree", walk)
    output = tmp_path / "out.aci"
    with pytest.raises(ImageError) as info:
        build(layout, output)
    assert str(info.value).startswith(f"{layout / 'rootfs/etc/hosts'}: ")
    assert str(info.value).endswith("No such file or directory")
    assert not output.exists()
    assert leftovers(tmp_path) == []


def test_file_shrinking_during_the_walk(tmp_path: pathlib.Path, layout: pathlib.Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import appc.aci.build as build_module

    real_walk = build_module.walk_tree

    def walk(root: str, prefix: str) -> Iterator[tuple[str, str, os.stat_result]]:
        for name, path, st in real_walk(root, prefix):
            if name == "rootfs/bin/hello":
                pathlib.Path(path).write_bytes(b"short")
            yield name, path, st

    monkeypatch.setattr(build_module, "walk_tree", walk)
    with pytest.raises(ImageError, match="'rootfs/bin/hello' shrank while it was being read"):
        build(layout, tmp_path / "out.aci")
    assert leftovers(tmp_path) == []
    assert not (tmp_path / "out.aci").exists()


@pytest.fixture
def shared_tmp() -> Iterator[pathlib.Path]:
    """A directory an unprivileged user can enter (pytest's own tmp_path is 0700)."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="appc-test-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


def _as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to run the build as an unprivileged user")
    return subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
         "-m", "appc_tools.actool", *args],
        capture_output=True, text=True, check=False, timeout=60,
        cwd=pathlib.Path(__file__).resolve().parents[1],
    )


@pytest.mark.parametrize("what", ["directory", "file"])
def test_unreadable_path(shared_tmp: pathlib.Path, what: str) -> None:
    # As root every file is readable: the build runs as "nobody" (setpriv) instead.
    layout = fx.make_layout(shared_tmp / "layout")
    secret = layout / "rootfs/etc" if what == "directory" else layout / "rootfs/bin/hello"
    out_dir = shared_tmp / "out"
    out_dir.mkdir(mode=0o777)
    out_dir.chmod(0o777)
    secret.chmod(0o000)
    output = out_dir / "out.aci"
    done = _as_nobody("build", str(layout), str(output))
    assert done.returncode == 1, done.stderr
    if what == "directory":
        expected = f"actool build: {secret}: cannot read directory: Permission denied\n"
    else:
        expected = f"actool build: {secret}: Permission denied\n"
    assert done.stderr == expected
    assert os.listdir(out_dir) == []
    # The same layout, readable, builds fine as the same user.
    secret.chmod(0o755)
    done = _as_nobody("build", str(layout), str(output))
    assert done.returncode == 0, done.stderr
    assert os.listdir(out_dir) == ["out.aci"]


def test_output_inside_rootfs_is_not_part_of_itself(layout: pathlib.Path) -> None:
    output = layout / "rootfs/out.aci"
    build(layout, output)
    names = [m.name for m in members(output)]
    assert not any(".tmp" in name or "out.aci" in name for name in names), names
    # Built again, the first output is now part of the tree, like any other file.
    build(layout, output.with_name("again.aci"))
    assert "rootfs/out.aci" in [m.name for m in members(output.with_name("again.aci"))]
