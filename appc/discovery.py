"""App Container image discovery (spec: discovery, "meta discovery" of v0.8).

For an image name like ``example.com/project/app``, ``https://example.com/project/app?ac-discovery=1``
is fetched and its ``<meta name="ac-discovery" content="PREFIX TEMPLATE">`` and
``<meta name="ac-discovery-pubkeys" content="PREFIX URL">`` tags are read; if nothing
usable is found there, the parent paths are tried, down to the host.  Endpoints and
public keys are two separate walks, so they may come from different levels.
Templates get ``{name}``, ``{version}`` (default ``latest``), ``{ext}`` (``aci`` or
``aci.asc``) and any other label; a template with a placeholder left unfilled is
skipped.  HTTPS first; plain HTTP only when asked.

Pages are read by a small tokenizer with the HTML5 rules of Go's (the reference's) for
tags, attributes, comments and raw-text elements, linear in the page's size: Python's
``html.parser`` takes quadratic time on unclosed tags, and a discovery server's 1 MB
page of ``<meta`` kept it busy for hours.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

import attrs
import requests

from appc.errors import DiscoveryError, FetchError, ValidationError
from appc.transport import RETRY_STATUS, Transport, TransportOptions, reason
from appc.types.acidentifier import ACIdentifier

__all__ = [
    "ACIEndpoint",
    "AppRequest",
    "DiscoveryOptions",
    "DiscoveryResult",
    "MetaTag",
    "discover",
    "parse_app_string",
    "parse_meta_tags",
    "render_template",
]


def __dir__() -> list[str]:
    return __all__


_MAX_PAGE = 1024 * 1024
#: Statuses a page is judged on at once (429 and 5xx are retried first).
_FINAL_STATUS = frozenset(range(100, 600)) - RETRY_STATUS
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


@attrs.frozen
class AppRequest:
    """What to discover: an image name and labels (``version``, ``os``, ``arch``, ...)."""

    name: ACIdentifier
    labels: Mapping[str, str] = attrs.field(factory=dict)

    def __str__(self) -> str:
        text = str(self.name)
        labels = dict(self.labels)
        version = labels.pop("version", None)
        if version:
            text += f":{version}"
        return text + "".join(f",{k}={v}" for k, v in labels.items())


def parse_app_string(text: str) -> AppRequest:
    """Read ``name[:version][,label=value...]`` as the reference's ``NewAppFromString``.

    ``:`` stands for ``,version=``.  The reference escapes each value before its query
    parser reads the string back, so values come out exactly as typed (``+``, ``&``,
    ``/``, ``?``, ``%`` included); label *names* are unescaped by that parser
    (``%6Fs`` is ``os``).  Refused: more than one ``:``, a ``:`` after the first ``,``,
    a repeated label (``:1.0,version=2``, or a label called ``name``), a label without
    ``=``, a label name that is not an ACIdentifier, a bad name, bad ``%`` escapes in a
    label name.

    >>> parse_app_string("example.com/app:1.0,os=linux").labels
    {'version': '1.0', 'os': 'linux'}

    :raises ValidationError: naming the problem (the reference tool crashed here).
    """
    if text.count(":") > 1:
        raise ValidationError(f"app string has more than one ':': {text!r}", value=text)
    comma, colon = text.find(","), text.find(":")
    if colon != -1 and comma != -1 and colon > comma:
        raise ValidationError(f"app string has ':' after the first ',': {text!r}", value=text)
    parts = text.replace(":", ",version=", 1).split(",")
    name = parts[0]
    labels: dict[str, str] = {}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if not sep:
            raise ValidationError(f"label {part!r} has no value in {text!r}", value=text)
        if re.search(r"%(?![0-9A-Fa-f]{2})", key):
            raise ValidationError(f"invalid URL escape in label name {key!r}", value=text)
        key = urllib.parse.unquote_plus(key)
        ACIdentifier(key)
        if key in labels or key == "name":
            raise ValidationError(f"label {key!r} given more than once in {text!r}", value=text)
        labels[key] = value
    return AppRequest(ACIdentifier(name), labels)


@attrs.frozen
class MetaTag:
    """One ``ac-discovery`` or ``ac-discovery-pubkeys`` tag: the name prefix it serves and its content."""

    kind: str
    prefix: str
    content: str


# Elements whose content is text, not markup, in Go's tokenizer: a meta tag inside is no tag.
_RAW_TEXT = frozenset(
    {
        "iframe",
        "noembed",
        "noframes",
        "noscript",
        "plaintext",
        "script",
        "style",
        "textarea",
        "title",
        "xmp",
    }
)
_BLANKS = re.compile(r"[\t\n\f\r ]*")
_BEFORE_KEY = re.compile(r"[\t\n\f\r /]*")  # a '/' before an attribute name is skipped, as in Go
_TAG_OPEN = re.compile(r"<[A-Za-z!?/]")  # any other '<' is text
_TAG_NAME = re.compile(r"[^\t\n\f\r />]*")
_ATTR_KEY = re.compile(r"=?[^\t\n\f\r /=>]*")  # a leading '=' belongs to the name (WHATWG)
_UNQUOTED = re.compile(r"[^\t\n\f\r >]*")
_COMMENT_END = re.compile(r"--!?>")


def _at(pattern: re.Pattern[str], page: str, i: int) -> re.Match[str]:
    """*pattern* matched at *i* (every pattern used so matches the empty string)."""
    match = pattern.match(page, i)
    assert match is not None
    return match


def _read_tag(page: str, i: int) -> tuple[str, list[tuple[str, str]], int] | None:
    """Read the tag whose name starts at *i*: its lower-case name, its attributes (keys
    lower case, values unescaped) and where it ends; ``None`` if the page ends first."""
    end = len(page)
    match = _at(_TAG_NAME, page, i)
    name, i = match.group().lower(), match.end()
    attributes: list[tuple[str, str]] = []
    while True:
        i = _at(_BEFORE_KEY, page, i).end()
        if i >= end:
            return None
        if page[i] == ">":
            return name, attributes, i + 1
        match = _at(_ATTR_KEY, page, i)
        key, i = match.group(), match.end()
        value = ""
        i = _at(_BLANKS, page, i).end()
        if i >= end:
            return None
        if page[i] == "/":
            i += 1
        elif page[i] == "=":
            i = _at(_BLANKS, page, i + 1).end()
            if i >= end:
                return None
            quote = page[i]
            if quote in "'\"":
                close = page.find(quote, i + 1)
                if close < 0:
                    return None
                value, i = page[i + 1 : close], close + 1
            elif quote != ">":
                match = _at(_UNQUOTED, page, i)
                value, i = match.group(), match.end()
        if key:
            attributes.append((key.lower(), html.unescape(value)))


def _start_tags(page: str) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """The start tags of *page* (also self-closing ones), skipping text, end tags,
    comments, declarations and the contents of raw-text elements; a tag cut short by the
    end of the page is no tag.  Every step moves forward: linear time."""
    end = len(page)
    pos = 0
    while True:
        found_open = _TAG_OPEN.search(page, pos)
        if found_open is None:
            return
        lt = found_open.start()
        c = page[lt + 1]
        if c.isascii() and c.isalpha():
            tag = _read_tag(page, lt + 1)
            if tag is None:
                return
            name, attributes, pos = tag
            yield name, attributes
            if name in _RAW_TEXT:
                if name == "plaintext":
                    return
                closing = re.compile(f"</{re.escape(name)}[\t\n\f\r />]", re.IGNORECASE)
                found = closing.search(page, pos)
                if found is None:
                    return
                pos = found.start()
        elif c == "/" and lt + 2 < end and page[lt + 2].isascii() and page[lt + 2].isalpha():
            tag = _read_tag(page, lt + 2)  # an end tag: read (quoted '>' included) and dropped
            if tag is None:
                return
            pos = tag[2]
        elif page.startswith("<!--", lt):
            if page.startswith(">", lt + 4) or page.startswith("->", lt + 4):
                pos = lt + (5 if page[lt + 4] == ">" else 6)
                continue
            found = _COMMENT_END.search(page, lt + 4)
            if found is None:
                return
            pos = found.end()
        elif c in "!?/":  # a declaration, or a bogus comment, up to '>'
            close = page.find(">", lt + 2)
            if close < 0:
                return
            pos = close + 1
        else:  # pragma: no cover - _TAG_OPEN found '<' and one of A-Za-z!?/
            pos = lt + 1


def _decode(body: bytes, charset: str | None) -> str:
    """A page's text in the charset its server names, or UTF-8 when it names none or one
    Python does not know (``charset=bogus`` was a LookupError)."""
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def parse_meta_tags(page: str) -> list[MetaTag]:
    """The ``ac-*`` meta tags of an HTML page, in document order (any HTML a server sends).

    >>> parse_meta_tags('<meta name="ac-discovery" content="example.com https://x/{name}.{ext}">')
    [MetaTag(kind='ac-discovery', prefix='example.com', content='https://x/{name}.{ext}')]
    """
    tags = []
    for name, attributes in _start_tags(page):
        if name != "meta":
            continue
        values = dict(attributes)  # a repeated attribute: the last one counts
        kind = values.get("name", "")
        if not kind.startswith("ac-"):
            continue
        prefix, _, rest = values.get("content", "").strip().partition(" ")
        rest = rest.strip()
        if prefix and rest:
            tags.append(MetaTag(kind, prefix, rest))
    return tags


def render_template(template: str, request: AppRequest, ext: str) -> str | None:
    """Fill *template* for *request*; ``None`` when a placeholder stays unfilled.

    >>> render_template("https://h/{os}/{name}-{version}.{ext}", AppRequest(ACIdentifier("a.com/b"), {"os": "linux"}), "aci")
    'https://h/linux/a.com/b-latest.aci'
    """
    values = {"name": str(request.name), "ext": ext, "version": "latest"}
    for key, value in request.labels.items():
        if key != "name":  # a label called "name" never replaces the image name
            values[key] = value
    result = _PLACEHOLDER.sub(lambda m: values.get(m.group(0)[1:-1], m.group(0)), template)
    return None if _PLACEHOLDER.search(result) else result


@attrs.frozen
class ACIEndpoint:
    """Where an image and its signature can be downloaded."""

    aci: str
    asc: str


@attrs.frozen
class DiscoveryResult:
    """What discovery found: image endpoints, public key URLs, and each failed attempt
    (prefix and reason) of both walks."""

    endpoints: tuple[ACIEndpoint, ...]
    public_keys: tuple[str, ...]
    endpoint_attempts: tuple[tuple[str, str], ...] = ()
    key_attempts: tuple[tuple[str, str], ...] = ()


@attrs.frozen(kw_only=True)
class DiscoveryOptions:
    """How to discover.

    :param insecure_http: fall back to plain HTTP when HTTPS fails (and allow it in redirects).
    :param insecure_tls: do not verify TLS certificates.
    :param port: connect to this port instead of 443 (80 for HTTP).
    :param ca_file: extra trusted CA certificates.
    :param timeout: seconds for each connection.
    :param retries: how many times a page is asked again after a 429 or 5xx answer or a
        failed connection (before the walk moves on to the parent level).
    :param backoff: the first wait between two attempts, in seconds (doubled each time).
    """

    insecure_http: bool = False
    insecure_tls: bool = False
    port: int | None = None
    ca_file: str | None = None
    timeout: float = 20.0
    retries: int = 1
    backoff: float = 0.5


def _prefixes(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(len(parts), 0, -1)]


def _url(prefix: str, scheme: str, port: int | None) -> str:
    host, _, path = prefix.partition("/")
    netloc = f"{host}:{port}" if port else host
    return f"{scheme}://{netloc}/{path}?ac-discovery=1"


class _Pages:
    """Fetches discovery pages, once per prefix (both walks share them)."""

    def __init__(self, options: DiscoveryOptions) -> None:
        self.options = options
        self.transport = Transport(
            TransportOptions(
                insecure_allow_http=options.insecure_http,
                insecure_skip_verify=options.insecure_tls,
                ca_file=options.ca_file,
                timeout=options.timeout,
                retries=options.retries,
                backoff=options.backoff,
            )
        )
        self._cache: dict[str, list[MetaTag] | str] = {}

    def tags(self, prefix: str) -> list[MetaTag]:
        """The meta tags served for *prefix*; :raises FetchError: why none could be read."""
        if prefix not in self._cache:
            try:
                self._cache[prefix] = self._fetch(prefix)
            except FetchError as err:
                self._cache[prefix] = str(err)
        cached = self._cache[prefix]
        if isinstance(cached, str):
            raise FetchError(cached)
        return cached

    def _fetch(self, prefix: str) -> list[MetaTag]:
        # As the reference: HTTPS, then (when allowed) HTTP after any failure; the error
        # kept is the last one, and a non-200 answer is "expected a 200 OK got N".
        schemes = ["https", "http"] if self.options.insecure_http else ["https"]
        error = ""
        for scheme in schemes:
            url = _url(prefix, scheme, self.options.port)
            try:
                # 429/5xx answers and failed connections are tried again first: a
                # level that is down for a moment must not send the walk to its parent.
                response = self.transport.request("GET", url, stream=True, ok=_FINAL_STATUS)
            except FetchError as err:
                error = f"expected a 200 OK got {err.status}" if err.status else str(err)
                continue
            except requests.exceptions.RequestException as err:
                error = f"{url}: {reason(err)}"
                continue
            try:
                if response.status_code != 200:
                    error = f"expected a 200 OK got {response.status_code}"
                    continue
                body = response.raw.read(_MAX_PAGE + 1, decode_content=True)
                if len(body) > _MAX_PAGE:
                    error = f"{url}: page larger than {_MAX_PAGE} bytes"
                    continue
            except requests.exceptions.RequestException as err:
                error = f"{url}: {reason(err)}"
                continue
            except Exception as err:
                error = f"{url}: {err}"
                continue
            finally:
                response.close()
            return parse_meta_tags(_decode(body, response.encoding))
        raise FetchError(error)


_T = TypeVar("_T")


@attrs.frozen
class _Walk(Generic[_T]):
    """One walk up the name's prefixes: what it found, the levels that failed (the
    reference's "failed attempts"), and the levels read without anything usable."""

    found: list[_T]
    attempts: list[tuple[str, str]]
    levels: list[tuple[str, str]]  # every level tried and why it gave nothing, in order

    def explain(self) -> str:
        """Every level's story, for the error message."""
        return "; ".join(f"{p}: {e}" for p, e in self.levels)


