"""Getting images into the store, as ``rkt fetch`` does: by name (discovery), URL, file, or docker://.

Nothing enters the store before its signature is verified against the keys trusted for
the image's name (unless ``--insecure-options=image``), and, for a discovered image,
before its manifest is checked to be the image that was asked for.  Downloads go to a
temporary directory first; the store import itself is atomic.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs

from appc.errors import (
    AppcError,
    FetchError,
    ImageError,
    SignatureError,
    StoreError,
    ValidationError,
)
from appc.keystore import Keystore
from appc.signing import SignerInfo, verify_file

if TYPE_CHECKING:
    from appc.discovery import AppRequest
    from appc.transport import Transport

# The network modules (requests, discovery) are imported where a fetch needs the
# network: ``rkt run`` of a stored image or a local file never pays for them.

__all__ = [
    "FetchOptions",
    "Fetcher",
    "InsecureOptions",
    "PULL_POLICIES",
    "classify_image_argument",
    "host_os_arch",
    "get_small",
    "split_credentials",
]


def __dir__() -> list[str]:
    return __all__


#: ``never``: the store only; ``new``: the store, else fetch; ``update``: ask the remote
#: every time (reusing the stored image on an unchanged ETag or a fresh Cache-Control).
PULL_POLICIES = ("never", "new", "update")
_INSECURE_GROUPS = {
    "none": (),
    "all-fetch": ("image", "tls", "http", "pubkey"),
    "all-run": ("capabilities", "paths", "seccomp"),
    "all": ("image", "tls", "http", "pubkey", "capabilities", "paths", "seccomp"),
}
_INSECURE_NAMES = ("image", "tls", "http", "pubkey", "ondisk", "capabilities", "paths", "seccomp")


@attrs.frozen
class InsecureOptions:
    """rkt's ``--insecure-options``: which security checks to skip (all on by default)."""

    image: bool = False
    tls: bool = False
    http: bool = False
    pubkey: bool = False
    capabilities: bool = False
    paths: bool = False
    seccomp: bool = False

    @classmethod
    def parse(cls, text: str) -> InsecureOptions:
        """Read ``image,tls,...`` (also ``none``, ``all-fetch``, ``all-run``, ``all``; ``ondisk`` is accepted and ignored).

        :raises ValidationError: an unknown option (the message lists the valid ones).
        """
        chosen: set[str] = set()
        for item in filter(None, (part.strip() for part in text.split(","))):
            if item in _INSECURE_GROUPS:
                chosen.update(_INSECURE_GROUPS[item])
            elif item in _INSECURE_NAMES:
                chosen.add(item)
            else:
                valid = ", ".join((*_INSECURE_NAMES, *_INSECURE_GROUPS))
                raise ValidationError(
                    f"unknown insecure option {item!r} (valid: {valid})", value=text
                )
        chosen.discard("ondisk")
        return cls(**{name: True for name in chosen})


def host_os_arch() -> tuple[str, str]:
    """This machine's appc ``os``/``arch`` label values (``linux``, ``amd64``)."""
    from appc.types.labels import to_appc_os_arch  # noqa: PLC0415

    machine = os.uname().machine
    go_arch = {
        "x86_64": "amd64",
        "aarch64": "arm64",
        "i686": "386",
        "i386": "386",
        "armv7l": "arm",
        "armv6l": "arm",
    }.get(machine, machine)
    goarm = "7" if machine == "armv7l" else ""
    try:
        return to_appc_os_arch("linux", go_arch, goarm)
    except ValidationError:
        return "linux", machine


def classify_image_argument(text: str) -> str:
    """rkt's rule for what an image argument is: ``hash``, ``docker``, ``url``, ``path`` or ``name``.

    A ``sha512-`` hash; ``docker://``; an ``http(s)://`` URL; ``file://`` or an absolute
    path, or an existing regular file; a string with ``:`` is a name (``app:version``);
    one with ``./`` a path; anything else a name.
    """
    if re.fullmatch(r"sha512-[0-9a-f]+", text):
        return "hash"
    if text.startswith("docker://"):
        return "docker"
    if text.startswith(("http://", "https://")):
        return "url"
    if text.startswith("file://") or text.startswith("/") or os.path.isfile(text):
        return "path"
    if ":" in text:
        return "name"
    if "./" in text:
        return "path"
    return "name"


