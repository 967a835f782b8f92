"""App Container Images as OCI images: conversion, OCI layouts and archives, registry push.

Formats (:mod:`appc.oci.image`, :mod:`appc.oci.layout`) and transport
(:mod:`appc.oci.push`, on the docker2aci registry client) stay apart.
"""

from __future__ import annotations

from appc.oci.image import (
    ANNOTATION_PREFIX,
    LABEL_PREFIX,
    MANIFEST_LABEL,
    OCIImage,
    build_oci_image,
    image_index,
    oci_image_from_aci,
)
from appc.oci.layout import write_oci

__all__ = [
    "ANNOTATION_PREFIX",
    "LABEL_PREFIX",
    "MANIFEST_LABEL",
    "OCIImage",
    "build_oci_image",
    "image_index",
    "oci_image_from_aci",
    "write_oci",
]


def __dir__() -> list[str]:
    return __all__
