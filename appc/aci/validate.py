"""Checking image layouts, image archives and manifest files (spec: ACI layout; actool validate).

The checks are the reference's (``ValidateLayout``, ``ValidateArchive``), with two of
its bugs fixed deliberately:

* a name merely *starting with* ``rootfs`` (``rootfsX/...``, a top-level ``rootfsX``
  directory) passed the reference's prefix test; here only ``rootfs`` and
  ``rootfs/...`` are inside the image;
* two ``manifest`` entries made the reference parse their concatenation; here the
  second one is a ``duplicate file entry`` error, as is any duplicate (including a
  second ``rootfs`` directory entry, which the reference let through).

Entries that climb out with ``..`` or are absolute get their own message instead of
the reference's "unrecognized file path".

Checked here beyond the reference, because an image comes from a stranger and is
unpacked by root:

* no entry may lie under an earlier entry of the archive that is not a directory
  (``rootfs/link -> /etc`` then ``rootfs/link/passwd``: a careless extractor writes
  through the symlink), and no entry that is not a directory may come after entries
  under its name;
* names must be writable on Linux: at most :data:`~appc.aci.read.MAX_NAME_BYTES`
  bytes, components of at most 255 bytes, at most :data:`~appc.aci.read.MAX_DEPTH`
  levels (symlink targets at most :data:`~appc.aci.read.MAX_NAME_BYTES` bytes);
* owners must be valid Linux IDs (0 to 2**32 - 2; ``-1`` means "unchanged" to
  ``chown``), device numbers what Linux takes (12-bit major, 20-bit minor).
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
from typing import IO, Any

import attrs

from appc.aci.filetype import FileType, detect_file_type
from appc.aci.read import (
    MAX_MANIFEST_SIZE,
    ImageReader,
    clean_name,
    name_limit_reason,
    unsafe_name_reason,
)
from appc.errors import ImageError, ValidationError
from appc.types.hash import Hash

__all__ = [
    "ArchiveReport",
    "EntryChecker",
    "ValidationType",
    "detect_validation_type",
    "image_manifest",
    "read_manifest_file",
    "validate_archive",
    "validate_layout",
]


def __dir__() -> list[str]:
    return __all__


class ValidationType(str):
    """The ``--type`` values of ``actool validate``."""

    APPIMAGE = "appimage"
    LAYOUT = "layout"
    MANIFEST = "manifest"
    ALL = ("appimage", "layout", "manifest")


def image_manifest(data: bytes, source: str, *, structural: bool = True) -> Any:
    """Parse the manifest bytes of an image found in *source*.

    :param structural: also run the JSON Schema pass (see :mod:`appc.schema`).
    :raises ImageError: ``image manifest validation failed: ...`` naming *source*.
    """
    from appc.schema.image import ImageManifest  # noqa: PLC0415 - schema import is the heavy part

    try:
        return ImageManifest.from_json(data, structural=structural)
    except ValidationError as err:
        raise ImageError(f"image manifest validation failed: {err}", source=source) from None


@attrs.frozen
class ArchiveReport:
    """What validating an image archive found: its manifest, image ID and compression."""

    manifest: Any
    image_id: Hash
    compression: FileType
    entries: int


_ALLOWED_TYPES = frozenset(
    {
        tarfile.REGTYPE,
        tarfile.AREGTYPE,
        tarfile.LNKTYPE,
        tarfile.SYMTYPE,
        tarfile.DIRTYPE,
        tarfile.CHRTYPE,
        tarfile.BLKTYPE,
        tarfile.FIFOTYPE,
        tarfile.CONTTYPE,
    }
)
#: The largest user or group ID Linux takes ((uid_t)-1 means "unchanged" to chown).
_MAX_ID = 2**32 - 2


class EntryChecker:
    """The per-entry rules of an image archive, applied as entries stream past.

    :param source: the archive's name, for messages.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self._seen: set[str] = set()
        self._forward: dict[str, str] = {}  # hard-link target not seen yet -> the link
        self._not_dirs: set[str] = set()  # names seen as files, symlinks, devices...
        self._parents: dict[str, str] = {}  # directory names entries lay under -> one such entry
        self.has_manifest = False
        self.has_rootfs = False

    def _error(self, message: str) -> ImageError:
        return ImageError(message, source=self.source)

    def check(self, info: tarfile.TarInfo, name: str) -> None:
        """Check one entry (*name* is its cleaned name).

        :raises ImageError: unsafe or unknown path, bad type, duplicate, bad hard link.
        """
        reason = unsafe_name_reason(info.name)
        if reason is not None:
            raise self._error(f"unsafe file path in archive ({reason}): {_short(info.name)!r}")
        reason = name_limit_reason(name)
        if reason is None and info.issym():
            reason = name_limit_reason(info.linkname, link=True)
        if reason is None and info.islnk():
            reason = name_limit_reason(clean_name(info.linkname))
        if reason is not None:
            raise self._error(f"unsupported file path in archive ({reason}): {_short(info.name)!r}")
        if info.type not in _ALLOWED_TYPES or info.issparse():
            raise self._error(f"unsupported entry type {info.type!r} for {info.name!r}")
        for kind, number in (("uid", info.uid), ("gid", info.gid)):
            if not 0 <= number <= _MAX_ID:
                raise self._error(f"{kind} {number} out of range for {_short(info.name)!r}")
        if info.ischr() or info.isblk():
            for kind, number, bits in (("major", info.devmajor, 12), ("minor", info.devminor, 20)):
                if not 0 <= number < 2**bits:
                    raise self._error(
                        f"device {kind} {number} out of range for {_short(info.name)!r}"
                    )
        if name == ".":
            if not info.isdir():
                raise self._error("archive root entry '.' is not a directory")
            return
        if name in self._seen:
            raise self._error(f"duplicate file entry in archive: {name!r}")
        self._seen.add(name)
        parent = posixpath.dirname(name)
        while parent and parent not in self._parents:
            self._parents[parent] = name
            if parent in self._not_dirs:
                raise self._error(f"{name!r} lies under {parent!r}, which is not a directory")
            parent = posixpath.dirname(parent)
        if not info.isdir():
            if name in self._parents:
                raise self._error(
                    f"{name!r} is not a directory, but {self._parents[name]!r} came before it, "
                    "inside it"
                )
            self._not_dirs.add(name)
        if name == "manifest":
            if not info.isreg():
                raise self._error("manifest is not a regular file")
            self.has_manifest = True
        elif name == "rootfs":
            if not info.isdir():
                raise self._error("rootfs is not a directory")
            self.has_rootfs = True
        elif not name.startswith("rootfs/"):
            raise self._error(f"unrecognized file path in layout: {name!r}")
        if name in self._forward:
            raise self._error(
                f"hard link {self._forward[name]!r} points to {name!r}, which comes after it"
            )
        if info.islnk():
            target = clean_name(info.linkname)
            if unsafe_name_reason(info.linkname) or not target.startswith("rootfs/"):
                raise self._error(f"hard link {name!r} points outside rootfs: {info.linkname!r}")
            if target == name:
                raise self._error(f"hard link {name!r} points to itself")
            parent = posixpath.dirname(target)
            while parent:
                if parent in self._not_dirs:  # e.g. a symlink to a directory outside
                    raise self._error(
                        f"hard link {name!r} to {info.linkname!r} leads through a symlink "
                        "or non-directory"
                    )
                parent = posixpath.dirname(parent)
            if target not in self._seen:
                # Not (yet) in this archive: legal only if it never appears here, as a
                # link to a file of a dependency (docker2aci -nosquash layers have those).
                self._forward.setdefault(target, name)

    def finish(self) -> None:
        """Check what the whole archive must contain.

        :raises ImageError: no manifest, or no rootfs directory.
        """
        if not self.has_manifest:
            raise self._error("no image manifest found in layout")
        if not self.has_rootfs:
            raise self._error("no rootfs found in layout")


