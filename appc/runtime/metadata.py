"""The App Container metadata service for one pod (spec: METADATA SERVICE).

rkt runs one host daemon for every pod and tells pods apart by their source address.
Here each pod gets its own small HTTP server instead, started by the pod's PID 1 inside
the pod's network namespace (:func:`start_in_child`), so every app reaches it at
``127.0.0.1`` whatever the pod's networking, and nothing is registered on the host.
Apps get ``AC_METADATA_URL=http://127.0.0.1:<port>/<token>``; the token (128 random bits,
hex) is the only credential, so a wrong token answers 404 like an unknown path.

Endpoints under ``/<token>/acMetadata/v1`` (GET, and HEAD, unless said otherwise):

=================================== ===================================================
``/pod/annotations``                the pod's annotations, JSON (``null`` when the
                                    manifest has none or ``null``, ``[]`` when it has
                                    ``[]``: the ACE validator compares with Go's
                                    ``reflect.DeepEqual``)
``/pod/annotations/<name>``         one value, text
``/pod/manifest``                   the pod manifest, byte for byte as in the pod's
                                    ``pod`` file, JSON
``/pod/uuid``                       the UUID, canonical form, text
``/apps/<app>/annotations``         image annotations with the pod app's annotations
                                    set on them (the reference's ``Set``: replace in
                                    place, append new), JSON (``[]`` when none, as rkt)
``/apps/<app>/annotations/<name>``  one merged value, text
``/apps/<app>/image/manifest``      the image manifest as given, JSON
``/apps/<app>/image/id``            the image ID (``sha512-…``), text
``/pod/hmac/sign``                  POST form ``content``: base64 (standard, padded)
                                    HMAC-SHA512 over the 16 UUID bytes then the content,
                                    keyed by a random per-pod 64-byte key, text
``/pod/hmac/verify``                POST form ``content``, ``uuid`` (``uid`` of older
                                    validators is accepted too) and ``signature``: 200
                                    when it matches, 403 when not, text
=================================== ===================================================

Decisions:

* Content types are exactly ``application/json`` and ``text/plain; charset=us-ascii``
  (the validator compares whole header values), error bodies included.  Text values
  are sent as UTF-8 bytes even if an annotation is not ASCII.
* As rkt: ``content`` missing or empty, a malformed ``uuid`` or a signature that is not
  base64 answer 400 (only a well-formed mismatch is 403); a wrong method on a known path
  answers 405.  Compatibility with pre-0.8 validators: ``/pod/annotations/`` and
  ``/apps/<app>/annotations/`` (trailing slash) list the names, one a line.
* The manifests are read as Go's decoder reads them: keys case-insensitively, the last
  duplicate winning.  Bad annotations in a manifest raise at construction (the service
  never starts with data it would serve wrongly).
* HTTP/1.1 with keep-alive, one thread per connection and ``TCP_NODELAY``: answers take
  well under a millisecond (the validator gives each request 100 ms).  ``http.server``
  is imported only when serving, to keep importing this module cheap.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import select
import signal
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from appc.errors import AppcError, PodError
from appc.types.annotations import Annotations
from appc.types.uuid import UUID

if TYPE_CHECKING:
    from http.server import ThreadingHTTPServer

__all__ = ["JSON", "PREFIX", "TEXT", "MetadataService", "start_in_child"]

#: The content types the ACE validator expects, exactly.
JSON = "application/json"
TEXT = "text/plain; charset=us-ascii"
#: The path below ``AC_METADATA_URL``.
PREFIX = "/acMetadata/v1"

_MAX_BODY = 1 << 20

#: A response: status, content type, body.
Response = tuple[int, str, bytes]


class _GoObject(dict[str, Any]):
    """A JSON object read as Go's encoding/json reads into a struct: keys folded to lower
    case, the last of duplicate keys winning."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__((key.lower(), value) for key, value in pairs)


def _load(data: bytes, what: str) -> _GoObject:
    try:
        value = json.loads(data, object_pairs_hook=_GoObject)
    except (ValueError, UnicodeDecodeError) as err:
        raise PodError(f"{what} is not valid JSON: {err}") from None
    if not isinstance(value, _GoObject):
        raise PodError(f"{what} is not a JSON object")
    return value


