"""Fault injection on every network path (issue 8, item 2), with a real misbehaving server.

``tests/fault_server.py`` answers on 127.0.0.1 (HTTPS with a certificate made here, and a
plain-HTTP twin) and breaks on purpose, per path and per attempt: 429/5xx with
``Retry-After``, connections dropped or reset mid-body, slow answers, wrong
``Content-Length``, wrong digests, redirects to plain HTTP and in circles, a failing
token server.  It serves discovery pages, ACIs and signatures itself, and proxies a real
registry (Debian ``docker-registry``) for the registry client, docker2aci and actool push.

What every test checks: retries are bounded (the server counts the attempts), the
final error is one clear line naming the URL, ``Retry-After`` is honoured within a
bound, HTTPS → HTTP redirects are refused without the insecure option, redirect loops
end; and afterwards the image store (``check()`` clean, list unchanged) and the output
and work directories (no partial ``.aci``, no temporary file) are as before.
"""

from __future__ import annotations

import email.utils
import itertools
import json
import os
import pathlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

from appc.aci.build import build_image
from appc.discovery import AppRequest, DiscoveryOptions, discover
from appc.docker.reference import parse_reference
from appc.docker.registry import RegistryClient, RegistryOptions
from appc.errors import DiscoveryError, FetchError, SignatureError
from appc.fetch import Fetcher, FetchOptions
from appc.keystore import Keystore
from appc.oci import oci_image_from_aci
from appc.oci.push import push_images
from appc.store import ImageStore
from appc.transport import Transport, TransportOptions
from appc.types.acidentifier import ACIdentifier
from tests import docker_images as di
from tests.discovery_server import env_without_proxies, image_bytes, meta_page
from tests.fault_server import (
    Fault,
    FaultServer,
    corrupt,
    drop,
    fault_server,
    make_cert,
    redirect,
    replace,
    reset,
    short,
    slow,
    stall,
    status,
    truncate,
)
from tests.gpg_keys import GpgKeys, sign_bytes
from tests.registry_fixtures import Registry, push
from tests.test_docker_common import check_files, convert_remote, dir_listing, read_aci

pytest_plugins = ["tests.gpg_keys"]

Cert = tuple[pathlib.Path, pathlib.Path]


@pytest.fixture(scope="session")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    """The fault servers' certificate (its own CA)."""
    return make_cert(tmp_path_factory.mktemp("fault-tls"))


@pytest.fixture
def server(cert: Cert) -> Iterator[FaultServer]:
    """A fault server serving only what a test gives it."""
    with fault_server(cert) as s:
        yield s


@pytest.fixture
def reg_proxy(cert: Cert, registry: Registry) -> Iterator[FaultServer]:
    """A fault server (HTTPS) in front of the plain registry."""
    with fault_server(cert, upstream=registry.url) as s:
        yield s


def one_line(text: str) -> str:
    assert text and "\n" not in text.rstrip("\n"), text
    return text


def transport(server: FaultServer, **options: Any) -> Transport:
    values: dict[str, Any] = {"ca_file": server.ca_file, "retries": 2, "backoff": 0.01}
    values.update(options)
    return Transport(TransportOptions(**values))


# ==================================================================== the transport


def test_retry_after_seconds_is_honoured(server: FaultServer) -> None:
    server.file("/x", b"data")
    server.on("^/x$", status(503, retry_after=1), status(429, retry_after=1))
    started = time.monotonic()
    response = transport(server, retries=4).request("GET", server.url("/x"))
    elapsed = time.monotonic() - started
    assert response.content == b"data"
    assert server.count("^/x$") == 3
    hits = server.hits("^/x$")
    gaps = [b.time - a.time for a, b in itertools.pairwise(hits)]
    assert all(gap >= 0.9 for gap in gaps), gaps  # the server's wait, not the 0.01 s backoff
    assert elapsed < 5


def test_retry_after_date_is_honoured(server: FaultServer) -> None:
    server.file("/x", b"data")
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    server.on("^/x$", status(503, retry_after=when))
    response = transport(server).request("GET", server.url("/x"))
    assert response.content == b"data"
    first, second = server.hits("^/x$")
    assert 0.9 <= second.time - first.time < 3.5