def _signature_location(location: str) -> str:
    return location[: -len(".aci")] + ".aci.asc" if location.endswith(".aci") else location + ".asc"


@attrs.frozen(kw_only=True)
class FetchOptions:
    """How ``fetch`` behaves.

    :param insecure: the security checks to skip.
    :param pull_policy: ``never``, ``new`` or ``update``.
    :param trust_keys_from_https: trust keys discovered over HTTPS for an image whose
        name has no trusted key yet (rkt's ``--trust-keys-from-https``).
    :param discovery_port: the port discovery connects to (default 443/80).
    :param ca_file: extra trusted CA certificates (for test servers and private CAs).
    :param log: receives the lines rkt prints on stderr ("signature verified:" ...).
    :param progress: called with (URL, bytes so far, total or None) while downloading.
    :param retries: how many times a failed download (429/5xx, a dropped connection,
        a body cut short) is tried again; discovery keeps its own single retry.
    :param backoff: the first wait between two attempts, in seconds (doubled each time).
    :param timeout: seconds to connect, and to wait for each read.
    """

    insecure: InsecureOptions = InsecureOptions()
    pull_policy: str = "new"
    trust_keys_from_https: bool = False
    discovery_port: int | None = None
    ca_file: str | None = None
    log: Callable[[str], None] | None = None
    progress: Callable[[str, int, int | None], None] | None = None
    retries: int = 4
    backoff: float = 0.5
    timeout: float = 30.0


