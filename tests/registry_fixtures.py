"""Real Docker registries for tests (a pytest plugin, listed in ``tests/conftest.py``).

Fixtures (session scope: share them, and use a repository name of your own per test):

* ``registry`` — plain HTTP registry v2 (Debian ``docker-registry``, distribution 2.8), delete
  enabled, schema1 accepted.
* ``tls_registry`` — HTTPS with a certificate made here (``.ca_file``, ``.cert_dir``) and
  htpasswd basic auth (``.username``/``.password``).
* ``token_server`` / ``token_registry`` — a token server written here (RS256 JWTs, ``x5c``
  header) and a plain HTTP registry trusting it; ``token_registry.token_server`` is the server,
  ``.username``/``.password`` its credentials.
* ``registry_factory`` — ``factory(tls=..., users=..., token_server=..., schema1=...)`` starts
  another registry, stopped at the end of the session.

Every registry is a :class:`Registry` with ``.url`` (``http://127.0.0.1:PORT``), ``.host``
(``127.0.0.1:PORT``), ``request()`` (which does basic or token auth), ``get_manifest()``,
``get_blob()``, ``ref()``, ``write_docker_config()`` and ``log_text()``.

Helpers: :func:`push`, :func:`push_list` (plain ``requests`` on the registry API) and
:func:`skopeo_copy` (skopeo as an independent client).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import json
import os
import pathlib
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Any, Literal

import attrs
import pytest
import requests

from tests.docker_images import (
    ListFormat,
    ManifestFormat,
    MultiArchImage,
    RsaKey,
    TestImage,
    b64url,
    sha256_digest,
)

__all__ = [
    "Registry",
    "RegistryError",
    "TokenRequest",
    "TokenServer",
    "free_port",
    "make_tls_cert",
    "push",
    "push_list",
    "registry",
    "registry_factory",
    "running_registry",
    "skopeo_copy",
    "tls_registry",
    "token_registry",
    "token_server",
    "upload_blob",
    "put_manifest",
]

REGISTRY_BIN = "docker-registry"
START_TIMEOUT = 20.0
TOKEN_SERVICE = "appc-test-registry"
TOKEN_ISSUER = "appc-test-token-issuer"
DEFAULT_USERS = {"appc": "appc-secret"}


class RegistryError(AssertionError):
    """A registry or token server answered something unexpected (status, body and URL are in
    the message)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(*argv: str | os.PathLike[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([os.fspath(a) for a in argv], check=True, capture_output=True,
                          text=True, timeout=60, **kw)


def make_tls_cert(directory: pathlib.Path, *, key_pem: bytes | None = None,
                  cn: str = "localhost") -> tuple[pathlib.Path, pathlib.Path]:
    """A self-signed certificate for ``IP:127.0.0.1`` and ``DNS:localhost`` made with openssl
    (a new 2048-bit key unless ``key_pem`` is given); returns ``(cert.pem, key.pem)``.  The
    certificate is its own CA: pass it as ``verify=`` / ``SSL_CERT_FILE``."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    argv = ["openssl", "req", "-x509", "-days", "30", "-sha256", "-subj", f"/CN={cn}",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-out", str(cert)]
    if key_pem is None:
        argv += ["-newkey", "rsa:2048", "-nodes", "-keyout", str(key)]
    else:
        key.write_bytes(key_pem)
        argv += ["-key", str(key)]
    _run(*argv)
    key.chmod(0o600)
    return cert, key


def _pem_to_der(pem: bytes) -> bytes:
    body = b"".join(line for line in pem.splitlines() if line and not line.startswith(b"-----"))
    return base64.b64decode(body)


# --------------------------------------------------------------------------- token server


@attrs.frozen
class TokenRequest:
    """One request the token server answered: what was asked and by whom."""

    method: str
    service: str | None
    scopes: tuple[str, ...]
    account: str | None
    user: str | None
    status: int


@attrs.define
class TokenSettings:
    """What the token server does; change with :meth:`TokenServer.settings`."""

    require_basic: bool = False
    """Answer 401 unless valid basic credentials come with the token request (wrong
    credentials are refused even when this is off)."""
    token_fields: tuple[str, ...] = ("token", "access_token")
    """JSON fields that carry the JWT: real servers send ``token``, ``access_token`` or both."""
    expires_in: int = 300
    grant: Callable[[str | None, str, str, list[str]], list[str]] | None = None
    """``grant(user, type, name, actions) -> granted actions``; None grants everything asked."""


class TokenServer:
    """A Docker token-auth server (``auth.token`` realm) on 127.0.0.1 in a thread.

    ``GET /token?service=S&scope=repository:NAME:pull,push`` answers
    ``{"token", "access_token", "expires_in", "issued_at"}`` with an RS256 JWT whose header
    carries the signing certificate in ``x5c`` and whose claims are ``iss``, ``aud`` (=
    service), ``sub`` (user or ""), ``exp``/``nbf``/``iat``, ``jti`` and ``access`` built from
    the scopes.  Every request is recorded in ``requests``.
    """

    def __init__(self, workdir: pathlib.Path, *, users: Mapping[str, str] = DEFAULT_USERS,
                 issuer: str = TOKEN_ISSUER, service: str = TOKEN_SERVICE) -> None:
        self.key = RsaKey.generate()
        self.cert_path, _ = make_tls_cert(workdir, key_pem=self.key.private_pem(), cn=issuer)
        self.cert_der = _pem_to_der(self.cert_path.read_bytes())
        self.issuer, self.service = issuer, service
        self.users = dict(users)
        self.config = TokenSettings()
        self.requests: list[TokenRequest] = []
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                       functools.partial(_TokenHandler, self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="token-server")

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        """The realm: ``http://127.0.0.1:PORT/token``."""
        return f"http://{self.host}/token"

    @property
    def username(self) -> str:
        return next(iter(self.users))

    @property
    def password(self) -> str:
        return self.users[self.username]

    def start(self) -> TokenServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextlib.contextmanager
    def settings(self, **changes: Any) -> Iterator[TokenSettings]:
        """Change :class:`TokenSettings` fields for the ``with`` block, then restore them."""
        saved = self.config
        self.config = attrs.evolve(saved, **changes)
        try:
            yield self.config
        finally:
            self.config = saved

    def issue(self, scopes: Sequence[str], *, user: str | None = None,
              service: str | None = None, lifetime: int | None = None) -> str:
        """A signed JWT granting ``scopes`` (``type:name:actions`` strings)."""
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256",
                  "x5c": [base64.b64encode(self.cert_der).decode()]}
        claims = {
            "iss": self.issuer, "sub": user or "", "aud": service or self.service,
            "exp": now + (lifetime or self.config.expires_in), "nbf": now - 10, "iat": now,
            "jti": secrets.token_hex(16), "access": self._access(user, scopes),
        }
        signing_input = (b64url(json.dumps(header).encode()) + "."
                         + b64url(json.dumps(claims).encode()))
        return signing_input + "." + b64url(self.key.sign(signing_input.encode()))

    def _access(self, user: str | None, scopes: Sequence[str]) -> list[dict[str, Any]]:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if not kind or not name:
                continue
            wanted = [a for a in actions.split(",") if a]
            grant = self.config.grant
            granted = grant(user, kind, name, wanted) if grant else wanted
            access.append({"type": kind, "name": name, "actions": granted})
        return access


class _TokenHandler(http.server.BaseHTTPRequestHandler):
    """``GET /token``: check basic credentials, issue a JWT for the requested scopes."""

    server_version = "appc-test-token-server"

    def __init__(self, owner: TokenServer, *args: Any) -> None:
        self.owner = owner
        super().__init__(*args)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: requests are recorded in ``TokenServer.requests`` instead."""

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/token":
            self._send(404, {"errors": [{"code": "NOT_FOUND"}]})
            return
        query = urllib.parse.parse_qs(url.query)
        scopes = tuple(s for value in query.get("scope", []) for s in value.split())
        service, account = (query.get(key, [None])[0] for key in ("service", "account"))
        user, status = self._authenticate()
        self.owner.requests.append(TokenRequest("GET", service, scopes, account, user, status))
        if status != 200:
            self._send(status, {"errors": [{"code": "UNAUTHORIZED"}]},
                       {"WWW-Authenticate": 'Basic realm="appc-test-token"'})
            return
        token = self.owner.issue(scopes, user=user, service=service)
        body: dict[str, Any] = {field: token for field in self.owner.config.token_fields}
        body["expires_in"] = self.owner.config.expires_in
        body["issued_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._send(200, body)

    def _authenticate(self) -> tuple[str | None, int]:
        header = self.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return None, 401 if self.owner.config.require_basic else 200
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None, 401
        if self.owner.users.get(user) != password:
            return None, 401
        return user, 200

    def _send(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


# --------------------------------------------------------------------------- registry

_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="r",service="s",scope="x:y:pull,push"`` → ``("bearer", {...})``.

    >>> parse_challenge('Bearer realm="http://a/token",service="s",scope="repository:x:pull,push"')
    ('bearer', {'realm': 'http://a/token', 'service': 's', 'scope': 'repository:x:pull,push'})
    """
    scheme, _, params = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(params))


