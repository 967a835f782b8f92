"""A real HTTP(S) server on 127.0.0.1 that misbehaves on purpose, for the fault-injection tests.

A :class:`FaultServer` has a plain-HTTP listener and, given a certificate, an HTTPS
twin; both serve the same things:

* **static files** (:meth:`FaultServer.file`), matched by exact path with its query
  string, or without it to match any query (discovery pages, ACIs, signatures, keys);
* anything else is **proxied** to ``upstream`` (a real registry), with the
  ``Location`` of its answers (upload URLs, redirects) rewritten to point back here,
  and — with ``intercept_realm`` — a ``Bearer`` challenge's ``realm`` rewritten to this
  server's ``/token``, which is then proxied to the real token server: so a failing
  token server can be scripted too;
* a path nobody serves is a 404.

**Faults** are scripted per path and per attempt with :meth:`FaultServer.on`: a rule
matches requests by a regular expression on the path (and optionally the method) and
gives the n-th request *of each path* it matches its n-th fault; once its list is used
up the request is served normally (or gets ``then``, for a fault that never ends)::

    server.on(r"/blobs/", status(503, retry_after=1), status(503, retry_after=1))
    server.on(r"\\.aci$", then=reset(0.5))          # every download dies half-way
    server.on(r"^/loop", then=redirect("{https}/loop"))

The faults (module functions): :func:`status` (any status, ``Retry-After``, a body),
:func:`drop` (close before answering), :func:`reset` (announce the whole body, send part
of it, then a TCP reset), :func:`truncate` (the same with a clean close: a wrong
``Content-Length``), :func:`short` (a complete but shortened answer), :func:`corrupt`
(one byte changed) and :func:`replace` (bytes substituted: a wrong digest), :func:`slow`
(wait before answering: client timeouts), :func:`stall` (send part of the body, then
wait), :func:`redirect` (``{http}``, ``{https}`` and ``{path}`` in the location name this
server's plain and TLS bases and the request's path).

Every request is recorded (:attr:`FaultServer.log`, :meth:`FaultServer.count`).
Waits are cut short when the server closes, so a test never hangs on its own fault.

Test modules import it (PYTEST_DONT_REWRITE: pytest must not rewrite it).
"""

from __future__ import annotations

import contextlib
import http.server
import pathlib
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs
import requests

from tests.discovery_server import make_cert

__all__ = [
    "Fault",
    "FaultServer",
    "Hit",
    "Rule",
    "corrupt",
    "drop",
    "fault_server",
    "make_cert",
    "redirect",
    "replace",
    "reset",
    "short",
    "slow",
    "stall",
    "status",
    "truncate",
    "wait_until",
]


@attrs.frozen
class Fault:
    """One misbehaviour; build it with the module functions (``status(503)``, ``reset()``...)."""

    kind: str
    status: int = 200
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes | None = None
    delay: float = 0.0
    fraction: float = 0.5
    location: str = ""
    old: bytes = b""
    new: bytes = b""


def status(
    code: int,
    *,
    retry_after: str | int | None = None,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    content_type: str = "text/plain",
) -> Fault:
    """Answer *code* (with ``Retry-After`` and *body* when given) instead of the real answer."""
    extra = dict(headers or {})
    if retry_after is not None:
        extra["Retry-After"] = str(retry_after)
    extra.setdefault("Content-Type", content_type)
    return Fault("status", code, extra, f"status {code}\n".encode() if body is None else body)


def drop() -> Fault:
    """Close the connection without answering."""
    return Fault("drop")


def reset(fraction: float = 0.5) -> Fault:
    """Announce the whole body, send *fraction* of it, then (50 ms later, once the client
    is reading the body) reset the connection (RST)."""
    return Fault("reset", fraction=fraction)


def truncate(fraction: float = 0.5) -> Fault:
    """Announce the whole body, send *fraction* of it, then close cleanly (wrong Content-Length)."""
    return Fault("truncate", fraction=fraction)


def short(fraction: float = 0.5) -> Fault:
    """A complete answer whose body is only *fraction* of the real one (consistent length)."""
    return Fault("short", fraction=fraction)


def corrupt() -> Fault:
    """Change one byte in the middle of the body."""
    return Fault("corrupt")


def replace(old: bytes, new: bytes) -> Fault:
    """Replace *old* with *new* (the first time) in the body."""
    return Fault("replace", old=old, new=new)