def _short(name: str, limit: int = 120) -> str:
    """*name*, shortened in the middle for a one-line message."""
    return name if len(name) <= limit else f"{name[: limit // 2]}...{name[-limit // 2 :]}"


def validate_archive(
    source: str | os.PathLike[str] | IO[bytes], *, max_size: int | None = None
) -> ArchiveReport:
    """Check an image archive completely, in one pass, and compute its image ID.

    :raises ImageError: naming the archive and the first problem found.
    """
    with ImageReader(source, max_size=max_size) as image:
        checker = EntryChecker(str(image.source))
        manifest_bytes = b""
        count = 0
        for info, name in image.entries():
            count += 1
            checker.check(info, name)
            if name == "manifest":
                manifest_bytes = image.read_entry(info, limit=MAX_MANIFEST_SIZE)
        image_id = image.finish()
        checker.finish()
        manifest = image_manifest(manifest_bytes, checker.source)
        return ArchiveReport(manifest, image_id, image.kind, count)


def validate_layout(directory: str | os.PathLike[str], *, structural: bool = True) -> Any:
    """Check an image layout directory (``manifest`` + ``rootfs/``) and return its manifest.

    :param structural: also run the JSON Schema pass on the manifest (``build`` skips
        it: the semantic pass alone refuses the same manifests, as the schema corpus
        test shows, and importing ``jsonschema`` costs more than a small build).
    :raises ImageError: naming the directory and the problem.
    """
    where = os.fspath(directory)
    try:
        names = os.listdir(where)
    except NotADirectoryError:
        raise ImageError("not a directory", source=where) from None
    except OSError as err:
        raise ImageError(err.strerror or str(err), source=where) from None
    for name in sorted(names):
        if name not in ("manifest", "rootfs"):
            raise ImageError(f"unrecognized file path in layout: {name!r}", source=where)
    if "manifest" not in names:
        raise ImageError("no image manifest found in layout", source=where)
    if "rootfs" not in names:
        raise ImageError("no rootfs found in layout", source=where)
    if not stat.S_ISDIR(os.lstat(os.path.join(where, "rootfs")).st_mode):
        raise ImageError("rootfs is not a directory", source=where)
    manifest_path = os.path.join(where, "manifest")
    if not stat.S_ISREG(os.lstat(manifest_path).st_mode):
        raise ImageError("manifest is not a regular file", source=where)
    return image_manifest(_read_limited(manifest_path), where, structural=structural)