@attrs.define(eq=False)
class Registry:
    """A running ``docker-registry`` and a client for it.

    ``username``/``password`` are the credentials it wants (htpasswd for basic auth, the
    token server's for token auth), None when open.  ``ca_file``/``cert_dir`` are set for
    HTTPS (``cert_dir`` holds ``ca.crt`` for skopeo's ``--*-cert-dir``).
    """

    host: str
    scheme: Literal["http", "https"]
    workdir: pathlib.Path
    log_path: pathlib.Path
    process: subprocess.Popen[bytes] = attrs.field(repr=False)
    ca_file: pathlib.Path | None = None
    username: str | None = None
    password: str | None = None
    token_server: TokenServer | None = None
    _session: requests.Session = attrs.field(factory=requests.Session, repr=False)
    _tokens: dict[str, str] = attrs.field(factory=dict, repr=False)

    def __attrs_post_init__(self) -> None:
        self._session.verify = str(self.ca_file) if self.ca_file else True
        self._session.trust_env = False  # no proxies from the environment for 127.0.0.1

    @property
    def url(self) -> str:
        """``http(s)://127.0.0.1:PORT``."""
        return f"{self.scheme}://{self.host}"

    @property
    def storage(self) -> pathlib.Path:
        return self.workdir / "storage"

    @property
    def cert_dir(self) -> pathlib.Path | None:
        return self.workdir / "certs.d" if self.ca_file else None

    @property
    def auth_kind(self) -> Literal["none", "basic", "token"]:
        if self.token_server is not None:
            return "token"
        return "basic" if self.username else "none"

    def ref(self, repo: str, tag_or_digest: str = "latest", scheme: str = "docker://") -> str:
        """``docker://127.0.0.1:PORT/repo:tag`` (or ``@sha256:…``) — pass ``scheme=""`` for a
        bare reference."""
        sep = "@" if tag_or_digest.startswith("sha256:") else ":"
        return f"{scheme}{self.host}/{repo}{sep}{tag_or_digest}"

    def log_text(self, since: int = 0) -> str:
        """The registry's log (from byte offset ``since``: note ``log_size()`` before an
        action to see only its lines)."""
        with open(self.log_path, "rb") as log:
            log.seek(since)
            return log.read().decode(errors="replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def write_docker_config(self, home: os.PathLike[str] | str) -> pathlib.Path:
        """Add this registry's credentials to ``HOME/.docker/config.json`` as
        ``auths[host].auth`` (base64 ``user:password``), the only field docker2aci reads."""
        path = pathlib.Path(home) / ".docker" / "config.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        config = json.loads(path.read_text()) if path.exists() else {}
        auth = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        config.setdefault("auths", {})[self.host] = {"auth": auth}
        path.write_text(json.dumps(config, indent=2))
        return path

    # -- client
    def token(self, scope: str, *, credentials: bool = True) -> str:
        """Fetch a token for ``scope`` from this registry's token server (with basic
        credentials unless ``credentials=False``)."""
        assert self.token_server is not None, "not a token-auth registry"
        auth = (self.username, self.password) if credentials and self.username else None
        resp = self._session.get(self.token_server.url, auth=auth,  # type: ignore[arg-type]
                                 params={"service": self.token_server.service, "scope": scope})
        _expect(resp, 200)
        body = resp.json()
        return str(body.get("token") or body["access_token"])

    def authorize(self, repo: str, actions: str = "pull,push") -> None:
        """Get and keep a token for ``repo`` up front (token registries; no-op otherwise)."""
        if self.token_server is not None:
            self._tokens[repo] = self.token(f"repository:{repo}:{actions}")

    def request(self, method: str, path: str, *, repo: str | None = None, auth: bool = True,
                headers: Mapping[str, str] | None = None, **kw: Any) -> requests.Response:
        """Send ``method path`` (a path under :attr:`url`, or a full URL) with this registry's
        credentials: basic auth, or a bearer token (kept per ``repo``, fetched on a 401
        challenge and the request sent again)."""
        url = path if "://" in path else self.url + path
        hdrs = dict(headers or {})
        kind = self.auth_kind if auth else "none"
        if kind == "basic":
            kw.setdefault("auth", (self.username, self.password))
        if kind == "token" and repo in self._tokens:
            hdrs["Authorization"] = f"Bearer {self._tokens[repo]}"
        resp = self._session.request(method, url, headers=hdrs, **kw)
        challenge = resp.headers.get("WWW-Authenticate", "")
        if kind != "token" or resp.status_code != 401 or not challenge.lower().startswith("bearer"):
            return resp
        scope = parse_challenge(challenge)[1].get("scope")
        if scope is None:
            return resp
        resp.close()
        token = self.token(scope)
        if repo is not None:
            self._tokens[repo] = token
        hdrs["Authorization"] = f"Bearer {token}"
        data = kw.get("data")
        if data is not None and hasattr(data, "seek"):
            data.seek(0)  # a streamed body is sent again from its start
        return self._session.request(method, url, headers=hdrs, **kw)

    def get_manifest(self, repo: str, ref: str, accept: str | Sequence[str] | None = None,
                     ) -> requests.Response:
        """``GET /v2/<repo>/manifests/<ref>`` with ``Accept`` (one value or several; default:
        the four image-manifest types docker2aci sends, no lists)."""
        if accept is None:
            accept = DOCKER2ACI_ACCEPT
        accept = [accept] if isinstance(accept, str) else list(accept)
        return self.request("GET", f"/v2/{repo}/manifests/{ref}", repo=repo,
                            headers={"Accept": ", ".join(accept)})

    def get_blob(self, repo: str, digest: str, *, verify: bool = True) -> bytes:
        """The blob's bytes; with ``verify`` its sha256 must equal ``digest``."""
        resp = self.request("GET", f"/v2/{repo}/blobs/{digest}", repo=repo)
        _expect(resp, 200)
        if verify and sha256_digest(resp.content) != digest:
            raise RegistryError(f"blob {digest} of {repo} has digest {sha256_digest(resp.content)}")
        return resp.content

    def close(self) -> None:
        """Stop the process (terminate, then kill after 10 s) and close the client session."""
        self._session.close()
        _stop(self.process)


DOCKER2ACI_ACCEPT = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)
"""The manifest types docker2aci accepts (never a list or an index)."""


