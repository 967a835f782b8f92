"""appc.aci.validate: image archives, layouts and manifest files, and every broken archive."""

from __future__ import annotations

import io
import os
import pathlib
import subprocess

import pytest

from appc.aci import (
    detect_validation_type,
    read_manifest_file,
    validate_archive,
    validate_layout,
)
from appc.aci.filetype import FileType
from appc.errors import ImageError, ValidationError
from appc.schema import ImageManifest, PodManifest
from tests import aci_fixtures as fx

TAR = fx.good_tar()


def write(tmp_path: pathlib.Path, data: bytes, name: str = "image.aci") -> pathlib.Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def assert_image_error(path: pathlib.Path, message: str, **kwargs: int) -> ImageError:
    """validate_archive(path) fails with one line that starts with the path."""
    with pytest.raises(ImageError) as info:
        validate_archive(path, **kwargs)
    text = str(info.value)
    assert text.startswith(f"{path}: "), text
    assert message in info.value.message, text
    assert "\n" not in text
    assert info.value.source == str(path)
    return info.value


# --- valid archives ------------------------------------------------------------------


@pytest.mark.parametrize("kind", fx.COMPRESSIONS)
def test_valid_archive(tmp_path: pathlib.Path, kind: str) -> None:
    path = write(tmp_path, fx.compress(TAR, kind, members=2))
    report = validate_archive(path)
    assert isinstance(report.manifest, ImageManifest)
    assert str(report.manifest.name) == "example.com/test"
    assert str(report.image_id) == fx.image_id(TAR)
    assert report.compression is FileType(kind)
    assert report.entries == len(fx.good_entries())


def test_valid_archive_from_a_stream() -> None:
    report = validate_archive(io.BytesIO(fx.compress(TAR, "gzip")))
    assert str(report.image_id) == fx.image_id(TAR)


@pytest.mark.parametrize(
    "entries",
    [
        # Names are cleaned: ./manifest, rootfs/, a root "." directory are fine.
        [fx.directory("./"), fx.directory("./rootfs/"), fx.regular("./rootfs/a", b"a"),
         fx.regular("./manifest", fx.manifest_bytes())],
        # The manifest may come first; a minimal image is rootfs and manifest.
        [fx.manifest_entry(), fx.directory("rootfs")],
        # Every allowed type, and names that only look suspicious.
        [fx.directory("rootfs"), fx.Entry("rootfs/fifo", b"6"), fx.Entry("rootfs/null", b"3",
         devmajor=1, devminor=3), fx.Entry("rootfs/sda", b"4", devmajor=8),
         fx.regular("rootfs/..hidden", b"x"), fx.regular("rootfs/manifest", b"not json"),
         fx.directory("rootfs/dir/rootfs"), fx.symlink("rootfs/up", "../../../etc/passwd"),
         fx.symlink("rootfs/abs", "/etc/passwd"), fx.manifest_entry()],
    ],
    ids=["dot-names", "minimal", "all-types"],
)
def test_valid_variants(tmp_path: pathlib.Path, entries: list[fx.Entry]) -> None:
    path = write(tmp_path, fx.tar_bytes(entries))
    assert validate_archive(path).entries == len(entries)


def test_gnu_tar_made_archives(tmp_path: pathlib.Path) -> None:
    layout = fx.make_layout(tmp_path / "layout")
    os.link(layout / "rootfs/bin/hello", layout / "rootfs/bin/hello2")
    plain = tmp_path / "plain.aci"
    dotted = tmp_path / "dotted.aci"
    subprocess.run(["tar", "-C", layout, "-czf", plain, "manifest", "rootfs"], check=True)
    subprocess.run(["tar", "-C", layout, "-cJf", dotted, "."], check=True)
    assert validate_archive(plain).compression is FileType.GZIP
    assert validate_archive(dotted).compression is FileType.XZ


# --- broken archives -----------------------------------------------------------------


@pytest.mark.parametrize("case", fx.CORRUPT, ids=lambda c: c.id)
def test_corrupt_archive(tmp_path: pathlib.Path, case: fx.Corrupt) -> None:
    path = write(tmp_path, case.make(), f"{case.id}.aci")
    kwargs = {} if case.max_size is None else {"max_size": case.max_size}
    assert_image_error(path, case.message, **kwargs)


def test_bomb_is_fine_under_the_default_limit(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, fx.gzip_bomb(8 * 1024 * 1024))
    assert validate_archive(path).entries == 3


def test_rootfs_prefix_is_not_enough(tmp_path: pathlib.Path) -> None:
    # The reference's prefix test let rootfsX/... through; it is outside the image here.
    for name in ("rootfsX/a", "rootfs.old/a", "rootfs-a"):
        path = write(tmp_path, fx.tar_bytes(fx._before_manifest(fx.regular(name, b"x"))))
        assert_image_error(path, f"unrecognized file path in layout: {name!r}")


@pytest.mark.parametrize("kind", ["tar", "gzip"])
@pytest.mark.parametrize("cut", fx.truncations(fx.good_entries()), ids=lambda c: c[0])
def test_truncated_tar(tmp_path: pathlib.Path, kind: str, cut: tuple[str, int]) -> None:
    label, length = cut
    # gzip: the compressed stream is complete, the tar inside it is not.
    path = write(tmp_path, fx.compress(TAR[:length], kind))
    with pytest.raises(ImageError) as info:
        validate_archive(path)
    assert str(info.value).startswith(f"{path}: ")
    message = info.value.message
    if kind == "tar" and length <= 262:
        assert message == "unknown image filetype"  # too short to hold the ustar magic
    elif label.endswith(":header@start"):
        # Cut exactly between two entries: a shorter, well-formed tar without a manifest.
        assert message == "no image manifest found in layout"
    else:
        assert message.startswith("corrupt tar archive: "), message
        assert "truncated" in message or "unexpected end of data" in message, message