def _read_limited(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MANIFEST_SIZE + 1)
    except OSError as err:
        raise ImageError(err.strerror or str(err), source=path) from None
    if len(data) > MAX_MANIFEST_SIZE:
        raise ImageError(f"manifest larger than {MAX_MANIFEST_SIZE} bytes", source=path)
    return data


def read_manifest_file(path: str | os.PathLike[str]) -> Any:
    """Read and check a manifest file: an ImageManifest or a PodManifest, by its ``acKind``.

    A file with no usable ``acKind`` is checked as an image manifest (and so reports
    the missing kind), where the reference tool crashed.

    :raises ImageError: unreadable file; :raises appc.errors.InvalidManifest: bad manifest.
    """
    from appc.schema import _document  # noqa: PLC0415
    from appc.schema.image import ImageManifest  # noqa: PLC0415
    from appc.schema.pod import PodManifest  # noqa: PLC0415

    data = _read_limited(os.fspath(path))
    document = _document.loads(data)
    canonical = _document.canonicalize(document, "pod-manifest.schema.json")
    if isinstance(canonical, dict) and canonical.get("acKind") == "PodManifest":
        return PodManifest.from_dict(document)
    return ImageManifest.from_dict(document)


def detect_validation_type(path: str | os.PathLike[str]) -> str:
    """Choose what ``actool validate`` checks *path* as: a directory is a layout, an archive
    an image, text a manifest.

    :raises ImageError: ``unable to detect filetype (try --type)``.
    """
    where = os.fspath(path)
    if os.path.isdir(where):
        return ValidationType.LAYOUT
    try:
        with open(where, "rb") as f:
            kind = detect_file_type(f.read(512))
    except OSError as err:
        raise ImageError(err.strerror or str(err), source=where) from None
    if kind.is_archive:
        return ValidationType.APPIMAGE
    if kind is FileType.TEXT:
        return ValidationType.MANIFEST
    raise ImageError("unable to detect filetype (try --type)", source=where)
