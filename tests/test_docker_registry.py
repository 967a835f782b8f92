"""appc.docker.registry and appc.docker.remote against real registries (Debian docker-registry).

Plain HTTP, HTTPS with a self-signed certificate and basic auth, token auth with a test token
server; schema2, OCI and signed schema1 manifests; manifest lists and OCI indexes; digests;
and the fault server (``tests/fault_server.py``) in front of a registry for what a healthy
registry never does (truncated, corrupted, failing and slow blob downloads).
"""

from __future__ import annotations

import functools
import http.server
import json
import pathlib
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from appc.aci.validate import validate_archive
from appc.docker.auth import Credentials
from appc.docker.convert import convert_image
from appc.docker.image import Platform
from appc.docker.reference import parse_reference
from appc.docker.registry import MediaType, RegistryClient, RegistryOptions
from appc.docker.remote import DownloadProgress, open_remote_image
from appc.errors import FetchError
from appc.transport import Transport, TransportOptions
from tests import docker_images as di
from tests import fault_server as fs
from tests.fault_server import FaultServer, fault_server
from tests.registry_fixtures import (
    Registry,
    TokenServer,
    push,
    push_list,
    put_manifest,
    skopeo_copy,
    upload_blob,
)
from tests.test_docker_common import (
    check_files,
    convert_remote,
    dir_listing,
    read_aci,
    unique_image,
)

HTTP = RegistryOptions(insecure_allow_http=True)


@functools.cache
def image(name: str) -> di.TestImage:
    builders: dict[str, Callable[[], di.TestImage]] = {
        "busybox": di.busybox_image,
        "whiteout": di.whiteout_image,
        "empty": di.empty_config_image,
        "full": di.full_config_image,
    }
    return builders[name]()


@functools.cache
def multiarch() -> di.MultiArchImage:
    return di.multiarch_images()


def annotations(manifest: dict[str, object]) -> dict[str, str]:
    return {a["name"]: a["value"] for a in manifest.get("annotations", [])}  # type: ignore[attr-defined]


def labels(manifest: dict[str, object]) -> dict[str, str]:
    return {a["name"]: a["value"] for a in manifest.get("labels", [])}  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- plain HTTP, TLS


def test_plain_http_needs_the_flag(registry: Registry, tmp_path: pathlib.Path) -> None:
    push(registry, "reg/plain", "v1", image("empty"))
    with pytest.raises(FetchError) as info:
        convert_remote(registry.ref("reg/plain", "v1"), tmp_path, options=RegistryOptions())
    message = str(info.value)
    assert f"cannot reach registry {registry.host}" in message
    assert "--insecure-allow-http" in message
    assert "\n" not in message
    assert dir_listing(tmp_path) == []
    result = convert_remote(registry.ref("reg/plain", "v1"), tmp_path, options=HTTP)
    assert [pathlib.Path(p).name for p in result.paths] == ["reg-plain-v1.aci"]


def test_tls_with_ca_file(tls_registry: Registry, tmp_path: pathlib.Path) -> None:
    push(tls_registry, "reg/tls", "v1", image("empty"))
    options = RegistryOptions(
        ca_file=str(tls_registry.ca_file),
        credentials=_creds(tls_registry),
    )
    result = convert_remote(tls_registry.ref("reg/tls", "v1"), tmp_path, options=options)
    check_files(read_aci(result.paths[0]), image("empty").files)


def test_tls_with_insecure_skip_verify(tls_registry: Registry, tmp_path: pathlib.Path) -> None:
    push(tls_registry, "reg/tls-skip", "v1", image("empty"))
    options = RegistryOptions(insecure_skip_verify=True, credentials=_creds(tls_registry))
    result = convert_remote(tls_registry.ref("reg/tls-skip", "v1"), tmp_path, options=options)
    validate_archive(result.paths[0])


@pytest.mark.parametrize("allow_http", [False, True])
def test_tls_failure(tls_registry: Registry, tmp_path: pathlib.Path, allow_http: bool) -> None:
    """An unknown CA is a clear TLS error; allowing HTTP does not make it pass either."""
    options = RegistryOptions(insecure_allow_http=allow_http, credentials=_creds(tls_registry))
    with pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED") as info:
        convert_remote(tls_registry.ref("reg/tls", "v1"), tmp_path, options=options)
    assert "TLS error" in str(info.value)
    assert "(trust its certificate with --ca-file, or use --insecure-skip-verify)" in str(
        info.value
    )
    assert dir_listing(tmp_path) == []