def _die_with_parent(argv: list[str]) -> list[str]:
    """Prefix ``argv`` with ``setpriv --pdeathsig TERM`` (util-linux) so that the server gets
    SIGTERM when the test process dies, even by SIGKILL: a killed test run leaves no registry
    behind.  (No ``preexec_fn``: it is unsafe with the token server's threads.)"""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else argv


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _expect(resp: requests.Response, *statuses: int) -> requests.Response:
    if resp.status_code not in statuses:
        raise RegistryError(f"{resp.request.method} {resp.url}: HTTP {resp.status_code} "
                            f"(wanted {statuses}): {resp.text[:2000]}")
    return resp


def _registry_config(workdir: pathlib.Path, port: int, *, tls: tuple[pathlib.Path, pathlib.Path]
                     | None, htpasswd: pathlib.Path | None, token_server: TokenServer | None,
                     schema1: bool) -> dict[str, Any]:
    http_cfg: dict[str, Any] = {"addr": f"127.0.0.1:{port}", "secret": "appc-test-secret",
                                "headers": {"X-Content-Type-Options": ["nosniff"]}}
    if tls:
        http_cfg["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "storage")},
                    "delete": {"enabled": True},
                    "maintenance": {"uploadpurging": {"enabled": False}}},
        "http": http_cfg,
        "health": {"storagedriver": {"enabled": False}},
        "compatibility": {"schema1": {"enabled": schema1}},
    }
    if htpasswd:
        config["auth"] = {"htpasswd": {"realm": "appc-test-registry", "path": str(htpasswd)}}
    if token_server:
        config["auth"] = {"token": {"realm": token_server.url, "service": token_server.service,
                                    "issuer": token_server.issuer,
                                    "rootcertbundle": str(token_server.cert_path),
                                    "autoredirect": False}}
    return config