def test_retry_after_is_bounded(server: FaultServer) -> None:
    """A server asking for an hour gets at most ``max_delay``."""
    server.file("/x", b"data")
    server.on("^/x$", status(429, retry_after=3600), status(503, retry_after="garbage"))
    started = time.monotonic()
    response = transport(server, max_delay=0.3).request("GET", server.url("/x"))
    assert response.content == b"data"
    assert time.monotonic() - started < 2
    assert server.count("^/x$") == 3


@pytest.mark.parametrize("code", [429, 500, 502, 503, 504])
def test_failing_status_is_retried_a_bounded_number_of_times(
    server: FaultServer, code: int
) -> None:
    server.on("^/x$", then=status(code, retry_after=0))
    with pytest.raises(FetchError) as info:
        transport(server, retries=3).request("GET", server.url("/x"))
    assert server.count("^/x$") == 4
    assert info.value.status == code
    message = one_line(str(info.value))
    assert message.startswith(server.url("/x") + ": ")
    assert f"HTTP {code}" in message and "after 4 attempts" in message


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410])
def test_other_statuses_are_not_retried(server: FaultServer, code: int) -> None:
    server.on("^/x$", then=status(code))
    with pytest.raises(FetchError) as info:
        transport(server, retries=3).request("GET", server.url("/x"))
    assert server.count("^/x$") == 1
    assert info.value.status == code
    assert "attempts" not in str(info.value)


@pytest.mark.parametrize("fault", [drop(), reset(0.0), reset(0.5), truncate(0.5)])
def test_broken_connections_are_retried_a_bounded_number_of_times(
    server: FaultServer, fault: Fault
) -> None:
    server.file("/x", b"x" * 100_000)
    server.on("^/x$", then=fault)
    with pytest.raises(FetchError) as info:
        transport(server, retries=2).request("GET", server.url("/x"))
    assert server.count("^/x$") == 3
    message = one_line(str(info.value))
    assert message.startswith(server.url("/x") + ": connection failed after 3 attempts: ")
    assert info.value.status is None


def test_slow_server_times_out_a_bounded_number_of_times(server: FaultServer) -> None:
    server.file("/x", b"data")
    server.on("^/x$", then=slow(5))
    started = time.monotonic()
    with pytest.raises(FetchError, match="timed out") as info:
        transport(server, retries=1, timeout=0.3).request("GET", server.url("/x"))
    assert time.monotonic() - started < 3
    assert server.count("^/x$") == 2
    one_line(str(info.value))


def test_transient_faults_then_success(server: FaultServer) -> None:
    server.file("/x", b"x" * 50_000)
    server.on("^/x$", status(500), drop(), reset(), truncate(), slow(2))
    response = transport(server, retries=5, timeout=0.5).request("GET", server.url("/x"))
    assert response.content == b"x" * 50_000
    assert server.count("^/x$") == 6


def test_redirect_to_plain_http_is_refused(server: FaultServer) -> None:
    server.file("/final", b"plain")
    server.on("^/start$", then=redirect("{http}/final"))
    with pytest.raises(FetchError, match=re.escape("refusing redirect to plain HTTP")) as info:
        transport(server).request("GET", server.url("/start"))
    assert server.url("/start") in one_line(str(info.value))
    assert server.count(scheme="http") == 0  # the plain URL was never asked
    assert server.count("^/start$") == 1  # a refusal is not retried
    allowed = transport(server, insecure_allow_http=True).request("GET", server.url("/start"))
    assert allowed.content == b"plain"
    assert server.count("^/final$", scheme="http") == 1


@pytest.mark.parametrize(
    "loop",
    [
        {"/loop": "{https}/loop"},  # to itself
        {"/a": "{https}/b", "/b": "{path}"},  # a → b → b ...
        {"/a": "/b", "/b": "/a"},  # relative ping-pong
    ],
)
def test_redirect_loops_end(server: FaultServer, loop: dict[str, str]) -> None:
    for path, target in loop.items():
        server.on(f"^{path}$", then=redirect(target))
    start = next(iter(loop))
    with pytest.raises(FetchError, match="too many redirects") as info:
        transport(server).request("GET", server.url(start))
    one_line(str(info.value))
    assert server.count() == 11  # the first request and ten redirects, once


# ============================================================== the registry client


HEX = re.compile(r"[0-9a-f]{64}")