def test_redirects(tls_registry: Registry) -> None:
    """HTTPS → HTTP redirects are refused without the insecure option; credentials do not
    follow a redirect to another host (``localhost`` is another host than ``127.0.0.1``)."""
    cert = tls_registry.workdir / "tls"
    with _Redirector(cert) as server:
        secure = TransportOptions(ca_file=str(tls_registry.ca_file))
        server.target = f"http://127.0.0.1:{server.port}/final"
        with pytest.raises(FetchError, match="refusing redirect to plain HTTP"):
            Transport(secure).send("GET", server.url("/start"))
        assert [path for path, _ in server.seen] == ["/start"]  # the HTTP target was never asked
        server.seen.clear()
        server.target = f"https://localhost:{server.port}/final"
        response = Transport(secure).send(
            "GET", server.url("/start"), headers={"Authorization": "Basic c2VjcmV0"}
        )
        assert response.status_code == 200
        assert server.seen == [("/start", "Basic c2VjcmV0"), ("/final", None)]
        server.seen.clear()
        server.target = "/final"  # same host: the credentials go along
        Transport(secure).send(
            "GET", server.url("/start"), headers={"Authorization": "Basic c2VjcmV0"}
        )
        assert server.seen == [("/start", "Basic c2VjcmV0"), ("/final", "Basic c2VjcmV0")]


# --------------------------------------------------------------------------- basic auth


def _creds(reg: Registry, password: str | None = None) -> Credentials:
    return Credentials(reg.username or "", password if password is not None else reg.password or "")


def test_basic_auth(tls_registry: Registry, tmp_path: pathlib.Path) -> None:
    push(tls_registry, "reg/basic", "v1", image("empty"))
    ref = tls_registry.ref("reg/basic", "v1")
    ca = str(tls_registry.ca_file)
    # right password
    result = convert_remote(
        ref, tmp_path / "ok", options=RegistryOptions(ca_file=ca, credentials=_creds(tls_registry))
    )
    validate_archive(result.paths[0])
    # no credentials
    with pytest.raises(FetchError) as info:
        convert_remote(ref, tmp_path / "none", options=RegistryOptions(ca_file=ca))
    assert info.value.status == 401
    assert "authentication required" in str(info.value)
    # wrong password: refused once, not retried forever, and never shown
    with pytest.raises(FetchError) as info:
        convert_remote(
            ref,
            tmp_path / "wrong",
            options=RegistryOptions(
                ca_file=ca, credentials=_creds(tls_registry, "not-the-password")
            ),
        )
    assert info.value.status == 401
    assert "refused the credentials" in str(info.value)
    assert "not-the-password" not in str(info.value)
    assert not (tmp_path / "none").exists() or dir_listing(tmp_path / "none") == []
    assert not (tmp_path / "wrong").exists() or dir_listing(tmp_path / "wrong") == []


# --------------------------------------------------------------------------- token auth


@pytest.mark.parametrize("fields", [("token",), ("access_token",), ("token", "access_token")])
def test_token_auth(
    token_registry: Registry,
    token_server: TokenServer,
    tmp_path: pathlib.Path,
    fields: tuple[str, ...],
) -> None:
    repo = f"reg/token-{'-'.join(f.replace('_', '') for f in fields)}"
    push(token_registry, repo, "v1", image("empty"))
    first = len(token_server.requests)
    with token_server.settings(token_fields=fields):
        result = convert_remote(token_registry.ref(repo, "v1"), tmp_path)
    check_files(read_aci(result.paths[0]), image("empty").files)
    asked = token_server.requests[first:]
    assert asked, "no token was requested"
    assert {r.scopes for r in asked} == {(f"repository:{repo}:pull",)}
    assert {r.service for r in asked} == {token_server.service}
    assert len(asked) == 1  # one token, cached for the manifest, config and layers


