"""A real HTTPS server for the discovery, trust and fetch tests, with a plain-HTTP twin.

Both listen on 127.0.0.1 and serve the same routes (a route may be limited to one
scheme).  The HTTPS one uses a certificate made here with ``openssl`` for
``IP:127.0.0.1`` and ``DNS:localhost``; it is its own CA (``server.ca_file``).  When
ports 443 and 80 are free (we run as root) the servers take them, so names like
``localhost/etcd`` reach them with no port option (``server.on_443``); otherwise they take
free ports and the tests use ``--discovery-port`` / ``--port``.

Routes are exact paths, with or without the query string (``/etcd?ac-discovery=1``
first, then ``/etcd``); anything else is a 404.  A route can be a discovery page
(:meth:`DiscoveryServer.page`, meta tags in any HTML), a file (ETag with
``If-None-Match`` → 304, ``Cache-Control``, an optional delay), a redirect, or a bare
status.  Every request is logged (:attr:`DiscoveryServer.log`).

Test modules load it with ``pytest_plugins`` (one session-wide instance) and import its
helpers too, so pytest must not rewrite it: PYTEST_DONT_REWRITE.
"""

from __future__ import annotations

import contextlib
import html
import http.server
import json
import os
import pathlib
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Sequence

import attrs
import pytest