def registry_options(server: FaultServer, **options: Any) -> RegistryOptions:
    values: dict[str, Any] = {"ca_file": server.ca_file, "retries": 2, "backoff": 0.01}
    values.update(options)
    return RegistryOptions(**values)


@pytest.fixture(scope="module")
def pushed(registry: Registry) -> di.TestImage:
    """A four-layer image in the plain registry as ``faults/img:v1``."""
    img = di.whiteout_image()
    push(registry, "faults/img", "v1", img)
    return img


def test_registry_survives_transient_faults_everywhere(
    reg_proxy: FaultServer, pushed: di.TestImage, tmp_path: pathlib.Path
) -> None:
    """Every request fails in a different way first; the pull still succeeds, with a
    bounded number of attempts per URL."""
    ping = reg_proxy.on("^/v2/$", status(503, retry_after=0))
    manifests = reg_proxy.on("/manifests/", status(429, retry_after=0), reset(0.3))
    blobs = reg_proxy.on("/blobs/", status(500), drop(), truncate(0.5), reset(0.2))
    options = registry_options(reg_proxy, retries=4)
    result = convert_remote(
        reg_proxy.ref("faults/img", "v1"),
        tmp_path / "out",
        options=options,
        workdir=str(tmp_path / "work"),
    )
    check_files(read_aci(result.paths[0]), pushed.files)
    assert ping.hits == 2
    assert manifests.attempts == {"/v2/faults/img/manifests/v1": 3}
    assert len(blobs.attempts) == 5  # the config and four layers
    assert set(blobs.attempts.values()) == {5}
    assert dir_listing(tmp_path / "work") == []


@attrs.frozen
class Case:
    """A persistent fault on one kind of request and what the pull must say."""

    target: str  # "manifest", "config", "layer"
    fault: Fault
    message: str
    attempts: int  # with retries=2


PERSISTENT = {
    "manifest-503": Case("manifest", status(503, retry_after=0), "HTTP 503 error after 3", 3),
    "manifest-reset": Case("manifest", reset(0.5), "failed after 3 attempts", 3),
    "manifest-truncated": Case("manifest", truncate(0.5), "download failed after 3", 3),
    "manifest-short": Case("manifest", short(0.9), "manifest is not valid JSON", 1),
    "manifest-digest": Case(
        "manifest", replace(b'"size"', b'"size" '), "manifest digest mismatch", 1
    ),
    "config-digest": Case("config", corrupt(), "blob digest mismatch", 1),
    "config-500": Case("config", status(500), "HTTP 500 error after 3 attempts", 3),
    "config-drop": Case("config", drop(), "connection failed after 3 attempts", 3),
    "layer-digest": Case("layer", corrupt(), "blob digest mismatch", 1),
    "layer-short": Case("layer", short(0.5), "download failed after 3 attempts: truncated", 3),
    "layer-truncated": Case("layer", truncate(0.5), "download failed after 3 attempts", 3),
    "layer-reset": Case("layer", reset(0.5), "failed after 3 attempts", 3),
    "layer-429": Case("layer", status(429, retry_after=0), "HTTP 429 too many requests", 3),
    "layer-slow": Case("layer", slow(5), "connection failed after 3 attempts", 3),
    "layer-stall": Case("layer", stall(5, 0.5), "download failed after 3 attempts", 3),
    "layer-404": Case("layer", status(404), "HTTP 404 not found", 1),
    "layer-to-http": Case("layer", redirect("{http}{path}"), "refusing redirect to plain HTTP", 1),
    "layer-loop": Case("layer", redirect("{path}"), "too many redirects", 11),
}


@pytest.mark.parametrize("case", PERSISTENT.values(), ids=PERSISTENT.keys())
@pytest.mark.parametrize("squash", [True, False], ids=["squash", "nosquash"])
def test_registry_persistent_faults(
    reg_proxy: FaultServer,
    pushed: di.TestImage,
    tmp_path: pathlib.Path,
    case: Case,
    squash: bool,
) -> None:
    pattern = {
        "manifest": "/manifests/",
        "config": re.escape(pushed.config_digest) + "$",
        "layer": re.escape(pushed.layers[2].digest) + "$",
    }[case.target]
    rule = reg_proxy.on(pattern, then=case.fault)
    out, work = tmp_path / "out", tmp_path / "work"
    started = time.monotonic()
    with pytest.raises(FetchError) as info:
        convert_remote(
            reg_proxy.ref("faults/img", "v1"),
            out,
            options=registry_options(reg_proxy, timeout=0.5),
            squash=squash,
            workdir=str(work),
        )
    assert time.monotonic() - started < 10
    message = one_line(str(info.value))
    assert case.message in message
    assert message.startswith(reg_proxy.base() + "/v2/faults/img/"), message
    assert rule.hits == case.attempts
    assert not out.exists() or dir_listing(out) == [], "partial output left behind"
    assert dir_listing(work) == [], "downloads left behind"
    if case.target == "layer" and case.message.startswith("refusing"):
        assert reg_proxy.count("/blobs/", scheme="http") == 0


