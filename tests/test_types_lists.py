"""Labels (with the os/arch table and the Go <-> appc arch mapping), annotations,
environment, event handlers, the exec string split and dependencies (appc-spec §1, §2.2, §2.3).

List errors carry the index and field of the bad element (``[1].value``), and a list
reports every bad element at once.
"""

from __future__ import annotations

from typing import Any

import pytest

from appc.errors import InvalidManifest, ValidationError
from appc.types import (
    VALID_OS_ARCH,
    Annotation,
    Annotations,
    Dependency,
    Environment,
    EnvironmentVariable,
    EventHandler,
    Hash,
    Label,
    Labels,
    exec_from_string,
    to_appc_os_arch,
    to_go_os_arch,
)
from appc.types.exec import event_handlers

LINUX_ARCHES = "[amd64 i386 aarch64 aarch64_be armv6l armv7l armv7b ppc64 ppc64le s390x]"


def errors_of(exc: ValidationError) -> list[tuple[str, str]]:
    """Each error of *exc* as (dotted field, message)."""
    return [(e.field, e.message) for e in exc.errors]


def numbered(rows: list[Any]) -> list[str]:
    """Test ids for a table: its row numbers."""
    return [str(i) for i in range(len(rows))]


def labels(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    """JSON label list from (name, value) pairs."""
    return [{"name": n, "value": v} for n, v in pairs]


# --- the os/arch table -------------------------------------------------------------------


def test_valid_os_arch_table_is_the_reference_code_list() -> None:
    assert dict(VALID_OS_ARCH) == {
        "linux": (
            "amd64", "i386", "aarch64", "aarch64_be", "armv6l", "armv7l", "armv7b",
            "ppc64", "ppc64le", "s390x",
        ),
        "freebsd": ("amd64", "i386", "arm"),
        "darwin": ("x86_64", "i386"),
    }


ALL_PAIRS = [(os_, arch) for os_, arches in VALID_OS_ARCH.items() for arch in arches]


@pytest.mark.parametrize(("os_", "arch"), ALL_PAIRS, ids=[f"{o}/{a}" for o, a in ALL_PAIRS])
def test_labels_every_valid_os_arch_pair(os_: str, arch: str) -> None:
    result = Labels(labels(("os", os_), ("arch", arch)))
    assert (result.get("os"), result.get("arch")) == (os_, arch)


BAD_OS_ARCH = [
    (
        labels(("os", "darwin"), ("arch", "amd64")),
        [("[1].value", "bad arch 'amd64' for darwin (must be one of: [x86_64 i386])")],
    ),
    (
        labels(("os", "linux"), ("arch", "arm64")),
        [("[1].value", f"bad arch 'arm64' for linux (must be one of: {LINUX_ARCHES})")],
    ),
    (
        labels(("os", "linux"), ("arch", "arm")),
        [("[1].value", f"bad arch 'arm' for linux (must be one of: {LINUX_ARCHES})")],
    ),
    (
        labels(("os", "linux"), ("arch", "x86_64")),
        [("[1].value", f"bad arch 'x86_64' for linux (must be one of: {LINUX_ARCHES})")],
    ),
    (
        labels(("os", "freebsd"), ("arch", "armv7l")),
        [("[1].value", "bad arch 'armv7l' for freebsd (must be one of: [amd64 i386 arm])")],
    ),
    (
        labels(("os", "Linux")),
        [("[0].value", "bad os 'Linux' (must be one of: [darwin freebsd linux])")],
    ),
    (
        labels(("os", "")),
        [("[0].value", "bad os '' (must be one of: [darwin freebsd linux])")],
    ),
    (
        labels(("os", "windows"), ("arch", "amd64")),
        [("[0].value", "bad os 'windows' (must be one of: [darwin freebsd linux])")],
    ),
    # The arch check uses the os wherever the labels are in the list.
    (
        labels(("arch", "bogus"), ("version", "1"), ("os", "linux")),
        [("[0].value", f"bad arch 'bogus' for linux (must be one of: {LINUX_ARCHES})")],
    ),
    # A label without a value reads as "": as an os it is bad.
    (
        [{"name": "os"}],
        [("[0].value", "bad os '' (must be one of: [darwin freebsd linux])")],
    ),
]


@pytest.mark.parametrize(
    ("items", "errors"),
    BAD_OS_ARCH,
    ids=["/".join(i.get("value", "-") for i in b[0]) for b in BAD_OS_ARCH],
)
def test_error_labels_bad_os_arch(
    items: list[dict[str, str]], errors: list[tuple[str, str]]
) -> None:
    with pytest.raises(InvalidManifest) as info:
        Labels(items)
    assert errors_of(info.value) == errors


def test_labels_arch_without_os_is_not_checked() -> None:
    assert Labels(labels(("arch", "bogus"))).get("arch") == "bogus"


# --- label list rules --------------------------------------------------------------------


def test_labels_from_mapping_are_sorted_by_name() -> None:
    result = Labels({"version": "1.0.0", "os": "linux", "arch": "amd64"})
    assert [label.name for label in result] == ["arch", "os", "version"]
    assert result.as_dict() == {"arch": "amd64", "os": "linux", "version": "1.0.0"}
    assert repr(result) == "Labels({'arch': 'amd64', 'os': 'linux', 'version': '1.0.0'})"


def test_labels_from_pairs_and_label_objects_keep_their_order() -> None:
    result = Labels([("version", "1"), Label("os", "linux"), {"name": "arch", "value": "amd64"}])
    assert [label.name for label in result] == ["version", "os", "arch"]
    assert result.json_value() == labels(("version", "1"), ("os", "linux"), ("arch", "amd64"))


def test_labels_none_and_empty() -> None:
    assert Labels(None) == ()
    assert Labels() == ()
    assert Labels([]).json_value() == []


def test_label_without_value_reads_as_empty() -> None:
    assert Labels([{"name": "channel"}]).get("channel") == ""
    assert Label.from_dict({"name": "channel"}).to_dict() == {"name": "channel", "value": ""}


BAD_LABELS = [
    (labels(("name", "x")), [("[0].name", 'invalid label name: "name"')]),
    (
        labels(("version", "1"), ("version", "2")),
        [("[1].name", "duplicate labels of name 'version'")],
    ),
    (
        labels(("name", "x"), ("a", "1"), ("a", "2"), ("a", "3")),
        [
            ("[0].name", 'invalid label name: "name"'),
            ("[2].name", "duplicate labels of name 'a'"),
            ("[3].name", "duplicate labels of name 'a'"),
        ],
    ),
    (
        labels(("os", "linux"), ("os", "plan9")),
        [
            ("[1].name", "duplicate labels of name 'os'"),
            ("[1].value", "bad os 'plan9' (must be one of: [darwin freebsd linux])"),
        ],
    ),
    (
        [{"name": "Version", "value": "1"}],
        [(
            "[0].name",
            "ACIdentifier must contain only lower case alphanumeric characters plus '-._~/': "
            "'Version'",
        )],
    ),
    ([{"value": "1"}], [("[0].name", "name must be set")]),  # decision: a name is required
    ([{"name": "a", "value": 1}], [("[0].value", "must be a string, not number")]),
    (["os"], [("[0]", "must be an object, not string")]),
    (
        [{"name": "-a"}, {"name": "b", "value": None}, {"name": "c", "value": ["x"]}],
        [
            ("[0].name", "ACIdentifier must start and end with only lower case alphanumeric "
             "characters: '-a'"),
            ("[2].value", "must be a string, not array"),
        ],
    ),
]


@pytest.mark.parametrize(("items", "errors"), BAD_LABELS, ids=numbered(BAD_LABELS))
def test_error_labels_bad(items: list[Any], errors: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidManifest) as info:
        Labels(items)
    assert errors_of(info.value) == errors


@pytest.mark.parametrize("value", ["os=linux", 5, b"os"], ids=repr)
def test_error_labels_not_a_list(value: object) -> None:
    with pytest.raises(ValidationError, match="must be an array"):
        Labels(value)  # type: ignore[arg-type]


def test_labels_with_label_replaces_or_appends() -> None:
    base = Labels([("version", "1"), ("os", "linux")])
    assert base.with_label("version", "2").as_dict() == {"version": "2", "os": "linux"}
    assert base.with_label("arch", "amd64").as_dict() == {
        "version": "1", "os": "linux", "arch": "amd64",
    }
    assert base.as_dict() == {"version": "1", "os": "linux"}  # unchanged
    with pytest.raises(InvalidManifest, match="bad arch 'arm64' for linux"):
        base.with_label("arch", "arm64")


def test_labels_get_default() -> None:
    assert Labels().get("os") is None
    assert Labels().get("os", "linux") == "linux"


# --- Go <-> appc arch mapping ------------------------------------------------------------

GO_TO_APPC = [
    # (GOOS, GOARCH, GOARM) -> (os, arch)
    (("linux", "amd64", ""), ("linux", "amd64")),
    (("linux", "386", ""), ("linux", "i386")),
    (("linux", "arm64", ""), ("linux", "aarch64")),
    (("linux", "arm", ""), ("linux", "armv6l")),
    (("linux", "arm", "6"), ("linux", "armv6l")),
    (("linux", "arm", "7"), ("linux", "armv7l")),
    (("linux", "ppc64", ""), ("linux", "ppc64")),
    (("linux", "ppc64le", ""), ("linux", "ppc64le")),
    (("linux", "s390x", ""), ("linux", "s390x")),
    (("freebsd", "amd64", ""), ("freebsd", "amd64")),
    (("freebsd", "386", ""), ("freebsd", "i386")),
    (("freebsd", "arm", ""), ("freebsd", "arm")),
    (("freebsd", "arm", "5"), ("freebsd", "arm")),
    (("freebsd", "arm", "6"), ("freebsd", "arm")),
    (("freebsd", "arm", "7"), ("freebsd", "arm")),
    (("darwin", "amd64", ""), ("darwin", "x86_64")),
    (("darwin", "386", ""), ("darwin", "i386")),
]


@pytest.mark.parametrize(
    ("go", "appc"), GO_TO_APPC, ids=["/".join(g).strip("/") for g, _ in GO_TO_APPC]
)
def test_to_appc_os_arch(go: tuple[str, str, str], appc: tuple[str, str]) -> None:
    assert to_appc_os_arch(*go) == appc


BAD_GO = [
    (("windows", "amd64", ""), "bad os 'windows' (must be one of: [darwin freebsd linux])"),
    (("darwin", "arm64", ""), "bad arch 'arm64' for darwin (must be one of: [x86_64 i386])"),
    (("linux", "mips64", ""), f"bad arch 'mips64' for linux (must be one of: {LINUX_ARCHES})"),
    (("linux", "riscv64", ""), f"bad arch 'riscv64' for linux (must be one of: {LINUX_ARCHES})"),
]


@pytest.mark.parametrize(("go", "message"), BAD_GO, ids=["/".join(g[:2]) for g, _ in BAD_GO])
def test_error_to_appc_os_arch(go: tuple[str, str, str], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        to_appc_os_arch(*go)
    assert info.value.message == message


APPC_TO_GO = [
    (("linux", "amd64"), ("linux", "amd64", "")),
    (("linux", "i386"), ("linux", "386", "")),
    (("linux", "aarch64"), ("linux", "arm64", "")),
    (("linux", "armv6l"), ("linux", "arm", "6")),
    (("linux", "armv7l"), ("linux", "arm", "7")),
    (("linux", "ppc64"), ("linux", "ppc64", "")),
    (("linux", "ppc64le"), ("linux", "ppc64le", "")),
    (("linux", "s390x"), ("linux", "s390x", "")),
    (("freebsd", "amd64"), ("freebsd", "amd64", "")),
    (("freebsd", "i386"), ("freebsd", "386", "")),
    (("freebsd", "arm"), ("freebsd", "arm", "6")),
    (("darwin", "x86_64"), ("darwin", "amd64", "")),
    (("darwin", "i386"), ("darwin", "386", "")),
]


@pytest.mark.parametrize(("appc", "go"), APPC_TO_GO, ids=["/".join(a) for a, _ in APPC_TO_GO])
def test_to_go_os_arch(appc: tuple[str, str], go: tuple[str, str, str]) -> None:
    assert to_go_os_arch(*appc) == go


@pytest.mark.parametrize(("appc", "go"), APPC_TO_GO, ids=["/".join(a) for a, _ in APPC_TO_GO])
def test_go_appc_mapping_round_trips(appc: tuple[str, str], go: tuple[str, str, str]) -> None:
    assert to_appc_os_arch(*go) == appc


BAD_APPC = [
    (("linux", "armv7b"), "no Go equivalent for linux/armv7b"),  # big-endian: no Go port
    (("linux", "aarch64_be"), "no Go equivalent for linux/aarch64_be"),
    (("linux", "x86_64"), f"bad arch 'x86_64' for linux (must be one of: {LINUX_ARCHES})"),
    (("darwin", "amd64"), "bad arch 'amd64' for darwin (must be one of: [x86_64 i386])"),
    (("Linux", "amd64"), "bad os 'Linux' (must be one of: [darwin freebsd linux])"),
]


@pytest.mark.parametrize(("appc", "message"), BAD_APPC, ids=["/".join(a) for a, _ in BAD_APPC])
def test_error_to_go_os_arch(appc: tuple[str, str], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        to_go_os_arch(*appc)
    assert info.value.message == message


# --- annotations -------------------------------------------------------------------------

GOOD_ANNOTATIONS = [
    [{"name": "created", "value": "2014-10-27T19:32:27.67021798Z"}],
    [{"name": "homepage", "value": "https://example.com"}],
    [{"name": "documentation", "value": "HTTP://example.com/docs"}],
    [{"name": "authors", "value": "Carly Container <carly@example.com>"}],
    [{"name": "appc.io/executor/supports-systemd-notify", "value": "maybe"}],  # not checked
    [{"name": "x.com/y", "value": "v"}],
    [{"name": "lorem", "value": ""}, {"name": "ipsum"}],
    [],
]


@pytest.mark.parametrize("items", GOOD_ANNOTATIONS, ids=numbered(GOOD_ANNOTATIONS))
def test_annotations_good(items: list[dict[str, str]]) -> None:
    result = Annotations(items)
    assert result.json_value() == [{"value": "", **item} for item in items]


BAD_ANNOTATIONS = [
    (
        [{"name": "created", "value": "2014-10-27 19:32:27Z"}],
        [("[0].value", "bad RFC3339 timestamp: '2014-10-27 19:32:27Z'")],
    ),
    ([{"name": "created"}], [("[0].value", "bad RFC3339 timestamp: ''")]),
    (
        [{"name": "homepage", "value": "example.com"}],
        [("[0].value", "bad URL scheme, must be http/https: 'example.com'")],
    ),
    (
        [{"name": "documentation", "value": "ftp://example.com"}],
        [("[0].value", "bad URL scheme, must be http/https: 'ftp://example.com'")],
    ),
    (
        [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}],
        [("[1].name", "duplicate annotations of name 'a'")],
    ),
    (
        [
            {"name": "created", "value": "yesterday"},
            {"name": "homepage", "value": "mailto:a@b"},
            {"name": "created", "value": "2014-10-27T19:32:27Z"},
        ],
        [
            ("[0].value", "bad RFC3339 timestamp: 'yesterday'"),
            ("[1].value", "bad URL scheme, must be http/https: 'mailto:a@b'"),
            ("[2].name", "duplicate annotations of name 'created'"),
        ],
    ),
    (
        [{"name": "Authors", "value": "x"}],
        [("[0].name", "ACIdentifier must contain only lower case alphanumeric characters "
          "plus '-._~/': 'Authors'")],
    ),
    ([{"value": "x"}], [("[0].name", "name must be set")]),
    ([{"name": "a", "value": True}], [("[0].value", "must be a string, not boolean")]),
]


@pytest.mark.parametrize(("items", "errors"), BAD_ANNOTATIONS, ids=numbered(BAD_ANNOTATIONS))
def test_error_annotations_bad(
    items: list[dict[str, Any]], errors: list[tuple[str, str]]
) -> None:
    with pytest.raises(InvalidManifest) as info:
        Annotations(items)
    assert errors_of(info.value) == errors


def test_annotations_builders_and_lookup() -> None:
    result = Annotations({"authors": "me", "created": "2014-10-27T19:32:27Z"})
    assert result.get("authors") == "me"
    assert result.get("missing") is None
    assert result.get("missing", "x") == "x"
    assert result.as_dict() == {"authors": "me", "created": "2014-10-27T19:32:27Z"}
    assert Annotations([("a", "1"), Annotation("b", "2")]).as_dict() == {"a": "1", "b": "2"}
    assert repr(Annotations({"a": "1"})) == "Annotations({'a': '1'})"


def test_annotations_set_semantics_replace_in_place_or_append() -> None:
    # The reference's Set: a case-insensitive match is replaced where it stands.
    image = Annotations(
        [("authors", "img"), ("lorem", "ipsum"), ("created", "2014-10-27T19:32:27Z")]
    )
    merged = image.merged(Annotations([("lorem", "pod"), ("extra", "1")]))
    assert merged.as_dict() == {
        "authors": "img", "lorem": "pod", "created": "2014-10-27T19:32:27Z", "extra": "1",
    }
    assert [a.name for a in merged] == ["authors", "lorem", "created", "extra"]
    assert image.with_annotation("AUTHORS".lower(), "x").get("authors") == "x"
    with pytest.raises(InvalidManifest, match="bad RFC3339"):
        image.with_annotation("created", "now")


# --- environment -------------------------------------------------------------------------

GOOD_ENV_NAMES = ["PATH", "_", "_0_DEBUG_0_", "DEBUG.0", "DEBUG-0", "a", "A1", "x.y-z_"]


@pytest.mark.parametrize("name", GOOD_ENV_NAMES, ids=GOOD_ENV_NAMES)
def test_environment_good_names(name: str) -> None:
    env = Environment([{"name": name, "value": "v"}])
    assert env.get(name) == "v"


BAD_ENV_NAMES = [
    ("", "environment variable name must not be empty"),
    ("1A", "environment variable does not have valid identifier '1A'"),
    (".A", "environment variable does not have valid identifier '.A'"),
    ("-A", "environment variable does not have valid identifier '-A'"),
    ("A=B", "environment variable does not have valid identifier 'A=B'"),
    ("VERBOSE|DEBUG", "environment variable does not have valid identifier 'VERBOSE|DEBUG'"),
    ("A B", "environment variable does not have valid identifier 'A B'"),
    ("A\n", "environment variable does not have valid identifier 'A\\n'"),
    ("ÄPFEL", "environment variable does not have valid identifier 'ÄPFEL'"),
]


@pytest.mark.parametrize(
    ("name", "message"), BAD_ENV_NAMES, ids=[repr(n) for n, _ in BAD_ENV_NAMES]
)
def test_error_environment_bad_name(name: str, message: str) -> None:
    with pytest.raises(InvalidManifest) as info:
        Environment([{"name": name, "value": "x"}])
    assert errors_of(info.value) == [("[0].name", message)]


def test_error_environment_every_problem_at_once() -> None:
    with pytest.raises(InvalidManifest) as info:
        Environment([
            {"name": "A", "value": "1"},
            {"name": "1B", "value": "2"},
            {"name": "A", "value": "3"},
            {"value": "4"},
            {"name": "C", "value": 5},
        ])
    assert errors_of(info.value) == [
        ("[1].name", "environment variable does not have valid identifier '1B'"),
        ("[3].name", "name must be set"),
        ("[4].value", "must be a string, not number"),
    ]


def test_error_environment_duplicates() -> None:
    with pytest.raises(InvalidManifest) as info:
        Environment([("A", "1"), ("B", "2"), ("A", "3"), ("A", "4")])
    assert errors_of(info.value) == [
        ("[2].name", "duplicate environment variable of name 'A'"),
        ("[3].name", "duplicate environment variable of name 'A'"),
    ]


def test_environment_builders() -> None:
    env = Environment({"PATH": "/bin", "HOME": "/root"})
    assert env.as_dict() == {"PATH": "/bin", "HOME": "/root"}
    assert env.with_variable("PATH", "/usr/bin").as_dict() == {
        "PATH": "/usr/bin", "HOME": "/root",
    }
    assert env.with_variable("X", "1").as_dict() == {"PATH": "/bin", "HOME": "/root", "X": "1"}
    assert env.get("NOPE") is None
    variable = EnvironmentVariable("A", "1")
    assert Environment([variable]).json_value() == [{"name": "A", "value": "1"}]
    assert EnvironmentVariable.from_dict({"name": "A"}).value == ""
    assert repr(env) == "Environment({'PATH': '/bin', 'HOME': '/root'})"


# --- event handlers and exec -------------------------------------------------------------


def test_event_handlers_good() -> None:
    handlers = event_handlers([
        {"name": "pre-start", "exec": ["/bin/prep", "--now"]},
        {"name": "post-stop"},  # exec may be missing
    ])
    assert handlers == (
        EventHandler("pre-start", ("/bin/prep", "--now")),
        EventHandler("post-stop", ()),
    )
    assert [h.to_dict() for h in handlers] == [
        {"name": "pre-start", "exec": ["/bin/prep", "--now"]},
        {"name": "post-stop"},
    ]


BAD_HANDLERS = [
    ([{"name": "x"}], [("[0].name", "bad eventHandler \"name\": 'x'")]),
    ([{"name": "Pre-Start"}], [("[0].name", "bad eventHandler \"name\": 'Pre-Start'")]),
    ([{"name": ""}], [("[0].name", 'eventHandler "name" cannot be empty')]),
    ([{"exec": ["/x"]}], [("[0].name", 'eventHandler "name" cannot be empty')]),
    (
        [{"name": "pre-start"}, {"name": "post-stop"}, {"name": "pre-start"}],
        [("[2].name", "Only one eventHandler of name 'pre-start' allowed")],
    ),
    ([{"name": "pre-start", "exec": "/x"}], [("[0].exec", "must be an array, not string")]),
    ([{"name": "pre-start", "exec": ["/x", 1]}], [("[0].exec[1]", "must be a string, not number")]),
]


@pytest.mark.parametrize(("items", "errors"), BAD_HANDLERS, ids=numbered(BAD_HANDLERS))
def test_error_event_handlers_bad(
    items: list[dict[str, Any]], errors: list[tuple[str, str]]
) -> None:
    with pytest.raises(InvalidManifest) as info:
        event_handlers(items)
    assert errors_of(info.value) == errors


EXEC_STRINGS = [
    ("/app --debug", ("/app", "--debug")),
    ("/app  x", ("/app", "", "x")),  # split on single spaces: doubled spaces give ""
    ("/bin/sh -c 'echo hi'", ("/bin/sh", "-c", "'echo", "hi'")),  # no shell quoting
    ("app", ("app",)),  # relative: looked up on PATH since 0.7.2
    ("", ("",)),
    (" ", ("", "")),
    ("a\tb", ("a\tb",)),
]


@pytest.mark.parametrize(("text", "argv"), EXEC_STRINGS, ids=[repr(t) for t, _ in EXEC_STRINGS])
def test_exec_from_string(text: str, argv: tuple[str, ...]) -> None:
    assert exec_from_string(text) == argv


# --- dependencies ------------------------------------------------------------------------


def test_dependency_good_and_canonical_json() -> None:
    dep = Dependency.from_dict({
        "imageName": "example.com/base",
        "imageID": "sha512-abc",
        "labels": [{"name": "os", "value": "linux"}, {"name": "arch", "value": "amd64"}],
        "size": 1024,
    })
    assert dep.image_name == "example.com/base"
    assert dep.image_id == Hash("sha512-abc")
    assert dep.labels.get("arch") == "amd64"
    assert dep.to_dict() == {
        "imageName": "example.com/base",
        "imageID": "sha512-abc",
        "labels": [{"name": "os", "value": "linux"}, {"name": "arch", "value": "amd64"}],
        "size": 1024,
    }


def test_dependency_minimal_leaves_out_empty_fields() -> None:
    dep = Dependency(image_name="example.com/base", size=0)
    assert dep.to_dict() == {"imageName": "example.com/base"}  # size 0 is left out
    assert Dependency.from_dict(dep.to_dict()) == dep


BAD_DEPENDENCIES = [
    ({}, [("imageName", "imageName cannot be empty")]),
    ({"imageName": ""}, [("imageName", "ACIdentifier cannot be empty")]),
    (
        {"imageName": "a", "imageID": "sha512-ab-c"},
        [("imageID", "badly formatted hash string: 'sha512-ab-c'")],
    ),
    ({"imageName": "a", "imageID": "sha256-x"}, [("imageID", "unrecognized hash type: 'sha256'")]),
    ({"imageName": "a", "size": -1}, [("size", "must be at least 0, not -1")]),
    ({"imageName": "a", "size": "1"}, [("size", "must be an integer, not string")]),
    ({"imageName": "a", "size": 1.5}, [("size", "must be an integer, not number")]),
    (
        {"imageName": "a", "size": 2**64},
        [("size", f"must fit in a 64-bit unsigned integer, not {2**64}")],
    ),
    (
        {"imageName": "a", "labels": labels(("os", "darwin"), ("arch", "amd64"))},
        [("labels[1].value", "bad arch 'amd64' for darwin (must be one of: [x86_64 i386])")],
    ),
    (
        {"imageName": "A", "imageID": "x", "size": -5, "labels": [{"name": "name"}]},
        [
            ("imageName", "ACIdentifier must contain only lower case alphanumeric characters "
             "plus '-._~/': 'A'"),
            ("imageID", "badly formatted hash string: 'x'"),
            ("labels[0].name", 'invalid label name: "name"'),
            ("size", "must be at least 0, not -5"),
        ],
    ),
]


@pytest.mark.parametrize(("data", "errors"), BAD_DEPENDENCIES, ids=numbered(BAD_DEPENDENCIES))
def test_error_dependency_bad(data: dict[str, Any], errors: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidManifest) as info:
        Dependency.from_dict(data)
    assert errors_of(info.value) == errors


def test_dependency_size_fits_uint64() -> None:
    assert Dependency.from_dict({"imageName": "a", "size": 2**64 - 1}).size == 2**64 - 1
