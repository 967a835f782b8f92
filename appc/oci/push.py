"""Pushing OCI images to a registry v2 (``actool push``), with docker2aci's transport rules.

Blobs first — skipped when the registry has them (``HEAD``), mounted from another
repository when told where (cross-repository mount), uploaded in one ``PUT`` or, for
large layers, in ``PATCH`` chunks — each checked by the registry against its digest;
then the manifests; the tag is written last, so a failed push never leaves a tag
pointing at a half-pushed image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import IO

import requests

from appc.docker.reference import DockerReference
from appc.docker.registry import RegistryClient, RegistryOptions
from appc.errors import FetchError
from appc.oci.image import Blob, OCIImage, image_index

__all__ = ["CHUNK_SIZE", "push_images"]


def __dir__() -> list[str]:
    return __all__


#: Layers larger than this are uploaded in chunks of this size.
CHUNK_SIZE = 16 * 1024 * 1024


def _location(client: RegistryClient, response: requests.Response, url: str) -> str:
    location = response.headers.get("Location")
    response.close()
    if not location:
        raise FetchError("upload answer without a Location", url=url)
    return requests.compat.urljoin(client.url("/"), location)


def _without_query(url: str) -> str:
    """*url* without its query (upload URLs carry long opaque state)."""
    return url.partition("?")[0]


def _with_digest(location: str, digest: str) -> str:
    return f"{location}{'&' if '?' in location else '?'}digest={digest}"


class _Pusher:
    def __init__(
        self,
        client: RegistryClient,
        repository: str,
        mount_from: Sequence[str],
        log: Callable[[str], None],
    ) -> None:
        self.client = client
        self.repository = repository
        self.scope = f"repository:{repository}:pull,push"
        self.mount_from = mount_from
        self.log = log

    def has(self, digest: str) -> bool:
        response = self.client.request(
            "HEAD", f"/v2/{self.repository}/blobs/{digest}", scope=self.scope, ok=(200, 404)
        )
        response.close()
        return response.status_code == 200

    def start(self, digest: str) -> str | None:
        """Start an upload; ``None`` when a cross-repository mount already made the blob.

        Each ``mount_from`` repository is tried in turn; a registry that cannot mount
        answers by starting an upload (202), which is cancelled unless it is the last try.
        """
        for index, source in enumerate(self.mount_from):
            path = f"/v2/{self.repository}/blobs/uploads/?mount={digest}&from={source}"
            response = self.client.request("POST", path, scope=self.scope, ok=(201, 202))
            if response.status_code == 201:
                response.close()
                self.log(f"mounted {digest[:19]} from {source}")
                return None
            location = _location(self.client, response, path)
            if index == len(self.mount_from) - 1:
                return location
            self.client.request("DELETE", location, scope=self.scope, ok=(200, 204, 404)).close()
        path = f"/v2/{self.repository}/blobs/uploads/"
        response = self.client.request("POST", path, scope=self.scope, ok=(202,))
        return _location(self.client, response, path)

    def upload(self, blob: Blob, chunk_size: int) -> None:
        """Make the registry hold *blob*: already there, mounted, or uploaded.

        :raises FetchError: naming the blob and the registry's answer.
        """
        try:
            self._upload(blob, chunk_size)
        except FetchError as err:
            raise FetchError(
                f"pushing blob {blob.digest[:19]}: {err.message}",
                url=_without_query(err.url),
                status=err.status,
            ) from None

    def _upload(self, blob: Blob, chunk_size: int) -> None:
        if self.has(blob.digest):
            self.log(f"exists {blob.digest[:19]}")
            return
        location = self.start(blob.digest)
        if location is None:
            return
        with blob.open() as data:
            if blob.size <= chunk_size:
                response = self.client.request(
                    "PUT",
                    _with_digest(location, blob.digest),
                    scope=self.scope,
                    headers={"Content-Type": "application/octet-stream"},
                    data=data.read(),
                    ok=(201,),
                )
                response.close()
            else:
                self._chunks(location, data, blob, chunk_size)
        self.log(f"pushed {blob.digest[:19]} ({blob.size} bytes)")

    def _chunks(self, location: str, data: IO[bytes], blob: Blob, chunk_size: int) -> None:
        offset = 0
        while offset < blob.size:
            chunk = data.read(chunk_size)
            if not chunk:
                raise FetchError(f"blob {blob.digest} shorter than its size", url=location)
            response = self.client.request(
                "PATCH",
                location,
                scope=self.scope,
                data=chunk,
                ok=(202,),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                    "Content-Length": str(len(chunk)),
                },
            )
            location = _location(self.client, response, location)
            offset += len(chunk)
        response = self.client.request(
            "PUT", _with_digest(location, blob.digest), scope=self.scope, data=b"", ok=(201,)
        )
        response.close()

    def manifest(self, blob: Blob, reference: str) -> str:
        """Put a manifest (or index) as *reference*; returns its digest.

        :raises FetchError: refused, or stored under another digest.
        """
        path = f"/v2/{self.repository}/manifests/{reference}"
        assert blob.data is not None
        try:
            response = self.client.request(
                "PUT",
                path,
                scope=self.scope,
                headers={"Content-Type": blob.media_type},
                data=blob.data,
                ok=(201,),
            )
        except FetchError as err:
            raise FetchError(
                f"pushing the manifest {reference}: {err.message}", url=err.url, status=err.status
            ) from None
        digest = response.headers.get("Docker-Content-Digest", blob.digest)
        response.close()
        if digest != blob.digest:
            raise FetchError(
                f"registry stored the manifest as {digest}, expected {blob.digest}",
                url=self.client.url(path),
            )
        return digest


def push_images(
    images: Sequence[OCIImage],
    reference: DockerReference,
    *,
    options: RegistryOptions | None = None,
    mount_from: Sequence[str] = (),
    chunk_size: int = CHUNK_SIZE,
    log: Callable[[str], None] | None = None,
) -> str:
    """Push *images* (one, or several platforms making an index) as ``reference``'s tag.

    :returns: the digest of the manifest (or index) the tag names.
    :raises FetchError: unreachable registry, refused authentication (401, 403), a blob
        the registry refuses (413, digest mismatch); no tag is written then.  A reference
        by digest (``NAME@sha256:...``) is refused: a push names a tag.
    """
    if not images:
        raise FetchError("nothing to push")
    if reference.digest:
        raise FetchError(
            f"push to a tag, not a digest: {reference.original!r} (the registry names "
            "the pushed manifest by its own digest)"
        )
    client = RegistryClient(reference.registry, options)
    pusher = _Pusher(client, reference.repository, mount_from, log or (lambda _: None))
    tag = reference.tag or "latest"
    try:
        client.ping()  # an unreachable registry is reported as such, before any blob
        done: set[str] = set()
        for image in images:
            for blob in image.blobs():
                if blob.digest not in done:
                    pusher.upload(blob, chunk_size)
                    done.add(blob.digest)
        if len(images) == 1:
            return pusher.manifest(images[0].manifest, tag)
        for image in images:
            pusher.manifest(image.manifest, image.manifest.digest)
        return pusher.manifest(image_index(images), tag)
    finally:
        client.close()