def test_truncated_tar_messages(tmp_path: pathlib.Path) -> None:
    structure = fx.tar_structure(fx.good_entries())
    content = next(p for p in structure if p.kind == "content" and p.name == "rootfs/etc/hosts")
    header = next(p for p in structure if p.kind == "header" and p.name == "rootfs/etc")
    path = write(tmp_path, TAR[: content.start + 100])
    assert_image_error(path, "corrupt tar archive: unexpected end of data")
    path = write(tmp_path, TAR[: header.start + 100])
    assert_image_error(path, "corrupt tar archive: truncated or invalid header")


def test_missing_end_of_archive_marker_is_accepted(tmp_path: pathlib.Path) -> None:
    # As Go's archive/tar (and so the reference): the end-of-archive zero blocks are
    # optional.  The image ID is the hash of the bytes as they are.
    without_end = fx.tar_bytes(fx.good_entries(), end=False)
    for data in (without_end, without_end + bytes(fx.BLOCK), without_end + bytes(100)):
        report = validate_archive(write(tmp_path, data))
        assert str(report.image_id) == fx.image_id(data)


def test_the_first_problem_is_reported(tmp_path: pathlib.Path) -> None:
    entries = fx._before_manifest(fx.regular("../x"), fx.regular("etc/passwd"))
    path = write(tmp_path, fx.tar_bytes(entries))
    assert_image_error(path, "'../x'")


def test_a_manifest_with_several_errors_reports_them_all(tmp_path: pathlib.Path) -> None:
    bad = fx.manifest_bytes(name="Bad Name", acVersion="x")
    path = write(tmp_path, fx.tar_bytes(fx.good_entries(bad)))
    error = assert_image_error(path, "image manifest validation failed: ")
    assert "name" in str(error) and "acVersion" in str(error)


# --- layouts -------------------------------------------------------------------------


def test_valid_layout(tmp_path: pathlib.Path) -> None:
    layout = fx.make_layout(tmp_path / "layout")
    manifest = validate_layout(layout)
    assert isinstance(manifest, ImageManifest)
    assert str(manifest.name) == "example.com/test"
    assert str(validate_layout(str(layout)).name) == "example.com/test"


def test_layout_with_odd_things_inside_rootfs(tmp_path: pathlib.Path) -> None:
    layout = fx.make_layout(
        tmp_path / "layout",
        {"manifest": b"not json", "dir/rootfs": None, "dir/manifest": None, "x": "->/nowhere"},
    )
    validate_layout(layout)


@pytest.mark.parametrize(("case", "message"), fx.BAD_LAYOUTS, ids=[c for c, _ in fx.BAD_LAYOUTS])
def test_bad_layout(tmp_path: pathlib.Path, case: str, message: str) -> None:
    layout = fx.make_bad_layout(tmp_path / "layout", case)
    with pytest.raises(ImageError) as info:
        validate_layout(layout)
    assert str(info.value).startswith(f"{layout}: ")
    assert message in info.value.message


def test_layout_manifest_too_large(tmp_path: pathlib.Path) -> None:
    layout = fx.make_layout(tmp_path / "layout", {})
    (layout / "manifest").write_bytes(fx.manifest_bytes().ljust(5 * 1024 * 1024))
    with pytest.raises(ImageError) as info:
        validate_layout(layout)
    assert str(info.value) == f"{layout / 'manifest'}: manifest larger than 4194304 bytes"


def test_layout_that_is_not_a_directory(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, TAR)
    with pytest.raises(ImageError, match="not a directory"):
        validate_layout(path)
    with pytest.raises(ImageError, match="No such file or directory"):
        validate_layout(tmp_path / "missing")


# --- manifest files and type detection -----------------------------------------------


def test_read_manifest_file(tmp_path: pathlib.Path) -> None:
    image = write(tmp_path, fx.manifest_bytes(), "image.json")
    pod = write(tmp_path, fx.manifest_bytes(fx.POD_MANIFEST), "pod.json")
    assert isinstance(read_manifest_file(image), ImageManifest)
    assert isinstance(read_manifest_file(pod), PodManifest)


@pytest.mark.parametrize(
    "document",
    [b"{", b"[]", b'{"acVersion": "0.8.11", "name": "x.com/a"}',
     fx.manifest_bytes(fx.POD_MANIFEST, apps=[{"name": "BAD"}])],
    ids=["bad-json", "not-object", "no-kind", "bad-pod"],
)
def test_read_manifest_file_errors(tmp_path: pathlib.Path, document: bytes) -> None:
    path = write(tmp_path, document, "manifest.json")
    with pytest.raises(ValidationError):
        read_manifest_file(path)


def test_read_manifest_file_unreadable(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ImageError, match="No such file or directory"):
        read_manifest_file(tmp_path / "missing")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (fx.make_layout, "layout"),
        (lambda p: write(p.parent, fx.compress(TAR, "zstd"), "z.aci"), "appimage"),
        (lambda p: write(p.parent, TAR, "t.aci"), "appimage"),
        (lambda p: write(p.parent, fx.manifest_bytes(), "m.json"), "manifest"),
    ],
)
def test_detect_validation_type(tmp_path: pathlib.Path, make: object, expected: str) -> None:
    assert detect_validation_type(make(tmp_path / "x")) == expected  # type: ignore[operator]


def test_detect_validation_type_unknown(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, b"\x00\x01\x02", "blob")
    with pytest.raises(ImageError) as info:
        detect_validation_type(path)
    assert str(info.value) == f"{path}: unable to detect filetype (try --type)"
    with pytest.raises(ImageError, match="No such file or directory"):
        detect_validation_type(tmp_path / "missing")
