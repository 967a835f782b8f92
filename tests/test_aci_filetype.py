"""appc.aci.filetype: recognising gzip, bzip2, xz, zstd, tar, text and anything else."""

from __future__ import annotations

import pathlib

import pytest

from appc.aci.filetype import SNIFF_SIZE, FileType, detect_file_type, detect_path
from appc.errors import ImageError
from tests import aci_fixtures as fx

TAR = fx.good_tar()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("gzip", FileType.GZIP),
        ("bzip2", FileType.BZIP2),
        ("xz", FileType.XZ),
        ("zstd", FileType.ZSTD),
        ("tar", FileType.TAR),
    ],
)
def test_archives(kind: str, expected: FileType) -> None:
    data = fx.compress(TAR, kind)
    assert detect_file_type(data[:SNIFF_SIZE]) is expected
    assert expected.is_archive


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        # Magic numbers alone are enough, whatever follows.
        (b"\x1f\x8b", FileType.GZIP),
        (b"\x1f\x8b\x08\x00rest", FileType.GZIP),
        (b"BZh", FileType.BZIP2),
        (b"BZh91AY&SY", FileType.BZIP2),
        (b"\xfd7zXZ\x00", FileType.XZ),
        (b"\x28\xb5\x2f\xfd", FileType.ZSTD),
        # Short files: a prefix of a magic is not the magic.
        (b"", FileType.UNKNOWN),
        (b"\x1f", FileType.UNKNOWN),
        # (bytes above 0x7f are not "binary" to Go's sniffing either)
        (b"\xfd7zXZ", FileType.TEXT),
        (b"\x28\xb5\x2f", FileType.TEXT),
        (b"B", FileType.TEXT),
        (b"BZ", FileType.TEXT),
        (b"BZg", FileType.TEXT),
        # Text: what Go's content sniffing calls text/plain (tabs, newlines, form feed, ESC).
        (b'{"acKind": "ImageManifest"}', FileType.TEXT),
        (b"  \n\t\r\x0c{\x1b}\n", FileType.TEXT),
        ("{\"name\": \"caf\u00e9\"}".encode(), FileType.TEXT),
        # Binary control bytes make it unknown.
        (b"{\x00}", FileType.UNKNOWN),
        (b"text\x07bell", FileType.UNKNOWN),
        (b"text\x0bvtab", FileType.UNKNOWN),
        (b"\x7fELF\x02\x01\x01\x00", FileType.UNKNOWN),
        (b"\x89PNG\r\n\x1a\n", FileType.UNKNOWN),
        # zip and 7z are not image compressions.
        (b"PK\x03\x04\x14\x00\x00\x00", FileType.UNKNOWN),
        (b"7z\xbc\xaf\x27\x1c", FileType.UNKNOWN),
    ],
)
def test_heads(head: bytes, expected: FileType) -> None:
    assert detect_file_type(head) is expected


def test_tar_needs_ustar_at_257_in_a_long_enough_block() -> None:
    assert detect_file_type(TAR[:SNIFF_SIZE]) is FileType.TAR
    assert detect_file_type(TAR[:263]) is FileType.TAR
    # Exactly 262 bytes hold "ustar" at 257..262, but the reference wants more than 262.
    assert TAR[257:262] == b"ustar"
    assert detect_file_type(TAR[:262]) is FileType.UNKNOWN
    # A block of text with "ustar" in the right place is a tar (only the magic counts)...
    fake = b"x" * 257 + b"ustar" + b"x" * 250
    assert detect_file_type(fake) is FileType.TAR
    # ...and a tar header without it (an old v7 tar) is not.
    v7 = TAR[:257] + b"\x00" * 8 + TAR[265:SNIFF_SIZE]
    assert detect_file_type(v7) is FileType.UNKNOWN


def test_only_the_first_512_bytes_count() -> None:
    assert detect_file_type(b"a" * SNIFF_SIZE + b"\x00") is FileType.TEXT


def test_file_type_strings() -> None:
    assert str(FileType.GZIP) == "gzip"
    assert [str(k) for k in FileType] == ["gzip", "bzip2", "xz", "zstd", "tar", "text", "unknown"]
    assert not FileType.TEXT.is_archive
    assert not FileType.UNKNOWN.is_archive


@pytest.mark.parametrize("kind", fx.COMPRESSIONS)
def test_detect_path(tmp_path: pathlib.Path, kind: str) -> None:
    path = tmp_path / "image.aci"
    path.write_bytes(fx.compress(TAR, kind))
    assert detect_path(path) is FileType(kind)
    assert detect_path(str(path)) is FileType(kind)


def test_detect_path_short_and_text_files(tmp_path: pathlib.Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert detect_path(empty) is FileType.UNKNOWN
    manifest = tmp_path / "manifest"
    manifest.write_bytes(fx.manifest_bytes())
    assert detect_path(manifest) is FileType.TEXT


def test_detect_path_errors_name_the_file(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "missing.aci"
    with pytest.raises(ImageError) as info:
        detect_path(missing)
    assert str(info.value) == f"{missing}: No such file or directory"
    assert info.value.source == str(missing)
    with pytest.raises(ImageError, match="Is a directory"):
        detect_path(tmp_path)