def _walk_endpoints(pages: _Pages, request: AppRequest) -> _Walk[ACIEndpoint]:
    attempts: list[tuple[str, str]] = []
    levels: list[tuple[str, str]] = []
    for prefix in _prefixes(str(request.name)):
        try:
            tags = pages.tags(prefix)
        except FetchError as err:
            attempts.append((prefix, str(err)))
            levels.append((prefix, str(err)))
            continue
        endpoints: list[ACIEndpoint] = []
        for tag in tags:
            if tag.kind != "ac-discovery" or not str(request.name).startswith(tag.prefix):
                continue
            aci = render_template(tag.content, request, "aci")
            asc = render_template(tag.content, request, "aci.asc")
            if aci is not None and asc is not None:
                endpoints.append(ACIEndpoint(aci, asc))
        if endpoints:
            return _Walk(endpoints, attempts, levels)
        # A page read without a usable template is not a failed attempt: walk on.
        levels.append((prefix, "no usable ac-discovery meta tag"))
    return _Walk([], attempts, levels)


def _walk_keys(pages: _Pages, name: str) -> _Walk[str]:
    attempts: list[tuple[str, str]] = []
    levels: list[tuple[str, str]] = []
    for prefix in _prefixes(name):
        try:
            tags = pages.tags(prefix)
        except FetchError as err:
            attempts.append((prefix, str(err)))
            levels.append((prefix, str(err)))
            continue
        keys = [
            t.content
            for t in tags
            if t.kind == "ac-discovery-pubkeys" and name.startswith(t.prefix)
        ]
        if keys:
            return _Walk(keys, attempts, levels)
        levels.append((prefix, "no ac-discovery-pubkeys meta tag"))
    return _Walk([], attempts, levels)


