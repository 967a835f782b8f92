"""App Container Image archives: detect, read, validate, build, patch and extract.

An ACI is a tar archive (plain, gzip, bzip2 or xz; zstd is read too) holding exactly
``manifest`` and ``rootfs/``.  Everything here streams: an image is read once, never
held in memory, and its image ID (``sha512-`` + the hash of the uncompressed tar) is
computed on the way.
"""

from __future__ import annotations

from appc.aci.build import BuildResult, build_image
from appc.aci.extract import ExtractOptions, extract_image
from appc.aci.filetype import FileType, detect_file_type, detect_path
from appc.aci.patch import ManifestPatch, apply_patch, patch_image
from appc.aci.read import (
    ImageReader,
    compute_image_id,
    read_manifest,
    read_manifest_bytes,
)
from appc.aci.validate import (
    ArchiveReport,
    detect_validation_type,
    read_manifest_file,
    validate_archive,
    validate_layout,
)
from appc.aci.write import ImageWriter, atomic_output

__all__ = [
    "ArchiveReport",
    "BuildResult",
    "ExtractOptions",
    "FileType",
    "ImageReader",
    "ImageWriter",
    "ManifestPatch",
    "apply_patch",
    "atomic_output",
    "build_image",
    "compute_image_id",
    "detect_file_type",
    "detect_path",
    "detect_validation_type",
    "extract_image",
    "patch_image",
    "read_manifest",
    "read_manifest_bytes",
    "read_manifest_file",
    "validate_archive",
    "validate_layout",
]


def __dir__() -> list[str]:
    return __all__
