"""appc.aci.read: one streaming pass over an image in every compression; the image ID."""

from __future__ import annotations

import hashlib
import io
import pathlib
import subprocess
import tarfile

import pytest

from appc.aci import ImageReader, compute_image_id, read_manifest, read_manifest_bytes
from appc.aci.filetype import FileType
from appc.aci.read import MAX_MANIFEST_SIZE, clean_name, unsafe_name_reason
from appc.errors import ImageError
from appc.schema import ImageManifest
from tests import aci_fixtures as fx

TAR = fx.good_tar()
TAR_ID = "sha512-" + hashlib.sha512(TAR).hexdigest()
NAMES = [
    "rootfs", "rootfs/bin", "rootfs/bin/hello", "rootfs/etc", "rootfs/etc/hosts",
    "rootfs/etc/hosts.link", "rootfs/etc/motd", "rootfs/empty", "manifest",
]


def write(tmp_path: pathlib.Path, data: bytes, name: str = "image.aci") -> pathlib.Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- every compression, members and padding ------------------------------------------


@pytest.mark.parametrize("kind", fx.COMPRESSIONS)
def test_image_id_is_sha512_of_the_uncompressed_tar(tmp_path: pathlib.Path, kind: str) -> None:
    path = write(tmp_path, fx.compress(TAR, kind))
    assert str(compute_image_id(path)) == TAR_ID
    with path.open("rb") as f:
        assert str(compute_image_id(f)) == TAR_ID


@pytest.mark.parametrize("kind", ["gzip", "bzip2", "xz", "zstd"])
@pytest.mark.parametrize("members", [2, 5])
@pytest.mark.parametrize("padding", [0, 1, 4096])
def test_members_and_zero_padding(kind: str, members: int, padding: int) -> None:
    data = fx.compress(TAR, kind, members=members, padding=padding)
    with ImageReader(io.BytesIO(data)) as image:
        names = [name for _, name in image.entries()]
        assert str(image.finish()) == TAR_ID
    assert names == NAMES


def test_member_boundary_inside_a_header() -> None:
    # Members split the tar anywhere, here in the middle of every header.
    chunks = [TAR[i : i + 700] for i in range(0, len(TAR), 700)]
    data = b"".join(fx.compress(c, "gzip") for c in chunks)
    assert str(compute_image_id(io.BytesIO(data))) == TAR_ID


def test_zero_padding_of_a_plain_tar_is_part_of_the_image() -> None:
    # Without compression the padding *is* tar data: it is hashed, and accepted.
    padded = TAR + bytes(10240)
    assert str(compute_image_id(io.BytesIO(padded))) == fx.image_id(padded)


def test_gzip_cli_agrees(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, fx.compress(TAR, "gzip", members=3, padding=0))
    out = subprocess.run(
        f"gzip -dc {path} | sha512sum", shell=True, check=True, capture_output=True, text=True
    ).stdout
    assert "sha512-" + out.split()[0] == str(compute_image_id(path)) == TAR_ID


def test_hash_is_the_library_type() -> None:
    image_id = compute_image_id(io.BytesIO(TAR))
    assert image_id == TAR_ID
    assert image_id.algorithm == "sha512"
    assert image_id.value == hashlib.sha512(TAR).hexdigest()
    assert image_id.is_full


# --- walking entries -----------------------------------------------------------------


def test_entries_headers_and_contents(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, fx.compress(TAR, "gzip"))
    seen = {}
    with ImageReader(path) as image:
        assert image.kind is FileType.GZIP
        assert image.source == str(path)
        for info, name in image.entries():
            if info.isreg():
                seen[name] = image.member(info).read()
            elif info.issym() or info.islnk():
                seen[name] = info.linkname
        assert str(image.finish()) == TAR_ID
        assert str(image.finish()) == TAR_ID  # cached
    assert seen["rootfs/bin/hello"] == b"#!/bin/sh\necho hello\n"
    assert seen["rootfs/etc/hosts"] == b"127.0.0.1 localhost\n" * 40
    assert seen["rootfs/etc/motd"] == "hosts"
    assert seen["rootfs/etc/hosts.link"] == "rootfs/etc/hosts"
    assert seen["manifest"] == fx.manifest_bytes()