def test_token_server_requiring_credentials(
    token_registry: Registry, token_server: TokenServer, tmp_path: pathlib.Path
) -> None:
    repo = "reg/token-creds"
    push(token_registry, repo, "v1", image("empty"))
    ref = token_registry.ref(repo, "v1")
    with token_server.settings(require_basic=True):
        first = len(token_server.requests)
        result = convert_remote(
            ref,
            tmp_path / "ok",
            options=RegistryOptions(insecure_allow_http=True, credentials=_creds(token_registry)),
        )
        validate_archive(result.paths[0])
        assert [r.user for r in token_server.requests[first:]] == [token_registry.username]
        for label, creds in (("anonymous", None), ("wrong", _creds(token_registry, "bad-pass"))):
            with pytest.raises(FetchError) as info:
                convert_remote(
                    ref,
                    tmp_path / label,
                    options=RegistryOptions(insecure_allow_http=True, credentials=creds),
                )
            assert "unable to retrieve auth token: 401" in str(info.value)
            assert "bad-pass" not in str(info.value)
            assert not (tmp_path / label).exists() or dir_listing(tmp_path / label) == []


def test_private_repository_on_a_token_registry(
    token_registry: Registry, token_server: TokenServer, tmp_path: pathlib.Path
) -> None:
    """Anonymous tokens that grant nothing: "authentication required", not "refused"."""
    push(token_registry, "reg/private", "v1", image("empty"))

    def grant(user: str | None, kind: str, name: str, actions: list[str]) -> list[str]:
        return actions if user is not None else []

    with token_server.settings(grant=grant):
        with pytest.raises(FetchError, match="authentication required") as info:
            convert_remote(token_registry.ref("reg/private", "v1"), tmp_path / "anonymous")
        assert info.value.status == 401
        options = RegistryOptions(insecure_allow_http=True, credentials=_creds(token_registry))
        result = convert_remote(
            token_registry.ref("reg/private", "v1"), tmp_path / "user", options=options
        )
        validate_archive(result.paths[0])


def test_token_realm_over_http_needs_the_flag(token_registry: Registry) -> None:
    """A token registry behind HTTPS-only policy: the plain HTTP ping already fails clearly."""
    client = RegistryClient(token_registry.host, RegistryOptions())
    with pytest.raises(FetchError, match="insecure-allow-http"):
        client.ping()


# --------------------------------------------------------------------------- manifest formats


@pytest.mark.parametrize("fmt", ["schema2", "oci", "schema1"])
def test_manifest_formats(
    registry: Registry, tmp_path: pathlib.Path, fmt: di.ManifestFormat
) -> None:
    img = image("whiteout")
    repo = f"reg/formats-{fmt}"
    digest = push(registry, repo, "v1", img, fmt)
    client = RegistryClient(registry.host, HTTP)
    manifest = client.get_manifest(repo, "v1")
    assert manifest.media_type == img.media_type(fmt)
    assert manifest.digest == digest  # schema1: the registry digest (signed payload), stable
    assert client.get_manifest(repo, digest).digest == digest
    result = convert_remote(registry.ref(repo, "v1"), tmp_path)
    aci = read_aci(result.paths[0])
    check_files(aci, img.files)
    notes = annotations(aci.manifest)
    assert notes["appc.io/docker/manifesthash"] == digest
    if fmt == "schema1":  # V1 style: the v1 id of the top layer, with its parent
        v1 = img.v1_layers()
        assert notes["appc.io/docker/imageid"] == v1[-1][0]
        assert notes["appc.io/docker/parentimageid"] == v1[-2][0]
        assert notes["appc.io/docker/tag"] == "v1"
    else:
        assert notes["appc.io/docker/imageid"] == img.layers[-1].digest
        assert "appc.io/docker/tag" not in notes


def test_schema1_manifest_hash_is_stable(registry: Registry) -> None:
    """Registries re-sign schema1 on every GET; the hash recorded is the registry digest."""
    digest = push(registry, "reg/schema1-stable", "v1", image("empty"), "schema1")
    client = RegistryClient(registry.host, HTTP)
    first, second = (client.get_manifest("reg/schema1-stable", "v1") for _ in range(2))
    assert first.digest == second.digest == digest


