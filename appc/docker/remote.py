"""Images from a registry: resolve the manifest (lists by platform), fetch the config,
and download the layers in parallel while conversion starts on the first ones."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any

from appc.docker.image import (
    ImageLayer,
    Platform,
    SourceImage,
    check_digest,
    is_index,
    layers_from_manifest,
    parse_schema1,
    select_platform,
    v1_layer,
    work_directory,
)
from appc.docker.reference import DockerReference
from appc.docker.registry import MediaType, RegistryClient, RegistryOptions
from appc.errors import FetchError

__all__ = ["DownloadProgress", "open_remote_image"]


def __dir__() -> list[str]:
    return __all__


class DownloadProgress:
    """Receives download events; the CLI draws them, the library default ignores them."""

    def start(self, digest: str, total: int | None) -> None:
        """A blob download begins."""

    def advance(self, digest: str, count: int) -> None:
        """*count* more bytes arrived (negative after a retry restarts the blob)."""

    def finish(self, digest: str) -> None:
        """The blob is complete and verified."""


_CONFIG_TYPES = frozenset(
    {MediaType.DOCKER_CONFIG, MediaType.OCI_CONFIG, "application/octet-stream"}
)
_SCHEMA1 = frozenset({MediaType.DOCKER_SCHEMA1, MediaType.DOCKER_SCHEMA1_SIGNED})


@contextlib.contextmanager
def open_remote_image(
    reference: DockerReference,
    *,
    options: RegistryOptions | None = None,
    platform: Platform | None = None,
    workdir: str | None = None,
    progress: DownloadProgress | None = None,
    parallel: int = 4,
) -> Iterator[SourceImage]:
    """Resolve *reference* on its registry and yield the image, its layers downloading.

    Layer blobs go to a temporary directory (under *workdir*, made if missing) that is removed on exit;
    opening a layer waits for its download.  Leaving the context early stops the
    remaining downloads.

    :raises FetchError: unreachable registry, authentication, unknown image or tag,
        no image for the platform, digest mismatch.
    """
    client = RegistryClient(reference.registry, options)
    platform = platform or Platform()
    report = progress or DownloadProgress()
    repository = reference.repository
    where = str(reference)
    cancelled = threading.Event()
    with (
        work_directory(workdir) as tmp,
        concurrent.futures.ThreadPoolExecutor(parallel, "appc-download") as pool,
    ):
        try:
            manifest = client.get_manifest(repository, reference.ref)
            for _ in range(4):
                if not is_index(manifest.media_type):
                    break
                descriptor = select_platform(manifest.data, platform, where)
                manifest = client.get_manifest(
                    repository, check_digest(descriptor.get("digest"), where)
                )
            else:
                raise FetchError(f"index nested too deeply in {where}")

            def download(digest: str, size: int | None) -> Callable[[], IO[bytes]]:
                path = os.path.join(tmp, digest.replace(":", "-"))

                def tick(count: int) -> None:
                    if cancelled.is_set():
                        raise FetchError("download cancelled", url=where)
                    report.advance(digest, count)

                def run() -> None:
                    report.start(digest, size)
                    client.download_blob(repository, digest, path, size=size, progress=tick)
                    report.finish(digest)

                future = pool.submit(run)

                def opener() -> IO[bytes]:
                    future.result()
                    return open(path, "rb")

                return opener

            openers: dict[str, Callable[[], IO[bytes]]] = {}

            def opener_for(digest: str, size: int | None) -> Callable[[], IO[bytes]]:
                if digest not in openers:  # a blob used by several layers is fetched once
                    openers[digest] = download(digest, size)
                return openers[digest]

            if manifest.media_type in _SCHEMA1:
                entries = parse_schema1(manifest.data, repository, reference.tag, where)
                layers = tuple(v1_layer(blob, v1, opener_for(blob, None)) for blob, v1 in entries)
                image = SourceImage(entries[-1][1], layers, "v1", manifest.digest, reference)
            elif manifest.media_type in (MediaType.DOCKER_MANIFEST, MediaType.OCI_MANIFEST):
                config_descriptor, descriptors = layers_from_manifest(manifest.data, where)
                config_type = config_descriptor.get("mediaType", MediaType.OCI_CONFIG)
                if config_type not in _CONFIG_TYPES:
                    raise FetchError(
                        f"not a container image (config media type {config_type!r}): {where}"
                    )
                config = _json_object(
                    client.read_blob(repository, str(config_descriptor["digest"])), where
                )
                layers = tuple(
                    ImageLayer(
                        digest=str(d["digest"]),
                        media_type=str(d.get("mediaType", MediaType.OCI_LAYER_GZIP)),
                        opener=opener_for(str(d["digest"]), _size(d.get("size"))),
                        size=_size(d.get("size")),
                        layer_id=str(d["digest"]),
                    )
                    for d in descriptors
                )
                image = SourceImage(config, layers, "v22", manifest.digest, reference)
            else:
                raise FetchError(
                    f"unsupported manifest media type {manifest.media_type!r}: {where}"
                )
            yield image
        finally:
            cancelled.set()
            client.close()


def _size(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _json_object(data: bytes, where: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise FetchError(f"image config is not valid JSON: {where}") from None
    if not isinstance(value, dict):
        raise FetchError(f"image config is not a JSON object: {where}")
    return value
