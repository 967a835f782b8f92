"""Writing OCI images as an image layout directory or an ``oci-archive`` tarball."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from collections.abc import Sequence

from appc.aci.write import atomic_output
from appc.errors import ImageError
from appc.oci.image import Blob, OCIImage, image_index

__all__ = ["write_oci"]


def __dir__() -> list[str]:
    return __all__


def _top(images: Sequence[OCIImage]) -> tuple[Blob, list[Blob]]:
    """What the tag names (one manifest, or an index of several) and every blob to store."""
    blobs: list[Blob] = []
    for image in images:
        blobs += [*image.blobs(), image.manifest]
    if len(images) == 1:
        return images[0].manifest, blobs
    index = image_index(images)
    return index, [*blobs, index]


def _write_dir(root: str, top: Blob, blobs: Sequence[Blob], tag: str) -> None:
    os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)
    for blob in blobs:
        target = os.path.join(root, "blobs", "sha256", blob.digest.partition(":")[2])
        if os.path.exists(target):
            continue
        with blob.open() as src, open(target + ".tmp", "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(target + ".tmp", target)
    with open(os.path.join(root, "oci-layout"), "w", encoding="ascii") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    index = {
        "schemaVersion": 2,
        "manifests": [top.descriptor(annotations={"org.opencontainers.image.ref.name": tag})],
    }
    with open(os.path.join(root, "index.json"), "w", encoding="ascii") as f:
        json.dump(index, f)


def write_oci(
    images: Sequence[OCIImage],
    target: str,
    *,
    tag: str = "latest",
    archive: bool = False,
    overwrite: bool = False,
) -> str:
    """Write *images* (one, or several platforms of one image) as an OCI layout.

    :param target: a directory, or with *archive* a ``.tar`` file (``oci-archive``).
    :returns: the digest of the manifest (or index) *tag* names.
    :raises ImageError: an existing target without *overwrite*.
    """
    if not images:
        raise ImageError("no image to write")
    top, blobs = _top(images)
    if not archive:
        if os.path.exists(os.path.join(target, "index.json")) and not overwrite:
            raise ImageError("target layout exists (try --overwrite)", source=target)
        _write_dir(target, top, blobs, tag)
        return top.digest
    with (
        atomic_output(target, overwrite=overwrite) as out,
        tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        staging = target + ".d.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            _write_dir(staging, top, blobs, tag)
            for name in ("oci-layout", "index.json"):
                tar.add(os.path.join(staging, name), arcname=name)
            tar.add(os.path.join(staging, "blobs"), arcname="blobs")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return top.digest