def test_schema1_name_must_match(registry: Registry, tmp_path: pathlib.Path) -> None:
    """The original's check: a schema1 manifest naming another repository is refused."""
    img = image("empty")
    for d, s, o in img.blobs("schema1"):
        upload_blob(registry, "reg/schema1-name", d, s, o)
    body = img.schema1_manifest("other/name", "v1")
    put_manifest(registry, "reg/schema1-name", "v1", body, di.DOCKER_SCHEMA1_SIGNED)
    with pytest.raises(
        FetchError,
        match="name doesn't match what was requested, expected: reg/schema1-name, downloaded: other/name",
    ):
        convert_remote(registry.ref("reg/schema1-name", "v1"), tmp_path)


@pytest.mark.parametrize("fmt", ["schema2", "oci"])
def test_manifest_list_platforms(
    registry: Registry, tmp_path: pathlib.Path, fmt: di.ListFormat
) -> None:
    multi = multiarch()
    repo = f"reg/multi-{fmt}"
    list_digest = push_list(registry, repo, "v1", multi, fmt)
    child = multi.images[0].manifest_digest(multi.child_format(fmt))
    # default: linux/amd64
    result = convert_remote(registry.ref(repo, "v1"), tmp_path / "amd64")
    aci = read_aci(result.paths[0])
    check_files(aci, multi.for_arch("amd64").files)
    assert aci.files["etc/arch"].data == b"amd64\n"
    assert labels(aci.manifest)["arch"] == "amd64"
    assert annotations(aci.manifest)["appc.io/docker/manifesthash"] == child
    # --arch arm64 picks the arm64 image (variant v8 not asked for: any variant matches)
    result = convert_remote(
        registry.ref(repo, "v1"), tmp_path / "arm64", platform=Platform("linux", "arm64")
    )
    aci = read_aci(result.paths[0])
    assert aci.files["etc/arch"].data == b"arm64\n"
    assert labels(aci.manifest) == {"os": "linux", "arch": "aarch64", "version": "v1"}
    result = convert_remote(
        registry.ref(repo, "v1"), tmp_path / "v8", platform=Platform("linux", "arm64", "v8")
    )
    assert read_aci(result.paths[0]).files["etc/arch"].data == b"arm64\n"
    # by the list's digest (the original failed: issue #251)
    result = convert_remote(registry.ref(repo, list_digest), tmp_path / "digest")
    assert pathlib.Path(result.paths[0]).name == f"{repo.replace('/', '-')}.aci"
    aci = read_aci(result.paths[0])
    assert aci.files["etc/arch"].data == b"amd64\n"
    assert "version" not in labels(aci.manifest)
    # a platform the index does not have
    for platform in (
        Platform("linux", "s390x"),
        Platform("windows", "amd64"),
        Platform("linux", "arm64", "v7"),
    ):
        with pytest.raises(FetchError) as info:
            convert_remote(registry.ref(repo, "v1"), tmp_path / "none", platform=platform)
        assert f"no image for {platform}" in str(info.value)
        assert "(available: linux/amd64, linux/arm64/v8)" in str(info.value)
    assert not (tmp_path / "none").exists() or dir_listing(tmp_path / "none") == []


def test_pull_by_digest(registry: Registry, tmp_path: pathlib.Path) -> None:
    img = image("busybox")
    digest = push(registry, "reg/by-digest", "v1", img)
    result = convert_remote(registry.ref("reg/by-digest", digest), tmp_path)
    assert pathlib.Path(result.paths[0]).name == "reg-by-digest.aci"
    aci = read_aci(result.paths[0])
    check_files(aci, img.files)
    assert "version" not in labels(aci.manifest)
    notes = annotations(aci.manifest)
    assert notes["appc.io/docker/manifesthash"] == digest
    assert notes["appc.io/docker/originalname"] == f"{registry.host}/reg/by-digest@{digest}"


def test_unknown_image_and_tag(registry: Registry, tmp_path: pathlib.Path) -> None:
    push(registry, "reg/known", "v1", image("empty"))
    for ref in (
        registry.ref("reg/unknown-repo", "v1"),
        registry.ref("reg/known", "nope"),
        registry.ref("reg/known", "sha256:" + "0" * 64),
    ):
        with pytest.raises(FetchError) as info:
            convert_remote(ref, tmp_path)
        assert info.value.status == 404
        assert "HTTP 404 not found" in str(info.value)
        assert "MANIFEST_UNKNOWN" in str(info.value) or "NAME_UNKNOWN" in str(info.value)
    assert dir_listing(tmp_path) == []