def _annotations(value: object, what: str) -> Annotations:
    if value is None:
        return Annotations()
    if not isinstance(value, list):
        raise PodError(f"{what}: annotations must be a list")
    try:
        return Annotations(value)
    except AppcError as err:
        raise PodError(f"{what}: {err}") from None


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _text(message: str) -> bytes:
    return message.encode("utf-8", "surrogateescape")


def _listing(annotations: Annotations) -> bytes:
    return b"".join(_text(f"{a.name}\n") for a in annotations)


class MetadataService:
    """The metadata of one pod, and the HTTP server that serves it.

    :param pod_manifest_json: the pod manifest exactly as stored in the pod (served as is;
        the annotations are read from these bytes).
    :param uuid: the pod's UUID.
    :param image_manifests: each app's image manifest (JSON bytes), by app name.
    :param image_ids: each app's image ID, by app name (default: the pod manifest's
        ``image.id`` of that app).
    :param token: the URL token (default: 128 random bits, hex).
    :param hmac_key: the signing key (default: 64 random bytes).
    :raises PodError: for a manifest that is not a JSON object or has bad annotations.
    """

    token: str
    hmac_key: bytes

    def __init__(
        self,
        pod_manifest_json: bytes,
        uuid: str,
        image_manifests: Mapping[str, bytes],
        image_ids: Mapping[str, str],
        *,
        token: str | None = None,
        hmac_key: bytes | None = None,
    ) -> None:
        self.uuid = UUID(uuid)
        self._uuid_bytes = bytes.fromhex(self.uuid.replace("-", ""))
        self.token = token if token is not None else secrets.token_hex(16)
        if not self.token or any(c in self.token for c in "/?#%") or not self.token.isprintable():
            raise PodError(f"bad metadata token {self.token!r}")
        self.hmac_key = hmac_key if hmac_key is not None else secrets.token_bytes(64)
        self._server: ThreadingHTTPServer | None = None

        pod = _load(pod_manifest_json, "pod manifest")
        raw_annotations = pod.get("annotations")
        pod_annotations = _annotations(raw_annotations, "pod manifest")
        self._pod_annotations = pod_annotations
        self._get: dict[str, Response] = {
            "pod/annotations": (
                200,
                JSON,
                b"null" if raw_annotations is None else _json(pod_annotations.json_value()),
            ),
            "pod/annotations/": (200, TEXT, _listing(pod_annotations)),
            "pod/manifest": (200, JSON, bytes(pod_manifest_json)),
            "pod/uuid": (200, TEXT, self.uuid.encode()),
        }
        self._app_annotations: dict[str, Annotations] = {}
        apps = pod.get("apps")
        for index, app in enumerate(apps if isinstance(apps, list) else []):
            if not isinstance(app, dict) or not isinstance(app.get("name"), str):
                continue
            name: str = app["name"]
            image = app.get("image")
            merged = Annotations()
            manifest = image_manifests.get(name)
            if manifest is not None:
                image_manifest = _load(manifest, f"image manifest of app {name!r}")
                merged = _annotations(
                    image_manifest.get("annotations"), f"image manifest of app {name!r}"
                )
                self._get[f"apps/{name}/image/manifest"] = (200, JSON, bytes(manifest))
            merged = merged.merged(
                _annotations(app.get("annotations"), f"pod manifest apps[{index}]")
            )
            self._app_annotations[name] = merged
            self._get[f"apps/{name}/annotations"] = (200, JSON, _json(merged.json_value()))
            self._get[f"apps/{name}/annotations/"] = (200, TEXT, _listing(merged))
            image_id = image_ids.get(name)
            if image_id is None and isinstance(image, dict) and isinstance(image.get("id"), str):
                image_id = image["id"]
            if image_id:
                self._get[f"apps/{name}/image/id"] = (200, TEXT, image_id.encode())

    # --- signing ------------------------------------------------------------------------

    def sign(self, content: str | bytes) -> str:
        """The base64 HMAC-SHA512 of this pod's UUID bytes followed by *content*."""
        return base64.b64encode(self._mac(self._uuid_bytes, content)).decode("ascii")

    def verify(self, uuid: str, content: str | bytes, signature: str) -> bool:
        """True when *signature* (base64) is this service's signature of *content* for *uuid*.

        :raises ValueError: for a malformed *uuid* or a *signature* that is not base64.
        """
        raw_uuid = bytes.fromhex(UUID(uuid).replace("-", ""))
        try:
            wanted = base64.b64decode(signature, validate=True)
        except binascii.Error as err:
            raise ValueError(f"signature is not base64: {err}") from None
        return hmac.compare_digest(wanted, self._mac(raw_uuid, content))

    def _mac(self, uuid_bytes: bytes, content: str | bytes) -> bytes:
        data = content if isinstance(content, bytes) else content.encode("utf-8", "surrogateescape")
        return hmac.new(self.hmac_key, uuid_bytes + data, hashlib.sha512).digest()

    # --- requests -----------------------------------------------------------------------

    def handle(self, method: str, target: str, body: bytes = b"") -> Response:
        """Answer one request (no I/O): *target* is the request target (path and query).

        Returns ``(status, content type, body)``.  The HTTP server calls this; tests
        and other front ends may too.
        """
        parts = urlsplit(target)
        path = parts.path
        head = f"/{self.token}{PREFIX}/"
        prefix_ok = hmac.compare_digest(path[: len(head)].encode(), head.encode())
        if not prefix_ok:
            return 404, TEXT, b"not found\n"
        rest = path[len(head) :]
        if rest in ("pod/hmac/sign", "pod/hmac/verify"):
            if method != "POST":
                return 405, TEXT, b"method not allowed\n"
            form = _form(body, parts.query)
            if rest.endswith("sign"):
                return self._sign_response(form)
            return self._verify_response(form)
        if method not in ("GET", "HEAD"):
            known = rest in self._get or self._annotation(rest) is not None
            return (405, TEXT, b"method not allowed\n") if known else (404, TEXT, b"not found\n")
        found = self._get.get(rest)
        if found is not None:
            return found
        value = self._annotation(rest)
        if value is not None:
            return value
        return 404, TEXT, b"not found\n"

    def _annotation(self, rest: str) -> Response | None:
        """The answer for ``pod/annotations/<name>`` or ``apps/<app>/annotations/<name>``."""
        if rest.startswith("pod/annotations/"):
            annotations: Annotations | None = self._pod_annotations
            name = rest[len("pod/annotations/") :]
        elif rest.startswith("apps/"):
            app, _, tail = rest[len("apps/") :].partition("/")
            annotations = self._app_annotations.get(unquote(app))
            if not tail.startswith("annotations/"):
                return None
            name = tail[len("annotations/") :]
        else:
            return None
        if annotations is None or not name:
            return None
        name = unquote(name, errors="surrogateescape")
        for annotation in annotations:
            if annotation.name == name:
                return 200, TEXT, _text(annotation.value)
        return 404, TEXT, _text(f"annotation {name!r} not found\n")

    def _sign_response(self, form: dict[str, str]) -> Response:
        content = form.get("content", "")
        if not content:
            return 400, TEXT, b"content form value not found\n"
        return 200, TEXT, self.sign(content).encode("ascii")

    def _verify_response(self, form: dict[str, str]) -> Response:
        uuid = form.get("uuid", form.get("uid", ""))
        content = form.get("content", "")
        try:
            UUID(uuid)
        except AppcError as err:
            return 400, TEXT, _text(f"uuid field missing or malformed: {err}\n")
        if not content:
            return 400, TEXT, b"content field missing\n"
        try:
            ok = self.verify(uuid, content, form.get("signature", ""))
        except ValueError as err:
            return 400, TEXT, _text(f"signature field missing or corrupt: {err}\n")
        return (200, TEXT, b"") if ok else (403, TEXT, b"")

    # --- serving ------------------------------------------------------------------------

    def serve_forever(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        ready: Callable[[int], None] | None = None,
    ) -> None:
        """Listen on *host*:*port* (0: any free port), call ``ready(port)``, serve until
        :meth:`shutdown` (from another thread) or the process ends."""
        from http.server import ThreadingHTTPServer  # noqa: PLC0415 - import cost only when serving

        server = ThreadingHTTPServer((host, port), _handler_class(self))
        server.daemon_threads = True
        self._server = server
        try:
            if ready is not None:
                ready(server.server_address[1])
            server.serve_forever(poll_interval=0.2)
        finally:
            server.server_close()
            self._server = None

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` running in another thread (no-op when not serving)."""
        server = self._server
        if server is not None:
            server.shutdown()


def _form(body: bytes, query: str) -> dict[str, str]:
    """Form values as Go's ``FormValue`` sees them: the body's first, then the query's;
    the first value of a repeated key wins.  Bytes that are not UTF-8 survive (surrogates)."""
    values: dict[str, str] = {}
    for source in (body.decode("utf-8", "surrogateescape"), query):
        for key, value in parse_qsl(source, keep_blank_values=True, errors="surrogateescape"):
            values.setdefault(key, value)
    return values


def _handler_class(service: MetadataService) -> type[Any]:
    from http.server import BaseHTTPRequestHandler  # noqa: PLC0415

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "appc-metadata/1"
        timeout = 60  # an idle keep-alive connection is closed after a minute

        def setup(self) -> None:
            super().setup()
            with contextlib.suppress(OSError):
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _answer(self, method: str) -> None:
            body = b""
            length = self.headers.get("Content-Length")
            if length:
                try:
                    size = int(length)
                except ValueError:
                    size = -1
                if not 0 <= size <= _MAX_BODY:
                    self._send(
                        413 if size > _MAX_BODY else 400, TEXT, b"bad request body\n", method
                    )
                    self.close_connection = True
                    return
                body = self.rfile.read(size)
            status, content_type, payload = service.handle(method, self.path, body)
            self._send(status, content_type, payload, method)

        def _send(self, status: int, content_type: str, payload: bytes, method: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            if status == 405:
                self.send_header("Allow", "POST" if "/hmac/" in self.path else "GET, HEAD")
            self.end_headers()
            if method != "HEAD" and payload:
                self.wfile.write(payload)

        def do_GET(self) -> None:
            self._answer("GET")

        def do_HEAD(self) -> None:
            self._answer("HEAD")

        def do_POST(self) -> None:
            self._answer("POST")

        def do_PUT(self) -> None:
            self._answer("PUT")

        def do_DELETE(self) -> None:
            self._answer("DELETE")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


# --- a child process --------------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    import ctypes  # noqa: PLC0415 - only in the child
    import ctypes.util  # noqa: PLC0415

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(pr_set_pdeathsig, ctypes.c_ulong(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(1)


def start_in_child(
    service: MetadataService,
    host: str = "127.0.0.1",
    *,
    port: int = 0,
    close_fds: bool = True,
    timeout: float = 10.0,
) -> tuple[int, int]:
    """Fork a child that serves *service*; return ``(pid, port)`` once it listens.

    The child never returns into the caller (it ends with ``os._exit``); it is killed
    when the forking thread's process dies (``PR_SET_PDEATHSIG``), resets SIGTERM, SIGINT
    and SIGHUP to their defaults, and (*close_fds*) closes every inherited descriptor
    above 2, so it cannot keep a pod lock or a pipe alive.  Stop it with SIGTERM or
    SIGKILL and reap it with :func:`os.waitpid`.

    :raises PodError: when the child could not listen (the error it met is quoted).
    """
    parent = os.getpid()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child (its behaviour is tested from outside)
        code = 1
        reported = False
        try:
            os.close(read_end)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            _die_with_parent(parent)
            if close_fds:
                os.closerange(3, write_end)
                os.closerange(write_end + 1, os.sysconf("SC_OPEN_MAX"))

            def ready(bound: int) -> None:
                nonlocal reported
                reported = True
                os.write(write_end, f"{bound}\n".encode())
                os.close(write_end)

            service.serve_forever(host, port, ready)
            code = 0
        except BaseException as err:  # never return into the caller
            if not reported:
                with contextlib.suppress(OSError):
                    os.write(write_end, _text(f"error {err}\n"))
        finally:
            os._exit(code)
    os.close(write_end)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_end], [], [], left)[0]:
                break
            chunk = os.read(read_end, 4096)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_end)
    line = data.decode("utf-8", "replace").strip()
    if line.isdigit():
        return pid, int(line)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    reason = line.removeprefix("error ") if line else "it exited" if data == b"" else line
    raise PodError(f"metadata service did not start on {host}: {reason}")
