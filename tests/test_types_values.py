"""SemVer, Hash (image IDs), UUID, RFC 3339 timestamps, http(s) URLs and resource quantities.

Every example of the appc-spec notes §1 and §2.4 (quantities) is in a table here, with
the exact message of the important failures.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import itertools

import pytest

from appc.errors import ValidationError
from appc.types import UUID, Hash, Quantity, SemVer, check_http_url, new_uuid, parse_rfc3339
from appc.types.hash import SHORT_HASH_LENGTH


def _ids(rows: list[tuple[object, ...]] | list[str]) -> list[str]:
    """Test ids: each row named by its input."""
    return [repr(row[0] if isinstance(row, tuple) else row) for row in rows]


ARABIC_123 = "\u0661.\u0662.\u0663"  # 1.2.3 in Arabic-Indic digits
FULLWIDTH_2014 = "\uff12\uff10\uff11\uff14"  # 2014 in full-width digits


# --- SemVer ------------------------------------------------------------------------------

GOOD_SEMVERS = [
    # (text, (major, minor, patch, prerelease, metadata), printed form)
    ("0.8.11", (0, 8, 11, "", ""), "0.8.11"),
    ("1.0.0", (1, 0, 0, "", ""), "1.0.0"),
    ("99.0.0", (99, 0, 0, "", ""), "99.0.0"),
    ("0.0.1", (0, 0, 1, "", ""), "0.0.1"),
    ("01.02.03", (1, 2, 3, "", ""), "1.2.3"),  # leading zeros accepted, lost when printed
    ("1.0.0-", (1, 0, 0, "", ""), "1.0.0"),  # empty pre-release
    ("1.0.0+", (1, 0, 0, "", ""), "1.0.0"),  # empty metadata
    ("0.0.0-alpha", (0, 0, 0, "alpha", ""), "0.0.0-alpha"),
    ("1.0.0-alpha.1", (1, 0, 0, "alpha.1", ""), "1.0.0-alpha.1"),
    ("1.0.0+build.5", (1, 0, 0, "", "build.5"), "1.0.0+build.5"),
    ("1.0.0-rc.1+build.5", (1, 0, 0, "rc.1", "build.5"), "1.0.0-rc.1+build.5"),
    ("1.0.0-a-b", (1, 0, 0, "a-b", ""), "1.0.0-a-b"),  # only the first '-' splits
    ("1.0.0+a-b+c", (1, 0, 0, "", "a-b+c"), "1.0.0+a-b+c"),  # metadata is split off first
    ("9223372036854775807.0.0", (2**63 - 1, 0, 0, "", ""), "9223372036854775807.0.0"),
]


@pytest.mark.parametrize(("text", "parts", "printed"), GOOD_SEMVERS, ids=_ids(GOOD_SEMVERS))
def test_semver_good(text: str, parts: tuple[object, ...], printed: str) -> None:
    version = SemVer.parse(text)
    fields = (version.major, version.minor, version.patch, version.prerelease, version.metadata)
    assert fields == parts
    assert str(version) == printed
    assert version.json_value() == printed
    assert SemVer.parse(printed) == version


BAD_SEMVERS = [
    ("1", "SemVer is bad: '1'"),
    ("1.0", "SemVer is bad: '1.0'"),
    ("1.2.3.4", "SemVer is bad: '1.2.3.4'"),
    ("v1.2.3", "SemVer is bad: 'v1.2.3'"),
    ("1.2.x", "SemVer is bad: '1.2.x'"),
    (" 0.8.11", "SemVer is bad: ' 0.8.11'"),
    ("0.8.11 ", "SemVer is bad: '0.8.11 '"),
    ("", "SemVer is bad: ''"),
    ("..", "SemVer is bad: '..'"),
    ("1..2", "SemVer is bad: '1..2'"),
    ("-1.0.0", "SemVer is bad: '-1.0.0'"),
    ("1.+2.3", "SemVer is bad: '1.+2.3'"),  # decision: no signs (Go's ParseInt takes one)
    (ARABIC_123, f"SemVer is bad: {ARABIC_123!r}"),  # other scripts' digits
    ("99999999999999999999.0.0", "SemVer is bad: '99999999999999999999.0.0'"),  # int64 overflow
    ("9223372036854775808.0.0", "SemVer is bad: '9223372036854775808.0.0'"),
    ("0.0.0", "SemVer cannot be zero: '0.0.0'"),
    ("00.0.000", "SemVer cannot be zero: '00.0.000'"),
    ("0.0.0-", "SemVer cannot be zero: '0.0.0-'"),
    ("0.0.0+", "SemVer cannot be zero: '0.0.0+'"),
]


@pytest.mark.parametrize(("text", "message"), BAD_SEMVERS, ids=_ids(BAD_SEMVERS))
def test_error_semver_bad(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        SemVer.parse(text)
    assert info.value.message == message
    assert info.value.value == text


@pytest.mark.parametrize("value", [1, 0.8, None, ["0.8.11"]], ids=repr)
def test_error_semver_not_a_string(value: object) -> None:
    # A JSON number instead of a string is a type error.
    with pytest.raises(ValidationError, match=r"^SemVer must be a string, not \w+$"):
        SemVer.parse(value)


def test_semver_zero_with_metadata_is_not_zero() -> None:
    # The reference compares the whole struct with its zero value.
    assert str(SemVer.parse("0.0.0+meta")) == "0.0.0+meta"


SEMVER_ORDER = [
    "0.0.1",
    "0.8.11",
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.2.0",
    "1.10.0",
    "2.0.0",
]


def test_semver_precedence() -> None:
    versions = [SemVer.parse(v) for v in SEMVER_ORDER]
    assert sorted(reversed(versions)) == versions
    for low, high in itertools.pairwise(versions):
        assert low < high
        assert high > low
        assert low != high


def test_semver_is_a_frozen_hashable_value() -> None:
    version = SemVer.parse("1.2.3")
    assert SemVer.parse(version) is version
    assert repr(version) == "SemVer('1.2.3')"
    assert {version: 1}[SemVer.parse("01.2.3")] == 1
    with pytest.raises(AttributeError):
        version.major = 2  # type: ignore[misc]


# --- Hash --------------------------------------------------------------------------------

GOOD_HASHES = [
    "sha512-" + "a" * 128,
    "sha512-abc",
    "sha512-zzzz",  # not checked to be hex, as in the reference
    "sha512-...",  # the spec's own examples
    "sha512-ABC",
]


@pytest.mark.parametrize("text", GOOD_HASHES, ids=_ids(GOOD_HASHES))
def test_hash_good(text: str) -> None:
    image_id = Hash(text)
    assert image_id == text
    assert image_id.algorithm == "sha512"
    assert image_id.value == text.removeprefix("sha512-")


BAD_HASHES = [
    ("SHA512-x", "unrecognized hash type: 'SHA512'"),
    ("sha256-abc", "unrecognized hash type: 'sha256'"),
    ("md5-abc", "unrecognized hash type: 'md5'"),
    ("sha1-abc", "unrecognized hash type: 'sha1'"),
    ("sha512-ab-c", "badly formatted hash string: 'sha512-ab-c'"),
    ("sha512abc", "badly formatted hash string: 'sha512abc'"),
    ("", "badly formatted hash string: ''"),
    ("sha512--", "badly formatted hash string: 'sha512--'"),
    ("-abc", "unexpected empty hash type: '-abc'"),
    ("-", "unexpected empty hash type: '-'"),
    ("sha512-", "unexpected empty hash value: 'sha512-'"),
]


@pytest.mark.parametrize(("text", "message"), BAD_HASHES, ids=_ids(BAD_HASHES))
def test_error_hash_bad(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Hash(text)
    assert info.value.message == message


def test_error_hash_not_a_string() -> None:
    with pytest.raises(ValidationError, match=r"^hash must be a string, not int$"):
        Hash(512)


def test_hash_from_digest_is_full_and_short() -> None:
    digest = hashlib.sha512(b"").hexdigest()
    image_id = Hash.from_digest(digest.upper())
    assert image_id == f"sha512-{digest}"
    assert image_id.is_full
    assert image_id.short() == f"sha512-{digest[:32]}"
    assert len(image_id.short()) == SHORT_HASH_LENGTH == 39
    assert repr(Hash("sha512-abc")) == "Hash('sha512-abc')"


@pytest.mark.parametrize(
    "text", ["sha512-abc", "sha512-" + "A" * 128, "sha512-" + "g" * 128, "sha512-" + "a" * 127]
)
def test_hash_is_not_full(text: str) -> None:
    assert not Hash(text).is_full


# --- UUID --------------------------------------------------------------------------------

GOOD_UUIDS = [
    ("6733c088-4e4e-4c3c-b1b2-0c5bd43f8a9b", "6733c088-4e4e-4c3c-b1b2-0c5bd43f8a9b"),
    ("6733C088-4E4E-4C3C-B1B2-0C5BD43F8A9B", "6733c088-4e4e-4c3c-b1b2-0c5bd43f8a9b"),
    ("6733c0884e4e4c3cb1b20c5bd43f8a9b", "6733c088-4e4e-4c3c-b1b2-0c5bd43f8a9b"),
    # Dashes are removed wherever they are, as in the reference.
    ("--6733c0884e4e4c3cb1b2-0c5bd43f8a9b-", "6733c088-4e4e-4c3c-b1b2-0c5bd43f8a9b"),
    ("00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000001"),
]


@pytest.mark.parametrize(("text", "canonical"), GOOD_UUIDS, ids=_ids(GOOD_UUIDS))
def test_uuid_good(text: str, canonical: str) -> None:
    uuid = UUID(text)
    assert uuid == canonical
    assert repr(uuid) == f"UUID({canonical!r})"
    assert UUID(uuid) is uuid


BAD_UUIDS = [
    ("xyz", "bad UUID: 'xyz'"),
    ("", "bad UUID: ''"),
    ("6733c088-4e4e-4c3c-b1b2-0c5bd43f8a9", "bad UUID: '6733c088-4e4e-4c3c-b1b2-0c5bd43f8a9'"),
    ("6733c088-4e4e-4c3c-b1b2-0c5bd43f8a9bb", "bad UUID: '6733c088-4e4e-4c3c-b1b2-0c5bd43f8a9bb'"),
    ("6733g088-4e4e-4c3c-b1b2-0c5bd43f8a9b", "bad UUID: '6733g088-4e4e-4c3c-b1b2-0c5bd43f8a9b'"),
    ("{6733c088-4e4e-4c3c-b1b2-0c5bd43f8a9b}", "bad UUID: '{6733c088-4e4e-4c3c-b1b2-0c5bd43f8a9b}"
     "'"),
    ("00000000-0000-0000-0000-000000000000", "UUID cannot be all zeros"),
]


@pytest.mark.parametrize(("text", "message"), BAD_UUIDS, ids=_ids(BAD_UUIDS))
def test_error_uuid_bad(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        UUID(text)
    assert info.value.message == message


def test_new_uuid_is_random_version_4() -> None:
    first, second = new_uuid(), new_uuid()
    assert first != second
    assert first[14] == "4"
    assert UUID(first) == first


# --- RFC 3339 timestamps -----------------------------------------------------------------

UTC = datetime.UTC

GOOD_TIMES = [
    ("2014-10-27T19:32:27Z", datetime.datetime(2014, 10, 27, 19, 32, 27, tzinfo=UTC)),
    (
        "2014-10-27T19:32:27.67021798Z",
        datetime.datetime(2014, 10, 27, 19, 32, 27, 670217, tzinfo=UTC),
    ),
    (
        "2014-10-27T19:32:27+02:00",
        datetime.datetime(2014, 10, 27, 17, 32, 27, tzinfo=UTC),
    ),
    (
        "2014-10-27T19:32:27.5-07:30",
        datetime.datetime(2014, 10, 28, 3, 2, 27, 500000, tzinfo=UTC),
    ),
    ("2016-02-29T00:00:00Z", datetime.datetime(2016, 2, 29, tzinfo=UTC)),
    ("0001-01-01T00:00:00Z", datetime.datetime(1, 1, 1, tzinfo=UTC)),
]


@pytest.mark.parametrize(("text", "moment"), GOOD_TIMES, ids=_ids(GOOD_TIMES))
def test_rfc3339_good(text: str, moment: datetime.datetime) -> None:
    parsed = parse_rfc3339(text)
    assert parsed == moment
    assert parsed.tzinfo is not None


BAD_TIMES = [
    ("2014-10-27 19:32:27Z", "bad RFC3339 timestamp: '2014-10-27 19:32:27Z'"),  # space for T
    ("2014-10-27", "bad RFC3339 timestamp: '2014-10-27'"),  # date only
    ("2014-10-27t19:32:27z", "bad RFC3339 timestamp: '2014-10-27t19:32:27z'"),  # lower-case
    ("2014-10-27T19:32:27z", "bad RFC3339 timestamp: '2014-10-27T19:32:27z'"),
    ("2014-10-27T19:32:27", "bad RFC3339 timestamp: '2014-10-27T19:32:27'"),  # no zone
    ("2014-10-27T19:32Z", "bad RFC3339 timestamp: '2014-10-27T19:32Z'"),  # no seconds
    ("2014-10-27T19:32:27+0200", "bad RFC3339 timestamp: '2014-10-27T19:32:27+0200'"),
    ("2014-10-27T19:32:27.Z", "bad RFC3339 timestamp: '2014-10-27T19:32:27.Z'"),
    (" 2014-10-27T19:32:27Z", "bad RFC3339 timestamp: ' 2014-10-27T19:32:27Z'"),
    ("2014-10-27T19:32:27Z\n", "bad RFC3339 timestamp: '2014-10-27T19:32:27Z\\n'"),
    ("", "bad RFC3339 timestamp: ''"),
    # Other scripts' digits (Python's \d would take them; Go does not).
    (
        f"{FULLWIDTH_2014}-10-27T19:32:27Z",
        f"bad RFC3339 timestamp: '{FULLWIDTH_2014}-10-27T19:32:27Z'",
    ),
    # Out of range (semantic checks the JSON Schema does not make).
    (
        "2014-02-30T19:32:27Z",
        "bad RFC3339 timestamp (day is out of range for month): '2014-02-30T19:32:27Z'",
    ),
    ("2015-02-29T00:00:00Z", "bad RFC3339 timestamp (day is out of range for month): "
     "'2015-02-29T00:00:00Z'"),
    ("2014-13-01T00:00:00Z", "bad RFC3339 timestamp (month must be in 1..12): "
     "'2014-13-01T00:00:00Z'"),
    ("2014-10-27T24:00:00Z", "bad RFC3339 timestamp (hour must be in 0..23): "
     "'2014-10-27T24:00:00Z'"),
    ("2014-10-27T19:60:00Z", "bad RFC3339 timestamp (minute must be in 0..59): "
     "'2014-10-27T19:60:00Z'"),
    ("2014-10-27T19:32:60Z", "bad RFC3339 timestamp (second must be in 0..59): "
     "'2014-10-27T19:32:60Z'"),
    ("2014-10-27T19:32:27+24:00", "bad RFC3339 timestamp (zone): '2014-10-27T19:32:27+24:00'"),
    ("2014-10-27T19:32:27+01:60", "bad RFC3339 timestamp (zone): '2014-10-27T19:32:27+01:60'"),
]


@pytest.mark.parametrize(("text", "message"), BAD_TIMES, ids=_ids(BAD_TIMES))
def test_error_rfc3339_bad(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_rfc3339(text)
    assert info.value.message == message


# --- URLs --------------------------------------------------------------------------------

GOOD_URLS = [
    "http://example.com",
    "https://example.com/docs?x=1#top",
    "HTTP://example.com",  # Go lower-cases the scheme
    "hTtPs://example.com",
    "http://",  # no host: accepted by the reference
    "http:opaque",
    "http://[::1]:8080/",
    "https://user:pass@example.com:443/a%20b",
]


@pytest.mark.parametrize("text", GOOD_URLS, ids=_ids(GOOD_URLS))
def test_http_url_good(text: str) -> None:
    assert check_http_url(text) == text


_SCHEME = "bad URL scheme, must be http/https"

BAD_URLS = [
    ("", f"{_SCHEME}: ''"),
    ("example.com", f"{_SCHEME}: 'example.com'"),
    ("ftp:", f"{_SCHEME}: 'ftp:'"),
    ("ftp://example.com", f"{_SCHEME}: 'ftp://example.com'"),
    ("mailto:a@example.com", f"{_SCHEME}: 'mailto:a@example.com'"),
    ("//example.com", f"{_SCHEME}: '//example.com'"),
    ("httpx://example.com", f"{_SCHEME}: 'httpx://example.com'"),
    # The scheme is read at the very start, as Go does (urllib would skip the blank).
    (" http://example.com", f"{_SCHEME}: ' http://example.com'"),
    ("\thttp://example.com", "bad URL (control character): '\\thttp://example.com'"),
    ("http://exa\nmple.com", "bad URL (control character): 'http://exa\\nmple.com'"),
    ("http://[::1", "bad URL (Invalid IPv6 URL): 'http://[::1'"),
]


@pytest.mark.parametrize(("text", "message"), BAD_URLS, ids=_ids(BAD_URLS))
def test_error_http_url_bad(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_http_url(text)
    assert info.value.message == message


# --- resource quantities -----------------------------------------------------------------

D = decimal.Decimal

GOOD_QUANTITIES = [
    # (JSON value, exact value, text kept)
    ("1G", D(10**9), "1G"),
    ("2Gi", D(2**31), "2Gi"),
    ("250m", D("0.25"), "250m"),
    ("1k", D(1000), "1k"),
    ("1Ki", D(1024), "1Ki"),
    ("1M", D(10**6), "1M"),
    ("1Mi", D(2**20), "1Mi"),
    ("1T", D(10**12), "1T"),
    ("1Ti", D(2**40), "1Ti"),
    ("1P", D(10**15), "1P"),
    ("1Pi", D(2**50), "1Pi"),
    ("1E", D(10**18), "1E"),  # exa, not an exponent
    ("1Ei", D(2**60), "1Ei"),
    ("5n", D("5e-9"), "5n"),
    ("5u", D("5e-6"), "5u"),
    ("-1G", D(-(10**9)), "-1G"),  # negative numbers are accepted
    ("+1G", D(10**9), "+1G"),
    ("0.5", D("0.5"), "0.5"),
    (".5", D("0.5"), ".5"),
    ("1.", D(1), "1."),
    ("1e3", D(1000), "1e3"),
    ("1E3", D(1000), "1E3"),
    ("1e-3", D("0.001"), "1e-3"),
    ("1e+3", D(1000), "1e+3"),
    ("0", D(0), "0"),
    (" 1G ", D(10**9), "1G"),  # surrounding blanks trimmed
    ("\t100m\n", D("0.1"), "100m"),
    (100, D(100), "100"),  # a bare JSON number
    (0.5, D("0.5"), "0.5"),
    (-3, D(-3), "-3"),
]


@pytest.mark.parametrize(("raw", "value", "text"), GOOD_QUANTITIES, ids=_ids(GOOD_QUANTITIES))
def test_quantity_good(raw: object, value: decimal.Decimal, text: str) -> None:
    quantity = Quantity.parse(raw)
    assert quantity.value == value
    assert quantity.text == text
    assert str(quantity) == text
    assert quantity.json_value() == text
    assert Quantity.parse(quantity) is quantity


@pytest.mark.parametrize(
    ("text", "bytes_", "millis"),
    [
        ("1G", 10**9, 10**12),
        ("2Gi", 2147483648, 2147483648000),
        ("250m", 1, 250),
        ("1.5", 2, 1500),
        ("1n", 1, 1),
        ("-1.5", -1, -1500),
    ],
)
def test_quantity_units(text: str, bytes_: int, millis: int) -> None:
    # cpu is read in milli-cores, memory in bytes; both round up.
    quantity = Quantity.parse(text)
    assert quantity.int_value() == bytes_
    assert quantity.milli_value() == millis


_SHAPE = (
    "quantities must match the regular expression "
    "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)

BAD_QUANTITIES = [
    ("1K", "unable to parse quantity's suffix: '1K'"),  # upper-case K refused, use k
    ("1KK", "unable to parse quantity's suffix: '1KK'"),
    ("1Gb", f"{_SHAPE}: '1Gb'"),
    ("1e", "unable to parse quantity's suffix: '1e'"),
    ("1ee3", "unable to parse quantity's suffix: '1ee3'"),
    ("1i", "unable to parse quantity's suffix: '1i'"),
    ("1mi", "unable to parse quantity's suffix: '1mi'"),
    ("abc", f"{_SHAPE}: 'abc'"),
    ("", f"{_SHAPE}: ''"),
    ("G", f"{_SHAPE}: 'G'"),
    ("1 G", f"{_SHAPE}: '1 G'"),
    ("0x10", f"{_SHAPE}: '0x10'"),
    ("1..2", "unable to parse quantity's numeric part: '1..2'"),
    (".", "unable to parse quantity's numeric part: '.'"),
    ("1e400000", "quantity out of range: '1e400000'"),
]


@pytest.mark.parametrize(("raw", "message"), BAD_QUANTITIES, ids=_ids(BAD_QUANTITIES))
def test_error_quantity_bad(raw: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Quantity.parse(raw)
    assert info.value.message == message
    assert info.value.value == raw


@pytest.mark.parametrize("raw", [True, None, [1], {"a": 1}], ids=repr)
def test_error_quantity_wrong_type(raw: object) -> None:
    with pytest.raises(ValidationError, match=r"^quantity must be a string or a number, not \w+$"):
        Quantity.parse(raw)


def test_quantity_infinite_number_is_refused() -> None:
    with pytest.raises(ValidationError, match="quantities must match"):
        Quantity.parse(float("inf"))
