"""appc.discovery and ``actool discover`` against a real HTTPS server (reference: appc-spec.md §5, §8)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from appc.discovery import (
    ACIEndpoint,
    AppRequest,
    DiscoveryOptions,
    MetaTag,
    discover,
    parse_app_string,
    parse_meta_tags,
    render_template,
)
from appc.errors import DiscoveryError, ValidationError
from appc.types.acidentifier import ACIdentifier
from tests.discovery_server import DiscoveryServer, env_without_proxies, free_port

pytest_plugins = ["tests.discovery_server"]


# --- app strings ------------------------------------------------------------------------

GOOD_APP_STRINGS = [
    ("example.com/app", "example.com/app", {}),
    ("example.com/app:1.0.0", "example.com/app", {"version": "1.0.0"}),
    (
        "example.com/app:v2.0.0,os=linux,arch=amd64",
        "example.com/app",
        {"version": "v2.0.0", "os": "linux", "arch": "amd64"},
    ),
    ("example.com/app,version=1.0", "example.com/app", {"version": "1.0"}),
    ("example.com/app,os=linux", "example.com/app", {"os": "linux"}),
    # The query-string helper escapes values first: these characters survive as typed.
    ("example.com/app:1.0+git", "example.com/app", {"version": "1.0+git"}),
    ("example.com/app,channel=a&b", "example.com/app", {"channel": "a&b"}),
    ("example.com/app,path=/a/b?c=d", "example.com/app", {"path": "/a/b?c=d"}),
    ("example.com/app,x=%2C", "example.com/app", {"x": "%2C"}),
    ("example.com/app,x=50%", "example.com/app", {"x": "50%"}),
    ("example.com/app,x=a=b", "example.com/app", {"x": "a=b"}),
    ("example.com/app,x=", "example.com/app", {"x": ""}),
    ("example.com/app,x=a b", "example.com/app", {"x": "a b"}),
    # Label names go through the query parser unescaped: an escape spelling a valid name works.
    ("example.com/app,%6Fs=linux", "example.com/app", {"os": "linux"}),
    ("127.0.0.1/foo/bar/baz", "127.0.0.1/foo/bar/baz", {}),
]


@pytest.mark.parametrize(("text", "name", "labels"), GOOD_APP_STRINGS)
def test_app_string(text: str, name: str, labels: dict[str, str]) -> None:
    request = parse_app_string(text)
    assert request.name == ACIdentifier(name)
    assert dict(request.labels) == labels


BAD_APP_STRINGS = [
    ("example.com/app:1.0:2.0", "more than one ':'"),
    ("example.com/app,os=linux:1.0", "':' after the first ','"),
    ("example.com/app:1.0,version=2.0", "'version' given more than once"),
    ("example.com/app,os=linux,os=darwin", "'os' given more than once"),
    ("example.com/app,name=other", "'name' given more than once"),
    ("example.com/app,OS=linux", "ACIdentifier"),
    ("example.com/app,=linux", "ACIdentifier cannot be empty"),
    ("example.com/app,os", "has no value"),
    ("Example.com/App", "ACIdentifier"),
    ("", "ACIdentifier cannot be empty"),
    (":1.0", "ACIdentifier cannot be empty"),
    ("example.com/app,%zz=1", "invalid URL escape"),
    ("example.com/app,o%s=1", "invalid URL escape"),
]


@pytest.mark.parametrize(("text", "message"), BAD_APP_STRINGS)
def test_bad_app_string(text: str, message: str) -> None:
    """The reference tool crashed (nil dereference) on some of these: here each is a clean error."""
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace("?", r"\?")):
        parse_app_string(text)


def test_app_request_str_round_trips() -> None:
    request = parse_app_string("example.com/app:1.0,os=linux")
    assert str(request) == "example.com/app:1.0,os=linux"
    assert parse_app_string(str(request)) == request


# --- meta tags --------------------------------------------------------------------------

TAG = MetaTag("ac-discovery", "example.com", "https://example.com/{name}.{ext}")
KEYS = MetaTag("ac-discovery-pubkeys", "example.com", "https://example.com/pubkeys.gpg")

META_PAGES = [
    ('<meta name="ac-discovery" content="example.com https://example.com/{name}.{ext}">', [TAG]),
    ('<META NAME="ac-discovery" CONTENT="example.com https://example.com/{name}.{ext}">', [TAG]),
    ('<meta name="ac-discovery" content="example.com https://example.com/{name}.{ext}" />', [TAG]),
    ('<meta content="example.com https://example.com/{name}.{ext}" name="ac-discovery">', [TAG]),
    ("<meta content='example.com https://example.com/{name}.{ext}' name='ac-discovery'>", [TAG]),
    ('<meta name=ac-discovery content="example.com https://example.com/{name}.{ext}">', [TAG]),
    (
        '<meta name="ac-discovery"\n      content="  example.com   https://example.com/{name}.{ext}  ">',
        [TAG],
    ),
    # Entities in attribute values are decoded, as a browser's tokenizer does.
    (
        '<meta name="ac-discovery" content="example.com https://e.com/?a=1&amp;b={name}">',
        [MetaTag("ac-discovery", "example.com", "https://e.com/?a=1&b={name}")],
    ),
    # A whole page: head, body, scripts, comments; keys too, in document order.
    (
        '<!DOCTYPE html><html><head><title>x</title><script>var s = \'<meta name="ac-discovery" '
        'content="bad x">\';</script><!-- <meta name="ac-discovery" content="commented out"> -->'
        '<meta name="ac-discovery-pubkeys" content="example.com https://example.com/pubkeys.gpg">'
        '</head><body><meta name="ac-discovery" content="example.com https://example.com/{name}.{ext}">'
        "</body></html>",
        [KEYS, TAG],
    ),
    # Broken markup around the tags: unclosed elements, stray brackets, bad nesting.
    (
        '<html><head><b><i></b> << >> <p><div <meta name="ac-discovery" content="ignored x">'
        '<meta name="ac-discovery" content="example.com https://example.com/{name}.{ext}"></div></span>',
        [TAG],
    ),
    # Raw-text elements hide tags, as a browser's tokenizer does.
    (
        '<title>x <meta name="ac-discovery" content="a b"></title><textarea><meta name="ac-discovery" '
        'content="a b"></textarea>',
        [],
    ),
    (
        '<meta name="ac-discovery" content="example.com https://example.com/{name}.{ext}"><meta name="ac-disc',
        [TAG],
    ),
    # Not counted: other tags, names not starting with ac-, content without a space-separated rest.
    ('<link name="ac-discovery" content="example.com https://x/{name}.{ext}">', []),
    ('<meta name="discovery" content="example.com https://x/{name}.{ext}">', []),
    ('<meta name="AC-discovery" content="example.com https://x/{name}.{ext}">', []),
    ('<meta name="ac-discovery" content="example.com">', []),
    ('<meta name="ac-discovery" content="   ">', []),
    ('<meta name="ac-discovery" content="example.com\thttps://x/{name}.{ext}">', []),
    ('<meta name="ac-discovery">', []),
    ('<meta content="example.com https://x/{name}.{ext}">', []),
    ("", []),
    ("\x00\xff garbage <<<>>> &#xZZ; </", []),
]


@pytest.mark.parametrize(("page", "tags"), META_PAGES)
def test_meta_tags(page: str, tags: list[MetaTag]) -> None:
    assert parse_meta_tags(page) == tags


def test_meta_tags_keep_other_ac_names_and_order() -> None:
    page = (
        '<meta name="ac-other" content="a b"><meta name="ac-discovery" content="a https://1">'
        '<meta name="ac-discovery" content="a https://2">'
    )
    assert [(t.kind, t.content) for t in parse_meta_tags(page)] == [
        ("ac-other", "b"),
        ("ac-discovery", "https://1"),
        ("ac-discovery", "https://2"),
    ]


# --- templates --------------------------------------------------------------------------


def _request(name: str = "example.com/app", **labels: str) -> AppRequest:
    return AppRequest(ACIdentifier(name), labels)


TEMPLATES = [
    ("https://h/{name}.{ext}", _request(), "aci", "https://h/example.com/app.aci"),
    ("https://h/{name}.{ext}", _request(), "aci.asc", "https://h/example.com/app.aci.asc"),
    ("https://h/{name}-{version}.{ext}", _request(), "aci", "https://h/example.com/app-latest.aci"),
    (
        "https://h/{name}-{version}.{ext}",
        _request(version="1.0"),
        "aci",
        "https://h/example.com/app-1.0.aci",
    ),
    (
        "https://h/{os}/{arch}/{name}.{ext}",
        _request(os="linux", arch="amd64"),
        "aci",
        "https://h/linux/amd64/example.com/app.aci",
    ),
    (
        "https://h/{channel}/{name}.{ext}",
        _request(channel="beta"),
        "aci",
        "https://h/beta/example.com/app.aci",
    ),
    ("https://h/{os}/{name}.{ext}", _request(), "aci", None),  # unfilled {os}: skipped
    ("https://h/{arch}/{name}.{ext}", _request(os="linux"), "aci", None),
    ("https://h/{}/{name}.{ext}", _request(), "aci", None),
    # A label called "name" never replaces the image name.
    (
        "https://h/{name}.{ext}",
        AppRequest(ACIdentifier("example.com/app"), {"name": "ignored"}),
        "aci",
        "https://h/example.com/app.aci",
    ),
    ("hdfs://cluster/{name}.{ext}", _request(), "aci", "hdfs://cluster/example.com/app.aci"),
    ("https://h/static.aci", _request(), "aci", "https://h/static.aci"),
    (
        "https://h/{name}/{name}.{ext}",
        _request(),
        "aci",
        "https://h/example.com/app/example.com/app.aci",
    ),
]


@pytest.mark.parametrize(("template", "request_", "ext", "expected"), TEMPLATES)
def test_render_template(
    template: str, request_: AppRequest, ext: str, expected: str | None
) -> None:
    assert render_template(template, request_, ext) == expected


# --- discovery against the server ------------------------------------------------------


def _options(server: DiscoveryServer, **changes: object) -> DiscoveryOptions:
    values: dict[str, object] = {
        "port": server.https_port,
        "ca_file": str(server.ca_file),
        "timeout": 5.0,
    }
    values.update(changes)
    return DiscoveryOptions(**values)  # type: ignore[arg-type]


WORKED_TEMPLATE = "https://storage.example.com/{os}/{arch}/{name}-{version}.{ext}"


def test_worked_example(discovery_server: DiscoveryServer) -> None:
    """appc-spec.md §5: the meta tag at /foo serves 127.0.0.1/foo/bar/baz, found after two 404s."""
    discovery_server.page("/foo", [("ac-discovery", f"127.0.0.1/foo {WORKED_TEMPLATE}")])
    request = AppRequest(ACIdentifier("127.0.0.1/foo/bar/baz"), {"os": "linux", "arch": "amd64"})
    result = discover(request, _options(discovery_server), public_keys=False)
    assert result.endpoints == (
        ACIEndpoint(
            "https://storage.example.com/linux/amd64/127.0.0.1/foo/bar/baz-latest.aci",
            "https://storage.example.com/linux/amd64/127.0.0.1/foo/bar/baz-latest.aci.asc",
        ),
    )
    assert discovery_server.requests() == [
        "https:/foo/bar/baz?ac-discovery=1",
        "https:/foo/bar?ac-discovery=1",
        "https:/foo?ac-discovery=1",
    ]
    assert result.endpoint_attempts == (
        ("127.0.0.1/foo/bar/baz", "expected a 200 OK got 404"),
        ("127.0.0.1/foo/bar", "expected a 200 OK got 404"),
    )


def test_worked_example_on_port_443(discovery_server: DiscoveryServer) -> None:
    """The same without any port option, when the test server could take port 443."""
    if not discovery_server.on_443:
        pytest.skip("ports 443/80 are busy: the --port variants cover discovery")
    discovery_server.page("/foo", [("ac-discovery", f"127.0.0.1/foo {WORKED_TEMPLATE}")])
    request = AppRequest(ACIdentifier("127.0.0.1/foo/bar/baz"), {"os": "linux", "arch": "amd64"})
    result = discover(
        request, DiscoveryOptions(ca_file=str(discovery_server.ca_file)), public_keys=False
    )
    assert (
        result.endpoints[0].aci
        == "https://storage.example.com/linux/amd64/127.0.0.1/foo/bar/baz-latest.aci"
    )
    assert discovery_server.requests("https") == [
        "/foo/bar/baz?ac-discovery=1",
        "/foo/bar?ac-discovery=1",
        "/foo?ac-discovery=1",
    ]


def test_endpoints_and_keys_walk_separately(discovery_server: DiscoveryServer) -> None:
    """Endpoints found at the deepest level, keys only at the host; each page is fetched once."""
    discovery_server.page(
        "/project/app", [("ac-discovery", "localhost/project https://h/{name}.{ext}")]
    )
    discovery_server.page("/project", [("ac-discovery", "localhost https://other/{name}.{ext}")])
    discovery_server.page(
        "/",
        [
            ("ac-discovery-pubkeys", "localhost https://h/root.gpg"),
            ("ac-discovery-pubkeys", "localhost https://h/second.gpg"),
        ],
    )
    result = discover(AppRequest(ACIdentifier("localhost/project/app")), _options(discovery_server))
    assert [e.aci for e in result.endpoints] == ["https://h/localhost/project/app.aci"]
    assert result.public_keys == ("https://h/root.gpg", "https://h/second.gpg")
    assert result.endpoint_attempts == ()
    assert result.key_attempts == ()  # pages without keys are not failures
    assert discovery_server.requests() == [
        "https:/project/app?ac-discovery=1",
        "https:/project?ac-discovery=1",
        "https:/?ac-discovery=1",
    ]


def test_keys_walk_stops_at_first_level_with_keys(discovery_server: DiscoveryServer) -> None:
    discovery_server.page("/a/b", [("ac-discovery", "localhost/a https://h/{name}.{ext}")])
    discovery_server.page("/a", [("ac-discovery-pubkeys", "localhost/a https://h/a.gpg")])
    discovery_server.page("/", [("ac-discovery-pubkeys", "localhost https://h/root.gpg")])
    result = discover(AppRequest(ACIdentifier("localhost/a/b")), _options(discovery_server))
    assert result.public_keys == ("https://h/a.gpg",)
    assert "https:/?ac-discovery=1" not in discovery_server.requests()


def test_keys_only_walk(discovery_server: DiscoveryServer) -> None:
    discovery_server.page("/", [("ac-discovery-pubkeys", "localhost https://h/root.gpg")])
    result = discover(
        AppRequest(ACIdentifier("localhost/etcd")), _options(discovery_server), endpoints=False
    )
    assert result.endpoints == ()
    assert result.public_keys == ("https://h/root.gpg",)
    assert result.key_attempts == (("localhost/etcd", "expected a 200 OK got 404"),)


def test_several_templates_in_document_order(discovery_server: DiscoveryServer) -> None:
    discovery_server.page(
        "/app",
        [
            ("ac-discovery", "localhost/app https://h/{os}/{name}.{ext}"),  # kept: os given
            ("ac-discovery", "other.com https://x/{name}.{ext}"),  # prefix does not match
            ("ac-discovery", "localhost https://h/{channel}/{name}.{ext}"),  # unfilled: skipped
            (
                "ac-discovery",
                "localhost/ap hdfs://cluster/{name}-{version}.{ext}",
            ),  # plain string prefix
            ("ac-discovery-pubkeys", "other.com https://x/keys.gpg"),  # not ours
        ],
    )
    result = discover(
        AppRequest(ACIdentifier("localhost/app"), {"os": "linux"}),
        _options(discovery_server),
        public_keys=False,
    )
    assert [e.aci for e in result.endpoints] == [
        "https://h/linux/localhost/app.aci",
        "hdfs://cluster/localhost/app-latest.aci",
    ]
    assert [e.asc for e in result.endpoints] == [
        "https://h/linux/localhost/app.aci.asc",
        "hdfs://cluster/localhost/app-latest.aci.asc",
    ]


def test_no_meta_tags_fails(discovery_server: DiscoveryServer) -> None:
    discovery_server.page("/app", html_text="<html><body>nothing here</body></html>")
    discovery_server.page(
        "/", html_text="<html><head><meta name='description' content='x y'></head></html>"
    )
    with pytest.raises(DiscoveryError, match="discovery failed") as info:
        discover(AppRequest(ACIdentifier("localhost/app")), _options(discovery_server))
    assert info.value.attempts == ()  # pages were read: nothing failed, nothing was usable
    assert "localhost/app: no usable ac-discovery meta tag" in str(info.value)


def test_template_that_yields_nothing_fails(discovery_server: DiscoveryServer) -> None:
    discovery_server.page(
        "/app", [("ac-discovery", "localhost https://h/{os}/{arch}/{name}.{ext}")]
    )
    with pytest.raises(DiscoveryError, match="discovery failed"):
        discover(AppRequest(ACIdentifier("localhost/app")), _options(discovery_server))


def test_all_levels_404(discovery_server: DiscoveryServer) -> None:
    with pytest.raises(DiscoveryError) as info:
        discover(AppRequest(ACIdentifier("localhost/a/b")), _options(discovery_server))
    assert info.value.attempts == (
        ("localhost/a/b", "expected a 200 OK got 404"),
        ("localhost/a", "expected a 200 OK got 404"),
        ("localhost", "expected a 200 OK got 404"),
    )
    assert str(info.value).startswith("discovery failed for localhost/a/b: ")


def test_non_200_pages_are_skipped(discovery_server: DiscoveryServer) -> None:
    """A page served with 500 (or 401) counts as a failed level even if it holds meta tags."""
    discovery_server.page(
        "/app", [("ac-discovery", "localhost https://bad/{name}.{ext}")], status=500
    )
    discovery_server.page("/", [("ac-discovery", "localhost https://good/{name}.{ext}")])
    result = discover(
        AppRequest(ACIdentifier("localhost/app")), _options(discovery_server), public_keys=False
    )
    assert [e.aci for e in result.endpoints] == ["https://good/localhost/app.aci"]
    assert result.endpoint_attempts == (("localhost/app", "expected a 200 OK got 500"),)


def test_untrusted_certificate_fails_without_insecure(discovery_server: DiscoveryServer) -> None:
    discovery_server.page("/app", [("ac-discovery", "localhost https://h/{name}.{ext}")])
    with pytest.raises(DiscoveryError) as info:
        discover(
            AppRequest(ACIdentifier("localhost/app")), _options(discovery_server, ca_file=None)
        )
    assert all("CERTIFICATE_VERIFY_FAILED" in error for _, error in info.value.attempts)
    assert discovery_server.requests("http") == []
    result = discover(
        AppRequest(ACIdentifier("localhost/app")),
        _options(discovery_server, ca_file=None, insecure_tls=True),
        public_keys=False,
    )
    assert [e.aci for e in result.endpoints] == ["https://h/localhost/app.aci"]


def test_http_fallback_only_when_allowed(discovery_server: DiscoveryServer) -> None:
    """Against the plain-HTTP server HTTPS fails; HTTP is tried only with insecure_http."""
    discovery_server.page(
        "/app", [("ac-discovery", "localhost http://h/{name}.{ext}")], scheme="http"
    )
    options = _options(discovery_server, port=discovery_server.http_port)
    with pytest.raises(DiscoveryError):
        discover(AppRequest(ACIdentifier("localhost/app")), options)
    assert discovery_server.requests("http") == []
    result = discover(
        AppRequest(ACIdentifier("localhost/app")),
        _options(discovery_server, port=discovery_server.http_port, insecure_http=True),
        public_keys=False,
    )
    assert [e.aci for e in result.endpoints] == ["http://h/localhost/app.aci"]
    assert discovery_server.requests("http") == ["/app?ac-discovery=1"]


def test_http_fallback_after_https_404(discovery_server: DiscoveryServer) -> None:
    """A non-200 HTTPS answer also falls back to HTTP when allowed (same port: both servers on 443/80)."""
    if not discovery_server.on_443:
        pytest.skip("needs ports 443 and 80")
    discovery_server.page(
        "/app", [("ac-discovery", "localhost http://h/{name}.{ext}")], scheme="http"
    )
    options = DiscoveryOptions(
        ca_file=str(discovery_server.ca_file), insecure_http=True, timeout=5.0
    )
    result = discover(AppRequest(ACIdentifier("localhost/app")), options, public_keys=False)
    assert [e.aci for e in result.endpoints] == ["http://h/localhost/app.aci"]
    assert discovery_server.requests()[:2] == [
        "https:/app?ac-discovery=1",
        "http:/app?ac-discovery=1",
    ]


def test_redirects_are_followed(discovery_server: DiscoveryServer) -> None:
    discovery_server.redirect("/app", "/moved/app?ac-discovery=1", status=301)
    discovery_server.page("/moved/app", [("ac-discovery", "localhost/app https://h/{name}.{ext}")])
    result = discover(
        AppRequest(ACIdentifier("localhost/app")), _options(discovery_server), public_keys=False
    )
    assert [e.aci for e in result.endpoints] == ["https://h/localhost/app.aci"]
    assert discovery_server.requests() == [
        "https:/app?ac-discovery=1",
        "https:/moved/app?ac-discovery=1",
    ]


def test_redirect_to_http_refused_without_insecure(discovery_server: DiscoveryServer) -> None:
    target = discovery_server.url("/plain/app?ac-discovery=1", scheme="http")
    discovery_server.redirect("/app", target)
    discovery_server.page(
        "/plain/app", [("ac-discovery", "localhost/app http://h/{name}.{ext}")], scheme="http"
    )
    with pytest.raises(DiscoveryError) as info:
        discover(AppRequest(ACIdentifier("localhost/app")), _options(discovery_server))
    assert "refusing redirect to plain HTTP" in info.value.attempts[0][1]
    assert discovery_server.requests("http") == []
    result = discover(
        AppRequest(ACIdentifier("localhost/app")),
        _options(discovery_server, insecure_http=True),
        public_keys=False,
    )
    assert [e.aci for e in result.endpoints] == ["http://h/localhost/app.aci"]


def test_huge_page_is_a_failed_level(discovery_server: DiscoveryServer) -> None:
    big = (
        "<html>"
        + "x" * (1024 * 1024 + 10)
        + '<meta name="ac-discovery" content="localhost https://h/{name}.{ext}">'
    )
    discovery_server.page("/app", html_text=big)
    discovery_server.page("/", [("ac-discovery", "localhost https://ok/{name}.{ext}")])
    result = discover(
        AppRequest(ACIdentifier("localhost/app")), _options(discovery_server), public_keys=False
    )
    assert [e.aci for e in result.endpoints] == ["https://ok/localhost/app.aci"]
    assert "larger than" in result.endpoint_attempts[0][1]


def test_nothing_listening(discovery_server: DiscoveryServer) -> None:
    with pytest.raises(DiscoveryError) as info:
        discover(
            AppRequest(ACIdentifier("localhost/app")), _options(discovery_server, port=free_port())
        )
    assert [p for p, _ in info.value.attempts] == ["localhost/app", "localhost"]
    assert all("Connection refused" in e for _, e in info.value.attempts)


# --- actool discover -------------------------------------------------------------------


def _actool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appc_tools.actool", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env_without_proxies(),
        check=False,
    )


def _serve_etcd(server: DiscoveryServer) -> None:
    server.page(
        "/etcd",
        [
            ("ac-discovery", "localhost/etcd https://h/{name}-{version}-{os}-{arch}.{ext}"),
            ("ac-discovery", "localhost/etcd hdfs://mirror/{name}.{ext}"),
        ],
    )
    server.page(
        "/",
        [
            ("ac-discovery-pubkeys", "localhost https://h/a.gpg"),
            ("ac-discovery-pubkeys", "localhost https://h/b.gpg"),
        ],
    )


def test_actool_discover_lines(discovery_server: DiscoveryServer) -> None:
    _serve_etcd(discovery_server)
    result = _actool(
        "discover",
        "--port",
        str(discovery_server.https_port),
        "--ca-file",
        str(discovery_server.ca_file),
        "localhost/etcd:v2.0.0",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "ACI: https://h/localhost/etcd-v2.0.0-linux-amd64.aci, ASC: https://h/localhost/etcd-v2.0.0-linux-amd64.aci.asc",
        "ACI: hdfs://mirror/localhost/etcd.aci, ASC: hdfs://mirror/localhost/etcd.aci.asc",
        "PublicKeys: https://h/a.gpg,https://h/b.gpg",
    ]
    assert result.stderr == ""


def test_actool_discover_json_and_walk_lines(discovery_server: DiscoveryServer) -> None:
    discovery_server.page(
        "/etcd", [("ac-discovery", "localhost/etcd https://h/{name}.{ext}")], status=404
    )
    discovery_server.page(
        "/",
        [
            ("ac-discovery", "localhost https://h/{name}-{version}.{ext}"),
            ("ac-discovery-pubkeys", "localhost https://h/a.gpg"),
        ],
    )
    result = _actool(
        "discover",
        "--json",
        f"--port={discovery_server.https_port}",
        "--ca-file",
        str(discovery_server.ca_file),
        "localhost/etcd,os=linux",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == [
        "discover endpoints walk: prefix: localhost/etcd error: expected a 200 OK got 404",
        "discover public keys walk: prefix: localhost/etcd error: expected a 200 OK got 404",
    ]
    document = "\n".join(lines[2:])
    assert json.loads(document) == {
        "ACIEndpoints": [
            {
                "ACI": "https://h/localhost/etcd-latest.aci",
                "ASC": "https://h/localhost/etcd-latest.aci.asc",
            }
        ],
        "PublicKeys": ["https://h/a.gpg"],
    }
    assert document.startswith('{\n    "ACIEndpoints": [\n')  # Go's MarshalIndent, 4 spaces


def test_actool_discover_failure(discovery_server: DiscoveryServer) -> None:
    result = _actool(
        "discover",
        "--port",
        str(discovery_server.https_port),
        "--ca-file",
        str(discovery_server.ca_file),
        "localhost/etcd",
    )
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "discover endpoints walk: prefix: localhost/etcd error: expected a 200 OK got 404",
        "discover endpoints walk: prefix: localhost error: expected a 200 OK got 404",
    ]
    assert result.stderr == "error fetching endpoints for localhost/etcd: discovery failed\n"


def test_actool_discover_no_public_keys(discovery_server: DiscoveryServer) -> None:
    """As the reference: endpoints without any key is an error too (exit 1)."""
    discovery_server.page("/etcd", [("ac-discovery", "localhost/etcd https://h/{name}.{ext}")])
    result = _actool(
        "discover",
        "--port",
        str(discovery_server.https_port),
        "--ca-file",
        str(discovery_server.ca_file),
        "localhost/etcd",
    )
    assert result.returncode == 1
    assert result.stderr == "error fetching public keys for localhost/etcd: discovery failed\n"
    assert "Traceback" not in result.stderr


def test_actool_discover_tls_needs_insecure(discovery_server: DiscoveryServer) -> None:
    _serve_etcd(discovery_server)
    port = str(discovery_server.https_port)
    refused = _actool("discover", "--port", port, "localhost/etcd")
    assert refused.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stdout
    assert refused.stderr == "error fetching endpoints for localhost/etcd: discovery failed\n"
    allowed = _actool("discover", "--insecure", "--port", port, "localhost/etcd")
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.startswith("ACI: https://h/localhost/etcd-latest-linux-amd64.aci, ")


def test_actool_discover_insecure_allows_http(discovery_server: DiscoveryServer) -> None:
    discovery_server.page(
        "/etcd",
        [
            ("ac-discovery", "localhost/etcd http://h/{name}.{ext}"),
            ("ac-discovery-pubkeys", "localhost/etcd http://h/k.gpg"),
        ],
        scheme="http",
    )
    port = str(discovery_server.http_port)
    assert _actool("discover", "--port", port, "localhost/etcd").returncode == 1
    result = _actool("discover", "--insecure", "--port", port, "localhost/etcd")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == [
        "ACI: http://h/localhost/etcd.aci, ASC: http://h/localhost/etcd.aci.asc",
        "PublicKeys: http://h/k.gpg",
    ]


def test_actool_discover_on_port_443(discovery_server: DiscoveryServer) -> None:
    if not discovery_server.on_443:
        pytest.skip("ports 443/80 are busy: --port covers actool discover")
    _serve_etcd(discovery_server)
    result = _actool(
        "discover", "--ca-file", str(discovery_server.ca_file), "localhost/etcd:v2.0.0"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith(
        "ACI: https://h/localhost/etcd-v2.0.0-linux-amd64.aci"
    )


@pytest.mark.parametrize(
    "text", ["example.com/app:1:2", "Bad/Name", "example.com/app,os=a:1", "x,%zz=1"]
)
def test_actool_discover_bad_app_string(text: str) -> None:
    """The reference panicked (nil dereference); here: one line, exit 1, no request."""
    result = _actool("discover", "--port", "1", text)
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("actool discover: ")
    assert "Traceback" not in result.stderr