def _write_htpasswd(path: pathlib.Path, users: Mapping[str, str]) -> pathlib.Path:
    """bcrypt entries via ``htpasswd -Bbn`` (the registry accepts only bcrypt)."""
    lines = [_run("htpasswd", "-Bbn", user, password).stdout.strip()
             for user, password in users.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log_path: pathlib.Path,
                   verify: str | bool) -> None:
    """Poll ``GET /v2/`` until it answers 200 or 401 with the distribution API header."""
    deadline = time.monotonic() + START_TIMEOUT
    delay = 0.01
    with requests.Session() as session:
        session.trust_env = False
        while True:
            if process.poll() is not None:
                raise RegistryError(f"docker-registry exited with {process.returncode}:\n"
                                    + log_path.read_text(errors="replace"))
            try:
                with session.get(url + "/v2/", timeout=2, verify=verify) as resp:
                    if (resp.status_code in (200, 401)
                            and "Docker-Distribution-API-Version" in resp.headers):
                        return
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RegistryError(f"docker-registry did not answer on {url} within "
                                    f"{START_TIMEOUT}s:\n" + log_path.read_text(errors="replace"))
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)


@contextlib.contextmanager
def running_registry(workdir: os.PathLike[str] | str, *, tls: bool = False,
                     users: Mapping[str, str] | None = None,
                     token_server: TokenServer | None = None,
                     schema1: bool = True) -> Iterator[Registry]:
    """Start ``docker-registry serve`` on a free 127.0.0.1 port with its storage and log in
    ``workdir``; yield a :class:`Registry` once ``GET /v2/`` answers; stop it afterwards
    (also on failure).  ``tls`` makes a certificate and serves HTTPS; ``users`` enables
    htpasswd basic auth; ``token_server`` enables token auth against it; ``schema1`` sets
    ``compatibility.schema1.enabled``."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if shutil.which(REGISTRY_BIN) is None:
        raise RegistryError(f"{REGISTRY_BIN} is not installed (apt-get install docker-registry)")
    certs = make_tls_cert(workdir / "tls") if tls else None
    htpasswd = _write_htpasswd(workdir / "htpasswd", users) if users else None
    for attempt in range(3):  # a port taken between free_port() and bind: try another
        port = free_port()
        config_path = workdir / "config.yml"  # YAML is a superset of JSON
        config_path.write_text(json.dumps(_registry_config(
            workdir, port, tls=certs, htpasswd=htpasswd, token_server=token_server,
            schema1=schema1), indent=2))
        log_path = workdir / f"registry-{attempt}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(_die_with_parent([REGISTRY_BIN, "serve", str(config_path)]),
                                       stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        scheme: Literal["http", "https"] = "https" if tls else "http"
        try:
            _wait_until_up(f"{scheme}://127.0.0.1:{port}", process, log_path,
                           str(certs[0]) if certs else True)
            break
        except RegistryError:
            _stop(process)
            if attempt == 2 or "address already in use" not in log_path.read_text():
                raise
    reg = Registry(f"127.0.0.1:{port}", scheme, workdir, log_path, process,
                   ca_file=certs[0] if certs else None,
                   username=(next(iter(users)) if users else
                             token_server.username if token_server else None),
                   password=(next(iter(users.values())) if users else
                             token_server.password if token_server else None),
                   token_server=token_server)
    if certs:
        reg.cert_dir.mkdir(exist_ok=True)  # type: ignore[union-attr]
        shutil.copy(certs[0], reg.cert_dir / "ca.crt")  # type: ignore[operator]
    try:
        yield reg
    finally:
        reg.close()


# --------------------------------------------------------------------------- pushing


def upload_blob(registry: Registry, repo: str, digest: str, size: int,
                opener: Callable[[], IO[bytes]]) -> bool:
    """Upload one blob unless the repository has it (``HEAD`` 200): ``POST
    /v2/<repo>/blobs/uploads/`` → 202 ``Location``, then ``PUT <Location>?digest=`` with the
    bytes, streamed.  Returns whether it uploaded."""
    with registry.request("HEAD", f"/v2/{repo}/blobs/{digest}", repo=repo) as head:
        if head.status_code == 200:
            return False
    with registry.request("POST", f"/v2/{repo}/blobs/uploads/", repo=repo) as start:
        _expect(start, 202)
        location = urllib.parse.urljoin(registry.url, start.headers["Location"])
    sep = "&" if urllib.parse.urlsplit(location).query else "?"
    with opener() as data:
        resp = registry.request(
            "PUT", f"{location}{sep}digest={digest}", repo=repo, data=data,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
    with resp:
        _expect(resp, 201)
    return True


def put_manifest(registry: Registry, repo: str, ref: str, body: bytes, media_type: str) -> str:
    """``PUT /v2/<repo>/manifests/<ref>`` with ``Content-Type: media_type``; returns the
    registry's ``Docker-Content-Digest``."""
    resp = registry.request("PUT", f"/v2/{repo}/manifests/{ref}", repo=repo, data=body,
                            headers={"Content-Type": media_type})
    with resp:
        _expect(resp, 201)
        return resp.headers["Docker-Content-Digest"]


