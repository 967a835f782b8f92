"""Recognise an image file's format from its first bytes (the reference's ``DetectFileType``)."""

from __future__ import annotations

import enum
import os

from appc.errors import ImageError

__all__ = ["SNIFF_SIZE", "FileType", "detect_file_type", "detect_path"]


def __dir__() -> list[str]:
    return __all__


#: How many leading bytes the detection looks at.
SNIFF_SIZE = 512


class FileType(str, enum.Enum):
    """What a file holds: a compressed or plain tar (an image), text (a manifest), or unknown."""

    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    ZSTD = "zstd"
    TAR = "tar"
    TEXT = "text"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value

    @property
    def is_archive(self) -> bool:
        """True for a (possibly compressed) tar stream."""
        return self in (FileType.GZIP, FileType.BZIP2, FileType.XZ, FileType.ZSTD, FileType.TAR)


_MAGICS = (
    (b"\x1f\x8b", FileType.GZIP),
    (b"BZh", FileType.BZIP2),
    (b"\xfd7zXZ\x00", FileType.XZ),
    (b"\x28\xb5\x2f\xfd", FileType.ZSTD),
)
# Bytes that make Go's http.DetectContentType call data binary rather than text.
_BINARY = frozenset(set(range(0x00, 0x09)) | {0x0B} | set(range(0x0E, 0x1B)) | set(range(0x1C, 0x20)))


def detect_file_type(head: bytes) -> FileType:
    """Classify *head*, the first :data:`SNIFF_SIZE` bytes of a file.

    Checked in the reference's order: gzip, bzip2, xz magic numbers (plus zstd, which
    the reference does not know: appc reads zstd images as an extension and never
    writes them), then ``ustar`` at offset 257 of a block long enough to hold a tar
    header, then text (no binary control bytes, as Go's content sniffing), else unknown.

    >>> detect_file_type(b'{"acKind": "ImageManifest"}')
    <FileType.TEXT: 'text'>
    """
    for magic, kind in _MAGICS:
        if head.startswith(magic):
            return kind
    if len(head) > 262 and head[257:262] == b"ustar":
        return FileType.TAR
    if head and not _BINARY.intersection(head[:SNIFF_SIZE]):
        return FileType.TEXT
    return FileType.UNKNOWN


def detect_path(path: str | os.PathLike[str]) -> FileType:
    """Classify the file at *path* (a directory is not a file: see :func:`appc.aci.validate`).

    :raises ImageError: when the file cannot be read.
    """
    try:
        with open(path, "rb") as f:
            return detect_file_type(f.read(SNIFF_SIZE))
    except OSError as err:
        raise ImageError(err.strerror or str(err), source=os.fspath(path)) from None
