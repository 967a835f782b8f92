"""``actool push`` and :func:`appc.oci.push.push_images` against real registries (Debian
``docker-registry``: plain, TLS with basic auth, token auth), read back by skopeo and by our
docker2aci, and run by a real containerd (``ctr``)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import requests

from appc.aci.build import build_image
from appc.docker.reference import parse_reference
from appc.docker.registry import RegistryOptions
from appc.errors import FetchError
from appc.oci import oci_image_from_aci
from appc.oci.image import MEDIA_INDEX, MEDIA_MANIFEST
from appc.oci.push import push_images
from tests import containerd_fixtures
from tests.aci_fixtures import directory, regular
from tests.containerd_fixtures import Containerd, port_is_free
from tests.registry_fixtures import Registry, free_port
from tests.test_oci import RICH_ENTRIES, manifest_doc, manifest_of, tree_of, write_aci

REPO = pathlib.Path(__file__).resolve().parents[1]
HELLO_PORT = 5000

#: The session's private containerd (see ``tests/containerd_fixtures.py``).
containerd = containerd_fixtures.containerd

# --- helpers ----------------------------------------------------------------------------


def actool(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``actool ARGS`` as a user runs it (HOME without Docker credentials by default)."""
    return subprocess.run(
        [sys.executable, "-m", "appc_tools.actool", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def pushed(proc: subprocess.CompletedProcess[str]) -> str:
    """The digest ``actool push`` printed (it must have succeeded)."""
    assert proc.returncode == 0, proc.stderr
    digest = proc.stdout.strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), proc.stdout
    return digest


def failed(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Check a failure: exit 1, one line on stderr naming the problem; returns the line."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr
    return proc.stderr


def tags(registry: Registry, repo: str) -> list[str]:
    """The repository's tags (none when the registry does not know the repository)."""
    with registry.request("GET", f"/v2/{repo}/tags/list", repo=repo) as response:
        if response.status_code == 404:
            return []
        assert response.status_code == 200, response.text
        return sorted(response.json().get("tags") or [])


_LOG_LINE = re.compile(r'"([A-Z]+) (/v2/\S*) HTTP/1\.1" (\d{3})')


def log_requests(registry: Registry, since: int) -> list[tuple[str, str, int]]:
    """``(method, path, status)`` of each request in the registry's access log since *since*."""
    return [(m, p, int(s)) for m, p, s in _LOG_LINE.findall(registry.log_text(since))]


def skopeo_inspect(registry: Registry, repo: str, tag: str, *extra: str) -> Any:
    flags = ["--tls-verify=false"]
    if registry.ca_file is not None:
        flags = [f"--cert-dir={registry.cert_dir}"]
    if registry.username:
        flags.append(f"--creds={registry.username}:{registry.password}")
    proc = subprocess.run(
        ["skopeo", "inspect", *flags, *extra, registry.ref(repo, tag)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def manifest_json(registry: Registry, repo: str, ref: str) -> dict[str, Any]:
    accept = [MEDIA_INDEX, MEDIA_MANIFEST]
    with registry.get_manifest(repo, ref, accept=accept) as response:
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture(autouse=True)
def _no_docker_credentials(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Subprocesses and the library see no ~/.docker/config.json of the machine."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)


# --- images -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hello_aci(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """``examples/hello`` compiled statically (``CGO_ENABLED=0 GOPROXY=off go build``) and
    built into ``hello.aci`` with its manifest."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("go is not installed (apt-get install golang-go: make system-deps)")
    work = tmp_path_factory.mktemp("hello")
    layout = work / "layout"
    (layout / "rootfs" / "bin").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
    env.update(CGO_ENABLED="0", GOPROXY="off", GOFLAGS="-mod=mod", GOTOOLCHAIN="local")
    env.setdefault("HOME", str(work))
    subprocess.run(
        [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(layout / "rootfs/bin/hello-web")],
        cwd=REPO / "examples" / "hello",
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    shutil.copy(REPO / "examples" / "hello" / "manifest", layout / "manifest")
    build_image(layout, work / "hello.aci", owner_root=True)
    return work / "hello.aci"


def busybox_aci(work: pathlib.Path, arch: str) -> pathlib.Path:
    """``example.com/busybox`` for *arch* (appc name): a real static busybox for amd64, a
    stand-in file for other arches (nothing runs it here)."""
    layout = work / f"busybox-{arch}"
    (layout / "rootfs" / "bin").mkdir(parents=True)
    target = layout / "rootfs" / "bin" / "busybox"
    if arch == "amd64":
        shutil.copy("/bin/busybox", target)
    else:
        target.write_bytes(b"\x7fELF not really an " + arch.encode() + b" binary\n")
        target.chmod(0o755)
    (layout / "rootfs" / "bin" / "sh").symlink_to("busybox")
    (layout / "rootfs" / "bin" / "uname").symlink_to("busybox")
    manifest = manifest_doc(
        "example.com/busybox",
        labels=[
            {"name": "version", "value": "1.0.0"},
            {"name": "os", "value": "linux"},
            {"name": "arch", "value": arch},
        ],
        app={"exec": ["/bin/sh", "-c", "echo running on $(uname -m)"], "user": "0", "group": "0"},
    )
    (layout / "manifest").write_text(json.dumps(manifest))
    build_image(layout, work / f"busybox-{arch}.aci", owner_root=True)
    return work / f"busybox-{arch}.aci"


@pytest.fixture(scope="module")
def rich_aci(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return write_aci(tmp_path_factory.mktemp("rich") / "rich.aci", RICH_ENTRIES)


def big_aci(work: pathlib.Path, size: int) -> pathlib.Path:
    """An ACI with *size* bytes of incompressible data (its layer is about as large)."""
    data = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(size // 32))
    entries = [directory("rootfs"), regular("rootfs/random", data)]
    return write_aci(work / "big.aci", entries, manifest_doc("example.com/big"))


# --- a registry front that refuses -------------------------------------------------------


class RefusingProxy:
    """An HTTP front for a real registry that answers *status* to the requests *refuse*
    picks (``refuse(method, path)``) and passes every other one through (Host kept, so
    the registry's ``Location`` headers point back here)."""

    def __init__(self, registry: Registry, status: int, refuse: Callable[[str, str], bool]) -> None:
        self.registry, self.status, self.refuse = registry, status, refuse
        self.refused: list[tuple[str, str]] = []
        self._server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(_ProxyHandler, self)
        )
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._session = requests.Session()
        self._session.trust_env = False

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> RefusingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._session.close()


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def __init__(self, owner: RefusingProxy, *args: Any) -> None:
        self.owner = owner
        super().__init__(*args)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.owner.refuse(self.command, self.path):
            self.owner.refused.append((self.command, self.path))
            code = {403: "DENIED", 413: "SIZE_INVALID"}.get(self.owner.status, "ERROR")
            data = json.dumps(
                {
                    "errors": [
                        {"code": code, "message": f"refused by the test ({self.owner.status})"}
                    ]
                }
            ).encode()
            self.send_response(self.owner.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        skip = {"host", "content-length", "transfer-encoding", "connection"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
        headers["Host"] = self.owner.host
        upstream = self.owner._session.request(
            self.command,
            self.owner.registry.url + self.path,
            headers=headers,
            data=body,
            allow_redirects=False,
            timeout=30,
        )
        with upstream:
            data = upstream.content
            self.send_response(upstream.status_code)
            for key, value in upstream.headers.items():
                if key.lower() not in skip and key.lower() != "content-encoding":
                    self.send_header(key, value)
            length_header = upstream.headers.get("Content-Length", str(len(data)))
            self.send_header(
                "Content-Length", length_header if self.command == "HEAD" else str(len(data))
            )
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


# --- pushing ------------------------------------------------------------------------------


def test_push_prints_the_digest_and_skopeo_reads_it(
    registry: Registry, rich_aci: pathlib.Path
) -> None:
    digest = pushed(
        actool("push", "--insecure-allow-http", str(rich_aci), registry.ref("push/rich", "v1"))
    )
    assert tags(registry, "push/rich") == ["v1"]
    info = skopeo_inspect(registry, "push/rich", "v1")
    assert info["Digest"] == digest
    assert info["Labels"]["org.appc.label.version"] == "1.2.3"
    assert info["Architecture"] == "amd64"
    manifest = manifest_json(registry, "push/rich", "v1")
    assert manifest["mediaType"] == MEDIA_MANIFEST
    for blob in [manifest["config"], *manifest["layers"]]:
        assert len(registry.get_blob("push/rich", blob["digest"])) == blob["size"]


def test_round_trip_through_docker2aci(
    registry: Registry, rich_aci: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    digest = pushed(
        actool("push", "-insecure-allow-http", str(rich_aci), registry.ref("trip/rich"))
    )
    assert skopeo_inspect(registry, "trip/rich", "latest")["Digest"] == digest
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "appc_tools.docker2aci",
            "--insecure-allow-http",
            "-o",
            str(out),
            registry.ref("trip/rich"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    (aci,) = out.iterdir()
    assert manifest_of(aci) == manifest_of(rich_aci)  # name, labels, app, annotations
    assert tree_of(aci) == tree_of(rich_aci)  # the same files, modes, owners, xattrs


def test_pushing_twice_uploads_nothing(registry: Registry, rich_aci: pathlib.Path) -> None:
    ref = registry.ref("twice/rich")
    first = pushed(actool("push", "--insecure-allow-http", str(rich_aci), ref))
    mark = registry.log_size()
    second = pushed(actool("push", "--insecure-allow-http", "--debug", str(rich_aci), ref))
    assert second == first
    requests_seen = log_requests(registry, mark)
    assert not [r for r in requests_seen if "/blobs/uploads/" in r[1]]
    heads = [r for r in requests_seen if r[0] == "HEAD"]
    assert len(heads) == 2 and all(status == 200 for _, _, status in heads)  # layer, config


def test_mount_from_another_repository(registry: Registry, rich_aci: pathlib.Path) -> None:
    pushed(actool("push", "--insecure-allow-http", str(rich_aci), registry.ref("mount/source")))
    mark = registry.log_size()
    proc = actool(
        "push",
        "--insecure-allow-http",
        "--debug",
        "--mount-from=mount/absent",  # tried first: the registry starts an upload, cancelled
        "--mount-from",
        "mount/source",
        str(rich_aci),
        registry.ref("mount/target"),
    )
    pushed(proc)
    assert proc.stderr.count("mounted ") == 2
    uploads = [r for r in log_requests(registry, mark) if "/blobs/uploads/" in r[1]]
    mounted = [r for r in uploads if "from=mount%2Fsource" in r[1] or "from=mount/source" in r[1]]
    assert [status for _, _, status in mounted] == [201, 201]
    assert not [r for r in uploads if r[0] in ("PUT", "PATCH")]  # no data sent
    cancelled = [r for r in uploads if r[0] == "DELETE"]
    assert len(cancelled) == 2
    assert tags(registry, "mount/target") == ["latest"]
    assert (
        skopeo_inspect(registry, "mount/target", "latest")["Digest"]
        == skopeo_inspect(registry, "mount/source", "latest")["Digest"]
    )


def test_chunked_upload(registry: Registry, tmp_path: pathlib.Path) -> None:
    aci = big_aci(tmp_path, 600 * 1024)
    image = oci_image_from_aci(aci, str(tmp_path))
    layer = image.layers[0]
    assert layer.size > 5 * 100 * 1024
    mark = registry.log_size()
    lines: list[str] = []
    digest = push_images(
        [image],
        parse_reference(registry.ref("chunks/big")),
        options=RegistryOptions(insecure_allow_http=True),
        chunk_size=100 * 1024,
        log=lines.append,
    )
    assert digest == image.manifest.digest
    patches = [r for r in log_requests(registry, mark) if r[0] == "PATCH"]
    assert len(patches) == -(-layer.size // (100 * 1024))
    assert all(status == 202 for _, _, status in patches)
    assert layer.path is not None
    data = registry.get_blob("chunks/big", layer.digest)  # checked against its digest
    assert data == pathlib.Path(layer.path).read_bytes()
    assert skopeo_inspect(registry, "chunks/big", "latest")["Layers"] == [layer.digest]


def test_tls_registry_with_basic_auth(tls_registry: Registry, rich_aci: pathlib.Path) -> None:
    reg = tls_registry
    ca = f"--ca-file={reg.ca_file}"
    creds = f"--creds={reg.username}:{reg.password}"
    digest = pushed(actool("push", ca, creds, str(rich_aci), reg.ref("tls/rich", "ca")))
    assert skopeo_inspect(reg, "tls/rich", "ca")["Digest"] == digest
    pushed(
        actool(
            "push",
            "--insecure-skip-verify",
            f"--username={reg.username}",
            f"--password={reg.password}",
            str(rich_aci),
            reg.ref("tls/rich", "skip"),
        )
    )
    # credentials from ~/.docker/config.json, as docker2aci reads them
    home = pathlib.Path(os.environ["HOME"])
    reg.write_docker_config(home)
    pushed(actool("push", ca, str(rich_aci), reg.ref("tls/rich", "config")))
    (home / ".docker" / "config.json").unlink()
    assert tags(reg, "tls/rich") == ["ca", "config", "skip"]
    for tag in ("skip", "config"):
        assert skopeo_inspect(reg, "tls/rich", tag)["Digest"] == digest
    # refused: no CA, no credentials, wrong credentials
    failed(actool("push", creds, str(rich_aci), reg.ref("tls/rich", "no-ca")), "TLS error")
    failed(
        actool("push", ca, str(rich_aci), reg.ref("tls/rich", "anonymous")),
        "authentication required",
    )
    failed(
        actool("push", ca, "--creds=appc:wrong", str(rich_aci), reg.ref("tls/rich", "wrong")),
        "refused the credentials",
    )
    failed(
        actool("push", ca, str(rich_aci), f"docker://{reg.host}/tls/never:latest"),
        "pushing blob sha256:",
        "unauthorized",
    )
    assert tags(reg, "tls/rich") == ["ca", "config", "skip"]
    assert tags(reg, "tls/never") == []


def test_token_registry(token_registry: Registry, rich_aci: pathlib.Path) -> None:
    reg = token_registry
    assert reg.token_server is not None
    digest = pushed(actool("push", "--insecure-allow-http", str(rich_aci), reg.ref("token/rich")))
    creds = f"--creds={reg.username}:{reg.password}"
    with reg.token_server.settings(require_basic=True):
        assert (
            pushed(
                actool(
                    "push",
                    "--insecure-allow-http",
                    creds,
                    str(rich_aci),
                    reg.ref("token/rich", "v2"),
                )
            )
            == digest
        )
        failed(
            actool(
                "push",
                "--insecure-allow-http",
                "--creds=appc:wrong",
                str(rich_aci),
                reg.ref("token/rich", "wrong"),
            ),
            "unable to retrieve auth token",
        )
    # a token without push (the server grants pull only): refused, nothing tagged
    with reg.token_server.settings(grant=lambda user, kind, name, actions: ["pull"]):
        failed(
            actool("push", "--insecure-allow-http", str(rich_aci), reg.ref("token/readonly")),
            "unauthorized",
        )
    assert tags(reg, "token/rich") == ["latest", "v2"]
    assert tags(reg, "token/readonly") == []
    assert skopeo_inspect(reg, "token/rich", "v2")["Digest"] == digest


# --- bad input ----------------------------------------------------------------------------


def test_an_invalid_aci_is_not_pushed(registry: Registry, tmp_path: pathlib.Path) -> None:
    bad = write_aci(
        tmp_path / "bad.aci",
        [directory("rootfs"), regular("rootfs/../escape", b"x")],
    )
    mark = registry.log_size()
    failed(
        actool("push", "--insecure-allow-http", str(bad), registry.ref("bad/aci")),
        "unsafe file path",
    )
    failed(
        actool(
            "push", "--insecure-allow-http", str(tmp_path / "missing.aci"), registry.ref("bad/aci")
        ),
        "missing.aci",
    )
    assert log_requests(registry, mark) == []  # the registry was never asked
    assert tags(registry, "bad/aci") == []


def test_an_unreachable_registry(rich_aci: pathlib.Path) -> None:
    port = free_port()  # nothing listens there
    line = failed(
        actool("push", "--insecure-allow-http", str(rich_aci), f"docker://127.0.0.1:{port}/x:y"),
        f"cannot reach registry 127.0.0.1:{port}",
    )
    assert "refused" in line
    line = failed(actool("push", str(rich_aci), f"docker://127.0.0.1:{port}/x:y"))
    assert "--insecure-allow-http" in line  # the hint for a plain-HTTP registry


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Upper/Case", "repository name must be lowercase"),
        ("a..b", "invalid reference format"),
        ("-leading", "invalid reference format"),
        ("ok:bad:tag", "invalid reference format"),
        ("x" * 300, "must not be more than 255 characters"),
    ],
)
def test_invalid_repository_names(
    registry: Registry, rich_aci: pathlib.Path, name: str, message: str
) -> None:
    mark = registry.log_size()
    failed(
        actool("push", "--insecure-allow-http", str(rich_aci), f"docker://{registry.host}/{name}"),
        message,
    )
    assert log_requests(registry, mark) == []


def test_a_digest_reference_is_refused(registry: Registry, rich_aci: pathlib.Path) -> None:
    ref = registry.ref("digest/rich", "sha256:" + "a" * 64)
    failed(actool("push", "--insecure-allow-http", str(rich_aci), ref), "push to a tag")


def test_usage_errors(rich_aci: pathlib.Path) -> None:
    assert actool("push", str(rich_aci)).returncode == 2
    assert actool("push", str(rich_aci), "127.0.0.1:5000/x:y").returncode == 2
    proc = actool("push", "--username=u", str(rich_aci), "docker://127.0.0.1:1/x")
    assert proc.returncode == 2 and "go together" in proc.stderr


def _blob_upload(method: str, path: str) -> bool:
    return method in ("PUT", "PATCH") and "/blobs/uploads/" in path


def _manifest_put(method: str, path: str) -> bool:
    return method == "PUT" and "/manifests/" in path


@pytest.mark.parametrize(
    ("status", "refuse", "message"),
    [
        (403, _blob_upload, "HTTP 403 forbidden (DENIED: refused by the test (403))"),
        (413, _blob_upload, "HTTP 413 too large (SIZE_INVALID: refused by the test (413))"),
        (413, _manifest_put, "pushing the manifest latest: HTTP 413 too large"),
        (403, lambda method, path: method == "POST", "HTTP 403 forbidden"),
    ],
    ids=["403-blob", "413-blob", "413-manifest", "403-start"],
)
def test_a_refused_push_leaves_no_tag(
    registry: Registry,
    rich_aci: pathlib.Path,
    status: int,
    refuse: Callable[[str, str], bool],
    message: str,
) -> None:
    repo = f"refused/s{status}-{refuse.__name__.strip('_<>')}"
    with RefusingProxy(registry, status, refuse) as proxy:
        start = time.monotonic()
        line = failed(
            actool("push", "--insecure-allow-http", str(rich_aci), f"docker://{proxy.host}/{repo}"),
            message,
        )
        assert time.monotonic() - start < 20  # refused at once, not retried
        assert proxy.refused
    assert "_state=" not in line  # upload URLs are shown without their opaque state
    assert tags(registry, repo) == []
    # the same push straight to the registry works
    digest = pushed(actool("push", "--insecure-allow-http", str(rich_aci), registry.ref(repo)))
    assert tags(registry, repo) == ["latest"]
    assert skopeo_inspect(registry, repo, "latest")["Digest"] == digest


def test_library_push_errors(
    registry: Registry, rich_aci: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    image = oci_image_from_aci(rich_aci, str(tmp_path))
    options = RegistryOptions(insecure_allow_http=True)
    with pytest.raises(FetchError, match="nothing to push"):
        push_images([], parse_reference(registry.ref("lib/x")), options=options)
    with pytest.raises(FetchError, match="a digest") as info:
        push_images(
            [image], parse_reference(registry.ref("lib/x", "sha256:" + "b" * 64)), options=options
        )
    assert info.value.status is None
    with (
        RefusingProxy(registry, 413, _blob_upload) as proxy,
        pytest.raises(FetchError) as refused,
    ):
        push_images([image], parse_reference(f"docker://{proxy.host}/lib/x"), options=options)
    assert refused.value.status == 413
    assert refused.value.url.startswith(f"http://{proxy.host}/v2/lib/x/blobs/uploads/")


# --- multi-arch, containerd --------------------------------------------------------------


def test_multi_arch_push_makes_an_index_containerd_resolves_to_amd64(
    registry: Registry,
    containerd: Containerd,
    tmp_path: pathlib.Path,
) -> None:
    amd64, arm64 = busybox_aci(tmp_path, "amd64"), busybox_aci(tmp_path, "aarch64")
    digest = pushed(
        actool(
            "push", "--insecure-allow-http", str(amd64), str(arm64), registry.ref("multi/busybox")
        )
    )
    proc = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", registry.ref("multi/busybox")],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    index = json.loads(proc.stdout)
    assert "sha256:" + hashlib.sha256(proc.stdout.encode()).hexdigest() == digest
    assert index["mediaType"] == MEDIA_INDEX
    platforms = {m["platform"]["architecture"]: m for m in index["manifests"]}
    assert platforms["amd64"]["platform"] == {"os": "linux", "architecture": "amd64"}
    assert platforms["arm64"]["platform"] == {
        "os": "linux",
        "architecture": "arm64",
        "variant": "v8",
    }
    arm = skopeo_inspect(registry, "multi/busybox", "latest", "--override-arch=arm64")
    assert arm["Architecture"] == "arm64" and arm["Labels"]["org.appc.label.arch"] == "aarch64"
    amd_manifest = manifest_json(registry, "multi/busybox", platforms["amd64"]["digest"])
    arm_manifest = manifest_json(registry, "multi/busybox", platforms["arm64"]["digest"])

    ref = registry.ref("multi/busybox", scheme="")
    containerd.ctr("images", "pull", "--plain-http", ref)
    content = containerd.ctr("content", "ls", "--quiet").stdout.split()
    assert digest in content
    assert platforms["amd64"]["digest"] in content
    assert amd_manifest["layers"][0]["digest"] in content
    assert arm_manifest["layers"][0]["digest"] not in content  # amd64 chosen here
    run = containerd.ctr("run", "--rm", ref, "multi-busybox")
    assert run.stdout.strip() == "running on x86_64"
    containerd.ctr("images", "rm", ref)


def test_containerd_runs_the_pushed_hello_image(
    registry: Registry,
    containerd: Containerd,
    hello_aci: pathlib.Path,
    tmp_path: pathlib.Path,
) -> None:
    if not port_is_free(HELLO_PORT):
        pytest.skip(f"port {HELLO_PORT} is taken: the hello app listens on it (host network)")
    digest = pushed(actool("push", "--insecure-allow-http", str(hello_aci), registry.ref("hello")))
    ref = registry.ref("hello", scheme="")
    assert skopeo_inspect(registry, "hello", "latest")["Digest"] == digest
    containerd.ctr("images", "pull", "--plain-http", ref)
    log = tmp_path / "ctr-run.log"
    task = containerd.spawn("run", "--rm", "--net-host", ref, "hello", output=log)
    answer = ""
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and task.poll() is None:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{HELLO_PORT}/", timeout=2) as reply:
                    answer = reply.read().decode().strip()
                break
            time.sleep(0.1)
    finally:
        containerd.ctr("tasks", "kill", "--signal", "SIGKILL", "hello", check=False)
        try:
            task.wait(timeout=30)
        except subprocess.TimeoutExpired:
            task.kill()
            task.wait()
    assert answer == "Hello from App Container", log.read_text()
    assert containerd.ctr("containers", "list", "--quiet").stdout.split() == []  # --rm
    containerd.ctr("images", "rm", ref)