def discover(
    request: AppRequest,
    options: DiscoveryOptions | None = None,
    *,
    endpoints: bool = True,
    public_keys: bool = True,
) -> DiscoveryResult:
    """Discover where *request* can be fetched, and which keys sign it.

    :param endpoints: walk for image endpoints; :param public_keys: walk for keys.
    Both walks together fail only when no endpoint is found (the caller judges a
    missing key); a walk for keys alone fails when it finds none.

    :raises DiscoveryError: ``discovery failed``; the message tells each level's story
        and ``attempts`` holds the failed ones (prefix, reason) as the reference reports
        them: a page that was read but held nothing usable is not a failed attempt.
    """
    pages = _Pages(options or DiscoveryOptions())
    try:
        found = _walk_endpoints(pages, request) if endpoints else _Walk([], [], [])
        keys = _walk_keys(pages, str(request.name)) if public_keys else _Walk([], [], [])
    finally:
        pages.transport.close()
    if endpoints and not found.found:
        raise DiscoveryError(
            f"discovery failed for {request}: {found.explain()}", attempts=found.attempts
        )
    if public_keys and not endpoints and not keys.found:
        raise DiscoveryError(
            f"discovery failed for {request}: {keys.explain()}", attempts=keys.attempts
        )
    return DiscoveryResult(
        tuple(found.found), tuple(keys.found), tuple(found.attempts), tuple(keys.attempts)
    )