def push(registry: Registry, repo: str, ref: str, image: TestImage,
         fmt: ManifestFormat = "schema2") -> str:
    """Push ``image`` to ``registry`` as ``repo:ref`` (a tag or a digest) in ``fmt`` using only
    the HTTP API: blobs first (config unless schema1, then layers), then the manifest with its
    exact media type.  Schema1 gets ``name=repo`` and ``tag=ref``, signed.  Returns the
    manifest digest the registry reports."""
    registry.authorize(repo)
    for digest, size, opener in image.blobs(fmt):
        upload_blob(registry, repo, digest, size, opener)
    tag = None if ref.startswith("sha256:") else ref
    body = image.manifest(fmt, name=repo, tag=tag)
    return put_manifest(registry, repo, ref, body, image.media_type(fmt))


def push_list(registry: Registry, repo: str, ref: str, images: MultiArchImage,
              fmt: ListFormat = "schema2") -> str:
    """Push a Docker manifest list (``schema2``) or OCI index (``oci``): each child image first,
    by digest, then the list as ``repo:ref``.  Returns the list's digest."""
    child_fmt = images.child_format(fmt)
    for image in images.images:
        push(registry, repo, image.manifest_digest(child_fmt), image, child_fmt)
    return put_manifest(registry, repo, ref, images.manifest(fmt), images.media_type(fmt))


