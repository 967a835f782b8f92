"""The per-pod metadata service: every endpoint with exact headers and bodies, over real HTTP."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest

from appc.errors import PodError
from appc.runtime.metadata import JSON, TEXT, MetadataService, start_in_child

UUID = "6733c088-4e4e-4c3c-b1b2-0c5bd43f8a9b"
OTHER_UUID = "0b5a1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
MAIN_ID = "sha512-" + "a" * 64
SIDE_ID = "sha512-" + "b" * 64

# Written with odd spacing on purpose: /pod/manifest must give these bytes back unchanged.
POD = (
    b'{"acVersion": "0.8.11", "acKind": "PodManifest",\n'
    b' "apps": [\n'
    b'  {"name": "main", "image": {"name": "example.com/main", "id": "'
    + MAIN_ID.encode()
    + b'"},\n'
    b'   "annotations": [{"name": "b", "value": "pod-b"}, {"name": "c", "value": "pod-c"}]},\n'
    b'  {"name": "sidekick", "image": {"name": "example.com/side", "id": "'
    + SIDE_ID.encode()
    + b'"}}\n'
    b" ],\n"
    b' "annotations": [{"name": "ann", "value": "x"}, {"name": "example.com/team", "value": "y z"}]}'
)
MAIN_IMAGE = json.dumps(
    {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": "example.com/main",
        "annotations": [
            {"name": "a", "value": "img-a"},
            {"name": "b", "value": "img-b"},
            {"name": "authors", "value": "me"},
        ],
    },
    indent=1,
).encode()
SIDE_IMAGE = b'{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/side"}'


def service(pod: bytes = POD, **kwargs: object) -> MetadataService:
    return MetadataService(
        pod,
        UUID,
        {"main": MAIN_IMAGE, "sidekick": SIDE_IMAGE},
        {"main": MAIN_ID, "sidekick": SIDE_ID},
        token="t0ken",
        **kwargs,  # type: ignore[arg-type]
    )


def base(svc: MetadataService) -> str:
    return f"/{svc.token}/acMetadata/v1"


# --- the handler without HTTP ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "content_type", "body"),
    [
        ("/pod/manifest", 200, JSON, POD),
        ("/pod/uuid", 200, TEXT, UUID.encode()),
        (
            "/pod/annotations",
            200,
            JSON,
            b'[{"name":"ann","value":"x"},{"name":"example.com/team","value":"y z"}]',
        ),
        ("/pod/annotations/ann", 200, TEXT, b"x"),
        ("/pod/annotations/example.com/team", 200, TEXT, b"y z"),
        ("/pod/annotations/example.com%2Fteam", 200, TEXT, b"y z"),
        ("/pod/annotations/", 200, TEXT, b"ann\nexample.com/team\n"),
        ("/apps/main/image/manifest", 200, JSON, MAIN_IMAGE),
        ("/apps/main/image/id", 200, TEXT, MAIN_ID.encode()),
        ("/apps/sidekick/image/manifest", 200, JSON, SIDE_IMAGE),
        ("/apps/sidekick/image/id", 200, TEXT, SIDE_ID.encode()),
        # Set semantics: b replaced in place by the pod's value, c appended.
        (
            "/apps/main/annotations",
            200,
            JSON,
            b'[{"name":"a","value":"img-a"},{"name":"b","value":"pod-b"},'
            b'{"name":"authors","value":"me"},{"name":"c","value":"pod-c"}]',
        ),
        ("/apps/main/annotations/", 200, TEXT, b"a\nb\nauthors\nc\n"),
        ("/apps/main/annotations/b", 200, TEXT, b"pod-b"),
        ("/apps/main/annotations/a", 200, TEXT, b"img-a"),
        ("/apps/sidekick/annotations", 200, JSON, b"[]"),
    ],
)
def test_endpoints(path: str, status: int, content_type: str, body: bytes) -> None:
    svc = service()
    assert svc.handle("GET", base(svc) + path) == (status, content_type, body)


@pytest.mark.parametrize(
    "target",
    [
        "/t0ken/acMetadata/v1/pod/nothing",
        "/t0ken/acMetadata/v1/pod/annotations/missing",
        "/t0ken/acMetadata/v1/apps/nope/image/id",
        "/t0ken/acMetadata/v1/apps/nope/annotations",
        "/t0ken/acMetadata/v1/apps/nope/annotations/a",
        "/t0ken/acMetadata/v1/apps/main/annotations/missing",
        "/t0ken/acMetadata/v1/apps/main/other",
        "/t0ken/acMetadata/v2/pod/uuid",
        "/t0ken/pod/uuid",
        "/wrong/acMetadata/v1/pod/uuid",
        "/t0kenX/acMetadata/v1/pod/uuid",
        "/acMetadata/v1/pod/uuid",
        f"/{UUID}/acMetadata/v1/pod/uuid",
        "/",
    ],
)
def test_unknown_paths_and_wrong_tokens_are_404(target: str) -> None:
    status, content_type, _ = service().handle("GET", target)
    assert (status, content_type) == (404, TEXT)


def test_query_strings_are_ignored_on_get() -> None:
    svc = service()
    assert svc.handle("GET", base(svc) + "/pod/uuid?x=1")[2] == UUID.encode()


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        (b'{"acKind":"PodManifest","acVersion":"0.8.11","apps":[],"annotations":[]}', b"[]"),
        (b'{"acKind":"PodManifest","acVersion":"0.8.11","apps":[],"annotations":null}', b"null"),
        (b'{"acKind":"PodManifest","acVersion":"0.8.11","apps":[]}', b"null"),
        # Go reads keys case-insensitively, and the last duplicate wins.
        (b'{"acKind":"PodManifest","Annotations":[]}', b"[]"),
        (
            b'{"acKind":"PodManifest","annotations":null,"ANNOTATIONS":[{"name":"k","value":"v"}]}',
            b'[{"name":"k","value":"v"}]',
        ),
        (b'{"acKind":"PodManifest","annotations":[{"name":"k"}]}', b'[{"name":"k","value":""}]'),
    ],
)
def test_pod_annotations_nil_versus_empty(pod: bytes, expected: bytes) -> None:
    svc = service(pod)
    assert svc.handle("GET", base(svc) + "/pod/annotations") == (200, JSON, expected)
    assert svc.handle("GET", base(svc) + "/pod/manifest") == (200, JSON, pod)


def test_app_image_id_defaults_to_the_pod_manifest() -> None:
    svc = MetadataService(POD, UUID, {"main": MAIN_IMAGE}, {}, token="t")
    assert svc.handle("GET", "/t/acMetadata/v1/apps/main/image/id") == (200, TEXT, MAIN_ID.encode())
    # No image manifest given for the sidekick: its pod-side data is still served.
    assert svc.handle("GET", "/t/acMetadata/v1/apps/sidekick/image/manifest")[0] == 404
    assert svc.handle("GET", "/t/acMetadata/v1/apps/sidekick/annotations") == (200, JSON, b"[]")


@pytest.mark.parametrize(
    ("pod", "message"),
    [
        (b"not json", "pod manifest is not valid JSON"),
        (b"[]", "pod manifest is not a JSON object"),
        (b'{"annotations": {"a": "b"}}', "annotations must be a list"),
        (
            b'{"annotations": [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}]}',
            "duplicate annotations",
        ),
        (b'{"annotations": [{"name": "Bad Name", "value": "1"}]}', "pod manifest"),
    ],
)
def test_bad_manifests_are_refused_at_construction(pod: bytes, message: str) -> None:
    with pytest.raises(PodError, match=message):
        service(pod)


def test_bad_uuid_and_token() -> None:
    with pytest.raises(ValueError, match="bad UUID"):
        MetadataService(POD, "nope", {}, {})
    with pytest.raises(PodError, match="bad metadata token"):
        MetadataService(POD, UUID, {}, {}, token="a/b")


def test_default_token_and_key_are_random_and_long() -> None:
    a = MetadataService(POD, UUID, {}, {})
    b = MetadataService(POD, UUID, {}, {})
    assert len(a.token) == 32 and int(a.token, 16) >= 0  # 128 bits, hex
    assert a.token != b.token and a.hmac_key != b.hmac_key
    assert len(a.hmac_key) == 64
    assert UUID.replace("-", "") not in a.token


# --- signing -------------------------------------------------------------------------------


def post(svc: MetadataService, what: str, **form: str) -> tuple[int, str, bytes]:
    return svc.handle("POST", f"{base(svc)}/pod/hmac/{what}", urlencode(form).encode())


def test_sign_is_hmac_sha512_over_uuid_bytes_and_content() -> None:
    import hashlib
    import hmac

    svc = service(hmac_key=b"k" * 64)
    status, content_type, body = post(svc, "sign", content="Old MacDonald Had A Farm")
    expected = hmac.new(
        b"k" * 64,
        bytes.fromhex(UUID.replace("-", "")) + b"Old MacDonald Had A Farm",
        hashlib.sha512,
    ).digest()
    assert (status, content_type) == (200, TEXT)
    assert base64.b64decode(body, validate=True) == expected


def test_sign_then_verify() -> None:
    svc = service()
    sig = post(svc, "sign", content="Old MacDonald Had A Farm")[2].decode()
    assert post(svc, "verify", content="Old MacDonald Had A Farm", uuid=UUID, signature=sig) == (
        200,
        TEXT,
        b"",
    )
    # Older validators send "uid"; upper case and the UUID's dashes do not matter.
    assert (
        post(svc, "verify", content="Old MacDonald Had A Farm", uid=UUID.upper(), signature=sig)[0]
        == 200
    )


def test_verify_refuses_tampering() -> None:
    svc = service()
    content = "Old MacDonald Had A Farm"
    sig = post(svc, "sign", content=content)[2].decode()
    tampered = ("B" if sig[0] == "A" else "A") + sig[1:]
    assert post(svc, "verify", content=content, uuid=UUID, signature=tampered)[:2] == (403, TEXT)
    assert post(svc, "verify", content=content + "!", uuid=UUID, signature=sig)[0] == 403
    assert post(svc, "verify", content=content, uuid=OTHER_UUID, signature=sig)[0] == 403
    assert post(svc, "verify", content=content, uuid=UUID, signature="")[0] == 403
    # Another pod's service (another key) does not accept it either.
    assert post(service(), "verify", content=content, uuid=UUID, signature=sig)[0] == 403


@pytest.mark.parametrize(
    ("what", "form", "message"),
    [
        ("sign", {}, b"content form value not found\n"),
        ("sign", {"content": ""}, b"content form value not found\n"),
        ("verify", {"content": "x", "signature": "AAAA"}, b"uuid field missing or malformed"),
        (
            "verify",
            {"content": "x", "uuid": "nope", "signature": "AAAA"},
            b"uuid field missing or malformed",
        ),
        ("verify", {"uuid": UUID, "signature": "AAAA"}, b"content field missing\n"),
        (
            "verify",
            {"content": "x", "uuid": UUID, "signature": "**"},
            b"signature field missing or corrupt",
        ),
    ],
)
def test_malformed_sign_and_verify_are_400(what: str, form: dict[str, str], message: bytes) -> None:
    status, content_type, body = post(service(), what, **form)
    assert (status, content_type) == (400, TEXT)
    assert body.startswith(message)


def test_content_bytes_survive_form_decoding() -> None:
    svc = service()
    raw = "caf\u00e9 + 100% \udcff"  # a non-UTF-8 byte arrives as a surrogate
    body = b"content=caf%C3%A9+%2B+100%25+%FF"
    assert svc.handle("POST", base(svc) + "/pod/hmac/sign", body)[2].decode() == svc.sign(raw)
    assert svc.sign(raw) == svc.sign("café + 100% ".encode() + b"\xff")


def test_wrong_methods() -> None:
    svc = service()
    assert svc.handle("GET", base(svc) + "/pod/hmac/sign")[0] == 405
    assert svc.handle("POST", base(svc) + "/pod/uuid")[0] == 405
    assert svc.handle("POST", base(svc) + "/pod/annotations/ann")[0] == 405
    assert svc.handle("DELETE", base(svc) + "/nothing")[0] == 404
    assert svc.handle("POST", "/wrong/acMetadata/v1/pod/hmac/sign", b"content=x")[0] == 404


# --- over HTTP -----------------------------------------------------------------------------


@pytest.fixture
def served() -> Iterator[tuple[MetadataService, int]]:
    """The service on a free port of 127.0.0.1, in a thread of this process."""
    svc = service()
    ports: list[int] = []
    listening = threading.Event()

    def ready(port: int) -> None:
        ports.append(port)
        listening.set()

    thread = threading.Thread(target=svc.serve_forever, kwargs={"ready": ready}, daemon=True)
    thread.start()
    assert listening.wait(10)
    yield svc, ports[0]
    svc.shutdown()
    thread.join(10)
    assert not thread.is_alive()


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body, headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_http_headers_are_exact(served: tuple[MetadataService, int]) -> None:
    svc, port = served
    flavor = {"Metadata-Flavor": "AppContainer"}
    status, headers, body = request(port, "GET", base(svc) + "/pod/uuid", headers=flavor)
    assert (status, headers["Content-Type"], body) == (
        200,
        "text/plain; charset=us-ascii",
        UUID.encode(),
    )
    assert headers["Content-Length"] == str(len(UUID))
    status, headers, body = request(port, "GET", base(svc) + "/pod/manifest", headers=flavor)
    assert (status, headers["Content-Type"], body) == (200, "application/json", POD)
    status, headers, body = request(port, "GET", base(svc) + "/apps/main/annotations")
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)[1] == {"name": "b", "value": "pod-b"}
    status, headers, body = request(port, "HEAD", base(svc) + "/pod/manifest")
    assert (status, headers["Content-Length"], body) == (200, str(len(POD)), b"")


def test_http_sign_and_verify(served: tuple[MetadataService, int]) -> None:
    svc, port = served
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, headers, sig = request(
        port,
        "POST",
        base(svc) + "/pod/hmac/sign",
        urlencode({"content": "Old MacDonald Had A Farm"}).encode(),
        form,
    )
    assert (status, headers["Content-Type"]) == (200, "text/plain; charset=us-ascii")
    verify = {"content": "Old MacDonald Had A Farm", "uuid": UUID, "signature": sig.decode()}
    status, headers, body = request(
        port, "POST", base(svc) + "/pod/hmac/verify", urlencode(verify).encode(), form
    )
    assert (status, headers["Content-Type"], body) == (200, "text/plain; charset=us-ascii", b"")
    verify["uuid"] = OTHER_UUID
    assert (
        request(port, "POST", base(svc) + "/pod/hmac/verify", urlencode(verify).encode(), form)[0]
        == 403
    )


def test_http_errors(served: tuple[MetadataService, int]) -> None:
    svc, port = served
    assert request(port, "GET", "/wrong/acMetadata/v1/pod/uuid")[0] == 404
    assert request(port, "GET", base(svc) + "/pod/nothing")[0] == 404
    status, headers, _ = request(port, "GET", base(svc) + "/pod/hmac/sign")
    assert (status, headers["Allow"]) == (405, "POST")
    status, _, _ = request(
        port, "POST", base(svc) + "/pod/hmac/sign", b"x", {"Content-Length": "99999999"}
    )
    assert status == 413


def test_http_answers_fast(served: tuple[MetadataService, int]) -> None:
    """The ACE validator gives each request 100 ms: new connections and keep-alive both."""
    svc, port = served
    paths = [
        "/pod/manifest",
        "/pod/uuid",
        "/pod/annotations",
        "/apps/main/annotations",
        "/apps/main/image/id",
    ]
    slowest = 0.0
    for _ in range(20):
        for path in paths:
            start = time.perf_counter()
            assert request(port, "GET", base(svc) + path)[0] == 200
            slowest = max(slowest, time.perf_counter() - start)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        for _ in range(100):
            start = time.perf_counter()
            conn.request(
                "POST",
                base(svc) + "/pod/hmac/sign",
                "content=abc",
                {"Content-Type": "application/x-www-form-urlencoded"},
            )
            response = conn.getresponse()
            assert response.status == 200 and response.read()
            slowest = max(slowest, time.perf_counter() - start)
    finally:
        conn.close()
    assert slowest < 0.05


def test_idle_keep_alive_connection_does_not_block_others(
    served: tuple[MetadataService, int],
) -> None:
    svc, port = served
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        idle.request("GET", base(svc) + "/pod/uuid")
        idle.getresponse().read()
        start = time.perf_counter()
        assert request(port, "GET", base(svc) + "/pod/uuid")[0] == 200
        assert time.perf_counter() - start < 0.05
    finally:
        idle.close()


# --- in a child process --------------------------------------------------------------------


def _reap(pid: int) -> int:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


def test_start_in_child_serves_and_dies_on_sigterm() -> None:
    svc = service()
    pid, port = start_in_child(svc)
    try:
        assert request(port, "GET", base(svc) + "/pod/uuid")[2] == UUID.encode()
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
        with pytest.raises(ConnectionRefusedError):
            request(port, "GET", base(svc) + "/pod/uuid")
    finally:
        with contextlib.suppress(ChildProcessError):
            _reap(pid)


def test_start_in_child_does_not_keep_inherited_descriptors() -> None:
    read_end, write_end = os.pipe()
    pid, _port = start_in_child(service())
    try:
        os.close(write_end)
        # The child closed its copy of the write end, so the pipe reads EOF now.
        assert os.read(read_end, 1) == b""
    finally:
        os.close(read_end)
        _reap(pid)


def test_start_in_child_reports_a_failure_to_listen() -> None:
    with pytest.raises(PodError, match=r"metadata service did not start on 198\.51\.100\.7"):
        start_in_child(service(), "198.51.100.7")


def test_child_dies_with_its_parent(tmp_path: object) -> None:
    script = textwrap.dedent(
        f"""
        from appc.runtime.metadata import MetadataService, start_in_child
        svc = MetadataService(b'{{}}', {UUID!r}, {{}}, {{}})
        pid, port = start_in_child(svc)
        print(pid, flush=True)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            break
        if state in ("Z", "X"):
            break
        time.sleep(0.02)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the metadata child outlived its parent")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a network namespace")
def test_reachable_at_loopback_inside_a_new_network_namespace() -> None:
    """What the pod's PID 1 does: unshare the network, bring lo up, start the service."""
    script = textwrap.dedent(
        f"""
        import os, signal, socket, urllib.request
        from appc.runtime import linux
        from appc.runtime.metadata import MetadataService, start_in_child
        from appc.runtime.network import loopback_up
        linux.unshare(linux.CLONE_NEWNET)
        loopback_up()
        svc = MetadataService(b'{{"annotations": []}}', {UUID!r}, {{}}, {{}})
        pid, port = start_in_child(svc)
        url = f"http://127.0.0.1:{{port}}/{{svc.token}}/acMetadata/v1/pod/"
        try:
            for path in ("uuid", "annotations"):
                with urllib.request.urlopen(url + path, timeout=5) as response:
                    print(response.headers["Content-Type"], response.read().decode())
            print(socket.if_nameindex())
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        f"text/plain; charset=us-ascii {UUID}",
        "application/json []",
        "[(1, 'lo')]",
    ]
