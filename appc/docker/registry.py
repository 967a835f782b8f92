"""A Docker Registry HTTP API v2 client (on ``requests``).

What it does, beyond the original docker2aci:

* TLS is verified by default (``insecure_skip_verify`` to skip, ``ca_file`` to trust a
  private CA); plain HTTP is used only with ``insecure_allow_http``, and a redirect
  from HTTPS to HTTP is refused without it.
* Authentication answers the registry's challenges: Bearer tokens (``token`` or
  ``access_token``, scopes from the challenge, cached per scope) and Basic; credentials
  are never sent before a challenge asks for them, nor to another host after a redirect.
* Every manifest and blob is checked against its digest; sizes are checked; a blob is
  streamed to disk, never held in memory.  A schema1 manifest's digest is the registry's
  (over the signed payload), so it is stable across pulls; the original hashed the
  re-signed bytes, which change on every pull.
* 429 and 5xx answers and dropped connections are retried with exponential backoff
  (``Retry-After`` honoured, bounded); the final error names the URL and status.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import requests

from appc.aci._compress import download_limit_text, max_download_size
from appc.docker.auth import Challenge, Credentials, parse_www_authenticate
from appc.errors import FetchError
from appc.transport import RETRY_STATUS, Transport, TransportOptions, reason, retry_after

__all__ = [
    "MANIFEST_MEDIA_TYPES",
    "MediaType",
    "Manifest",
    "RegistryClient",
    "RegistryOptions",
]


def __dir__() -> list[str]:
    return __all__


class MediaType:
    """Media types of the registry API (Docker and OCI)."""

    DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
    DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
    DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
    DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
    DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    OCI_INDEX = "application/vnd.oci.image.index.v1+json"
    OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
    OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
    OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
    OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


#: Every manifest type we ask for, most wanted first.
MANIFEST_MEDIA_TYPES = (
    MediaType.OCI_INDEX,
    MediaType.DOCKER_LIST,
    MediaType.OCI_MANIFEST,
    MediaType.DOCKER_MANIFEST,
    MediaType.DOCKER_SCHEMA1_SIGNED,
    MediaType.DOCKER_SCHEMA1,
)

_CHUNK = 1024 * 1024
_MAX_MANIFEST = 8 * 1024 * 1024
#: Statuses a token server's answer is judged on (the others are retried first).
_FINAL_STATUS = frozenset(range(200, 600)) - RETRY_STATUS


@attrs.frozen(kw_only=True)
class RegistryOptions(TransportOptions):
    """How to talk to registries: the HTTP policy of :class:`~appc.transport.TransportOptions`
    (TLS, plain HTTP as a fallback, retries, timeouts), plus credentials.

    :param credentials: user and password to answer challenges with (default: from
        Docker's configuration files).
    """

    credentials: Credentials | None = None
    user_agent: str = "appc/0.1 (docker2aci)"


@attrs.frozen
class Manifest:
    """A manifest as fetched: its media type, raw bytes, digest and parsed JSON."""

    media_type: str
    body: bytes
    digest: str
    data: dict[str, Any]


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _digest_hasher(digest: str) -> Any:
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm not in ("sha256", "sha384", "sha512") or not hexdigest:
        raise FetchError(f"unsupported digest {digest!r}")
    return hashlib.new(algorithm)


def _schema1_payload(body: bytes) -> bytes | None:
    """The signed payload of a schema1 manifest (what its digest covers), if it has signatures."""
    import base64  # noqa: PLC0415

    try:
        data = json.loads(body)
        protected = data["signatures"][0]["protected"]
        header = json.loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4)))
        tail = base64.urlsafe_b64decode(
            header["formatTail"] + "=" * (-len(header["formatTail"]) % 4)
        )
        return body[: int(header["formatLength"])] + tail
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _detect_media_type(content_type: str, data: dict[str, Any]) -> str:
    declared = data.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    if data.get("schemaVersion") == 1:
        return MediaType.DOCKER_SCHEMA1_SIGNED if "signatures" in data else MediaType.DOCKER_SCHEMA1
    if "manifests" in data:
        return MediaType.OCI_INDEX
    if "layers" in data:
        return MediaType.OCI_MANIFEST
    return content_type.split(";", maxsplit=1)[0].strip()


class RegistryClient:
    """A client for one registry host (``127.0.0.1:5000``, ``registry-1.docker.io``).

    Thread-safe: downloads may run in parallel (one HTTP session per thread); tokens
    are shared.
    """

    def __init__(self, host: str, options: RegistryOptions | None = None) -> None:
        self.host = host
        self.options = options or RegistryOptions()
        self.transport = Transport(self.options)
        self._scheme: str | None = None
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}  # scope -> bearer token
        self._basic: Credentials | None = None  # set once a Basic challenge was answered

    def close(self) -> None:
        """Close this thread's HTTP session."""
        self.transport.close()

    def url(self, path: str) -> str:
        """The absolute URL of *path* (``/v2/...``) on this registry (pinging first if needed)."""
        if self._scheme is None:
            self.ping()
        return f"{self._scheme}://{self.host}{path}"

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        scope: str = "",
        headers: dict[str, str] | None = None,
        stream: bool = False,
        data: Any = None,
        ok: Iterable[int] = (200,),
    ) -> requests.Response:
        """Send a request with authentication and retries; return a response whose status is in *ok*.

        :param scope: the token scope to ask for if the registry challenges
            (``repository:NAME:pull``).
        :raises FetchError: after the retries, or for a status not in *ok*.
        """
        url = path_or_url if "://" in path_or_url else self.url(path_or_url)
        challenged = [False]

        def with_auth() -> dict[str, str]:
            return {**(headers or {}), **self._auth_header(scope)}

        def on_status(response: requests.Response) -> bool:
            if response.status_code != 401:
                return False
            header = response.headers.get("WWW-Authenticate", "")
            response.close()
            if challenged[0] and self._credentials() is not None:
                raise FetchError(
                    "unauthorized: the registry refused the credentials", url=url, status=401
                )
            if not challenged[0]:
                challenged[0] = True
                if self._answer_challenge(header, scope, url):
                    return True
            # no credentials, or an anonymous token that does not allow this
            raise FetchError(
                "unauthorized: authentication required (give --username/--password, "
                "--creds, or credentials in ~/.docker/config.json)",
                url=url,
                status=401,
            )

        return self.transport.request(
            method, url, headers=with_auth, stream=stream, data=data, ok=ok, on_status=on_status
        )

    # --- authentication -----------------------------------------------------------

    def _credentials(self) -> Credentials | None:
        return self.options.credentials

    def _auth_header(self, scope: str) -> dict[str, str]:
        with self._lock:
            token = self._tokens.get(scope)
            basic = self._basic
        if token is not None:
            return {"Authorization": f"Bearer {token}"}
        if basic is not None:
            return {"Authorization": _basic_header(basic)}
        return {}

    def _answer_challenge(self, header: str, scope: str, url: str) -> bool:
        challenges = parse_www_authenticate(header) if header else []
        for challenge in challenges:
            if challenge.scheme == "bearer":
                token = self._fetch_token(challenge, scope, url)
                with self._lock:
                    self._tokens[scope] = token
                return True
        for challenge in challenges:
            if challenge.scheme == "basic":
                credentials = self._credentials()
                if credentials is None:
                    return False
                with self._lock:
                    if self._basic is credentials:
                        return False  # these credentials were already refused
                    self._basic = credentials
                return True
        return False

    def _fetch_token(self, challenge: Challenge, scope: str, url: str) -> str:
        realm = challenge.params.get("realm")
        if not realm:
            raise FetchError("bearer challenge without a realm", url=url, status=401)
        params = {}
        if challenge.params.get("service"):
            params["service"] = challenge.params["service"]
        wanted_scope = scope or challenge.params.get("scope", "")
        if wanted_scope:
            params["scope"] = wanted_scope
        headers = {}
        credentials = self._credentials()
        if credentials is not None:
            headers["Authorization"] = _basic_header(credentials)
        token_url = realm + ("&" if "?" in realm else "?") + requests.compat.urlencode(params)
        body = self._token_answer(token_url, headers, realm)
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise FetchError("token server answered without a token", url=realm)
        return token

    def _token_answer(self, token_url: str, headers: dict[str, str], realm: str) -> Any:
        """The token server's JSON answer.

        It gets the registry's retries: 429/5xx answers and dropped connections (by the
        transport), and an answer cut short mid-body (here).  Errors name the realm,
        never the query.
        """
        attempt = 0
        while True:
            try:
                response = self.transport.request(
                    "GET", token_url, headers=headers, stream=True, ok=_FINAL_STATUS
                )
            except FetchError as err:
                if err.message.startswith("connection failed"):
                    detail = err.message.partition(": ")[2] or err.message
                    raise FetchError(f"token server unreachable: {detail}", url=realm) from None
                raise FetchError(
                    f"unable to retrieve auth token: {err.message}", url=realm, status=err.status
                ) from None
            if response.status_code == 401:
                response.close()
                raise FetchError(
                    "unable to retrieve auth token: 401 unauthorized (wrong or missing credentials)",
                    url=realm,
                    status=401,
                )
            if response.status_code != 200:
                response.close()
                raise FetchError(
                    f"unable to retrieve auth token: HTTP {response.status_code}",
                    url=realm,
                    status=response.status_code,
                )
            try:
                data = _read_limited(response, _MAX_MANIFEST, realm)
            except _Retryable as err:
                if attempt >= self.options.retries:
                    raise FetchError(
                        f"unable to retrieve auth token: download failed after {attempt + 1} "
                        f"attempts: {err}",
                        url=realm,
                    ) from None
                attempt += 1
                time.sleep(self._delay(attempt))
                continue
            try:
                return json.loads(data)
            except ValueError:
                raise FetchError("token server answered with invalid JSON", url=realm) from None

    # --- the API --------------------------------------------------------------------

    def ping(self) -> None:
        """Find the scheme the registry answers on (``GET /v2/``, HTTPS first).

        :raises FetchError: when the registry is unreachable or not a v2 registry.
        """
        errors = []
        schemes = ["https", "http"] if self.options.insecure_allow_http else ["https"]
        for scheme in schemes:
            url = f"{scheme}://{self.host}/v2/"
            try:
                response, attempts = self._ping_once(url)
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as err:
                errors.append(f"{url}: {reason(err)}")
                continue
            except FetchError as err:
                errors.append(str(err))
                continue
            if response.status_code in (200, 401):
                self._scheme = scheme
                return
            if response.status_code in RETRY_STATUS:
                errors.append(f"{url}: HTTP {response.status_code} after {attempts} attempts")
            else:
                errors.append(f"{url}: HTTP {response.status_code}, not a v2 registry")
        if any("CERTIFICATE_VERIFY_FAILED" in e for e in errors):
            hint = " (trust its certificate with --ca-file, or use --insecure-skip-verify)"
        elif not self.options.insecure_allow_http:
            hint = " (for a plain-HTTP registry use --insecure-allow-http)"
        else:
            hint = ""
        raise FetchError(f"cannot reach registry {self.host}: {'; '.join(errors)}{hint}")

    def _ping_once(self, url: str) -> tuple[requests.Response, int]:
        """``GET url``, tried again on 429 and 5xx answers (not on connection errors: the
        next scheme is tried then); returns the last answer and the number of attempts."""
        attempt = 0
        while True:
            response = self.transport.send("GET", url)
            response.close()
            if response.status_code not in RETRY_STATUS or attempt >= self.options.retries:
                return response, attempt + 1
            attempt += 1
            time.sleep(min(retry_after(response, self._delay(attempt)), self.options.max_delay))

    def get_manifest(
        self, repository: str, reference: str, accept: Iterable[str] = MANIFEST_MEDIA_TYPES
    ) -> Manifest:
        """Fetch a manifest by tag or digest, checking its digest.

        :raises FetchError: not found (``manifest unknown``), or a digest mismatch.
        """
        path = f"/v2/{repository}/manifests/{reference}"
        response, body = self._get_small(
            path,
            scope=f"repository:{repository}:pull",
            headers={"Accept": ", ".join(accept)},
            limit=_MAX_MANIFEST,
        )
        try:
            data = json.loads(body)
        except ValueError:
            raise FetchError("manifest is not valid JSON", url=self.url(path)) from None
        if not isinstance(data, dict):
            raise FetchError("manifest is not a JSON object", url=self.url(path))
        media_type = _detect_media_type(response.headers.get("Content-Type", ""), data)
        digest = self._check_manifest_digest(
            body,
            media_type,
            reference,
            response.headers.get("Docker-Content-Digest", ""),
            self.url(path),
        )
        return Manifest(media_type, body, digest, data)

    @staticmethod
    def _check_manifest_digest(
        body: bytes, media_type: str, reference: str, header: str, url: str
    ) -> str:
        expected = reference if ":" in reference else header  # tags never contain ':'
        candidates = [body]
        if media_type in (MediaType.DOCKER_SCHEMA1, MediaType.DOCKER_SCHEMA1_SIGNED):
            payload = _schema1_payload(body)
            if payload is not None:
                candidates.insert(0, payload)
        if not expected:
            return _sha256(candidates[0])
        algorithm = expected.partition(":")[0]
        for candidate in candidates:
            hasher = _digest_hasher(expected)
            hasher.update(candidate)
            if f"{algorithm}:{hasher.hexdigest()}" == expected:
                return expected
        raise FetchError(f"manifest digest mismatch: expected {expected}", url=url)

    def _get_small(
        self, path: str, *, scope: str, headers: dict[str, str] | None = None, limit: int
    ) -> tuple[requests.Response, bytes]:
        """GET a small document into memory; a connection that breaks mid-body, or a body
        shorter than its ``Content-Length``, is tried again (up to the retry count)."""
        attempt = 0
        while True:
            response = self.request("GET", path, scope=scope, headers=headers, stream=True)
            try:
                return response, _read_limited(response, limit, self.url(path))
            except _Retryable as err:
                if attempt >= self.options.retries:
                    raise FetchError(
                        f"download failed after {attempt + 1} attempts: {err}", url=self.url(path)
                    ) from None
                attempt += 1
                time.sleep(self._delay(attempt))

    def _delay(self, attempt: int) -> float:
        """The wait before retry number *attempt* (1, 2 ...): exponential, bounded."""
        return float(min(self.options.backoff * 2 ** (attempt - 1), self.options.max_delay))

    def read_blob(self, repository: str, digest: str, *, limit: int = _MAX_MANIFEST) -> bytes:
        """Fetch a small blob (an image config) into memory, checking its digest."""
        path = f"/v2/{repository}/blobs/{digest}"
        _, body = self._get_small(path, scope=f"repository:{repository}:pull", limit=limit)
        hasher = _digest_hasher(digest)
        hasher.update(body)
        if f"{digest.partition(':')[0]}:{hasher.hexdigest()}" != digest:
            raise FetchError(f"blob digest mismatch: expected {digest}", url=self.url(path))
        return body

    def download_blob(
        self,
        repository: str,
        digest: str,
        destination: str,
        *,
        size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Stream a blob to the file *destination*, checking its size and digest.

        A connection dropped mid-body is retried from the start (up to the retry count).
        The file is removed if the blob cannot be fetched intact.

        :raises FetchError: not found, digest or size mismatch, too many failures.
        """
        path = f"/v2/{repository}/blobs/{digest}"
        attempt = 0
        while True:
            try:
                self._download_once(
                    path=path,
                    repository=repository,
                    digest=digest,
                    destination=destination,
                    size=size,
                    progress=progress,
                )
                return
            except _Retryable as err:
                if attempt >= self.options.retries:
                    _remove(destination)
                    raise FetchError(
                        f"download failed after {attempt + 1} attempts: {err}", url=self.url(path)
                    ) from None
                attempt += 1
                time.sleep(self._delay(attempt))
            except BaseException:
                _remove(destination)
                raise

    def _download_once(
        self,
        *,
        path: str,
        repository: str,
        digest: str,
        destination: str,
        size: int | None,
        progress: Callable[[int], None] | None,
    ) -> None:
        limit = max_download_size()
        if size is not None and size > limit:
            raise FetchError(
                f"blob of {size} bytes is larger than {download_limit_text(limit)}",
                url=self.url(path),
            )
        response = self.request("GET", path, scope=f"repository:{repository}:pull", stream=True)
        url = response.url or self.url(path)
        hasher = _digest_hasher(digest)
        written = 0
        try:
            with open(destination, "wb") as out:
                for chunk in response.iter_content(_CHUNK):
                    hasher.update(chunk)
                    out.write(chunk)
                    written += len(chunk)
                    if size is not None and written > size:
                        raise FetchError(f"blob larger than its declared size {size}", url=url)
                    if written > limit:
                        raise FetchError(f"blob larger than {download_limit_text(limit)}", url=url)
                    if progress is not None:
                        progress(len(chunk))
        except (
            requests.exceptions.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.Timeout,
        ) as err:
            if progress is not None:
                progress(-written)
            raise _Retryable(reason(err)) from None
        except OSError as err:
            raise FetchError(
                f"cannot write {destination}: {err.strerror or err}", url=url
            ) from None
        finally:
            response.close()
        if size is not None and written != size:
            if progress is not None:
                progress(-written)
            raise _Retryable(f"truncated: got {written} of {size} bytes")
        if f"{digest.partition(':')[0]}:{hasher.hexdigest()}" != digest:
            raise FetchError(f"blob digest mismatch: expected {digest}", url=url)


class _Retryable(Exception):
    """A download attempt failed in a way worth trying again."""


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _basic_header(credentials: Credentials) -> str:
    import base64  # noqa: PLC0415

    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _read_limited(response: requests.Response, limit: int, url: str) -> bytes:
    data = bytearray()
    try:
        for chunk in response.iter_content(65536):
            data += chunk
            if len(data) > limit:
                raise FetchError(f"response larger than {limit} bytes", url=url)
    except (
        requests.exceptions.ConnectionError,
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.Timeout,
    ) as err:
        raise _Retryable(reason(err)) from None
    finally:
        response.close()
    declared = response.headers.get("Content-Length")
    encoded = response.headers.get("Content-Encoding", "identity") != "identity"
    if declared is not None and declared.isdigit() and int(declared) != len(data) and not encoded:
        raise _Retryable(f"truncated: got {len(data)} of {declared} bytes")
    return bytes(data)