# --------------------------------------------------------------------------- skopeo


@pytest.mark.parametrize("fmt", ["v2s2", "v2s1", "oci"])
def test_image_pushed_by_skopeo(registry: Registry, tmp_path: pathlib.Path, fmt: str) -> None:
    """skopeo, an independent client, writes the manifest (and for v2s1 signs it)."""
    img = image("whiteout")
    layout = di.write_oci_layout(img, tmp_path / "layout", "v1")
    repo = f"reg/skopeo-{fmt}"
    skopeo_copy(f"oci:{layout}:v1", registry.ref(repo, "v1"), format=fmt, dest_registry=registry)
    result = convert_remote(registry.ref(repo, "v1"), tmp_path / "out")
    aci = read_aci(result.paths[0])
    check_files(aci, img.files)
    assert aci.manifest["app"]["exec"] == ["/bin/tool"]
    media_type = {
        "v2s2": di.DOCKER_SCHEMA2,
        "v2s1": di.DOCKER_SCHEMA1_SIGNED,
        "oci": di.OCI_MANIFEST,
    }[fmt]
    digest = registry.get_manifest(repo, "v1", media_type).headers["Docker-Content-Digest"]
    assert annotations(aci.manifest)["appc.io/docker/manifesthash"] == digest


def test_schema1_with_empty_layers_from_skopeo(registry: Registry, tmp_path: pathlib.Path) -> None:
    """skopeo's v2s1 adds the empty gzip layer (``a3ed95…``) for history entries without a
    layer: one blob shared by several layers, each with its own v1 id."""
    img = image("whiteout")
    history = img.config["history"]
    empty = {"created": "2020-09-13T12:26:40Z", "created_by": "ENV A=1", "empty_layer": True}
    layout = di.write_oci_layout(
        img.with_config(history=[history[0], empty, *history[1:], empty]), tmp_path / "layout", "v1"
    )
    skopeo_copy(
        f"oci:{layout}:v1",
        registry.ref("reg/skopeo-empty", "v1"),
        format="v2s1",
        dest_registry=registry,
    )
    manifest = registry.get_manifest("reg/skopeo-empty", "v1", di.DOCKER_SCHEMA1_SIGNED).json()
    sums = [layer["blobSum"] for layer in manifest["fsLayers"]]
    assert len(sums) == 6 and sums[0] == sums[4]
    result = convert_remote(registry.ref("reg/skopeo-empty", "v1"), tmp_path / "squash")
    check_files(read_aci(result.paths[0]), img.files)
    result = convert_remote(
        registry.ref("reg/skopeo-empty", "v1"), tmp_path / "layers", squash=False
    )
    assert len(result.paths) == 6
    names = [validate_archive(p).manifest.name for p in result.paths]
    assert len(set(names)) == 6


def test_image_pushed_by_skopeo_to_token_registry(
    token_registry: Registry, token_server: TokenServer, tmp_path: pathlib.Path
) -> None:
    img = image("busybox")
    layout = di.write_oci_layout(img, tmp_path / "layout", "v1")
    with token_server.settings(require_basic=True):
        skopeo_copy(
            f"oci:{layout}:v1",
            token_registry.ref("reg/skopeo-token", "v1"),
            format="v2s2",
            dest_registry=token_registry,
        )
        options = RegistryOptions(insecure_allow_http=True, credentials=_creds(token_registry))
        result = convert_remote(
            token_registry.ref("reg/skopeo-token", "v1"), tmp_path / "out", options=options
        )
    check_files(read_aci(result.paths[0]), img.files)


# --------------------------------------------------------------------------- bad content


def _blob_file(reg: Registry, digest: str) -> pathlib.Path:
    hexdigest = digest.removeprefix("sha256:")
    return reg.storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"