__all__ = [
    "DiscoveryServer",
    "LoggedRequest",
    "Route",
    "discovery_server",
    "env_without_proxies",
    "free_port",
    "image_bytes",
    "make_cert",
    "meta_page",
    "publish",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (nothing listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_cert(directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A self-signed certificate for ``IP:127.0.0.1`` and ``DNS:localhost``: ``(cert, key)``."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-days",
            "30",
            "-sha256",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    key.chmod(0o600)
    return cert, key


def meta_page(tags: Iterable[tuple[str, str]], *, title: str = "discovery") -> bytes:
    """An HTML page with one ``<meta name=... content=...>`` per ``(name, content)``."""
    metas = "\n".join(
        f'    <meta name="{html.escape(name)}" content="{html.escape(content)}">'
        for name, content in tags
    )
    return (
        f"<!DOCTYPE html>\n<html>\n  <head>\n    <title>{title}</title>\n{metas}\n"
        "  </head>\n  <body><p>App Container discovery</p></body>\n</html>\n"
    ).encode()


@attrs.define
class Route:
    """What one path answers."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = attrs.field(factory=dict)
    etag: str | None = None
    scheme: str | None = None  # "https" or "http": served only there (404 elsewhere)
    delay: float = 0.0


@attrs.frozen
class LoggedRequest:
    """A request the server received."""

    scheme: str
    method: str
    path: str  # with the query string
    headers: dict[str, str]

    @property
    def target(self) -> str:
        """``scheme:path``, handy in assertions."""
        return f"{self.scheme}:{self.path}"


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, owner: DiscoveryServer, scheme: str, port: int, context: ssl.SSLContext | None
    ) -> None:
        self.owner = owner
        self.scheme = scheme
        self.context = context
        super().__init__(("127.0.0.1", port), _Handler)

    def get_request(self) -> tuple[socket.socket, object]:
        sock, address = super().get_request()
        if self.context is not None:
            # The handshake happens in the handler's thread, not in the accept loop.
            sock = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that fail the TLS handshake or hang up are part of the tests: stay quiet."""


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: object) -> None:
        """No access log on stderr (the requests are in ``owner.log``)."""

    def do_GET(self) -> None:
        owner = self.server.owner
        owner._record(
            LoggedRequest(
                self.server.scheme,
                "GET",
                self.path,
                {k.lower(): v for k, v in self.headers.items()},
            )
        )
        route = owner._route(self.path, self.server.scheme)
        if route is None:
            self._answer(404, b"not found\n", "text/plain", {})
            return
        if route.delay:
            time.sleep(route.delay)
        headers = dict(route.headers)
        if route.etag is not None:
            headers["ETag"] = route.etag
            if self.headers.get("If-None-Match") == route.etag:
                self._answer(304, b"", None, headers)
                return
        self._answer(route.status, route.body, route.content_type, headers)

    def _answer(
        self, status: int, body: bytes, content_type: str | None, headers: dict[str, str]
    ) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != 304:
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 304:
            with contextlib.suppress(OSError):
                self.wfile.write(body)


class DiscoveryServer:
    """The HTTPS server and its plain-HTTP twin; see the module documentation."""

    def __init__(self, workdir: pathlib.Path) -> None:
        self.ca_file, key = make_cert(workdir / "tls")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, key)
        self._lock = threading.Lock()
        self._routes: dict[str, Route] = {}
        self.log: list[LoggedRequest] = []
        self.https = self._bind("https", 443, context)
        self.http = self._bind("http", 80, None)
        self.https_port = self.https.server_address[1]
        self.http_port = self.http.server_address[1]
        #: True when the servers have ports 443 and 80: names need no port option.
        self.on_443 = self.https_port == 443 and self.http_port == 80
        self._threads = [
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            for s in (self.https, self.http)
        ]
        for thread in self._threads:
            thread.start()

    def _bind(self, scheme: str, port: int, context: ssl.SSLContext | None) -> _Server:
        try:
            return _Server(self, scheme, port, context)
        except OSError:
            return _Server(self, scheme, 0, context)

    def close(self) -> None:
        """Stop both servers."""
        for server in (self.https, self.http):
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    # --- addresses ----------------------------------------------------------------

    @property
    def host(self) -> str:
        """``localhost`` with the HTTPS port when it is not 443."""
        return "localhost" if self.https_port == 443 else f"localhost:{self.https_port}"

    def url(self, path: str, *, scheme: str = "https", host: str = "localhost") -> str:
        """The URL of *path* on one of the servers."""
        port = self.https_port if scheme == "https" else self.http_port
        default = 443 if scheme == "https" else 80
        netloc = host if port == default else f"{host}:{port}"
        return f"{scheme}://{netloc}{path}"

    # --- routes ---------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every route and the request log."""
        with self._lock:
            self._routes.clear()
            self.log.clear()

    def route(self, path: str, route: Route) -> Route:
        """Serve *route* at *path* (with its query string, or without to match any query)."""
        with self._lock:
            self._routes[path] = route
        return route

    def page(
        self,
        path: str,
        tags: Sequence[tuple[str, str]] = (),
        *,
        html_text: str | bytes | None = None,
        status: int = 200,
        scheme: str | None = None,
    ) -> Route:
        """A discovery page for the name path *path* (``/etcd`` → ``/etcd?ac-discovery=1``):
        meta tags ``(name, content)``, or exactly *html_text*."""
        body = html_text.encode() if isinstance(html_text, str) else html_text
        return self.route(
            f"{path}?ac-discovery=1",
            Route(
                status,
                body if body is not None else meta_page(tags),
                "text/html; charset=utf-8",
                scheme=scheme,
            ),
        )

    def file(
        self,
        path: str,
        data: bytes,
        *,
        etag: str | None = None,
        cache_control: str | None = None,
        scheme: str | None = None,
        delay: float = 0.0,
    ) -> Route:
        """Serve *data* at *path* (any query)."""
        headers = {"Cache-Control": cache_control} if cache_control else {}
        return self.route(
            path, Route(200, data, headers=headers, etag=etag, scheme=scheme, delay=delay)
        )

    def redirect(self, path: str, location: str, *, status: int = 302) -> Route:
        """Answer *path* with a redirect to *location*."""
        return self.route(path, Route(status, b"", "text/plain", {"Location": location}))

    def status(self, path: str, status: int) -> Route:
        """Answer *path* with a bare *status* (404, 500 ...)."""
        return self.route(path, Route(status, f"status {status}\n".encode(), "text/plain"))

    def remove(self, path: str) -> None:
        """Stop serving *path* (it answers 404 again)."""
        with self._lock:
            self._routes.pop(path, None)

    def _route(self, path: str, scheme: str) -> Route | None:
        with self._lock:
            route = self._routes.get(path) or self._routes.get(path.split("?", 1)[0])
        if route is None or (route.scheme is not None and route.scheme != scheme):
            return None
        return route

    def _record(self, request: LoggedRequest) -> None:
        with self._lock:
            self.log.append(request)

    def requests(self, scheme: str | None = None) -> list[str]:
        """The paths requested so far (of one scheme, or ``scheme:path`` of both)."""
        with self._lock:
            if scheme is None:
                return [r.target for r in self.log]
            return [r.path for r in self.log if r.scheme == scheme]


@pytest.fixture(scope="session")
def _discovery_server_session(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DiscoveryServer]:
    server = DiscoveryServer(tmp_path_factory.mktemp("discovery-server"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def discovery_server(_discovery_server_session: DiscoveryServer) -> Iterator[DiscoveryServer]:
    """The session's servers, with no routes and an empty log for this test."""
    _discovery_server_session.reset()
    yield _discovery_server_session
    _discovery_server_session.reset()


def image_bytes(
    name: str,
    labels: dict[str, str] | None = None,
    *,
    hello: bytes = b"hello\n",
    compression: str = "gzip",
) -> bytes:
    """A small valid ACI named *name* with *labels* (default: version ``v2.0.0``, linux/amd64)."""
    from tests.aci_fixtures import compress, good_entries, regular, tar_bytes

    chosen = {"version": "v2.0.0", "os": "linux", "arch": "amd64"} if labels is None else labels
    document = {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": name,
        "labels": [{"name": k, "value": v} for k, v in chosen.items()],
        "app": {"exec": ["/bin/hello"], "user": "0", "group": "0"},
    }
    entries = good_entries(json.dumps(document).encode())
    entries.insert(-1, regular("rootfs/hello.txt", hello))
    return compress(tar_bytes(entries), compression)


def publish(
    server: DiscoveryServer,
    name: str,
    aci: bytes,
    signature: bytes | None,
    *,
    version: str = "v2.0.0",
    pubkey: bytes | None = None,
    etag: str | None = None,
    cache_control: str | None = None,
    delay: float = 0.0,
) -> str:
    """Serve an image for discovery of ``localhost/...`` names: the meta tags at the name's
    path (endpoints, and the key when given), the ACI and its signature (none: 404).
    Returns the ACI's URL."""
    path = "/" + name.split("/", 1)[1]
    base = server.url("/images/")
    tags = [("ac-discovery", f"{name} {base}{{name}}-{{version}}-{{os}}-{{arch}}.{{ext}}")]
    if pubkey is not None:
        tags.append(("ac-discovery-pubkeys", f"{name} {server.url('/keys' + path + '.gpg')}"))
        server.file(f"/keys{path}.gpg", pubkey)
    server.page(path, tags)
    image_path = f"/images/{name}-{version}-linux-amd64.aci"
    server.file(image_path, aci, etag=etag, cache_control=cache_control, delay=delay)
    if signature is not None:
        server.file(image_path + ".asc", signature)
    return server.url(image_path)


def env_without_proxies() -> dict[str, str]:
    """The environment without proxy or CA-bundle variables (the tests talk to 127.0.0.1)."""
    drop = {
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
        "requests_ca_bundle",
        "curl_ca_bundle",
        "ssl_cert_file",
    }
    return {k: v for k, v in os.environ.items() if k.lower() not in drop}
