"""Docker and OCI images → App Container Images (the library behind ``docker2aci``).

Sources produce a :class:`~appc.docker.image.SourceImage`: a registry v2
(:func:`~appc.docker.remote.open_remote_image`) or a file
(:func:`~appc.docker.archive.open_archive_image`); :func:`~appc.docker.convert.convert_image`
writes ACIs from it::

    from appc.docker import open_remote_image, parse_reference, convert_image
    with open_remote_image(parse_reference("docker://busybox")) as image:
        print(convert_image(image, ".").paths)
"""

from __future__ import annotations

from appc.docker.archive import open_archive_image
from appc.docker.convert import ConvertOptions, ConvertResult, convert_image
from appc.docker.image import Platform, SourceImage
from appc.docker.reference import DockerReference, parse_reference
from appc.docker.registry import RegistryClient, RegistryOptions
from appc.docker.remote import open_remote_image

__all__ = [
    "ConvertOptions",
    "ConvertResult",
    "DockerReference",
    "Platform",
    "RegistryClient",
    "RegistryOptions",
    "SourceImage",
    "convert_image",
    "open_archive_image",
    "open_remote_image",
    "parse_reference",
]


def __dir__() -> list[str]:
    return __all__