@pytest.mark.parametrize("what", ["layer", "config"])
def test_blob_digest_mismatch(registry: Registry, tmp_path: pathlib.Path, what: str) -> None:
    img = unique_image(f"digest mismatch of the {what}")
    push(registry, f"reg/corrupt-{what}", "v1", img)
    digest = img.layers[0].digest if what == "layer" else img.config_digest
    path = _blob_file(registry, digest)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # same size, different bytes
    path.write_bytes(bytes(data))
    with pytest.raises(FetchError, match=f"blob digest mismatch: expected {digest}"):
        convert_remote(
            registry.ref(f"reg/corrupt-{what}", "v1"), tmp_path, workdir=str(tmp_path / "work")
        )
    assert dir_listing(tmp_path) == ["work"]  # no ACI, no temporary file, no download left


def test_blobs_larger_than_any_image_are_not_downloaded(
    registry: Registry, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 3 MB layer of random bytes, with images limited to 1 KiB: the download limit is
    # 1 KiB + 1/64 + 1 MiB, which no such layer could decompress within.
    img = di.big_image(3, tmp_path / "blobs", layers=1, seed=5)
    push(registry, "reg/too-big", "v1", img)
    monkeypatch.setenv("APPC_MAX_IMAGE_SIZE", "1K")
    layer = img.layers[0]
    # Declared in the manifest: refused before a byte is fetched.
    with pytest.raises(
        FetchError,
        match=r"blob of \d+ bytes is larger than the download limit of 1049616 bytes \(set by APPC_MAX_IMAGE_SIZE\)",
    ):
        convert_remote(
            registry.ref("reg/too-big", "v1"), tmp_path / "out", workdir=str(tmp_path / "work")
        )
    assert dir_listing(tmp_path / "work") == []
    # Size unknown (schema1 manifests give none): stopped once past the limit.
    client = RegistryClient(registry.host, HTTP)
    destination = tmp_path / "blob"
    with pytest.raises(FetchError, match=r"blob larger than the download limit of 1049616 bytes"):
        client.download_blob("reg/too-big", layer.digest, str(destination))
    assert not destination.exists()


def test_manifest_digest_mismatch(registry: Registry, tmp_path: pathlib.Path) -> None:
    img = unique_image("manifest digest mismatch")
    digest = push(registry, "reg/corrupt-manifest", "v1", img)
    path = _blob_file(registry, digest)
    path.write_bytes(path.read_bytes().replace(b'"schemaVersion": 2', b'"schemaVersion":  2'))
    with pytest.raises(FetchError, match="manifest digest mismatch"):
        convert_remote(registry.ref("reg/corrupt-manifest", "v1"), tmp_path)
    with pytest.raises(FetchError, match="manifest digest mismatch"):
        convert_remote(registry.ref("reg/corrupt-manifest", digest), tmp_path)
    assert dir_listing(tmp_path) == []


def test_unsupported_media_types(registry: Registry, tmp_path: pathlib.Path) -> None:
    img = image("empty")
    for d, s, o in img.blobs("schema2"):
        upload_blob(registry, "reg/media", d, s, o)
    layer = json.loads(img.manifest("schema2"))
    layer["layers"][0]["mediaType"] = "application/vnd.example.weird"
    put_manifest(registry, "reg/media", "layer", json.dumps(layer).encode(), di.DOCKER_SCHEMA2)
    config = json.loads(img.manifest("oci"))
    config["config"]["mediaType"] = "application/vnd.cncf.helm.config.v1+json"
    put_manifest(registry, "reg/media", "config", json.dumps(config).encode(), di.OCI_MANIFEST)
    with pytest.raises(
        FetchError, match=re.escape("unsupported layer media type 'application/vnd.example.weird'")
    ):
        convert_remote(registry.ref("reg/media", "layer"), tmp_path)
    with pytest.raises(FetchError, match="not a container image"):
        convert_remote(registry.ref("reg/media", "config"), tmp_path)
    assert dir_listing(tmp_path) == []


# --------------------------------------------------------------------------- a faulty proxy


@pytest.fixture
def proxy(registry: Registry) -> Iterator[FaultServer]:
    """The shared fault server (``tests/fault_server.py``) in front of the plain registry."""
    with fault_server(upstream=registry.url) as server:
        yield server


class _Redirector:
    """An HTTPS server (the TLS registry's certificate) answering ``/start`` with a redirect
    to ``target`` and anything else with 200; ``seen`` lists (path, Authorization)."""

    def __init__(self, cert_dir: pathlib.Path) -> None:
        self.cert_dir = cert_dir
        self.target = ""
        self.seen: list[tuple[str, str | None]] = []

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> _Redirector:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

            def do_GET(self) -> None:
                owner.seen.append((self.path, self.headers.get("Authorization")))
                self.send_response(302 if self.path == "/start" else 200)
                if self.path == "/start":
                    self.send_header("Location", owner.target)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_dir / "cert.pem", self.cert_dir / "key.pem")
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