class Fetcher:
    """Fetch images into a store, verifying them on the way.

    :param store: an :class:`appc.store.ImageStore`.
    :param keystore: where trusted keys are found (and, with
        ``trust_keys_from_https``, stored).
    """

    def __init__(self, store: Any, keystore: Keystore, options: FetchOptions | None = None) -> None:
        self.store = store
        self.keystore = keystore
        self.options = options or FetchOptions()
        if self.options.pull_policy not in PULL_POLICIES:
            raise ValidationError(
                f"unknown pull policy {self.options.pull_policy!r} (never, new or update)"
            )
        self._transport: Transport | None = None

    @property
    def transport(self) -> Transport:
        """The HTTP transport of the insecure options (made on first use)."""
        if self._transport is None:
            from appc.transport import Transport, TransportOptions  # noqa: PLC0415

            self._transport = Transport(
                TransportOptions(
                    insecure_allow_http=self.options.insecure.http,
                    insecure_skip_verify=self.options.insecure.tls,
                    ca_file=self.options.ca_file,
                    retries=self.options.retries,
                    backoff=self.options.backoff,
                    timeout=self.options.timeout,
                )
            )
        return self._transport

    def _log(self, line: str) -> None:
        if self.options.log is not None:
            self.options.log(line)

    # --- entry point --------------------------------------------------------------------

    def fetch(self, image: str, *, signature: str | None = None) -> Any:
        """Bring *image* into the store and return its stored entry.

        :param image: ``sha512-...``, a file path or ``file://``, an ``http(s)://`` URL,
            ``docker://...``, or a name ``example.com/app[:version][,label=value...]``.
        :param signature: a detached signature file to use instead of the default
            (``X.aci.asc`` beside ``X.aci``, or the discovered one).
        :raises AppcError: not found, not signed by a trusted key, tampered, a name that
            does not match, network errors; the store is left unchanged.
        """
        kind = classify_image_argument(image)
        if kind == "hash":
            return self.store.get(image)
        if kind == "docker":
            return self._fetch_docker(image)
        if kind == "path":
            path = image[len("file://") :] if image.startswith("file://") else image
            return self._fetch_file(path, signature)
        if kind == "url":
            return self._fetch_url(image, signature)
        return self._fetch_name(image, signature)

    # --- sources ------------------------------------------------------------------------

    def _fetch_file(self, path: str, signature: str | None) -> Any:
        if not os.path.isfile(path):
            raise ImageError("no such image file", source=path)
        if self.options.insecure.image:
            self._log(f"image: skipping signature verification for {path} (insecure-options=image)")
        else:
            sig_path = signature or _signature_location(path)
            try:
                with open(sig_path, "rb") as f:
                    sig = f.read()
            except OSError as err:
                raise SignatureError(
                    f"cannot read the signature {sig_path}: {err.strerror or err}"
                ) from None
            self._verify(path, sig, None)
        return self.store.import_image(path)

    def _fetch_url(self, url: str, signature: str | None) -> Any:
        if self.options.pull_policy in ("never", "new"):
            # rkt: an image downloaded from this URL before is used as it is.
            shown = split_credentials(url)[0]
            stored = self._stored_remote(shown)
            if stored is not None:
                return stored
            if self.options.pull_policy == "never":
                raise StoreError(f"{shown}: not in the store, and --pull-policy=never")
        sig_url = signature or _signature_location(url)
        with self._workdir() as work:
            return self._download_and_import(url, sig_url, work, expected=None, latest=False)

    def _fetch_name(self, text: str, signature: str | None) -> Any:
        from appc.discovery import AppRequest, DiscoveryOptions, discover, parse_app_string  # noqa: PLC0415

        request = parse_app_string(text)
        labels = dict(request.labels)
        os_, arch = host_os_arch()
        labels.setdefault("os", os_)
        labels.setdefault("arch", arch)
        request = AppRequest(request.name, labels)
        asked_version = "version" in labels
        if self.options.pull_policy in ("never", "new"):
            stored = self.store.find(str(request.name), labels)
            if stored is not None:
                self.store.touch(stored.key)
                return stored
            if self.options.pull_policy == "never":
                raise StoreError(f"image {text!r} not found in the store (--pull-policy=never)")
        discovery = DiscoveryOptions(
            insecure_http=self.options.insecure.http,
            insecure_tls=self.options.insecure.tls,
            port=self.options.discovery_port,
            ca_file=self.options.ca_file,
            timeout=self.options.timeout,
            backoff=self.options.backoff,
        )
        result = discover(request, discovery, public_keys=False)
        errors: list[AppcError] = []
        with self._workdir() as work:
            for endpoint in result.endpoints:
                try:
                    return self._download_and_import(
                        endpoint.aci,
                        signature or endpoint.asc,
                        work,
                        expected=request,
                        latest=not asked_version,
                    )
                except SignatureError:
                    raise  # a security failure is final, not a reason to try elsewhere
                except AppcError as err:
                    errors.append(err)
        if len(errors) == 1:
            raise errors[0]  # keep its class (ImageError, FetchError ...) and its message
        raise FetchError(f"cannot fetch {request}: " + "; ".join(str(e) for e in errors))

    def _fetch_docker(self, reference: str) -> Any:
        if not self.options.insecure.image:
            raise SignatureError(
                f"{reference}: docker images cannot be verified: use --insecure-options=image"
            )
        from appc.docker.convert import ConvertOptions, convert_image  # noqa: PLC0415
        from appc.docker.reference import parse_reference  # noqa: PLC0415
        from appc.docker.registry import RegistryOptions  # noqa: PLC0415
        from appc.docker.remote import open_remote_image  # noqa: PLC0415

        ref = parse_reference(reference)
        options = RegistryOptions(
            insecure_allow_http=self.options.insecure.http,
            insecure_skip_verify=self.options.insecure.tls,
            ca_file=self.options.ca_file,
            retries=self.options.retries,
            backoff=self.options.backoff,
            timeout=self.options.timeout,
        )
        with (
            self._workdir() as work,
            open_remote_image(ref, options=options, workdir=work) as image,
        ):
            result = convert_image(image, work, ConvertOptions(compression="none"))
            return self.store.import_image(result.paths[-1], latest=ref.tag == "latest")

    # --- helpers ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _workdir(self) -> Iterator[str]:
        """Where downloads wait for their import: a work directory of the store (on its
        filesystem, removed by the next opening of the store if this process dies), or a
        temporary directory for a store without one."""
        make = getattr(self.store, "work_directory", None)
        if make is not None:
            with make() as work:
                yield work
            return
        work = tempfile.mkdtemp(prefix="appc-fetch-")
        try:
            yield work
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _verify(
        self, aci_path: str, signature: bytes, expected: AppRequest | None, *, source: str = ""
    ) -> SignerInfo | None:
        """Check the image at *aci_path*: its manifest against *expected*, its signature
        against the keys trusted for its name.  *source* names it in errors (its URL)."""
        from appc.aci.read import read_manifest  # noqa: PLC0415

        try:
            manifest = read_manifest(aci_path)
        except ImageError as err:
            if not source:
                raise
            raise ImageError(err.message, source=source) from None
        if expected is not None:
            _check_matches(manifest, expected, source or aci_path)
        if self.options.insecure.image:
            return None
        name = str(manifest.name)
        keys = self.keystore.keys_for(name)
        if not keys and self.options.trust_keys_from_https:
            keys = self._trust_from_https(name)
        if not keys:
            raise SignatureError(
                f"no keys trusted for {name!r}: run 'rkt trust --prefix={name}' "
                "(or fetch with --insecure-options=image)"
            )
        signer = verify_file(aci_path, signature, [k.data for k in keys])
        self._log("signature verified:")
        for uid in signer.uids:
            self._log(f"  {uid}")
        return signer

    def _trust_from_https(self, name: str) -> list[Any]:
        """Discover *name*'s keys over HTTPS only, and trust them without review (rkt's flag)."""
        from appc.discovery import AppRequest, DiscoveryOptions, discover, parse_app_string  # noqa: PLC0415
        from appc.transport import Transport, TransportOptions  # noqa: PLC0415

        discovery = DiscoveryOptions(port=self.options.discovery_port, ca_file=self.options.ca_file)
        try:
            result = discover(AppRequest(parse_app_string(name).name), discovery, endpoints=False)
        except AppcError:
            return []
        https_only = Transport(TransportOptions(ca_file=self.options.ca_file))
        for url in result.public_keys:
            if not url.startswith("https://"):
                continue
            data = get_small(https_only, url)
            path, _ = self.keystore.add_prefix_key(name, data)
            self._log(f'Trusting "{url}" for prefix "{name}" without fingerprint review.')
            self._log(f'Added key for prefix "{name}" at "{path}"')
        return self.keystore.keys_for(name)

    def _download_and_import(
        self, aci_url: str, sig_url: str, work: str, *, expected: AppRequest | None, latest: bool
    ) -> Any:
        from appc.store import RemoteInfo  # noqa: PLC0415

        shown = split_credentials(aci_url)[0]  # for messages and the cache row
        cached = self.store.get_remote(shown) if self.options.pull_policy == "update" else None
        if cached is not None and cached.is_fresh():
            stored = self._stored_remote(shown)
            if stored is not None:
                return stored  # Cache-Control max-age not over: no request at all
        aci_path = os.path.join(work, "image.aci")
        etag = cached.etag if cached is not None and self._has(cached.blob_key) else ""
        status, new_etag, max_age = self._download(aci_url, aci_path, etag=etag)
        if status == 304 and cached is not None:
            # Unchanged: reuse the stored image, and restart its Cache-Control period.
            self.store.set_remote(
                attrs.evolve(cached, cache_max_age=max_age, download_time=datetime.now(UTC))
            )
            stored = self.store.get(cached.blob_key)
            self.store.touch(stored.key)
            return stored
        signature = b""
        if not self.options.insecure.image:
            sig_path = os.path.join(work, "image.aci.asc")
            self._download(sig_url, sig_path)
            with open(sig_path, "rb") as f:
                signature = f.read()
        else:
            self._log(
                f"image: skipping signature verification for {shown} (insecure-options=image)"
            )
        self._verify(aci_path, signature, expected, source=shown)
        # The image and its cache row enter the store in one transaction.
        remote = RemoteInfo(
            aci_url=shown,
            sig_url=split_credentials(sig_url)[0],
            etag=new_etag,
            cache_max_age=max_age,
            download_time=datetime.now(UTC),
        )
        return self.store.import_image(aci_path, latest=latest, remote=remote)

    def _has(self, key: str) -> bool:
        try:
            self.store.get(key)
        except StoreError:
            return False
        return True

    def _stored_remote(self, url: str) -> Any:
        """The stored image last downloaded from *url* (its last-used time bumped), or None."""
        cached = self.store.get_remote(url)
        if cached is None or not self._has(cached.blob_key):
            return None
        self.store.touch(cached.blob_key)
        return self.store.get(cached.blob_key)

    def _download(self, url: str, destination: str, *, etag: str = "") -> tuple[int, str, int]:
        """GET *url* into *destination*; return (status, ETag, Cache-Control max-age).

        Besides the transport's retries (429/5xx answers, failed connections), a body
        cut short — a connection dropped mid-way, fewer bytes than ``Content-Length`` —
        is downloaded again from the start, up to ``retries`` times.

        :raises FetchError: naming the URL: the last failure, or a file that cannot be
            written (``No space left on device``).
        """
        url, headers = split_credentials(url)
        if etag:
            headers["If-None-Match"] = etag
        attempt = 0
        while True:
            try:
                return self._download_once(url, headers, destination, etag)
            except _BrokenDownload as err:
                if attempt >= self.options.retries:
                    raise FetchError(
                        f"download failed after {attempt + 1} attempts: {err}", url=url
                    ) from None
                attempt += 1
                time.sleep(min(self.options.backoff * 2 ** (attempt - 1), 30.0))

    def _download_once(
        self, url: str, headers: dict[str, str], destination: str, etag: str
    ) -> tuple[int, str, int]:
        import requests  # noqa: PLC0415 - already loaded by the transport

        from appc.aci._compress import download_limit_text, max_download_size  # noqa: PLC0415
        from appc.transport import reason  # noqa: PLC0415

        limit = max_download_size(getattr(self.store, "max_size", None))
        too_large = f"larger than {download_limit_text(limit)}"
        response = self.transport.request("GET", url, headers=headers, stream=True, ok=(200, 304))
        try:
            if response.status_code == 304:
                return 304, etag, _max_age(response.headers)
            total = response.headers.get("Content-Length")
            expected = int(total) if total and total.isdigit() else None
            if expected is not None and expected > limit:
                raise FetchError(f"a download of {expected} bytes is {too_large}", url=url)
            written = 0
            with open(destination, "wb") as out:
                for chunk in response.iter_content(1024 * 1024):
                    out.write(chunk)
                    written += len(chunk)
                    if written > limit:
                        raise FetchError(f"the download is {too_large}", url=url)
                    if self.options.progress is not None:
                        self.options.progress(url, written, expected)
            if expected is not None and written != expected:
                raise _BrokenDownload(f"truncated: got {written} of {expected} bytes")
            return 200, response.headers.get("ETag", ""), _max_age(response.headers)
        except requests.exceptions.RequestException as err:
            raise _BrokenDownload(reason(err)) from None
        except OSError as err:
            raise FetchError(f"cannot save the download: {err.strerror or err}", url=url) from None
        finally:
            response.close()