def test_finish_without_walking_and_after_a_partial_walk() -> None:
    with ImageReader(io.BytesIO(fx.compress(TAR, "xz"))) as image:
        assert str(image.finish()) == TAR_ID
    with ImageReader(io.BytesIO(fx.compress(TAR, "bzip2"))) as image:
        for _, name in image.entries():
            if name == "rootfs/etc":
                break
        assert str(image.finish()) == TAR_ID


def test_an_entry_passed_by_cannot_be_read() -> None:
    # The reader goes forward only: an earlier member's data is gone (never re-read).
    with ImageReader(io.BytesIO(fx.compress(TAR, "gzip"))) as image:
        earlier = None
        for info, name in image.entries():
            if name == "rootfs/etc/hosts":
                earlier = info
            elif earlier is not None and info.isreg():
                with pytest.raises(ImageError, match="seeking backwards is not allowed"):
                    image.read_entry(earlier, limit=10_000)
                break
        assert earlier is not None
        assert str(image.finish()) == TAR_ID


def test_large_members_read_across_chunks() -> None:
    # Members larger than the reader's chunks, read in odd sizes, arrive whole and in order.
    big = bytes(range(256)) * (3 * 1024 * 1024 // 256) + b"tail"
    tar = fx.tar_bytes([fx.directory("rootfs"), fx.regular("rootfs/big", big),
                        fx.regular("manifest", fx.manifest_bytes())])
    with ImageReader(io.BytesIO(fx.compress(tar, "gzip"))) as image:
        for info, name in image.entries():
            if name == "rootfs/big":
                member = image.member(info)
                parts = []
                while part := member.read(777_777):
                    parts.append(part)
                assert b"".join(parts) == big
        assert str(image.finish()) == "sha512-" + hashlib.sha512(tar).hexdigest()


def test_a_walk_keeps_no_headers_behind() -> None:
    # Memory must not grow with the number of entries: tarfile's list of the headers it
    # read stays empty (an archive of 300,000 empty files took 230 MB, now 80 MB).
    entries = [fx.directory("rootfs"), *(fx.regular(f"rootfs/f{i}", b"") for i in range(500))]
    tar = fx.tar_bytes([*entries, fx.regular("manifest", fx.manifest_bytes())])
    with ImageReader(io.BytesIO(tar)) as image:
        names = [name for _, name in image.entries()]
        assert len(names) == 502
        assert image._tar is not None and image._tar.members == []  # type: ignore[attr-defined]
        assert str(image.finish()) == "sha512-" + hashlib.sha512(tar).hexdigest()


def test_names_are_cleaned() -> None:
    tar = fx.tar_bytes([fx.directory("./rootfs/"), fx.regular("./rootfs//a/./b", b"x"),
                        fx.regular("./manifest", fx.manifest_bytes())])
    with ImageReader(io.BytesIO(tar)) as image:
        assert [name for _, name in image.entries()] == ["rootfs", "rootfs/a/b", "manifest"]


def test_read_entry_limit_and_member_of_non_file() -> None:
    with ImageReader(io.BytesIO(TAR)) as image:
        for info, name in image.entries():
            if name == "rootfs/etc/hosts":
                too_large = r"'rootfs/etc/hosts' is too large \(800 bytes, limit 10\)"
                with pytest.raises(ImageError, match=too_large):
                    image.read_entry(info, limit=10)
            if name == "rootfs/bin":
                with pytest.raises(ImageError, match="'rootfs/bin' is not a regular file"):
                    image.member(info)


def test_pax_headers_are_read() -> None:
    entry = fx.regular("rootfs/x", b"data")
    entry.pax = {"SCHILY.xattr.user.test": "value", "path": "rootfs/" + "long" * 40}
    tar = fx.tar_bytes([fx.directory("rootfs"), entry, fx.manifest_entry()])
    with ImageReader(io.BytesIO(tar)) as image:
        infos = {name: info for info, name in image.entries()}
    assert "rootfs/" + "long" * 40 in infos
    assert infos["rootfs/" + "long" * 40].pax_headers["SCHILY.xattr.user.test"] == "value"


def test_source_names() -> None:
    with ImageReader(io.BytesIO(TAR)) as image:
        assert image.source == "<stream>"
    with pytest.raises(ImageError) as info:
        compute_image_id(io.BytesIO(b"\x1f\x8b" + b"\x00" * 30))
    assert str(info.value).startswith("<stream>: ")


# --- manifests -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", fx.COMPRESSIONS)
def test_read_manifest(tmp_path: pathlib.Path, kind: str) -> None:
    path = write(tmp_path, fx.compress(TAR, kind))
    assert read_manifest_bytes(path) == fx.manifest_bytes()
    manifest = read_manifest(path)
    assert isinstance(manifest, ImageManifest)
    assert str(manifest.name) == "example.com/test"


def test_read_manifest_stops_at_the_manifest() -> None:
    # Everything after the manifest is never read: garbage there goes unnoticed.
    tar = fx.tar_bytes([fx.manifest_entry(), fx.directory("rootfs")], end=False) + b"junk" * 300
    assert read_manifest_bytes(io.BytesIO(tar)) == fx.manifest_bytes()


def test_read_manifest_takes_the_first() -> None:
    tar = fx.tar_bytes([fx.manifest_entry(b"first"), fx.manifest_entry(b"second")])
    assert read_manifest_bytes(io.BytesIO(tar)) == b"first"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([], "missing manifest"),
        ([fx.directory("rootfs")], "missing manifest"),
        ([fx.directory("manifest")], "manifest is not a regular file"),
        ([fx.symlink("manifest", "rootfs/manifest")], "manifest is not a regular file"),
        ([fx.regular("manifest", b" " * (MAX_MANIFEST_SIZE + 1))],
         f"'manifest' is too large ({MAX_MANIFEST_SIZE + 1} bytes, limit {MAX_MANIFEST_SIZE})"),
    ],
)
def test_read_manifest_errors(
    tmp_path: pathlib.Path, entries: list[fx.Entry], message: str
) -> None:
    path = write(tmp_path, fx.compress(fx.tar_bytes(entries), "gzip"))
    with pytest.raises(ImageError) as info:
        read_manifest_bytes(path)
    assert str(info.value) == f"{path}: {message}"


