"""appc.aci.extract: unpacking images safely (never outside the target), all or nothing."""

from __future__ import annotations

import io
import os
import pathlib
import stat
import tarfile

import pytest

from appc.aci import build_image, extract_image
from appc.aci.extract import ExtractOptions, TreeWriter
from appc.errors import ImageError
from tests import aci_fixtures as fx

TAR = fx.good_tar()
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def write(tmp_path: pathlib.Path, data: bytes, name: str = "image.aci") -> pathlib.Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def tree(root: pathlib.Path) -> dict[str, str]:
    """What is under *root*: relative path → kind and contents or link target."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            out[rel] = "-> " + os.readlink(path)
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = "dir"
        elif stat.S_ISREG(st.st_mode):
            out[rel] = path.read_bytes().decode(errors="replace")
        else:
            out[rel] = oct(stat.S_IFMT(st.st_mode))
    return out


#: Where extraction fails differently from validation.
EXTRACT_MESSAGES = {
    "hardlink-later-entry": "hard link 'rootfs/early' to missing or directory target 'rootfs/late'",
}


def no_leftovers(parent: pathlib.Path, *keep: str) -> None:
    assert sorted(os.listdir(parent)) == sorted(keep)


# --- round trips ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", fx.COMPRESSIONS)
def test_extract_every_compression(tmp_path: pathlib.Path, kind: str) -> None:
    image = write(tmp_path, fx.compress(TAR, kind, members=2))
    target = tmp_path / "out"
    assert str(extract_image(image, target)) == fx.image_id(TAR)
    files = tree(target)
    assert files["manifest"] == fx.manifest_bytes().decode()
    assert files["rootfs/bin/hello"] == "#!/bin/sh\necho hello\n"
    assert files["rootfs/etc/motd"] == "-> hosts"
    assert files["rootfs/empty"] == ""
    assert os.path.samefile(target / "rootfs/etc/hosts", target / "rootfs/etc/hosts.link")
    assert stat.S_IMODE(os.stat(target / "rootfs/bin/hello").st_mode) == 0o755
    assert os.stat(target / "rootfs/bin/hello").st_mtime == 1_500_000_000
    assert os.stat(target / "rootfs/bin").st_mtime == 1_500_000_000
    assert os.lstat(target / "rootfs/etc/motd").st_mtime == 1_500_000_000
    no_leftovers(tmp_path, "image.aci", "out")


def test_build_then_extract_gives_the_layout_back(tmp_path: pathlib.Path) -> None:
    layout = fx.make_layout(tmp_path / "layout")
    os.link(layout / "rootfs/bin/hello", layout / "rootfs/hello-again")
    os.mkfifo(layout / "rootfs/fifo")
    image = tmp_path / "out.aci"
    build_image(layout, image, level=1)
    extract_image(image, tmp_path / "x")
    expected = tree(layout / "rootfs")
    assert tree(tmp_path / "x/rootfs") == expected
    for rel in ("bin/hello", "etc", "etc/motd", "var/lib/empty"):
        a, b = os.lstat(layout / "rootfs" / rel), os.lstat(tmp_path / "x/rootfs" / rel)
        assert (a.st_mode, int(a.st_mtime), a.st_uid) == (b.st_mode, int(b.st_mtime), b.st_uid)


def test_extract_from_a_stream_into_a_new_nested_target(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "a/b/c"
    assert str(extract_image(io.BytesIO(fx.compress(TAR, "gzip")), target)) == fx.image_id(TAR)
    assert (target / "manifest").is_file()
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o755


def test_rootfs_only(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "out"
    extract_image(write(tmp_path, TAR), target, rootfs_only=True)
    files = tree(target)
    assert "manifest" not in files
    assert not any(name.startswith("rootfs") for name in files)
    assert files["bin/hello"] == "#!/bin/sh\necho hello\n"
    assert os.path.samefile(target / "etc/hosts", target / "etc/hosts.link")


def test_keep_filter(tmp_path: pathlib.Path) -> None:
    asked: list[str] = []

    def keep(path: str) -> bool:
        asked.append(path)
        return path.startswith("etc/")

    target = tmp_path / "out"
    extract_image(write(tmp_path, TAR), target, rootfs_only=True, keep=keep)
    # Directories are always kept; only files, links and the like are asked about.
    assert asked == ["bin/hello", "etc/hosts", "etc/hosts.link", "etc/motd", "empty"]
    assert tree(target) == {
        "bin": "dir",
        "etc": "dir",
        "etc/hosts": "127.0.0.1 localhost\n" * 40,
        "etc/hosts.link": "127.0.0.1 localhost\n" * 40,
        "etc/motd": "-> hosts",
    }


def test_directory_modes_are_applied_last(tmp_path: pathlib.Path) -> None:
    entries = [
        fx.directory("rootfs"),
        fx.directory("rootfs/ro", 0o555),
        fx.directory("rootfs/ro/deeper", 0o500),
        fx.regular("rootfs/ro/deeper/f", b"x"),
        fx.manifest_entry(),
    ]
    target = tmp_path / "out"
    extract_image(write(tmp_path, fx.tar_bytes(entries)), target)
    assert stat.S_IMODE(os.stat(target / "rootfs/ro").st_mode) == 0o555
    assert stat.S_IMODE(os.stat(target / "rootfs/ro/deeper").st_mode) == 0o500
    assert (target / "rootfs/ro/deeper/f").read_bytes() == b"x"
    assert os.stat(target / "rootfs/ro").st_mtime == 1_500_000_000


@needs_root
def test_owners_and_special_bits(tmp_path: pathlib.Path) -> None:
    entry = fx.regular("rootfs/suid", b"x", 0o4755)
    entry.uid, entry.gid = 1234, 4321
    image = write(tmp_path, fx.tar_bytes([fx.directory("rootfs"), entry, fx.manifest_entry()]))
    extract_image(image, tmp_path / "root")
    st = os.stat(tmp_path / "root/rootfs/suid")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 4321, 0o4755)
    extract_image(image, tmp_path / "plain", options=ExtractOptions(owners=False, xattrs=False))
    st = os.stat(tmp_path / "plain/rootfs/suid")
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o755)


def test_devices_skipped_unless_asked(tmp_path: pathlib.Path) -> None:
    null = fx.Entry("rootfs/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3)
    image = write(tmp_path, fx.tar_bytes([fx.directory("rootfs"), null, fx.manifest_entry()]))
    extract_image(image, tmp_path / "plain")
    assert not os.path.lexists(tmp_path / "plain/rootfs/null")
    writer = TreeWriter(str(tmp_path / "w"), ExtractOptions(devices=False))
    os.mkdir(tmp_path / "w")
    writer.write(null.info(), "null")
    assert writer.skipped == ["null"]
    if os.geteuid() == 0:
        extract_image(image, tmp_path / "dev", options=ExtractOptions(devices=True))
        st = os.lstat(tmp_path / "dev/rootfs/null")
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)


# --- safety --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [c for c in fx.CORRUPT if c.id.startswith(("traversal", "hardlink", "outside", "rootfsX"))],
    ids=lambda c: c.id,
)
def test_nothing_is_written_for_unsafe_archives(tmp_path: pathlib.Path, case: fx.Corrupt) -> None:
    work = tmp_path / "work"
    work.mkdir()
    image = write(tmp_path, case.make())
    with pytest.raises(ImageError) as info:
        extract_image(image, work / "target")
    assert str(info.value).startswith(f"{image}: ")
    # A link to a later entry fails when it is made, before the later entry is seen.
    message = EXTRACT_MESSAGES.get(case.id, case.message)
    assert message in info.value.message
    # Not the target, not a temporary directory, nothing beside or above it.
    no_leftovers(work)
    no_leftovers(tmp_path, "image.aci", "work")


@pytest.mark.parametrize("absolute", [True, False])
def test_file_through_a_symlink_is_refused(tmp_path: pathlib.Path, absolute: bool) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    link_target = str(outside) if absolute else "../../outside"
    entries = [
        fx.directory("rootfs"),
        fx.symlink("rootfs/link", link_target),
        fx.regular("rootfs/link/file", b"payload"),
        fx.manifest_entry(),
    ]
    target = tmp_path / "out"
    image = write(tmp_path, fx.tar_bytes(entries))
    with pytest.raises(ImageError) as info:
        extract_image(image, target)
    # Refused as the validator refuses it (rendering would otherwise skip the file
    # while extraction replaced the symlink by a directory).
    assert str(info.value) == (
        f"{image}: 'rootfs/link/file' lies under 'rootfs/link', which is not a directory"
    )
    assert os.listdir(outside) == []
    assert not target.exists()


@pytest.mark.parametrize("absolute", [True, False])
def test_hard_link_through_a_symlink(tmp_path: pathlib.Path, absolute: bool) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "passwd"
    secret.write_text("secret")
    link_target = str(outside) if absolute else "../../outside"
    entries = [
        fx.directory("rootfs"),
        fx.symlink("rootfs/d", link_target),
        fx.hardlink("rootfs/h", "rootfs/d/passwd"),
        fx.manifest_entry(),
    ]
    image = write(tmp_path, fx.tar_bytes(entries))
    expected = (
        f"{image}: hard link 'rootfs/h' to 'rootfs/d/passwd' leads through a symlink "
        "or non-directory"
    )
    with pytest.raises(ImageError) as info:
        extract_image(image, tmp_path / "out")
    assert str(info.value) == expected
    assert os.stat(secret).st_nlink == 1
    assert not (tmp_path / "out").exists()
    # The same archive with the symlink already on disk (an earlier layer, or an existing
    # target): the tree writer refuses it on its own.
    target = tmp_path / "existing"
    (target / "rootfs").mkdir(parents=True)
    (target / "rootfs/d").symlink_to(link_target if absolute else "../../outside")
    writer = TreeWriter(str(target))
    with pytest.raises(ImageError, match="leads through a symlink or non-directory"):
        writer.write(fx.hardlink("rootfs/h", "rootfs/d/passwd").info(), "rootfs/h")
    assert os.stat(secret).st_nlink == 1


def test_hard_link_to_a_symlink_links_the_symlink(tmp_path: pathlib.Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("secret")
    entries = [
        fx.directory("rootfs"),
        fx.symlink("rootfs/s", str(outside)),
        fx.hardlink("rootfs/h", "rootfs/s"),
        fx.manifest_entry(),
    ]
    extract_image(write(tmp_path, fx.tar_bytes(entries)), tmp_path / "out")
    assert os.stat(outside).st_nlink == 1
    assert os.readlink(tmp_path / "out/rootfs/h") == str(outside)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("rootfs/nowhere", "to missing or directory target 'rootfs/nowhere'"),
        ("rootfs/etc", "to missing or directory target 'rootfs/etc'"),
    ],
)
def test_hard_link_to_nothing_usable(tmp_path: pathlib.Path, target: str, message: str) -> None:
    # Validation lets a link to a file it never sees pass (it may be in a dependency);
    # extracting the image alone cannot make it.
    image = write(tmp_path, fx.tar_bytes(fx._before_manifest(fx.hardlink("rootfs/h", target))))
    with pytest.raises(ImageError) as info:
        extract_image(image, tmp_path / "out")
    assert str(info.value) == f"{image}: hard link 'rootfs/h' {message}"
    no_leftovers(tmp_path, "image.aci")


def test_symlinks_already_in_place_are_replaced(tmp_path: pathlib.Path) -> None:
    outside_dir = tmp_path / "outside-dir"
    outside_dir.mkdir()
    outside_file = tmp_path / "outside-file"
    outside_file.write_text("keep me")
    target = tmp_path / "target"
    (target / "rootfs/bin").mkdir(parents=True)
    (target / "rootfs/etc").symlink_to(outside_dir)
    (target / "rootfs/bin/hello").symlink_to(outside_file)
    (target / "rootfs/empty").symlink_to("../../outside-file")
    extract_image(write(tmp_path, TAR), target)
    assert os.listdir(outside_dir) == []
    assert outside_file.read_text() == "keep me"
    assert not (target / "rootfs/etc").is_symlink()
    assert (target / "rootfs/etc/hosts").read_bytes() == b"127.0.0.1 localhost\n" * 40
    assert not (target / "rootfs/bin/hello").is_symlink()
    assert (target / "rootfs/bin/hello").read_bytes() == b"#!/bin/sh\necho hello\n"
    assert (target / "rootfs/empty").read_bytes() == b""


def test_rootfs_symlink_in_place_is_replaced(tmp_path: pathlib.Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    (target / "rootfs").symlink_to(outside)
    extract_image(write(tmp_path, TAR), target)
    assert os.listdir(outside) == []
    assert (target / "rootfs/bin/hello").is_file()


def test_existing_directory_in_the_way_of_a_file(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "target"
    (target / "rootfs/bin/hello/sub").mkdir(parents=True)
    extract_image(write(tmp_path, TAR), target)
    assert (target / "rootfs/bin/hello").read_bytes() == b"#!/bin/sh\necho hello\n"


@pytest.mark.parametrize(
    "case",
    [
        c
        for c in fx.CORRUPT
        if c.id
        in (
            "gzip-truncated-trailer",
            "two-manifests",
            "missing-manifest",
            "pod-manifest",
            "tar-garbage-after",
            "hardlink-later-entry",
            "gzip-bomb",
        )
    ],
    ids=lambda c: c.id,
)
def test_all_or_nothing_for_a_new_target(tmp_path: pathlib.Path, case: fx.Corrupt) -> None:
    # These fail late, after files were written: the half-made tree is removed.
    image = write(tmp_path, case.make())
    work = tmp_path / "work"
    work.mkdir()
    kwargs = {} if case.max_size is None else {"max_size": case.max_size}
    with pytest.raises(ImageError) as info:
        extract_image(image, work / "target", **kwargs)  # type: ignore[arg-type]
    assert EXTRACT_MESSAGES.get(case.id, case.message) in info.value.message
    no_leftovers(work)


def test_existing_target_is_extracted_into_as_is(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "mine").write_text("kept")
    image = write(tmp_path, fx.CORRUPT[[c.id for c in fx.CORRUPT].index("two-manifests")].make())
    with pytest.raises(ImageError, match="duplicate file entry in archive: 'manifest'"):
        extract_image(image, target)
    # An existing target is not rolled back (the caller owns it), but is not removed either.
    assert (target / "mine").read_text() == "kept"
    extract_image(write(tmp_path, TAR, "good.aci"), target)
    assert (target / "mine").read_text() == "kept"
    assert (target / "rootfs/bin/hello").is_file()


def test_write_errors_name_the_archive(tmp_path: pathlib.Path) -> None:
    # A name the archive rules allow (4095 bytes at most) that is too long once under
    # the target directory.
    name = "rootfs/" + "/".join(["x" * 200] * 20)
    long = fx.regular(name, b"long")
    long.pax = {"path": name}
    image = write(tmp_path, fx.tar_bytes([fx.directory("rootfs"), long, fx.manifest_entry()]))
    with pytest.raises(ImageError) as info:
        extract_image(image, tmp_path / "target")
    assert str(info.value).startswith(f"{image}: cannot extract 'rootfs/xxx")
    assert str(info.value).endswith("': File name too long")
    no_leftovers(tmp_path, "image.aci")


def test_manifest_is_checked_even_for_rootfs_only(tmp_path: pathlib.Path) -> None:
    image = write(tmp_path, fx.tar_bytes(fx.good_entries(fx.manifest_bytes(fx.POD_MANIFEST))))
    with pytest.raises(ImageError, match="image manifest validation failed: acKind"):
        extract_image(image, tmp_path / "target", rootfs_only=True)
    no_leftovers(tmp_path, "image.aci")


@pytest.mark.parametrize("what", ["file", "dangling-symlink", "symlink-to-file"])
def test_target_that_is_not_a_directory(tmp_path: pathlib.Path, what: str) -> None:
    image = write(tmp_path, TAR)
    target = tmp_path / "target"
    if what == "file":
        target.write_text("mine")
    elif what == "dangling-symlink":
        target.symlink_to(tmp_path / "nowhere")
    else:
        (tmp_path / "file").write_text("mine")
        target.symlink_to(tmp_path / "file")
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ImageError) as info:
        extract_image(image, target)
    assert str(info.value) == f"{target}: exists and is not a directory"
    assert sorted(os.listdir(tmp_path)) == before