def _skopeo_flags(side: Literal["src", "dest"], registry: Registry | None) -> list[str]:
    if registry is None:
        return []
    flags = []
    if registry.scheme == "http":
        flags.append(f"--{side}-tls-verify=false")
    else:
        flags.append(f"--{side}-cert-dir={registry.cert_dir}")
    if registry.username:
        flags.append(f"--{side}-creds={registry.username}:{registry.password}")
    return flags


def skopeo_copy(src: str, dst: str, *, src_registry: Registry | None = None,
                dest_registry: Registry | None = None, format: str | None = None,
                extra_args: Sequence[str] = (), check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``skopeo copy SRC DST`` as an independent client (e.g. ``oci:DIR:TAG`` →
    ``registry.ref(repo, tag)``).  Registries given as ``src_registry``/``dest_registry`` get
    the right TLS (``--*-tls-verify=false`` for HTTP, ``--*-cert-dir`` for HTTPS) and
    ``--*-creds`` flags.  ``format``: ``v2s2``, ``v2s1`` (signed by skopeo with a throwaway
    key) or ``oci``.  Raises :class:`RegistryError` with skopeo's stderr if it fails and
    ``check``."""
    argv = ["skopeo", "--insecure-policy", "copy", "--retry-times=0",
            *_skopeo_flags("src", src_registry), *_skopeo_flags("dest", dest_registry)]
    if format:
        argv.append(f"--format={format}")
    argv += [*extra_args, src, dst]
    proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise RegistryError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Plain HTTP registry v2 (delete enabled, schema1 accepted), no auth."""
    with running_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """HTTPS registry (self-signed certificate: ``.ca_file``) with htpasswd basic auth
    (``.username``/``.password``)."""
    with running_registry(tmp_path_factory.mktemp("tls-registry"), tls=True,
                          users=DEFAULT_USERS) as reg:
        yield reg


@pytest.fixture(scope="session")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    """The token server used by ``token_registry``; anonymous tokens allowed by default (use
    ``with token_server.settings(require_basic=True): ...`` to demand credentials)."""
    with TokenServer(tmp_path_factory.mktemp("token-server")) as server:
        yield server


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory,
                   token_server: TokenServer) -> Iterator[Registry]:
    """Plain HTTP registry with token auth against ``token_server``."""
    with running_registry(tmp_path_factory.mktemp("token-registry"),
                          token_server=token_server) as reg:
        yield reg


@pytest.fixture(scope="session")
def registry_factory(tmp_path_factory: pytest.TempPathFactory,
                     ) -> Iterator[Callable[..., Registry]]:
    """``factory(**running_registry options)`` starts another registry (stopped at the end of
    the session)."""
    with contextlib.ExitStack() as stack:

        def factory(**options: Any) -> Registry:
            workdir = tmp_path_factory.mktemp("registry")
            return stack.enter_context(running_registry(workdir, **options))

        yield factory
