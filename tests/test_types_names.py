"""ACIdentifier, ACName, ACKind and the sanitize helpers (appc-spec notes §1).

Tables of good and bad inputs, each bad one with the exact message the reference's
three checks give, in their order: empty, a bad character, a bad edge.
"""

from __future__ import annotations

import pickle

import pytest

from appc.errors import AppcError, ValidationError
from appc.types import ACIdentifier, ACKind, ACName, sanitize_acidentifier, sanitize_acname


def _ids(rows: list[tuple[object, str]]) -> list[str]:
    """Test ids: each table row is named by its input (``empty`` for "")."""
    return [repr(row[0]) if row[0] != "" else "empty" for row in rows]


# --- ACIdentifier ------------------------------------------------------------------------

GOOD_IDENTIFIERS = [
    "a",
    "0",
    "example.com",
    "example.com/reduce-worker",
    "sub-domain.example.com/org/product/release-1.0.0",
    "a-b.c_d~e/f",
    "coreos.com/etcd",
    "appc.io/executor/supports-systemd-notify",
    "0.8.11",
    "os/linux/capabilities-retain-set",
    # Runs of separators inside are accepted, as actool does (the spec's regex would not).
    "a..b",
    "a//b",
    "a/-b",
    "a._b",
    "a-~-b",
]

_ID_CHARS = "ACIdentifier must contain only lower case alphanumeric characters plus '-._~/'"
_ID_EDGE = "ACIdentifier must start and end with only lower case alphanumeric characters"

BAD_IDENTIFIERS = [
    ("", "ACIdentifier cannot be empty"),
    ("-app", f"{_ID_EDGE}: '-app'"),
    ("app.", f"{_ID_EDGE}: 'app.'"),
    ("/app", f"{_ID_EDGE}: '/app'"),
    ("app~", f"{_ID_EDGE}: 'app~'"),
    ("_", f"{_ID_EDGE}: '_'"),
    ("--", f"{_ID_EDGE}: '--'"),
    ("EXAMPLE.com", f"{_ID_CHARS}: 'EXAMPLE.com'"),
    ("example.com/Foo", f"{_ID_CHARS}: 'example.com/Foo'"),
    ("a b", f"{_ID_CHARS}: 'a b'"),
    ("a:b", f"{_ID_CHARS}: 'a:b'"),
    ("a+b", f"{_ID_CHARS}: 'a+b'"),
    ("a@b", f"{_ID_CHARS}: 'a@b'"),
    ("café", f"{_ID_CHARS}: 'café'"),
    ("a\n", f"{_ID_CHARS}: 'a\\n'"),
    (" a", f"{_ID_CHARS}: ' a'"),
    # The character check comes before the edge check, as in the reference.
    ("-A", f"{_ID_CHARS}: '-A'"),
]


@pytest.mark.parametrize("text", GOOD_IDENTIFIERS, ids=GOOD_IDENTIFIERS)
def test_acidentifier_good(text: str) -> None:
    identifier = ACIdentifier(text)
    assert identifier == text
    assert isinstance(identifier, str)
    assert str(identifier) == text