def test_registry_redirect_to_http_allowed_with_the_flag(
    reg_proxy: FaultServer, pushed: di.TestImage, tmp_path: pathlib.Path
) -> None:
    reg_proxy.on("/blobs/", then=redirect("{http}{path}", 307), method="GET", scheme="https")
    options = registry_options(reg_proxy, insecure_allow_http=True)
    result = convert_remote(reg_proxy.ref("faults/img", "v1"), tmp_path, options=options)
    check_files(read_aci(result.paths[0]), pushed.files)
    assert reg_proxy.count("/blobs/", scheme="http") == 5


def test_registry_ping_failures(reg_proxy: FaultServer) -> None:
    reg_proxy.on("^/v2/$", then=status(503, retry_after=0))
    client = RegistryClient(reg_proxy.host, registry_options(reg_proxy))
    with pytest.raises(FetchError) as info:
        client.ping()
    message = one_line(str(info.value))
    assert f"cannot reach registry {reg_proxy.host}" in message
    assert "HTTP 503 after 3 attempts" in message
    assert reg_proxy.count("^/v2/$") == 3


# --------------------------------------------------------------------------- tokens


@pytest.fixture
def token_proxy(cert: Cert, token_registry: Registry) -> Iterator[FaultServer]:
    """A fault server in front of the token registry; its token realm is rewritten to
    the fault server's ``/token`` (proxied to the real token server)."""
    with fault_server(cert, upstream=token_registry.url, intercept_realm=True) as s:
        yield s


@pytest.fixture(scope="module")
def token_pushed(token_registry: Registry) -> di.TestImage:
    img = di.empty_config_image()
    push(token_registry, "faults/token", "v1", img)
    return img


def test_token_server_transient_failures(
    token_proxy: FaultServer, token_pushed: di.TestImage, tmp_path: pathlib.Path
) -> None:
    rule = token_proxy.on("^/token", status(503, retry_after=0), drop(), reset(0.5))
    result = convert_remote(
        token_proxy.ref("faults/token", "v1"),
        tmp_path,
        options=registry_options(token_proxy, retries=3),
    )
    check_files(read_aci(result.paths[0]), token_pushed.files)
    assert rule.hits == 4  # three failures, then the token (cached for every request)


TOKEN_FAILURES = {
    "500": (status(500), "unable to retrieve auth token: HTTP 500 error after 3 attempts", 3),
    "drop": (drop(), "token server unreachable: ", 3),
    "bad-json": (
        status(200, body=b"{not json", content_type="application/json"),
        "token server answered with invalid JSON",
        1,
    ),
    "no-token": (
        status(200, body=b'{"expires_in": 300}', content_type="application/json"),
        "token server answered without a token",
        1,
    ),
    "not-an-object": (
        status(200, body=b'["token"]', content_type="application/json"),
        "token server answered without a token",
        1,
    ),
    "401": (status(401), "unable to retrieve auth token: 401 unauthorized", 1),
    "cut": (truncate(0.5), "unable to retrieve auth token: download failed after 3", 3),
    "to-http": (redirect("{http}{path}"), "refusing redirect to plain HTTP", 1),
}