class _BrokenDownload(Exception):
    """A download's body was cut short (worth downloading again)."""


def _max_age(headers: Mapping[str, str]) -> int:
    match = re.search(r"max-age=(\d+)", headers.get("Cache-Control", ""))
    return int(match.group(1)) if match else 0


def split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """*url* without its ``user:password@`` part, and the Basic ``Authorization`` header
    that part stood for (empty without one).

    The clean URL is the one requests, messages, logs and the store see: a password
    typed in an image URL is sent to its host and printed nowhere.

    >>> split_credentials("https://alice:pw@example.com:8443/x.aci")
    ('https://example.com:8443/x.aci', {'Authorization': 'Basic YWxpY2U6cHc='})
    """
    parts = urllib.parse.urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, {}
    user, _, password = userinfo.partition(":")
    pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}"
    token = base64.b64encode(pair.encode("utf-8")).decode("ascii")
    return urllib.parse.urlunsplit(parts._replace(netloc=host)), {"Authorization": f"Basic {token}"}


def get_small(transport: Transport, url: str, limit: int = 1024 * 1024) -> bytes:
    """GET a small document (a public key) from *url*, credentials in it included."""
    url, headers = split_credentials(url)
    response = transport.request("GET", url, headers=headers, stream=True)
    try:
        data = response.raw.read(limit + 1, decode_content=True)
    finally:
        response.close()
    if len(data) > limit:
        raise FetchError("response too large", url=url)
    return bytes(data)


def _check_matches(manifest: Any, expected: AppRequest, where: str) -> None:
    """A discovered image must be the one asked for: the same name, and the same value
    for each label asked for (``os``/``arch``, filled in from this machine, may be absent)."""
    if str(manifest.name) != str(expected.name):
        raise ImageError(
            f"image name {str(manifest.name)!r} does not match the requested {str(expected.name)!r}",
            source=where,
        )
    for key, value in expected.labels.items():
        have = manifest.labels.get(key)
        if have is None and (key in ("os", "arch") or (key == "version" and value == "latest")):
            continue
        if have != value:
            raise ImageError(
                f"image label {key}={have!r} does not match the requested {value!r}", source=where
            )