def test_read_manifest_of_an_invalid_manifest() -> None:
    from appc.errors import InvalidManifest

    tar = fx.tar_bytes([fx.manifest_entry(fx.manifest_bytes(fx.POD_MANIFEST))])
    with pytest.raises(InvalidManifest, match="acKind"):
        read_manifest(io.BytesIO(tar))


# --- errors --------------------------------------------------------------------------


@pytest.mark.parametrize("case", [c for c in fx.CORRUPT if c.max_size is None
                                  and c.id.startswith(("bad-magic", "empty", "text", "gzip-",
                                                       "bzip2", "xz", "zstd", "tar-"))],
                         ids=lambda c: c.id)
def test_corrupt_streams(tmp_path: pathlib.Path, case: fx.Corrupt) -> None:
    path = write(tmp_path, case.make())
    with pytest.raises(ImageError) as info:
        compute_image_id(path)
    assert str(info.value).startswith(f"{path}: ")
    assert case.message in info.value.message


@pytest.mark.parametrize("kind", fx.COMPRESSIONS)
def test_truncated_every_compression(kind: str) -> None:
    data = fx.compress(TAR, kind)
    # For a plain tar, cuts on a 512-byte boundary give a shorter valid tar (see
    # test_aci_validate), and the end-of-archive blocks are only zeros: avoid both.
    last = len(TAR) - 2 * fx.BLOCK - 1 if kind == "tar" else len(data) - 1
    for cut in (1, 5, 10, len(data) // 3 + 7, len(data) // 2 + 100, last - 3, last):
        with pytest.raises(ImageError):
            compute_image_id(io.BytesIO(data[:cut]))


def test_zstd_truncated_checksum() -> None:
    import zstandard

    data = zstandard.ZstdCompressor(level=1, write_checksum=True).compress(TAR)
    for cut in (1, 2, 3, 4):
        with pytest.raises(ImageError, match="truncated zstd stream"):
            compute_image_id(io.BytesIO(data[:-cut]))


@pytest.mark.parametrize("kind", ["gzip", "bzip2", "xz", "zstd"])
def test_garbage_after_the_last_member(kind: str) -> None:
    data = fx.compress(TAR, kind) + b"\x00\x00garbage"
    with pytest.raises(ImageError, match=f"garbage after the end of the {kind} stream"):
        compute_image_id(io.BytesIO(data))


def test_corrupt_zstd() -> None:
    data = bytearray(fx.compress(TAR, "zstd"))
    data[12:40] = b"\xff" * 28
    with pytest.raises(ImageError, match="corrupt zstd stream"):
        compute_image_id(io.BytesIO(bytes(data)))


@pytest.mark.parametrize("kind", ["gzip", "bzip2", "xz", "zstd", "tar"])
def test_max_size(kind: str) -> None:
    data = fx.compress(TAR, kind)
    assert str(compute_image_id(io.BytesIO(data), max_size=len(TAR))) == TAR_ID
    with pytest.raises(ImageError, match=f"larger than the limit of {len(TAR) - 1} bytes"):
        compute_image_id(io.BytesIO(data), max_size=len(TAR) - 1)


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_decompression_bomb_stops_early(kind: str) -> None:
    import zstandard

    size = 64 * 1024 * 1024
    if kind == "gzip":
        data = fx.gzip_bomb(size)
    else:
        compressor = zstandard.ZstdCompressor(level=1).compressobj()
        header = fx.regular("rootfs/zeros").info()
        header.size = size
        data = compressor.compress(header.tobuf(tarfile.USTAR_FORMAT))
        for _ in range(size // (1024 * 1024)):
            data += compressor.compress(bytes(1024 * 1024))
        data += compressor.flush()
    assert len(data) < size // 500
    with pytest.raises(ImageError, match="larger than the limit of 1048576 bytes"):
        compute_image_id(io.BytesIO(data), max_size=1024 * 1024)


def test_unreadable_source(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ImageError) as info:
        ImageReader(tmp_path / "nope.aci")
    assert str(info.value) == f"{tmp_path / 'nope.aci'}: No such file or directory"


# --- names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cleaned"),
    [
        ("manifest", "manifest"),
        ("./manifest", "manifest"),
        ("rootfs/", "rootfs"),
        ("rootfs//bin/./sh", "rootfs/bin/sh"),
        ("rootfs/../evil", "evil"),
        ("", "."),
        ("./", "."),
        ("/abs", "/abs"),
        ("//abs", "/abs"),
        ("///abs", "/abs"),
    ],
)
def test_clean_name(name: str, cleaned: str) -> None:
    assert clean_name(name) == cleaned


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("rootfs/a", None),
        ("rootfs/..a/b..", None),
        ("./rootfs", None),
        ("/rootfs/abs", "absolute path"),
        ("../x", "path with '..'"),
        ("rootfs/../evil", "path with '..'"),
        ("rootfs/a/..", "path with '..'"),
    ],
)
def test_unsafe_name_reason(name: str, reason: str | None) -> None:
    assert unsafe_name_reason(name) == reason