@pytest.mark.parametrize(
    ("fault", "message", "attempts"), TOKEN_FAILURES.values(), ids=TOKEN_FAILURES.keys()
)
def test_token_server_failures(
    token_proxy: FaultServer,
    token_pushed: di.TestImage,
    tmp_path: pathlib.Path,
    fault: Fault,
    message: str,
    attempts: int,
) -> None:
    rule = token_proxy.on("^/token", then=fault)
    with pytest.raises(FetchError) as info:
        convert_remote(
            token_proxy.ref("faults/token", "v1"),
            tmp_path / "out",
            options=registry_options(token_proxy),
            workdir=str(tmp_path / "work"),
        )
    text = one_line(str(info.value))
    assert text.startswith(token_proxy.url("/token") + ": "), text  # the realm, no query
    assert message in text
    assert rule.hits == attempts
    assert not (tmp_path / "out").exists() or dir_listing(tmp_path / "out") == []
    assert dir_listing(tmp_path / "work") == []


# --------------------------------------------------------------------------- docker2aci CLI


def run_tool(module: str, *args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    env = env_without_proxies()
    env["HOME"] = str(cwd)  # no Docker credentials
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
        check=False,
    )


@pytest.mark.parametrize(
    ("fault", "fragment"),
    [
        (status(500, retry_after=0), "HTTP 500 error after 5 attempts"),
        (corrupt(), "blob digest mismatch"),
        (redirect("{http}{path}"), "refusing redirect to plain HTTP"),
    ],
    ids=["500", "digest", "to-http"],
)
def test_docker2aci_cli_reports_one_line(
    reg_proxy: FaultServer,
    pushed: di.TestImage,
    tmp_path: pathlib.Path,
    fault: Fault,
    fragment: str,
) -> None:
    layer = pushed.layers[1].digest
    reg_proxy.on(re.escape(layer) + "$", then=fault)
    out, work = tmp_path / "out", tmp_path / "work"
    proc = run_tool(
        "appc_tools.docker2aci",
        "--ca-file",
        str(reg_proxy.ca_file),
        "-o",
        str(out),
        "--tmp-dir",
        str(work),
        reg_proxy.ref("faults/img", "v1"),
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    line = one_line(proc.stderr)
    assert line.startswith(f"Error: {reg_proxy.base()}/v2/faults/img/blobs/{layer}: "), line
    assert fragment in line
    assert proc.stdout == ""
    assert not out.exists() or dir_listing(out) == []
    assert dir_listing(work) == []


# ============================================================ discovery and rkt fetch

NAME = "localhost/etcd"
REQUEST = AppRequest(ACIdentifier(NAME), {"version": "v2.0.0", "os": "linux", "arch": "amd64"})


def discovery_options(server: FaultServer, **options: Any) -> DiscoveryOptions:
    values: dict[str, Any] = {
        "port": server.https_port,
        "ca_file": server.ca_file,
        "backoff": 0.01,
        "timeout": 0.5,
    }
    values.update(options)
    return DiscoveryOptions(**values)


def serve_page(server: FaultServer, name: str = NAME) -> None:
    """The discovery page of *name* (endpoints on this server)."""
    template = f"{server.base()}/images/{{name}}-{{version}}-{{os}}-{{arch}}.{{ext}}"
    path = "/" + name.split("/", 1)[1]
    server.file(
        f"{path}?ac-discovery=1",
        meta_page([("ac-discovery", f"{name} {template}")]),
        content_type="text/html",
    )


def image_path(name: str = NAME, version: str = "v2.0.0") -> str:
    return f"/images/{name}-{version}-linux-amd64.aci"


def test_discovery_retries_a_failing_level_before_walking_up(server: FaultServer) -> None:
    serve_page(server)
    page = server.on(r"^/etcd\?", status(503, retry_after=0))
    result = discover(REQUEST, discovery_options(server), public_keys=False)
    assert [e.aci for e in result.endpoints] == [server.url(image_path())]
    assert page.hits == 2
    assert server.count(r"^/\?") == 0  # the parent level was never needed


@pytest.mark.parametrize(
    ("fault", "reason", "attempts"),
    [
        (status(503, retry_after=0), "expected a 200 OK got 503", 2),
        (status(500), "expected a 200 OK got 500", 2),
        (drop(), "connection failed after 2 attempts", 2),
        (slow(5), "timed out", 2),
        (redirect("{path}"), "too many redirects", 11),
        (redirect("{http}{path}"), "refusing redirect to plain HTTP", 1),
        (reset(0.5), "IncompleteRead", 1),
    ],
    ids=["503", "500", "drop", "slow", "loop", "to-http", "reset"],
)
def test_discovery_failures_are_bounded_and_named(
    server: FaultServer, fault: Fault, reason: str, attempts: int
) -> None:
    serve_page(server)
    server.file("/?ac-discovery=1", meta_page([]), content_type="text/html")
    server.on(r"\?ac-discovery=1$", then=fault)
    started = time.monotonic()
    with pytest.raises(DiscoveryError) as info:
        discover(REQUEST, discovery_options(server), public_keys=False)
    assert time.monotonic() - started < 8
    one_line(str(info.value))
    assert [prefix for prefix, _ in info.value.attempts] == ["localhost/etcd", "localhost"]
    assert all(reason in why for _, why in info.value.attempts), info.value.attempts
    assert server.count(r"^/etcd\?") == attempts
    assert server.count(scheme="http") == 0


@attrs.define
class FetchEnv:
    """A store holding one image already, a keystore trusting the signer, a fault server
    publishing ``localhost/etcd``."""

    tmp: pathlib.Path
    server: FaultServer
    keys: GpgKeys
    store: ImageStore
    keystore: Keystore
    before: list[str]

    def fetcher(self, **options: Any) -> Fetcher:
        values: dict[str, Any] = {
            "discovery_port": self.server.https_port,
            "ca_file": self.server.ca_file,
            "retries": 2,
            "backoff": 0.01,
            "timeout": 0.5,
        }
        values.update(options)
        return Fetcher(self.store, self.keystore, FetchOptions(**values))

    def assert_unchanged(self) -> None:
        """The store lists what it did, is consistent, and its tmp is empty."""
        assert [i.key for i in self.store.list()] == self.before
        assert self.store.check() == []
        assert os.listdir(self.store.tmp_dir) == []
        with ImageStore(self.store.data_dir) as again:  # reopening finds nothing to clean
            assert again.clean_tmp() == []


@pytest.fixture
def fetch_env(server: FaultServer, gpg_keys: GpgKeys, tmp_path: pathlib.Path) -> Iterator[FetchEnv]:
    keystore = Keystore(str(tmp_path / "etc"), str(tmp_path / "usr"))
    keystore.add_prefix_key("localhost", gpg_keys.signer.public)
    with ImageStore(tmp_path / "rkt") as store:
        env = FetchEnv(tmp_path, server, gpg_keys, store, keystore, [])
        other = publish(env, "localhost/other")
        env.fetcher().fetch("localhost/other:v2.0.0")
        assert len(other) > 0
        env.before = [i.key for i in store.list()]
        server.reset_script()
        publish(env)
        yield env


def publish(env: FetchEnv, name: str = NAME) -> bytes:
    aci = image_bytes(name, hello=b"hello\n" * 20_000)  # ~120 KB uncompressed, gzip
    serve_page(env.server, name)
    env.server.file(image_path(name), aci)
    env.server.file(image_path(name) + ".asc", sign_bytes(env.keys, env.keys.signer, aci))
    return aci


def test_fetch_survives_transient_faults(fetch_env: FetchEnv) -> None:
    server = fetch_env.server
    page = server.on(r"^/etcd\?", status(503, retry_after=0))
    aci = server.on(r"\.aci$", status(500), reset(0.3), truncate(0.6), drop())
    asc = server.on(r"\.asc$", drop(), status(429, retry_after=0))
    stored = fetch_env.fetcher(retries=5).fetch(f"{NAME}:v2.0.0")
    assert stored.name == NAME
    assert (page.hits, aci.hits, asc.hits) == (2, 5, 3)
    assert fetch_env.store.check() == []
    assert os.listdir(fetch_env.store.tmp_dir) == []


FETCH_FAILURES = {
    "aci-503": (
        "aci",
        status(503, retry_after=0),
        FetchError,
        "HTTP 503 error after 3 attempts",
        3,
    ),
    "aci-reset": ("aci", reset(0.5), FetchError, "failed after 3 attempts", 3),
    "aci-truncated": ("aci", truncate(0.5), FetchError, "download failed after 3 attempts", 3),
    "aci-short": ("aci", short(0.5), Exception, "", 1),  # complete but wrong: not verified
    "aci-stall": ("aci", stall(5), FetchError, "download failed after 3 attempts", 3),
    "aci-slow": ("aci", slow(5), FetchError, "connection failed after 3 attempts", 3),
    "aci-corrupt": ("aci", corrupt(), Exception, "", 1),
    "aci-404": ("aci", status(404), FetchError, "HTTP 404 not found", 1),
    "aci-to-http": ("aci", redirect("{http}{path}"), FetchError, "refusing redirect to plain", 1),
    "aci-loop": ("aci", redirect("{path}"), FetchError, "too many redirects", 11),
    "asc-500": ("asc", status(500), FetchError, "HTTP 500 error after 3 attempts", 3),
    "asc-reset": ("asc", reset(0.5), FetchError, "failed after 3 attempts", 3),
    "asc-corrupt": ("asc", replace(b"\n\n", b"\n\nAAAA"), SignatureError, "", 1),
    "asc-to-http": ("asc", redirect("{http}{path}"), FetchError, "refusing redirect to plain", 1),
}


@pytest.mark.parametrize(
    ("target", "fault", "error", "message", "attempts"),
    FETCH_FAILURES.values(),
    ids=FETCH_FAILURES.keys(),
)
def test_fetch_failures_leave_the_store_as_it_was(
    fetch_env: FetchEnv,
    target: str,
    fault: Fault,
    error: type[Exception],
    message: str,
    attempts: int,
) -> None:
    rule = fetch_env.server.on(re.escape(target) + "$", then=fault)
    with pytest.raises(error) as info:
        fetch_env.fetcher().fetch(f"{NAME}:v2.0.0")
    text = one_line(str(info.value))
    assert message in text
    if error is FetchError:
        url = fetch_env.server.url(image_path()) + (".asc" if target == "asc" else "")
        assert text.startswith(url + ": "), text
    assert rule.hits == attempts
    fetch_env.assert_unchanged()


def test_fetch_by_url_with_faults(fetch_env: FetchEnv) -> None:
    server = fetch_env.server
    url = server.url(image_path())
    server.on(r"\.aci$", reset(0.5))
    stored = fetch_env.fetcher(pull_policy="update").fetch(url)
    assert stored.name == NAME
    server.clear_rules()
    server.on(r"\.aci$", then=status(502, retry_after=0))
    with pytest.raises(FetchError, match="HTTP 502 error after 3 attempts"):
        fetch_env.fetcher(pull_policy="update").fetch(url)
    assert fetch_env.store.check() == []
    assert os.listdir(fetch_env.store.tmp_dir) == []


def rkt(env: FetchEnv, *args: str) -> subprocess.CompletedProcess[str]:
    return run_tool(
        "appc_tools.rkt",
        "--dir",
        str(env.tmp / "rkt"),
        "--local-config",
        str(env.tmp / "etc"),
        "--system-config",
        str(env.tmp / "usr"),
        "--ca-file",
        str(env.server.ca_file),
        "--discovery-port",
        str(env.server.https_port),
        *args,
        cwd=env.tmp,
    )


@pytest.mark.parametrize(
    ("target", "fault", "fragment"),
    [
        ("aci", status(503, retry_after=0), "HTTP 503 error after 5 attempts"),
        ("asc", status(500, retry_after=0), "HTTP 500 error after 5 attempts"),
        ("aci", redirect("{http}{path}"), "refusing redirect to plain HTTP"),
        ("aci", redirect("{path}"), "too many redirects"),
    ],
    ids=["aci-503", "asc-500", "aci-to-http", "aci-loop"],
)
def test_rkt_fetch_cli_reports_one_line(
    fetch_env: FetchEnv, target: str, fault: Fault, fragment: str
) -> None:
    fetch_env.server.on(re.escape(target) + "$", then=fault)
    proc = rkt(fetch_env, "fetch", f"{NAME}:v2.0.0")
    assert proc.returncode == 254, proc.stderr
    line = one_line(proc.stderr)
    url = fetch_env.server.url(image_path()) + (".asc" if target == "asc" else "")
    assert line.startswith(f"rkt fetch: {url}: "), line
    assert fragment in line
    assert proc.stdout == ""
    fetch_env.assert_unchanged()
    assert rkt(fetch_env, "image", "list", "--no-legend").stdout.count("\n") == 1


# ================================================================== actool push


@pytest.fixture(scope="module")
def aci_file(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A small ACI with two files (one of 64 KiB of varied bytes)."""
    root = tmp_path_factory.mktemp("push-aci")
    layout = root / "layout"
    (layout / "rootfs" / "srv").mkdir(parents=True)
    (layout / "rootfs" / "srv" / "hello.txt").write_text("hello\n")
    (layout / "rootfs" / "srv" / "data").write_bytes(os.urandom(65536))
    manifest = {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": "example.com/faulty-push",
        "labels": [{"name": "os", "value": "linux"}, {"name": "arch", "value": "amd64"}],
        "app": {"exec": ["/srv/hello.txt"], "user": "0", "group": "0"},
    }
    (layout / "manifest").write_text(json.dumps(manifest))
    build_image(layout, root / "push.aci")
    return root / "push.aci"


def tags_of(registry: Registry, repo: str) -> list[str]:
    response = registry.request("GET", f"/v2/{repo}/tags/list")
    if response.status_code == 404:
        return []
    return list(response.json().get("tags") or [])


def push_through(
    proxy: FaultServer, aci: pathlib.Path, repo: str, work: pathlib.Path, **options: Any
) -> str:
    image = oci_image_from_aci(aci, str(work))
    reference = parse_reference(proxy.ref(repo, "v1"))
    return push_images([image], reference, options=registry_options(proxy, **options))


def test_push_survives_transient_faults(
    reg_proxy: FaultServer, registry: Registry, aci_file: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    head = reg_proxy.on("/blobs/sha256:", status(503, retry_after=0), method="HEAD")
    post = reg_proxy.on("/blobs/uploads/$", status(500), drop(), method="POST")
    put = reg_proxy.on("/blobs/uploads/", status(502), method="PUT")
    manifest = reg_proxy.on("/manifests/", status(429, retry_after=0), method="PUT")
    digest = push_through(reg_proxy, aci_file, "faults/push-ok", tmp_path, retries=3)
    assert tags_of(registry, "faults/push-ok") == ["v1"]
    assert registry.get_manifest("faults/push-ok", digest).status_code == 200
    assert head.hits == 4 and post.hits == 4 and put.hits == 4 and manifest.hits == 2


PUSH_FAILURES = {
    "blob-put-500": ("PUT", "/blobs/uploads/", status(500), "HTTP 500 error after 3 attempts", 3),
    "upload-drop": ("POST", "/blobs/uploads/$", drop(), "connection failed after 3 attempts", 3),
    "head-503": ("HEAD", "/blobs/sha256:", status(503, retry_after=0), "HTTP 503 error after 3", 3),
    "blob-to-http": ("PUT", "/blobs/uploads/", redirect("{http}{path}", 307), "refusing redir", 1),
    "manifest-500": ("PUT", "/manifests/", status(500), "pushing the manifest v1: HTTP 500", 3),
    "loop": ("PUT", "/manifests/", redirect("{path}", 307), "too many redirects", 11),
}


@pytest.mark.parametrize("case", PUSH_FAILURES)
def test_push_failures_write_no_tag(
    reg_proxy: FaultServer,
    registry: Registry,
    aci_file: pathlib.Path,
    tmp_path: pathlib.Path,
    case: str,
) -> None:
    method, pattern, fault, fragment, attempts = PUSH_FAILURES[case]
    repo = f"faults/push-{case}"
    rule = reg_proxy.on(pattern, then=fault, method=method)
    with pytest.raises(FetchError) as info:
        push_through(reg_proxy, aci_file, repo, tmp_path)
    text = one_line(str(info.value))
    assert fragment in text
    assert text.startswith(reg_proxy.base() + f"/v2/{repo}/"), text
    assert "_state=" not in text  # the upload's opaque state is not printed
    assert rule.hits == attempts
    assert tags_of(registry, repo) == []


def test_actool_push_cli_reports_one_line(
    reg_proxy: FaultServer, registry: Registry, aci_file: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    reg_proxy.on("/blobs/uploads/", then=status(500, retry_after=0), method="PUT")
    proc = run_tool(
        "appc_tools.actool",
        "push",
        "--ca-file",
        str(reg_proxy.ca_file),
        str(aci_file),
        reg_proxy.ref("faults/push-cli", "v1"),
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    line = one_line(proc.stderr)
    assert "HTTP 500 error after 5 attempts" in line
    assert f"{reg_proxy.base()}/v2/faults/push-cli/blobs/uploads/" in line
    assert proc.stdout == ""
    assert tags_of(registry, "faults/push-cli") == []
    assert [p.name for p in tmp_path.iterdir()] == []