FAST = RegistryOptions(insecure_allow_http=True, retries=2, backoff=0.01)


def test_retries_after_500_and_dropped_connections(
    registry: Registry, proxy: FaultServer, tmp_path: pathlib.Path
) -> None:
    img = image("whiteout")
    push(registry, "reg/flaky", "v1", img)
    rule = proxy.on(
        "/blobs/",
        fs.status(429, retry_after=0),
        fs.status(500, body=b'{"errors":[{"code":"UNKNOWN","message":"boom"}]}'),
        fs.drop(),
    )
    options = RegistryOptions(insecure_allow_http=True, retries=3, backoff=0.01)
    result = convert_remote(proxy.ref("reg/flaky", "v1"), tmp_path, options=options)
    check_files(read_aci(result.paths[0]), img.files)
    assert rule.attempts and all(n == 4 for n in rule.attempts.values())


@pytest.mark.parametrize("fault", ["truncate", "short", "corrupt", "500"])
def test_persistent_blob_failures(
    registry: Registry, proxy: FaultServer, tmp_path: pathlib.Path, fault: str
) -> None:
    img = image("whiteout")
    push(registry, "reg/broken", "v1", img)
    layer = img.layers[2].digest
    proxy.on(
        re.escape(layer) + "$",
        then={
            "truncate": fs.truncate(),
            "short": fs.short(),
            "corrupt": fs.corrupt(),
            "500": fs.status(500),
        }[fault],
    )
    expected = {
        "truncate": "download failed",
        "short": "truncated: got",
        "corrupt": f"blob digest mismatch: expected {layer}",
        "500": "HTTP 500",
    }[fault]
    for squash in (True, False):
        out = tmp_path / f"squash-{squash}"
        with pytest.raises(FetchError, match=expected):
            convert_remote(
                proxy.ref("reg/broken", "v1"),
                out,
                options=FAST,
                squash=squash,
                workdir=str(tmp_path / "work"),
            )
        assert not out.exists() or dir_listing(out) == [], "partial output left behind"
    assert dir_listing(tmp_path / "work") == []  # the downloads' temporary directory is gone too


def test_parallel_layer_downloads(
    registry: Registry, proxy: FaultServer, tmp_path: pathlib.Path
) -> None:
    img = di.big_image(20, tmp_path / "blobs", layers=4, seed=3)
    push(registry, "reg/parallel", "v1", img)
    proxy.on("/blobs/", then=fs.slow(0.3))
    events: list[tuple[str, str]] = []

    class Recorder(DownloadProgress):
        def start(self, digest: str, total: int | None) -> None:
            events.append(("start", digest))

        def finish(self, digest: str) -> None:
            events.append(("finish", digest))

    with open_remote_image(
        parse_reference(proxy.ref("reg/parallel", "v1")), options=HTTP, progress=Recorder()
    ) as source:
        result = convert_image(source, str(tmp_path / "out"))
    assert proxy.max_active >= 2, "layers were downloaded one at a time"
    assert {d for kind, d in events if kind == "finish"} == {la.digest for la in img.layers}
    check_files(read_aci(result.paths[0]), img.files)


def test_leaving_early_stops_downloads(
    registry: Registry, proxy: FaultServer, tmp_path: pathlib.Path
) -> None:
    img = image("whiteout")
    push(registry, "reg/early", "v1", img)
    proxy.on("/blobs/", then=fs.slow(0.2))
    started = time.monotonic()
    with open_remote_image(
        parse_reference(proxy.ref("reg/early", "v1")), options=HTTP, workdir=str(tmp_path)
    ) as source:
        assert len(source.layers) == 4
    assert time.monotonic() - started < 5
    assert dir_listing(tmp_path) == []


def test_media_type_constants() -> None:
    assert MediaType.OCI_INDEX == di.OCI_INDEX and MediaType.DOCKER_LIST == di.DOCKER_MANIFEST_LIST