def slow(delay: float) -> Fault:
    """Wait *delay* seconds before answering (then answer normally)."""
    return Fault("slow", delay=delay)


def stall(delay: float, fraction: float = 0.5) -> Fault:
    """Send the headers and *fraction* of the body, wait *delay* seconds, then close."""
    return Fault("stall", delay=delay, fraction=fraction)


def redirect(location: str, code: int = 302) -> Fault:
    """Answer *code* with ``Location: location`` (``{http}``, ``{https}``, ``{path}`` filled in)."""
    return Fault("redirect", code, location=location)


@attrs.define
class Rule:
    """A scripted rule: the faults for the 1st, 2nd ... request of each matching path."""

    pattern: re.Pattern[str]
    faults: tuple[Fault | None, ...]
    then: Fault | None
    methods: frozenset[str] | None
    script: Callable[[str, int], Fault | None] | None = None
    scheme: str | None = None
    attempts: dict[str, int] = attrs.field(factory=dict)

    def matches(self, scheme: str, method: str, path: str) -> bool:
        return (
            (self.scheme is None or scheme == self.scheme)
            and (self.methods is None or method in self.methods)
            and bool(self.pattern.search(path))
        )

    def next_fault(self, path: str) -> Fault | None:
        count = self.attempts.get(path, 0) + 1
        self.attempts[path] = count
        if self.script is not None:
            return self.script(path, count)
        return self.faults[count - 1] if count <= len(self.faults) else self.then

    @property
    def hits(self) -> int:
        """How many requests this rule matched (all paths)."""
        return sum(self.attempts.values())


@attrs.frozen
class Hit:
    """A request the server received and the fault it got (``""``: served normally)."""

    scheme: str
    method: str
    path: str
    fault: str
    time: float


