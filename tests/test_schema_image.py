"""ImageManifest: building in code, reading with the reference decoder's rules, every error
at once with its field path, and the canonical JSON the reference tool writes (appc-spec §2).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from appc.errors import InvalidManifest, ValidationError
from appc.schema import SPEC_VERSION, App, ImageManifest
from appc.types import (
    ACIdentifier,
    Dependency,
    EventHandler,
    Hash,
    Isolator,
    MountPoint,
    Port,
    SemVer,
)


def errors_of(exc: ValidationError) -> list[tuple[str, str]]:
    """Each error of *exc* as (dotted field, message)."""
    return [(e.field, e.message) for e in exc.errors]


def manifest(**fields: Any) -> dict[str, Any]:
    """A minimal valid image manifest as JSON, with *fields* added or replaced."""
    return {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/app", **fields}


APP = {"exec": ["/bin/app"], "user": "0", "group": "0"}

# The image manifest of the spec's walk-through, with every section filled in.
SPEC_EXAMPLE: dict[str, Any] = {
    "acKind": "ImageManifest",
    "acVersion": "0.8.11",
    "name": "example.com/reduce-worker",
    "labels": [
        {"name": "version", "value": "1.0.0"},
        {"name": "arch", "value": "amd64"},
        {"name": "os", "value": "linux"},
    ],
    "app": {
        "exec": ["/usr/bin/reduce-worker", "--quiet"],
        "eventHandlers": [
            {"name": "pre-start", "exec": ["/usr/bin/data-downloader"]},
            {"name": "post-stop", "exec": ["/usr/bin/deregister-worker", "--verbose"]},
        ],
        "user": "100",
        "group": "300",
        "supplementaryGIDs": [400, 500],
        "workingDirectory": "/opt/work",
        "environment": [{"name": "REDUCE_WORKER_DEBUG", "value": "true"}],
        "mountPoints": [
            {"name": "work", "path": "/var/lib/work", "readOnly": False},
        ],
        "ports": [
            {"name": "health", "port": 4000, "protocol": "tcp", "socketActivated": True},
        ],
        "isolators": [
            {"name": "resource/cpu", "value": {"request": "250m"}},
            {"name": "resource/memory", "value": {"limit": "1G"}},
            {"name": "os/linux/capabilities-retain-set", "value": {"set": ["CAP_NET_BIND_SERVICE"]}},
        ],
        "userAnnotations": {"documentation": "https://example.com/docs"},
        "userLabels": {"team": "workers"},
    },
    "dependencies": [
        {
            "imageName": "example.com/reduce-worker-base",
            "imageID": "sha512-...",
            "labels": [{"name": "os", "value": "linux"}, {"name": "env", "value": "canary"}],
            "size": 5046272,
        },
    ],
    "pathWhitelist": ["/etc/ca/example.com/crt", "/usr/bin/map-reduce-worker"],
    "annotations": [
        {"name": "authors", "value": "Carly Container <carly@example.com>, Nat Network"},
        {"name": "created", "value": "2014-10-27T19:32:27.67021798Z"},
        {"name": "documentation", "value": "https://example.com/docs"},
        {"name": "homepage", "value": "https://example.com"},
    ],
}


# --- building in code --------------------------------------------------------------------


def test_build_in_code_and_write_canonical_json() -> None:
    m = ImageManifest(
        name="example.com/hello",
        labels={"version": "1.0.0", "os": "linux", "arch": "amd64"},
        app=App(
            exec=["/bin/hello"],
            user="0",
            group="0",
            ports=[Port(name="www", protocol="tcp", port=80)],
        ),
    )
    assert m.ac_version == SPEC_VERSION == SemVer.parse("0.8.11")
    assert (m.os, m.arch, m.version) == ("linux", "amd64", "1.0.0")
    assert m.to_json() == (
        '{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/hello",'
        '"labels":[{"name":"arch","value":"amd64"},{"name":"os","value":"linux"},'
        '{"name":"version","value":"1.0.0"}],'
        '"app":{"exec":["/bin/hello"],"user":"0","group":"0",'
        '"ports":[{"name":"www","protocol":"tcp","port":80,"count":1,"socketActivated":false}]}}'
    )
    assert ImageManifest.from_json(m.to_json()) == m


def test_build_minimal() -> None:
    m = ImageManifest(name="example.com/minimal")
    assert m.to_dict() == {
        "acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/minimal",
    }
    assert m.app is None
    assert (m.os, m.arch, m.version) == (None, None, None)


def test_error_build_checks_values() -> None:
    with pytest.raises(ValidationError, match="ACIdentifier must contain only lower case"):
        ImageManifest(name="Example.com/Hello")
    with pytest.raises(InvalidManifest, match="bad os 'windows'"):
        ImageManifest(name="a", labels={"os": "windows"})
    with pytest.raises(ValidationError, match="user is required"):
        App(user="", group="0")
    with pytest.raises(InvalidManifest, match="invalid isolator 'x/y'"):
        App(user="0", group="0", isolators=[Isolator("x/y", 1)])
    with pytest.raises(ValidationError, match='missing or bad ACKind'):
        ImageManifest(name="a", ac_kind="PodManifest")


def test_manifest_is_frozen() -> None:
    m = ImageManifest(name="example.com/app")
    with pytest.raises(AttributeError):
        m.name = ACIdentifier("other")  # type: ignore[misc]


# --- the spec example --------------------------------------------------------------------


def test_spec_example_reads_with_typed_values() -> None:
    m = ImageManifest.from_dict(SPEC_EXAMPLE)
    assert m.name == "example.com/reduce-worker"
    assert m.version == "1.0.0"
    assert m.app is not None
    assert m.app.exec == ("/usr/bin/reduce-worker", "--quiet")
    assert m.app.event_handler("pre-start") == EventHandler("pre-start", ("/usr/bin/data-downloader",))
    assert m.app.event_handler("missing") is None
    assert m.app.supplementary_gids == (400, 500)
    assert m.app.environment.get("REDUCE_WORKER_DEBUG") == "true"
    assert m.app.mount_points == (MountPoint(name="work", path="/var/lib/work"),)
    assert m.app.ports[0].count == 1
    assert m.app.isolators.get("resource/memory") == Isolator("resource/memory", {"limit": "1G"})
    assert m.app.user_labels == {"team": "workers"}
    assert m.dependencies == (
        Dependency(
            image_name="example.com/reduce-worker-base",
            image_id=Hash("sha512-..."),
            labels=[("os", "linux"), ("env", "canary")],
            size=5046272,
        ),
    )
    assert m.annotations.get("homepage") == "https://example.com"
    assert m.path_whitelist == ("/etc/ca/example.com/crt", "/usr/bin/map-reduce-worker")


def test_spec_example_canonical_json() -> None:
    m = ImageManifest.from_dict(SPEC_EXAMPLE)
    out = json.loads(m.to_json())
    # Top level and app keys in the reference's (Go struct) order.
    assert list(out) == [
        "acKind", "acVersion", "name", "labels", "app", "annotations", "dependencies",
        "pathWhitelist",
    ]
    assert list(out["app"]) == [
        "exec", "eventHandlers", "user", "group", "supplementaryGIDs", "workingDirectory",
        "environment", "mountPoints", "ports", "isolators", "userAnnotations", "userLabels",
    ]
    # readOnly false is left out; ports always have count and socketActivated.
    assert out["app"]["mountPoints"] == [{"name": "work", "path": "/var/lib/work"}]
    assert out["app"]["ports"] == [
        {"name": "health", "protocol": "tcp", "port": 4000, "count": 1, "socketActivated": True},
    ]
    # Go's HTML escaping.
    assert "Carly Container \\u003ccarly@example.com\\u003e" in m.to_json()
    assert ImageManifest.from_json(m.to_json()) == m


def test_indented_json_is_the_same_document() -> None:
    m = ImageManifest.from_dict(SPEC_EXAMPLE)
    text = m.to_json(indent=4)
    assert text.startswith('{\n    "acKind": "ImageManifest",\n    "acVersion": "0.8.11",\n')
    assert json.loads(text) == json.loads(m.to_json())
    assert ImageManifest.from_json(text) == m


# --- canonical output --------------------------------------------------------------------


def test_output_key_order_does_not_follow_the_input() -> None:
    reversed_doc = dict(reversed(list(SPEC_EXAMPLE.items())))
    reversed_doc["app"] = dict(reversed(list(SPEC_EXAMPLE["app"].items())))
    assert ImageManifest.from_dict(reversed_doc).to_json() == (
        ImageManifest.from_dict(SPEC_EXAMPLE).to_json()
    )


GO_ESCAPES = [
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
    ('"', '\\"'),
    ("\\", "\\\\"),
    ("\n", "\\n"),
    ("\x01", "\\u0001"),
    ("é", "é"),  # non-ASCII written as UTF-8, as Go does
    ("\U0001f600", "\U0001f600"),
]


@pytest.mark.parametrize(("char", "written"), GO_ESCAPES, ids=[repr(c) for c, _ in GO_ESCAPES])
def test_go_html_escaping(char: str, written: str) -> None:
    m = ImageManifest(name="a", annotations={"authors": f"x{char}y"})
    assert f'"value":"x{written}y"' in m.to_json()
    assert ImageManifest.from_json(m.to_json()) == m


EMPTY_OPTIONALS = [
    {"labels": []},
    {"labels": None},
    {"app": None},
    {"annotations": []},
    {"dependencies": []},
    {"pathWhitelist": []},
    {"pathWhitelist": None},
]


@pytest.mark.parametrize("extra", EMPTY_OPTIONALS, ids=[json.dumps(e) for e in EMPTY_OPTIONALS])
def test_empty_optionals_are_left_out(extra: dict[str, Any]) -> None:
    assert ImageManifest.from_dict(manifest(**extra)).to_dict() == manifest()


def test_empty_app_fields_are_left_out() -> None:
    data = manifest(app={
        "exec": [], "eventHandlers": [], "user": "u", "group": "g", "supplementaryGIDs": [],
        "workingDirectory": "", "environment": [], "isolators": [], "mountPoints": [],
        "ports": [], "userAnnotations": {}, "userLabels": {},
    })
    assert ImageManifest.from_dict(data).to_dict()["app"] == {"user": "u", "group": "g"}


def test_port_with_zero_count_is_written_with_count_one() -> None:
    m = ImageManifest.from_dict(manifest(app={**APP, "ports": [{"name": "p", "port": 80, "count": 0}]}))
    assert m.to_dict()["app"]["ports"] == [
        {"name": "p", "port": 80, "count": 1, "socketActivated": False},
    ]


def test_isolator_values_are_written_back_as_given() -> None:
    value = {"limit": " 1G ", "request": 500}
    m = ImageManifest.from_dict(manifest(app={**APP, "isolators": [{"name": "resource/cpu", "value": value}]}))
    assert m.to_dict()["app"]["isolators"] == [{"name": "resource/cpu", "value": value}]


# --- reading: the reference decoder's rules ----------------------------------------------

CASE_INSENSITIVE = [
    ('{"ACKIND":"ImageManifest","acversion":"0.8.11","NAME":"a"}', {}),
    ('{"AcKind":"ImageManifest","ACVersion":"0.8.11","Name":"a"}', {}),
    (
        '{"acKind":"ImageManifest","acVersion":"0.8.11","name":"a",'
        '"APP":{"Exec":["/x"],"User":"0","GROUP":"0","supplementaryGids":[1,2],'
        '"WorkingDirectory":"/w","MOUNTPOINTS":[{"NAME":"m","Path":"/m","readonly":true}]}}',
        {"app": {"exec": ["/x"], "user": "0", "group": "0", "supplementaryGIDs": [1, 2],
                 "workingDirectory": "/w",
                 "mountPoints": [{"name": "m", "path": "/m", "readOnly": True}]}},
    ),
    (
        '{"acKind":"ImageManifest","acVersion":"0.8.11","name":"a",'
        '"Labels":[{"Name":"os","VALUE":"linux"}],'
        '"Dependencies":[{"IMAGENAME":"b","imageid":"sha512-x","Size":3}]}',
        {"labels": [{"name": "os", "value": "linux"}],
         "dependencies": [{"imageName": "b", "imageID": "sha512-x", "size": 3}]},
    ),
    # The typed reading of an isolator value follows the same rule.
    (
        '{"acKind":"ImageManifest","acVersion":"0.8.11","name":"a","app":{"user":"0","group":"0",'
        '"isolators":[{"Name":"resource/memory","Value":{"LIMIT":"1G"}}]}}',
        {"app": {"user": "0", "group": "0",
                 "isolators": [{"name": "resource/memory", "value": {"limit": "1G"}}]}},
    ),
]


@pytest.mark.parametrize(("text", "extra"), CASE_INSENSITIVE, ids=[str(i) for i in range(len(CASE_INSENSITIVE))])
def test_keys_match_case_insensitively(text: str, extra: dict[str, Any]) -> None:
    m = ImageManifest.from_json(text)
    assert m.to_dict() == {**manifest(name="a"), **extra}


def test_free_form_keys_keep_their_case() -> None:
    m = ImageManifest.from_dict(manifest(app={**APP, "userLabels": {"Team": "A", "team": "b"}}))
    assert m.app is not None
    assert m.app.user_labels == {"Team": "A", "team": "b"}


NULLS = [
    {"labels": None}, {"app": None}, {"annotations": None}, {"dependencies": None},
    {"pathWhitelist": None},
    {"app": {**APP, "exec": None, "eventHandlers": None, "supplementaryGIDs": None,
             "workingDirectory": None, "environment": None, "isolators": None,
             "mountPoints": None, "ports": None, "userAnnotations": None, "userLabels": None}},
    {"labels": [{"name": "os", "value": None}]},  # then the os is "" ...
]


@pytest.mark.parametrize("extra", NULLS[:-1], ids=[str(i) for i in range(len(NULLS) - 1)])
def test_null_is_absent(extra: dict[str, Any]) -> None:
    with_nulls = ImageManifest.from_dict(manifest(**extra))
    without = {k: v for k, v in extra.items() if v is not None}
    if "app" in without:
        without["app"] = {k: v for k, v in without["app"].items() if v is not None}
    assert with_nulls == ImageManifest.from_dict(manifest(**without))


def test_error_null_label_value_is_empty_string() -> None:
    with pytest.raises(InvalidManifest) as info:
        ImageManifest.from_dict(manifest(**NULLS[-1]))
    assert errors_of(info.value) == [
        ("labels[0].value", "bad os '' (must be one of: [darwin freebsd linux])"),
    ]


def test_error_null_required_field_is_missing() -> None:
    with pytest.raises(InvalidManifest) as info:
        ImageManifest.from_dict(manifest(acKind=None, acVersion=None, name=None))
    assert errors_of(info.value) == [
        ("acKind", 'missing or bad ACKind (must be "ImageManifest")'),
        ("acVersion", "acVersion must be set"),
        ("name", "name must be set"),
    ]


def test_unknown_keys_are_ignored_everywhere() -> None:
    data = manifest(
        extra=1, comment={"x": [1]},
        labels=[{"name": "os", "value": "linux", "note": "x"}],
        app={**APP, "shell": "/bin/sh", "ports": [{"port": 1, "bogus": True}]},
    )
    expected = manifest(labels=[{"name": "os", "value": "linux"}], app={**APP, "ports": [{"port": 1}]})
    assert ImageManifest.from_dict(data) == ImageManifest.from_dict(expected)


DUPLICATES = [
    ('{"acKind":"ImageManifest","acVersion":"0.8.11","name":"Bad","name":"good"}', "good"),
    ('{"acKind":"ImageManifest","acVersion":"0.8.11","NAME":"bad-","name":"good"}', "good"),
    ('{"acKind":"ImageManifest","acVersion":"0.8.11","name":"first","Name":"last"}', "last"),
]


@pytest.mark.parametrize(("text", "name"), DUPLICATES, ids=["same", "cased", "valid-both"])
def test_last_duplicate_key_wins(text: str, name: str) -> None:
    assert ImageManifest.from_json(text).name == name


def test_error_last_duplicate_key_wins_even_when_bad() -> None:
    with pytest.raises(InvalidManifest) as info:
        ImageManifest.from_json('{"acKind":"ImageManifest","acVersion":"0.8.11","name":"ok","NAME":"Bad"}')
    assert errors_of(info.value) == [(
        "name", "ACIdentifier must contain only lower case alphanumeric characters plus '-._~/': 'Bad'",
    )]


def test_from_dict_does_not_change_its_input() -> None:
    data = copy.deepcopy(SPEC_EXAMPLE)
    data["APP"] = data.pop("app")
    before = copy.deepcopy(data)
    ImageManifest.from_dict(data)
    assert data == before


# --- reading: errors ---------------------------------------------------------------------

BAD_JSON = [
    ("", "invalid JSON in manifest at line 1, column 1: Expecting value"),
    ("{", "invalid JSON in manifest at line 1, column 2: "
     "Expecting property name enclosed in double quotes"),
    ('{"acKind":"ImageManifest",\n "name": }',
     "invalid JSON in manifest at line 2, column 10: Expecting value"),
    ('{"acKind":"ImageManifest"}\n{"acKind":"ImageManifest"}',
     "invalid JSON in manifest at line 2, column 1: Extra data"),
    ("{'acKind': 'ImageManifest'}", "invalid JSON in manifest at line 1, column 2: "
     "Expecting property name enclosed in double quotes"),
    ('{"acKind":NaN}', "invalid JSON in manifest: NaN is not valid JSON"),
    ('{"x":-Infinity}', "invalid JSON in manifest: -Infinity is not valid JSON"),
    ("\ufeff{}", "invalid JSON in manifest at line 1, column 1: "
     "Unexpected UTF-8 BOM (decode using utf-8-sig)"),
]


@pytest.mark.parametrize(("text", "message"), BAD_JSON, ids=[repr(t[:12]) for t, _ in BAD_JSON])
def test_error_invalid_json_names_line_and_column(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        ImageManifest.from_json(text)
    assert info.value.message == message
    assert info.value.field == ""


NOT_MANIFESTS = [
    ("{}", [
        ("acKind", 'missing or bad ACKind (must be "ImageManifest")'),
        ("acVersion", "acVersion must be set"),
        ("name", "name must be set"),
    ]),
    ('{"acVersion":"0.8.11","name":"x"}', [
        ("acKind", 'missing or bad ACKind (must be "ImageManifest")'),
    ]),
    ('{"acKind":"PodManifest","acVersion":"0.8.11","name":"x"}', [
        ("acKind", 'missing or bad ACKind (must be "ImageManifest")'),
    ]),
    ('{"acKind":"imagemanifest","acVersion":"0.8.11","name":"x"}', [
        ("acKind", 'missing or bad ACKind (must be "ImageManifest")'),
    ]),
    ('{"acKind":["ImageManifest"],"acVersion":"0.8.11","name":"x"}', [
        ("acKind", 'missing or bad ACKind (must be "ImageManifest")'),
    ]),
    ("[]", [("", "ImageManifest must be a JSON object, not array")]),
    ("[{}]", [("", "ImageManifest must be a JSON object, not array")]),
    ("null", [("", "ImageManifest must be a JSON object, not NoneType")]),
    ('"manifest"', [("", "ImageManifest must be a JSON object, not str")]),
    ("5", [("", "ImageManifest must be a JSON object, not int")]),
    ("true", [("", "ImageManifest must be a JSON object, not bool")]),
]


@pytest.mark.parametrize(("text", "errors"), NOT_MANIFESTS, ids=[t for t, _ in NOT_MANIFESTS])
def test_error_not_a_manifest_is_a_clean_error(text: str, errors: list[tuple[str, str]]) -> None:
    # actool panics on a manifest without acKind; we report it.
    with pytest.raises(InvalidManifest) as info:
        ImageManifest.from_json(text)
    assert errors_of(info.value) == errors
    assert info.value.kind == "ImageManifest"


TOP_LEVEL = [
    (manifest(acVersion="0.0.0"), [("acVersion", "SemVer cannot be zero: '0.0.0'")]),
    (manifest(acVersion="1"), [("acVersion", "SemVer is bad: '1'")]),
    (manifest(acVersion=1), [("acVersion", "SemVer must be a string, not int")]),
    (manifest(name=""), [("name", "ACIdentifier cannot be empty")]),
    (manifest(name="-app"), [
        ("name", "ACIdentifier must start and end with only lower case alphanumeric "
         "characters: '-app'"),
    ]),
    (manifest(name=["a"]), [("name", "ACIdentifier must be a string, not list")]),
]


@pytest.mark.parametrize(("data", "errors"), TOP_LEVEL, ids=[str(i) for i in range(len(TOP_LEVEL))])
def test_error_top_level_fields(data: dict[str, Any], errors: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidManifest) as info:
        ImageManifest.from_dict(data)
    assert errors_of(info.value) == errors


@pytest.mark.parametrize("version", ["99.0.0", "0.1.0", "0.8.11+git", "1.0.0-rc.1", "01.02.03"])
def test_any_nonzero_version_validates(version: str) -> None:
    # The reference does not compare acVersion with its own version.
    assert ImageManifest.from_dict(manifest(acVersion=version)).ac_version == SemVer.parse(version)


def test_error_every_bad_field_is_reported_at_once() -> None:
    data = {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": "-bad",
        "labels": [{"name": "os", "value": "darwin"}, {"name": "arch", "value": "amd64"}],
        "app": {
            "exec": ["/x"],
            "user": "",
            "group": "0",
            "workingDirectory": "rel",
            "eventHandlers": [{"name": "pre-start"}, {"name": "bad"}],
            "environment": [{"name": "1A"}, {"name": ""}],
            "ports": [{"name": "http", "port": 0}, {"port": 65535, "count": 2}],
            "isolators": [{"name": "resource/cpu"}],
            "userLabels": {"a": 1},
        },
        "annotations": [
            {"name": "created", "value": "2014-10-27 19:32:27Z"},
            {"name": "homepage", "value": "ftp://x"},
        ],
        "dependencies": [{"imageID": "sha512-ab-c"}],
        "pathWhitelist": ["/ok", 5],
    }
    with pytest.raises(InvalidManifest) as info:
        ImageManifest.from_dict(data)
    assert errors_of(info.value) == [
        ("name", "ACIdentifier must start and end with only lower case alphanumeric "
         "characters: '-bad'"),
        ("labels[1].value", "bad arch 'amd64' for darwin (must be one of: [x86_64 i386])"),
        ("app.eventHandlers[1].name", "bad eventHandler \"name\": 'bad'"),
        ("app.user", "user is required"),
        ("app.workingDirectory", "workingDirectory must be an absolute path"),
        ("app.environment[0].name", "environment variable does not have valid identifier '1A'"),
        ("app.environment[1].name", "environment variable name must not be empty"),
        ("app.ports[0].port", "port must be in 1-65535 range"),
        ("app.ports[1].count", "end of port range must be in 1-65535 range"),
        ("app.isolators[0].value", "isolator 'resource/cpu' needs a value"),
        ("app.userLabels.a", "must be a string, not number"),
        ("annotations[0].value", "bad RFC3339 timestamp: '2014-10-27 19:32:27Z'"),
        ("annotations[1].value", "bad URL scheme, must be http/https: 'ftp://x'"),
        ("dependencies[0].imageName", "imageName cannot be empty"),
        ("dependencies[0].imageID", "badly formatted hash string: 'sha512-ab-c'"),
        ("pathWhitelist[1]", "must be a string, not number"),
    ]
    error = info.value
    assert error.kind == "ImageManifest"
    assert error.errors[7].path == ("app", "ports", 0, "port")
    assert error.errors[7].value == 0
    assert str(error).startswith("name: ACIdentifier must start and end")
    assert "; app.ports[0].port: port must be in 1-65535 range; " in str(error)


APP_CASES = [
    # (app JSON, errors; [] when valid)
    ({"user": "0", "group": "0"}, []),  # exec may be missing ...
    ({"exec": [], "user": "0", "group": "0"}, []),  # ... or empty
    ({"exec": ["app", "--flag"], "user": "0", "group": "0"}, []),  # relative: looked up on PATH
    ({"user": "daemon", "group": "/etc/group-owner"}, []),  # name or path inside the image
    ({"user": "0", "group": "0", "supplementaryGIDs": [-1, 0, 2**31]}, []),  # negative is fine
    ({"user": "0", "group": "0", "workingDirectory": "/"}, []),
    ({"user": "0", "group": "0", "mountPoints": [{"path": "/a"}, {"name": "m"}]}, []),
    ({"user": "0", "group": "0", "mountPoints": [{"name": "m", "path": "/a"},
                                                  {"name": "m", "path": "/b"}]}, []),
    ({"user": "0", "group": "0", "ports": [{"name": "p", "port": 1}, {"name": "p", "port": 2}]}, []),
    ({"user": "0", "group": "0", "isolators": [
        {"name": "os/linux/seccomp-remove-set", "value": {"set": ["reboot"]}},
        {"name": "os/unix/sysctl", "value": {}},
    ]}, []),
    ({}, [("app.user", "user is required"), ("app.group", "group is required")]),
    ({"user": "", "group": ""}, [("app.user", "user is required"), ("app.group", "group is required")]),
    ({"user": 0, "group": "0"}, [("app.user", "must be a string, not number")]),
    ({"exec": "/bin/app", "user": "0", "group": "0"}, [("app.exec", "must be an array, not string")]),
    ({"exec": ["/bin/app", None], "user": "0", "group": "0"},
     [("app.exec[1]", "must be a string, not null")]),
    ({"user": "0", "group": "0", "supplementaryGIDs": ["1"]},
     [("app.supplementaryGIDs[0]", "must be an integer, not string")]),
    ({"user": "0", "group": "0", "supplementaryGIDs": [1.5]},
     [("app.supplementaryGIDs[0]", "must be an integer, not number")]),
    ({"user": "0", "group": "0", "workingDirectory": "opt"},
     [("app.workingDirectory", "workingDirectory must be an absolute path")]),
    ({"user": "0", "group": "0", "eventHandlers": [{"name": "post-stop"}, {"name": "post-stop"}]},
     [("app.eventHandlers[1].name", "Only one eventHandler of name 'post-stop' allowed")]),
    ({"user": "0", "group": "0", "environment": [{"name": "A"}, {"name": "A"}]},
     [("app.environment[1].name", "duplicate environment variable of name 'A'")]),
    ({"user": "0", "group": "0", "environment": {"A": "1"}},
     [("app.environment", "must be an array, not object")]),
    ({"user": "0", "group": "0", "isolators": [{"name": "example.com/custom", "value": 1}]},
     [("app.isolators[0].name", "invalid isolator 'example.com/custom'")]),
    ({"user": "0", "group": "0", "isolators": [
        {"name": "os/linux/seccomp-remove-set", "value": {"set": ["a"]}},
        {"name": "os/linux/seccomp-retain-set", "value": {"set": ["b"]}},
    ]}, [("app.isolators[1].name", "isolators set contains incompatible types")]),
    ({"user": "0", "group": "0", "isolators": [{"name": "os/linux/no-new-privileges"}]},
     [("app.isolators[0].value", "isolator 'os/linux/no-new-privileges' needs a value")]),
    ({"user": "0", "group": "0", "mountPoints": [{"name": "Work", "path": "/w"}]},
     [("app.mountPoints[0].name",
       "ACName must contain only lower case alphanumeric characters plus '-': 'Work'")]),
    ({"user": "0", "group": "0", "ports": [{"port": 65535, "count": 1}]}, []),
    ({"user": "0", "group": "0", "ports": [{"port": 65000, "count": 536}]}, []),
    ({"user": "0", "group": "0", "ports": [{"port": 65000, "count": 537}]},
     [("app.ports[0].count", "end of port range must be in 1-65535 range")]),
    ({"user": "0", "group": "0", "ports": [{"name": "p", "port": 80}, {"port": -80}]},
     [("app.ports[1].port", "must be at least 0, not -80")]),
    ({"user": "0", "group": "0", "userAnnotations": ["a"]},
     [("app.userAnnotations", "must be an object, not array")]),
]


@pytest.mark.parametrize(("app", "errors"), APP_CASES, ids=[str(i) for i in range(len(APP_CASES))])
def test_app_rules(app: dict[str, Any], errors: list[tuple[str, str]]) -> None:
    data = manifest(app=app)
    if not errors:
        m = ImageManifest.from_dict(data)
        assert ImageManifest.from_json(m.to_json()) == m
        return
    with pytest.raises(InvalidManifest) as info:
        ImageManifest.from_dict(data)
    assert errors_of(info.value) == errors


def test_error_app_wrong_type() -> None:
    with pytest.raises(InvalidManifest) as info:
        ImageManifest.from_dict(manifest(app=["/bin/app"]))
    assert errors_of(info.value) == [("app", "must be an object, not array")]


LIST_FIELDS = [
    ({"labels": {"os": "linux"}}, [("labels", "must be an array, not object")]),
    ({"annotations": {"authors": "me"}}, [("annotations", "must be an array, not object")]),
    ({"dependencies": {"imageName": "b"}}, [("dependencies", "must be an array, not object")]),
    ({"pathWhitelist": "/bin"}, [("pathWhitelist", "must be an array, not string")]),
    ({"labels": "os=linux"}, [("labels", "must be an array, not string")]),
]


@pytest.mark.parametrize("structural", [True, False], ids=["with-schema", "semantic-only"])
@pytest.mark.parametrize(("extra", "errors"), LIST_FIELDS, ids=[next(iter(e)) + str(i) for i, (e, _) in enumerate(LIST_FIELDS)])
def test_error_list_fields_take_only_arrays(
    extra: dict[str, Any], errors: list[tuple[str, str]], structural: bool
) -> None:
    # The builders take a mapping for labels and annotations; JSON must give an array.
    with pytest.raises(InvalidManifest) as info:
        ImageManifest.from_dict(manifest(**extra), structural=structural)
    assert errors_of(info.value) == errors


def test_dependencies_and_path_whitelist() -> None:
    m = ImageManifest.from_dict(manifest(
        dependencies=[
            {"imageName": "example.com/base"},
            {"imageName": "example.com/other", "imageID": "sha512-" + "0" * 128,
             "labels": [{"name": "version", "value": "2"}]},
        ],
        pathWhitelist=["relative", "", "/abs"],  # not checked, as in the reference
    ))
    assert [d.image_name for d in m.dependencies] == ["example.com/base", "example.com/other"]
    assert m.path_whitelist == ("relative", "", "/abs")
    assert ImageManifest.from_json(m.to_json()) == m


# --- robustness --------------------------------------------------------------------------


def test_invalid_utf8_becomes_replacement_characters() -> None:
    text = b'{"acKind":"ImageManifest","acVersion":"0.8.11","name":"a",' \
        b'"annotations":[{"name":"authors","value":"caf\xe9"}]}'
    m = ImageManifest.from_json(text)
    assert m.annotations.get("authors") == "caf\ufffd"


def test_lone_surrogate_escapes_become_replacement_characters() -> None:
    text = (
        '{"acKind":"ImageManifest","acVersion":"0.8.11","name":"a",'
        '"labels":[{"name":"x","value":"\\ud800 \\ud83d\\ude00 \\udc00"}]}'
    )
    m = ImageManifest.from_json(text)
    assert m.labels.get("x") == "\ufffd \U0001f600 \ufffd"
    m.to_json().encode("utf-8")  # writable


def test_error_invalid_utf8_in_a_name() -> None:
    with pytest.raises(InvalidManifest) as info:
        ImageManifest.from_json(b'{"acKind":"ImageManifest","acVersion":"0.8.11","name":"a\xff"}')
    assert errors_of(info.value) == [(
        "name",
        "ACIdentifier must contain only lower case alphanumeric characters plus '-._~/': 'a\ufffd'",
    )]


@pytest.mark.parametrize("depth", [129, 700, 990, 5000])
def test_error_deep_nesting_is_a_clean_error(depth: int) -> None:
    for inner in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        text = '{"acKind":"ImageManifest","acVersion":"0.8.11","name":"a","x":' + inner + "}"
        with pytest.raises(ValidationError, match=r"invalid JSON in manifest: .*(nested|recursion)"):
            ImageManifest.from_json(text)


def test_error_deep_nesting_from_dict() -> None:
    value: Any = "leaf"
    for _ in range(700):
        value = [value]
    with pytest.raises(InvalidManifest) as info:
        ImageManifest.from_dict(manifest(x=value))
    assert errors_of(info.value) == [("", "ImageManifest is nested more than 128 levels deep")]


def test_moderate_nesting_in_an_unknown_key_is_fine() -> None:
    value: Any = 1
    for _ in range(63):  # 126 levels, plus the manifest itself
        value = {"a": [value]}
    assert ImageManifest.from_dict(manifest(x=value)).name == "example.com/app"


def test_structural_flag_skips_the_schema_pass() -> None:
    # The schema pass adds nothing for a manifest the semantic pass fully covers.
    data = manifest(app={"user": "", "group": "0"})
    with pytest.raises(InvalidManifest) as with_schema:
        ImageManifest.from_dict(data)
    with pytest.raises(InvalidManifest) as without:
        ImageManifest.from_dict(data, structural=False)
    assert errors_of(with_schema.value) == errors_of(without.value) == [("app.user", "user is required")]


# --- round trips -------------------------------------------------------------------------

ROUND_TRIPS = [
    manifest(),
    manifest(name="a..b"),
    manifest(acVersion="01.02.03-rc.1+build"),
    SPEC_EXAMPLE,
    manifest(labels=[{"name": "os", "value": "freebsd"}, {"name": "arch", "value": "arm"}]),
    manifest(labels=[{"name": "arch", "value": "anything"}]),
    manifest(app=APP),
    manifest(app={"user": "0", "group": "0"}),
    manifest(app={**APP, "isolators": [
        {"name": "resource/block-bandwidth", "value": {"default": True, "limit": "1M"}},
        {"name": "os/linux/no-new-privileges", "value": True},
        {"name": "os/linux/oom-score-adj", "value": -500},
        {"name": "os/linux/cpu-shares", "value": 1024},
        {"name": "os/linux/selinux-context",
         "value": {"user": "u", "role": "r", "type": "t", "level": "s0:c1"}},
        {"name": "os/linux/apparmor-profile", "value": {"profile": "p"}},
        {"name": "os/linux/seccomp-retain-set", "value": {"set": ["@appc.io/all"], "errno": "EPERM"}},
    ]}),
    manifest(app={**APP, "ports": [
        {"name": "a", "protocol": "udp", "port": 53, "count": 10, "socketActivated": True},
        {"port": 65535},
    ]}),
    manifest(annotations=[
        {"name": "created", "value": "2014-10-27T19:32:27+02:00"},
        {"name": "appc.io/executor/supports-systemd-notify", "value": "true"},
        {"name": "empty"},
    ]),
    manifest(dependencies=[{"imageName": "b", "size": 2**64 - 1}]),
    manifest(pathWhitelist=[""]),
    manifest(annotations=[{"name": "authors", "value": "<script>&amp;\u2028</script>"}]),
]


@pytest.mark.parametrize("data", ROUND_TRIPS, ids=[str(i) for i in range(len(ROUND_TRIPS))])
def test_round_trip(data: dict[str, Any]) -> None:
    m = ImageManifest.from_dict(data)
    text = m.to_json()
    again = ImageManifest.from_json(text)
    assert again == m
    assert again.to_json() == text  # the canonical form is a fixed point
    assert ImageManifest.from_json(m.to_json(indent=2)) == m
    assert ImageManifest.from_dict(m.to_dict()) == m