@pytest.mark.parametrize(("text", "message"), BAD_IDENTIFIERS, ids=_ids(BAD_IDENTIFIERS))
def test_error_acidentifier_bad(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        ACIdentifier(text)
    assert info.value.message == message
    assert str(info.value) == message  # a bare value has no field path
    assert info.value.field == ""
    assert info.value.value == text


@pytest.mark.parametrize("value", [5, None, b"abc", ["a"], 1.5], ids=repr)
def test_error_acidentifier_not_a_string(value: object) -> None:
    with pytest.raises(ValidationError, match=r"^ACIdentifier must be a string, not \w+$"):
        ACIdentifier(value)


def test_acidentifier_is_a_value_error_and_an_appc_error() -> None:
    with pytest.raises(ValueError, match="cannot be empty"):
        ACIdentifier("")
    with pytest.raises(AppcError):
        ACIdentifier("")


def test_acidentifier_repr_and_identity() -> None:
    identifier = ACIdentifier("example.com/app")
    assert repr(identifier) == "ACIdentifier('example.com/app')"
    assert ACIdentifier(identifier) is identifier
    assert hash(identifier) == hash("example.com/app")
    assert {identifier: 1}["example.com/app"] == 1


def test_acidentifier_equals_ignores_case() -> None:
    identifier = ACIdentifier("example.com/app")
    assert identifier.equals("EXAMPLE.com/App")
    assert not identifier.equals("example.com/other")
    # == stays exact: only equals() folds case, as the reference's Equals does.
    assert identifier != "EXAMPLE.com/app"


def test_validation_error_pickles_with_message_and_value() -> None:
    with pytest.raises(ValidationError) as info:
        ACIdentifier("Bad")
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is ValidationError
    assert copy.message == info.value.message
    assert copy.value == "Bad"


# --- ACName ------------------------------------------------------------------------------

GOOD_NAMES = [
    "a",
    "0",
    "database",
    "ace-validator-main",
    "www",
    "a1-b2-c3",
    "a--b",  # accepted by the reference code, not by the spec's regex
    "123",
]

_NAME_CHARS = "ACName must contain only lower case alphanumeric characters plus '-'"
_NAME_EDGE = "ACName must start and end with only lower case alphanumeric characters"

BAD_NAMES = [
    ("", "ACName cannot be empty"),
    ("-a", f"{_NAME_EDGE}: '-a'"),
    ("a-", f"{_NAME_EDGE}: 'a-'"),
    ("-", f"{_NAME_EDGE}: '-'"),
    ("a.b", f"{_NAME_CHARS}: 'a.b'"),
    ("a_b", f"{_NAME_CHARS}: 'a_b'"),
    ("a/b", f"{_NAME_CHARS}: 'a/b'"),
    ("a~b", f"{_NAME_CHARS}: 'a~b'"),
    ("Database", f"{_NAME_CHARS}: 'Database'"),
    ("example.com", f"{_NAME_CHARS}: 'example.com'"),
    ("a b", f"{_NAME_CHARS}: 'a b'"),
]


@pytest.mark.parametrize("text", GOOD_NAMES, ids=GOOD_NAMES)
def test_acname_good(text: str) -> None:
    assert ACName(text) == text
    assert repr(ACName(text)) == f"ACName({text!r})"


@pytest.mark.parametrize(("text", "message"), BAD_NAMES, ids=_ids(BAD_NAMES))
def test_error_acname_bad(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        ACName(text)
    assert info.value.message == message


def test_every_acname_is_an_acidentifier() -> None:
    for name in GOOD_NAMES:
        ACIdentifier(name)


def test_error_acname_not_a_string() -> None:
    with pytest.raises(ValidationError, match=r"^ACName must be a string, not int$"):
        ACName(3)


def test_acname_and_acidentifier_are_distinct_types() -> None:
    name = ACName("abc")
    assert not isinstance(name, ACIdentifier)
    identifier = ACIdentifier(name)
    assert type(identifier) is ACIdentifier
    assert identifier == name


# --- sanitize ----------------------------------------------------------------------------

SANITIZE_IDENTIFIER = [
    ("Example.com/My App!", "example.com/my_app"),
    ("already.valid/name", "already.valid/name"),
    ("UPPER", "upper"),
    ("--edges--", "edges"),
    ("a b c", "a_b_c"),
    ("_leading and trailing_", "leading_and_trailing"),
    ("example.com:5000/app", "example.com_5000/app"),
    ("ünïcode", "n_code"),  # "_n_code", then the edge is stripped
]


@pytest.mark.parametrize(("text", "expected"), SANITIZE_IDENTIFIER, ids=_ids(SANITIZE_IDENTIFIER))
def test_sanitize_acidentifier(text: str, expected: str) -> None:
    result = sanitize_acidentifier(text)
    assert result == expected
    assert type(result) is ACIdentifier


SANITIZE_NAME = [
    (
        "sub-domain.example.com/org/product/release-1.0.0",
        "sub-domain-example-com-org-product-release-1-0-0",
    ),
    ("My App", "my-app"),
    ("db", "db"),
    ("__x__", "x"),
    ("a.b_c~d", "a-b-c-d"),
]


@pytest.mark.parametrize(("text", "expected"), SANITIZE_NAME, ids=_ids(SANITIZE_NAME))
def test_sanitize_acname(text: str, expected: str) -> None:
    result = sanitize_acname(text)
    assert result == expected
    assert type(result) is ACName


@pytest.mark.parametrize("text", ["", "---", "!!!", "..."], ids=["empty", "dash", "bang", "dot"])
def test_error_sanitize_leaves_nothing(text: str) -> None:
    with pytest.raises(ValidationError, match="cannot be empty"):
        sanitize_acidentifier(text)
    with pytest.raises(ValidationError, match="cannot be empty"):
        sanitize_acname(text)


@pytest.mark.parametrize("text", [b[0] for b in BAD_IDENTIFIERS if b[0].strip("-._~/ ")])
def test_sanitize_always_gives_a_valid_identifier(text: str) -> None:
    assert ACIdentifier(sanitize_acidentifier(text)) == sanitize_acidentifier(text)


# --- ACKind ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [("ImageManifest", ACKind.IMAGE_MANIFEST), ("PodManifest", ACKind.POD_MANIFEST)],
)
def test_ackind_good(text: str, kind: ACKind) -> None:
    assert ACKind(text) is kind
    assert str(kind) == text
    assert kind == text


BAD_KINDS = [
    ("", "ACKind must be set"),
    (None, "ACKind must be set"),
    ("imagemanifest", "bad ACKind: 'imagemanifest'"),
    ("Image", "bad ACKind: 'Image'"),
    ("ContainerRuntimeManifest", "bad ACKind: 'ContainerRuntimeManifest'"),
    (5, "bad ACKind: 5"),
]


@pytest.mark.parametrize(("value", "message"), BAD_KINDS, ids=_ids(BAD_KINDS))
def test_error_ackind_bad(value: object, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        ACKind(value)
    assert info.value.message == message