@attrs.frozen
class _Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class _Listener(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, owner: FaultServer, scheme: str, context: ssl.SSLContext | None) -> None:
        self.owner = owner
        self.scheme = scheme
        self.context = context
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self.context is not None:
            sock = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: object, client_address: object) -> None:
        """Broken connections are the point of this server: stay quiet."""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Listener

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet (requests are in ``owner.log``)."""

    def do_GET(self) -> None:
        self.server.owner._handle(self)

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET


class FaultServer:
    """See the module documentation.

    :param cert: ``(certificate, key)`` for the HTTPS listener (none: plain HTTP only).
    :param upstream: a base URL (``http://127.0.0.1:5000``) to proxy unknown paths to.
    :param upstream_verify: ``verify=`` for an HTTPS upstream.
    :param intercept_realm: rewrite ``Bearer realm=...`` challenges to this server's ``/token``.
    """

    def __init__(
        self,
        cert: tuple[pathlib.Path, pathlib.Path] | None = None,
        *,
        upstream: str | None = None,
        upstream_verify: bool | str = True,
        intercept_realm: bool = False,
    ) -> None:
        self.ca_file = str(cert[0]) if cert else None
        self.upstream = upstream.rstrip("/") if upstream else None
        self.upstream_verify = upstream_verify
        self.intercept_realm = intercept_realm
        self.realm: str | None = None  # the real token server's realm, once seen
        self.log: list[Hit] = []
        self.rules: list[Rule] = []
        self.active = 0  # requests being answered now
        self.max_active = 0  # the most answered at once
        self._files: dict[str, tuple[bytes, dict[str, str]]] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._session = threading.local()
        self.http = _Listener(self, "http", None)
        self.https: _Listener | None = None
        if cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert[0], cert[1])
            self.https = _Listener(self, "https", context)
        self._threads = [
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            for s in (self.http, self.https)
            if s is not None
        ]
        for thread in self._threads:
            thread.start()

    # --- life -------------------------------------------------------------------------

    def close(self) -> None:
        """Stop both listeners; faults that wait are cut short."""
        self._closing.set()
        for server in (self.http, self.https):
            if server is not None:
                server.shutdown()
                server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> FaultServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- addresses --------------------------------------------------------------------

    @property
    def http_host(self) -> str:
        return f"127.0.0.1:{self.http.server_address[1]}"

    @property
    def https_host(self) -> str:
        assert self.https is not None, "no HTTPS listener"
        return f"127.0.0.1:{self.https.server_address[1]}"

    @property
    def https_port(self) -> int:
        assert self.https is not None, "no HTTPS listener"
        return int(self.https.server_address[1])

    @property
    def host(self) -> str:
        """The HTTPS host when there is one, else the plain one (``127.0.0.1:PORT``)."""
        return self.https_host if self.https is not None else self.http_host

    def base(self, scheme: str | None = None) -> str:
        """``https://127.0.0.1:PORT`` (or ``http://...``)."""
        scheme = scheme or ("https" if self.https is not None else "http")
        return f"{scheme}://{self.https_host if scheme == 'https' else self.http_host}"

    def url(self, path: str, scheme: str | None = None) -> str:
        return self.base(scheme) + path

    def ref(self, repo: str, tag: str = "latest", *, scheme: str | None = None) -> str:
        """``docker://HOST/repo:tag`` through this server."""
        host = self.http_host if scheme == "http" or self.https is None else self.https_host
        return f"docker://{host}/{repo}:{tag}"

    # --- scripting --------------------------------------------------------------------

    def on(
        self,
        pattern: str,
        *faults: Fault | None,
        then: Fault | None = None,
        method: str | tuple[str, ...] | None = None,
        script: Callable[[str, int], Fault | None] | None = None,
        scheme: str | None = None,
    ) -> Rule:
        """Script the requests whose path (with query) matches the regex *pattern*: the
        n-th request of each such path gets ``faults[n-1]`` (``None``: served normally),
        later ones get *then* — or, with *script*, ``script(path, n)``.  *method* and
        *scheme* (``"https"``, ``"http"``) narrow the rule.  The first matching rule wins."""
        methods = (
            None if method is None else frozenset((method,) if isinstance(method, str) else method)
        )
        rule = Rule(re.compile(pattern), tuple(faults), then, methods, script, scheme)
        with self._lock:
            self.rules.append(rule)
        return rule

    def file(
        self,
        path: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """Serve *data* at *path* (with its query string, or without to match any query);
        returns its HTTPS (or plain) URL."""
        with self._lock:
            self._files[path] = (data, {"Content-Type": content_type, **(headers or {})})
        return self.url(path)

    def clear_rules(self) -> None:
        """Forget every rule (files and the log stay)."""
        with self._lock:
            self.rules.clear()

    def reset_script(self) -> None:
        """Forget every rule, file and logged request."""
        with self._lock:
            self.rules.clear()
            self._files.clear()
            self.log.clear()

    def count(
        self, pattern: str = "", *, method: str | None = None, scheme: str | None = None
    ) -> int:
        """How many requests matched the regex *pattern* (and *method*, *scheme*)."""
        regex = re.compile(pattern)
        with self._lock:
            return sum(
                1
                for hit in self.log
                if regex.search(hit.path)
                and (method is None or hit.method == method)
                and (scheme is None or hit.scheme == scheme)
            )

    def hits(self, pattern: str = "") -> list[Hit]:
        regex = re.compile(pattern)
        with self._lock:
            return [hit for hit in self.log if regex.search(hit.path)]

    # --- serving ----------------------------------------------------------------------

    def _fault_for(self, scheme: str, method: str, path: str) -> Fault | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(scheme, method, path):
                    return rule.next_fault(path)
        return None

    def _wait(self, seconds: float) -> None:
        self._closing.wait(seconds)

    def _handle(self, handler: _Handler) -> None:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            self._answer(handler)
        finally:
            with self._lock:
                self.active -= 1

    def _answer(self, handler: _Handler) -> None:
        method, path = handler.command, handler.path
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        fault = self._fault_for(handler.server.scheme, method, path)
        with self._lock:
            self.log.append(
                Hit(
                    handler.server.scheme,
                    method,
                    path,
                    fault.kind if fault else "",
                    time.monotonic(),
                )
            )
        if fault is not None and fault.kind == "drop":
            self._abort(handler, rst=False)
            return
        if fault is not None and fault.kind == "status":
            self._send(handler, _Answer(fault.status, dict(fault.headers), fault.body or b""))
            return
        if fault is not None and fault.kind == "redirect":
            location = fault.location.format(
                http=self.base("http"),
                https=self.base("https") if self.https is not None else self.base("http"),
                path=path,
            )
            self._send(handler, _Answer(fault.status, {"Location": location}, b""))
            return
        if fault is not None and fault.kind == "slow":
            self._wait(fault.delay)
        answer = self._normal(handler, method, path, body)
        data = answer.body
        if fault is not None and fault.kind == "corrupt" and data:
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]
        if fault is not None and fault.kind == "replace":
            data = data.replace(fault.old, fault.new, 1)
        if fault is not None and fault.kind == "short":
            data = data[: int(len(data) * fault.fraction)]
        if fault is not None and fault.kind in ("reset", "truncate", "stall"):
            self._send_head(handler, answer.status, answer.headers, len(data))
            if method != "HEAD":
                with contextlib.suppress(OSError):
                    handler.wfile.write(data[: int(len(data) * fault.fraction)])
                    handler.wfile.flush()
            if fault.kind == "stall":
                self._wait(fault.delay)
            if fault.kind == "reset":
                self._wait(0.05)  # let the client read the headers: the reset comes mid-body
            self._abort(handler, rst=fault.kind == "reset")
            return
        self._send(handler, _Answer(answer.status, answer.headers, data))

    def _normal(self, handler: _Handler, method: str, path: str, body: bytes) -> _Answer:
        with self._lock:
            found = self._files.get(path) or self._files.get(path.split("?", 1)[0])
        if found is not None:
            return _Answer(200, dict(found[1]), found[0])
        if path.startswith("/token") and self.realm is not None:
            query = path.partition("?")[2]
            target = (
                self.realm + ("&" if "?" in self.realm else "?") + query if query else self.realm
            )
            return self._proxy(handler, method, target, body)
        if self.upstream is not None:
            return self._proxy(handler, method, self.upstream + path, body)
        return _Answer(404, {"Content-Type": "text/plain"}, b"not found\n")

    def _proxy(self, handler: _Handler, method: str, url: str, body: bytes) -> _Answer:
        session: requests.Session | None = getattr(self._session, "value", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False
            self._session.value = session
        wanted = ("accept", "authorization", "content-type", "content-range", "range")
        headers = {k: v for k, v in handler.headers.items() if k.lower() in wanted}
        try:
            upstream = session.request(
                method,
                url,
                headers=headers,
                data=body if body or method in ("PUT", "POST", "PATCH") else None,
                allow_redirects=False,
                verify=self.upstream_verify,
                timeout=30,
            )
        except requests.RequestException as err:
            return _Answer(502, {"Content-Type": "text/plain"}, f"upstream: {err}\n".encode())
        keep = (
            "content-type",
            "docker-content-digest",
            "docker-distribution-api-version",
            "docker-upload-uuid",
            "range",
            "location",
            "www-authenticate",
            "etag",
            "cache-control",
        )
        out = {k: v for k, v in upstream.headers.items() if k.lower() in keep}
        base = self.base(handler.server.scheme)
        for name in list(out):
            if name.lower() == "location" and self.upstream and out[name].startswith(self.upstream):
                out[name] = base + out[name][len(self.upstream) :]
            if name.lower() == "www-authenticate" and self.intercept_realm:
                match = re.search(r'realm="([^"]*)"', out[name])
                if match:
                    self.realm = match.group(1)
                    out[name] = out[name].replace(match.group(0), f'realm="{base}/token"')
        return _Answer(upstream.status_code, out, upstream.content)

    @staticmethod
    def _send_head(handler: _Handler, code: int, headers: Mapping[str, str], length: int) -> None:
        handler.send_response(code)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(length))
        handler.end_headers()

    def _send(self, handler: _Handler, answer: _Answer) -> None:
        with contextlib.suppress(OSError):
            self._send_head(handler, answer.status, answer.headers, len(answer.body))
            if handler.command != "HEAD":
                handler.wfile.write(answer.body)
            handler.wfile.flush()

    @staticmethod
    def _abort(handler: _Handler, *, rst: bool) -> None:
        """End the connection now: a TCP reset (*rst*) or a clean close."""
        handler.close_connection = True
        sock = handler.connection
        with contextlib.suppress(OSError):
            if rst:  # closing with a zero linger time sends RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                sock.shutdown(socket.SHUT_RDWR)
        # The socket closes only once its file objects are closed too.
        for stream in (handler.wfile, handler.rfile, sock):
            with contextlib.suppress(Exception):
                stream.close()


@contextlib.contextmanager
def fault_server(
    cert: tuple[pathlib.Path, pathlib.Path] | None = None, **options: Any
) -> Iterator[FaultServer]:
    """A :class:`FaultServer`, closed at the end of the block."""
    server = FaultServer(cert, **options)
    try:
        yield server
    finally:
        server.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll *predicate* every 20 ms until it is true or *timeout* passes; return its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
