"""Fuzzing (hypothesis) every parser of untrusted input: only :mod:`appc.errors` types escape.

Extends :mod:`tests.test_schema_property` (whose strategies it reuses) with what comes
from strangers in other forms: manifests inside image archives and as files, damaged
manifest bytes, deep and huge JSON; Docker image references; discovery pages;
``WWW-Authenticate`` headers; the command-line strings of volumes, ports, mount points
and isolators; resource quantities; app strings; and tar headers with random fields,
through validation and extraction.  Valid values round-trip through their printed form.

Example counts are bounded so the file runs in well under a minute; set
``HYPOTHESIS_PROFILE=long`` to run 20 times as many.  Parsers that were slow on crafted
input (catastrophic backtracking, quadratic HTML parsing) are also run once on such
input in a subprocess with a time limit, so a regression fails instead of hanging.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import string
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from appc.aci.extract import ExtractOptions, extract_image
from appc.aci.patch import ManifestPatch, apply_patch
from appc.aci.validate import read_manifest_file, validate_archive
from appc.discovery import AppRequest, MetaTag, parse_app_string, parse_meta_tags
from appc.docker.auth import parse_www_authenticate
from appc.docker.reference import parse_reference
from appc.errors import AppcError, FetchError, ImageError, ValidationError
from appc.schema import ImageManifest, PodManifest
from appc.types import (
    ACIdentifier,
    Quantity,
    exec_from_string,
    isolator_from_string,
    mount_point_from_string,
    port_from_string,
    volume_from_string,
)
from tests.aci_fixtures import BLOCK, compress, good_entries, tar_bytes
from tests.test_schema_property import (
    identifiers,
    image_manifests,
    json_values,
    names,
    pod_manifests,
)

REPO = pathlib.Path(__file__).resolve().parents[1]
_SCALE = 20 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 1
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


def bounded(examples: int) -> settings:
    """*examples* examples (times 20 with ``HYPOTHESIS_PROFILE=long``), no deadline."""
    return settings(max_examples=examples * _SCALE, deadline=None, suppress_health_check=_QUIET)


def only(
    errors: type[BaseException] | tuple[type[BaseException], ...], call: Callable[[], object]
) -> object:
    """Run *call*: it may succeed or raise *errors* (with a one-line message), nothing else."""
    try:
        return call()
    except errors as err:
        assert isinstance(err, AppcError)
        assert str(err) and "\n" not in str(err).strip()
        return None


# --- manifests -------------------------------------------------------------------------


def _image(manifest: bytes) -> bytes:
    return compress(tar_bytes(good_entries(manifest)), "gzip")


@bounded(60)
@given(image_manifests)
def test_valid_manifests_survive_an_image_archive(data: dict[str, Any]) -> None:
    """A valid manifest written into an ACI comes back equal from validation, and a
    patch of its name gives a manifest that reads back equal."""
    manifest = ImageManifest.from_dict(data)
    report = validate_archive(io.BytesIO(_image(manifest.to_json().encode("utf-8"))))
    assert report.manifest == manifest
    patched = apply_patch(manifest, ManifestPatch(name="example.com/patched"))
    assert ImageManifest.from_json(patched.to_json()) == patched


@bounded(60)
@given(image_manifests)
def test_manifest_patches_raise_only_validation_errors(data: dict[str, Any]) -> None:
    manifest = ImageManifest.from_dict(data)
    patch = ManifestPatch(
        exec="/bin/x -a",
        user="0",
        group="0",
        ports=["www,protocol=tcp,port=80"],
        mounts=["data,path=/data"],
        isolators=["resource/memory,limit=1G"],
    )
    patched = only(ValidationError, lambda: apply_patch(manifest, patch))
    if patched is not None:
        assert isinstance(patched, ImageManifest)
        assert ImageManifest.from_json(patched.to_json()) == patched


@st.composite
def damaged_bytes(draw: st.DrawFn) -> bytes:
    """A valid manifest's JSON bytes with a few bytes inserted, removed or replaced."""
    data = bytearray(json.dumps(draw(st.one_of(image_manifests, pod_manifests))).encode())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        what = draw(st.sampled_from(["insert", "delete", "replace"]))
        chunk = draw(
            st.one_of(
                st.binary(min_size=1, max_size=4),
                st.sampled_from(
                    [
                        b"[",
                        b"{",
                        b'"',
                        b"\\",
                        b"\\ud800",
                        b"1e999",
                        b"9" * 5000,
                        b"\xff",
                        b"\x00",
                        b"NaN",
                    ]
                ),
            )
        )
        if what == "insert":
            data[at:at] = chunk
        elif what == "delete":
            del data[at : at + len(chunk)]
        else:
            data[at : at + len(chunk)] = chunk
    return bytes(data)


@bounded(300)
@given(damaged_bytes())
def test_damaged_manifest_bytes_raise_only_validation_errors(data: bytes) -> None:
    only(ValidationError, lambda: ImageManifest.from_json(data))
    only(ValidationError, lambda: PodManifest.from_json(data))


@bounded(40)
@given(st.integers(1, 200_000), st.sampled_from(["[", '{"a":', '{"acKind":["']))
def test_deep_json_is_a_validation_error(depth: int, opening: str) -> None:
    closing = {"[": "]", '{"a":': "}", '{"acKind":["': '"]}'}[opening]
    text = opening * depth + "1" + closing * depth
    only(ValidationError, lambda: ImageManifest.from_json(text))
    only(ValidationError, lambda: PodManifest.from_json(text))


@bounded(40)
@given(
    st.integers(1, 20_000),
    st.sampled_from(["acVersion", "version", "size", "port", "uid", "limit"]),
)
@example(5000, "acVersion")
def test_huge_numbers_are_validation_errors(digits: int, field: str) -> None:
    number = "9" * digits
    documents = {
        "acVersion": f'{{"acKind":"ImageManifest","acVersion":"{number}.0.0","name":"a"}}',
        "version": f'{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"a",'
        f'"labels":[{{"name":"version","value":"1.0.0-{number}"}}]}}',
        "size": f'{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"a",'
        f'"dependencies":[{{"imageName":"b","size":{number}}}]}}',
        "port": f'{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"a","app":{{"exec":["x"],'
        f'"user":"0","group":"0","ports":[{{"name":"p","port":{number},"protocol":"tcp"}}]}}}}',
        "uid": f'{{"acKind":"PodManifest","acVersion":"0.8.11","volumes":[{{"name":"v","kind":"empty",'
        f'"uid":{number}}}]}}',
        "limit": f'{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"a","app":{{"exec":["x"],'
        f'"user":"0","group":"0","isolators":[{{"name":"resource/memory",'
        f'"value":{{"limit":"{number}Gi"}}}}]}}}}',
    }
    text = documents[field]
    reader = PodManifest if field == "uid" else ImageManifest
    only(ValidationError, lambda: reader.from_json(text))


@bounded(100)
@given(
    st.one_of(
        st.binary(max_size=200), damaged_bytes(), json_values.map(lambda v: json.dumps(v).encode())
    )
)
def test_manifest_files_raise_only_appc_errors(data: bytes) -> None:
    """``actool validate --type=manifest FILE`` on any file."""
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        f.write(data)
        f.flush()
        only((ValidationError, ImageError), lambda: read_manifest_file(f.name))


# --- Docker image references -------------------------------------------------------------

components = st.from_regex(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+){0,2}", fullmatch=True)
registries = st.one_of(
    st.just(""),
    st.from_regex(r"[a-z0-9]+(?:\.[a-z0-9]+){1,2}(?::[0-9]{1,5})?", fullmatch=True),
    st.just("localhost:5000"),
)
tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
digests = st.sampled_from(["sha256", "sha512"]).flatmap(
    lambda algorithm: st.text(
        "0123456789abcdef",
        min_size=64 if algorithm == "sha256" else 128,
        max_size=64 if algorithm == "sha256" else 128,
    ).map(lambda hexdigits: f"{algorithm}:{hexdigits}")
)


@st.composite
def references(draw: st.DrawFn) -> str:
    registry = draw(registries)
    path = "/".join(draw(st.lists(components, min_size=1, max_size=3)))
    text = f"{registry}/{path}" if registry else path
    if draw(st.booleans()):
        text += ":" + draw(tags)
    if draw(st.booleans()):
        text += "@" + draw(digests)
    return text


@bounded(300)
@given(
    st.one_of(
        st.text(max_size=60),
        references(),
        references().map(str.upper),
        st.text("aA0-._/:@", max_size=40),
    )
)
def test_references_raise_only_validation_errors(text: str) -> None:
    only(ValidationError, lambda: parse_reference(text))


@bounded(200)
@given(references())
def test_valid_references_print_what_they_parse(text: str) -> None:
    ref = parse_reference(text)
    again = parse_reference(str(ref))
    assert (again.registry, again.repository, again.tag, again.digest) == (
        ref.registry,
        ref.repository,
        ref.tag,
        ref.digest,
    )


# --- discovery pages ----------------------------------------------------------------------

HTML_TOKENS = [
    "<meta",
    "<META",
    ' name="ac-discovery"',
    " name='ac-discovery-pubkeys'",
    " name=ac-x",
    ' content="example.com https://x/{name}.{ext}"',
    " content='a b'",
    ">",
    "/>",
    "<!--",
    "-->",
    "--!>",
    "<title>",
    "</title>",
    "<script>",
    "</script>",
    "<textarea>",
    "</textarea >",
    "<",
    "</",
    "<div",
    "</div>",
    "<!DOCTYPE html>",
    "<?xml?>",
    "&amp;",
    "&#x",
    "&#1114112;",
    "=",
    '"',
    "'",
    "/",
    " ",
    "\n",
    "\x00",
    "\udcff",
    "<plaintext>",
    "<![CDATA[",
    "]]>",
    "text",
]
html_soup = st.lists(st.sampled_from(HTML_TOKENS), max_size=30).map("".join)


@bounded(500)
@given(st.one_of(st.text(max_size=200), html_soup))
def test_meta_tags_never_raise(page: str) -> None:
    tags = parse_meta_tags(page)
    assert all(
        isinstance(t, MetaTag) and t.kind.startswith("ac-") and t.prefix and t.content for t in tags
    )


@bounded(200)
@given(
    st.text(string.ascii_letters + string.digits + " .,;:!\n", max_size=50),
    st.text(string.ascii_letters + string.digits + " .,;:!\n", max_size=50),
    identifiers,
    st.from_regex(r"https://[a-z]{1,8}/[a-z{}.]{0,12}", fullmatch=True),
)
def test_a_meta_tag_in_text_is_found(before: str, after: str, prefix: str, template: str) -> None:
    tag = f'<meta name="ac-discovery" content="{prefix} {template}">'
    assert parse_meta_tags(before + tag + after) == [MetaTag("ac-discovery", prefix, template)]


# --- WWW-Authenticate ------------------------------------------------------------------------

tokens = st.from_regex(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,10}", fullmatch=True)
quoted_values = st.text(st.characters(codec="latin-1", exclude_characters="\x00"), max_size=20)


@st.composite
def challenges(draw: st.DrawFn) -> tuple[str, list[tuple[str, dict[str, str]]]]:
    """A well-formed header and the challenges it holds."""
    expected = []
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        scheme = draw(tokens)
        params = draw(st.dictionaries(tokens.map(str.lower), quoted_values, min_size=1, max_size=3))
        quoted = ", ".join(
            f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
            for k, v in params.items()
        )
        parts.append(f"{scheme} {quoted}")
        expected.append((scheme.lower(), params))
    return ", ".join(parts), expected


@bounded(300)
@given(
    st.one_of(
        st.text(max_size=80),
        st.text('Bearer realm="x", =,"\\ \t', max_size=40),
        challenges().map(lambda c: c[0][: len(c[0]) // 2]),
    )
)
def test_www_authenticate_raises_only_fetch_errors(header: str) -> None:
    only(FetchError, lambda: parse_www_authenticate(header))


@bounded(200)
@given(challenges())
def test_www_authenticate_reads_what_was_quoted(
    case: tuple[str, list[tuple[str, dict[str, str]]]],
) -> None:
    header, expected = case
    got = parse_www_authenticate(header)
    assert [(c.scheme, c.params) for c in got] == expected


# --- command-line strings -------------------------------------------------------------------

OPTION_KEYS = [
    "kind",
    "source",
    "readOnly",
    "recursive",
    "mode",
    "uid",
    "gid",
    "protocol",
    "port",
    "count",
    "socketActivated",
    "path",
    "limit",
    "request",
    "default",
    "name",
    "x",
]
OPTION_VALUES = [
    "host",
    "empty",
    "/data",
    "true",
    "false",
    "T",
    "0",
    "1",
    "65535",
    "65536",
    "-1",
    "0755",
    "tcp",
    "udp",
    "1G",
    "250m",
    "%2C",
    "%zz",
    "+",
    "",
    "\u0663",
    "9" * 30,
]
ISOLATOR_NAMES = [
    "resource/cpu",
    "resource/memory",
    "os/linux/no-new-privileges",
    "os/linux/oom-score-adj",
    "resource/block-bandwidth",
    "unknown/x",
    "",
]


@st.composite
def option_strings(draw: st.DrawFn, first: st.SearchStrategy[str]) -> str:
    items = [draw(first)]
    for _ in range(draw(st.integers(0, 4))):
        key, value = draw(st.sampled_from(OPTION_KEYS)), draw(st.sampled_from(OPTION_VALUES))
        items.append(draw(st.sampled_from([f"{key}={value}", key, f"{key}={value}={value}"])))
    return draw(st.sampled_from([",", "&"])).join(items)


@bounded(400)
@given(
    st.one_of(
        st.text(max_size=40),
        option_strings(st.one_of(names, st.text(max_size=6))),
        option_strings(st.sampled_from(ISOLATOR_NAMES)),
    )
)
def test_cli_strings_raise_only_validation_errors(text: str) -> None:
    for parse in (
        volume_from_string,
        port_from_string,
        mount_point_from_string,
        isolator_from_string,
    ):
        only(ValidationError, lambda parse=parse: parse(text))  # type: ignore[misc]
    assert " ".join(exec_from_string(text)) == text


plain_values = st.text(string.ascii_letters + string.digits + "/._-", min_size=1, max_size=12)


@bounded(200)
@given(
    names,
    st.one_of(
        st.builds(
            lambda s, ro, rec: f"kind=host,source=/{s}" + ro + rec,
            plain_values,
            st.sampled_from(["", ",readOnly=true", ",readOnly=false"]),
            st.sampled_from(["", ",recursive=true", ",recursive=false"]),
        ),
        st.builds(
            lambda mode, uid, gid: f"kind=empty,mode={mode},uid={uid},gid={gid}",
            plain_values,
            st.integers(-(2**31), 2**31),
            st.integers(0, 2**31),
        ),
    ),
)
def test_volume_strings_round_trip(name: str, rest: str) -> None:
    volume = volume_from_string(f"{name},{rest}")
    assert volume_from_string(str(volume)) == volume


# --- quantities -----------------------------------------------------------------------------

quantity_text = st.builds(
    lambda sign, number, suffix: f"{sign}{number}{suffix}",
    st.sampled_from(["", "+", "-"]),
    st.one_of(
        st.integers(0, 10**30).map(str), st.from_regex(r"[0-9]{0,6}\.[0-9]{0,6}", fullmatch=True)
    ),
    st.sampled_from(
        [
            "",
            "m",
            "k",
            "M",
            "G",
            "T",
            "P",
            "E",
            "Ki",
            "Mi",
            "Gi",
            "Ti",
            "Pi",
            "Ei",
            "n",
            "u",
            "e3",
            "E-2",
            "e+9",
            "K",
            "Kib",
            "ee",
            "e",
            "e99999999999",
            "e-99999999999",
        ]
    ),
)


@bounded(400)
@given(
    st.one_of(
        st.text(max_size=30),
        quantity_text,
        st.integers(),
        st.floats(allow_nan=True),
        st.text("0123456789.+-eEinumkKMGTP ", max_size=30),
    )
)
@example("1" * 100_000 + "X")
@example("9" * 5000 + "e9999999999")
def test_quantities_raise_only_validation_errors(value: Any) -> None:
    quantity = only(ValidationError, lambda: Quantity.parse(value))
    if isinstance(quantity, Quantity):
        assert Quantity.parse(str(quantity)) == quantity
        only(ValidationError, lambda: (quantity.int_value(), quantity.milli_value()))


# --- app strings ----------------------------------------------------------------------------

label_values = st.text(string.ascii_letters + string.digits + "._-+/?&%", max_size=10)


@bounded(300)
@given(st.one_of(st.text(max_size=40), st.text("a.b/:,=%2F0x", max_size=30)))
def test_app_strings_raise_only_validation_errors(text: str) -> None:
    only(ValidationError, lambda: parse_app_string(text))


@bounded(200)
@given(
    identifiers,
    st.dictionaries(identifiers.filter(lambda k: k != "name"), label_values, max_size=3),
)
def test_app_strings_print_what_they_parse(name: str, labels: dict[str, str]) -> None:
    request = AppRequest(ACIdentifier(name), labels)
    assert parse_app_string(str(request)) == request


# --- tar headers with random fields ----------------------------------------------------------

TYPES = [
    tarfile.REGTYPE,
    tarfile.AREGTYPE,
    tarfile.LNKTYPE,
    tarfile.SYMTYPE,
    tarfile.CHRTYPE,
    tarfile.BLKTYPE,
    tarfile.DIRTYPE,
    tarfile.FIFOTYPE,
    tarfile.CONTTYPE,
    tarfile.GNUTYPE_SPARSE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    b"Z",
    b"\x00",
    b"7",
]
NAME_PARTS = [
    "rootfs",
    "rootfs/",
    "./rootfs/",
    "manifest",
    "..",
    ".",
    "/",
    "a",
    "\udcff",
    "x" * 120,
    "/tmp",
    "rootfs/a/../..",
    "é",
]
numbers = st.one_of(
    st.integers(0, 0o7777), st.integers(-(2**63), 2**80), st.sampled_from([0, 2**32 - 1, 2**32])
)


@st.composite
def hostile_entries(draw: st.DrawFn) -> bytes:
    """The header (and data) of one entry with random fields, in a random format, maybe with
    a few header bytes changed afterwards (and the checksum made right again)."""
    name = "/".join(draw(st.lists(st.sampled_from(NAME_PARTS), min_size=1, max_size=4)))
    info = tarfile.TarInfo(name)
    info.type = draw(st.sampled_from(TYPES))
    info.mode, info.uid, info.gid, info.mtime = (draw(numbers) for _ in range(4))
    info.linkname = "/".join(draw(st.lists(st.sampled_from(NAME_PARTS), max_size=3)))
    info.devmajor, info.devminor = draw(numbers), draw(numbers)
    data = draw(st.binary(max_size=700))
    info.size = draw(st.sampled_from([len(data), 0, len(data) + 1, max(0, len(data) - 1), 2**40]))
    info.pax_headers = draw(
        st.dictionaries(
            st.sampled_from(
                [
                    "path",
                    "linkpath",
                    "size",
                    "uid",
                    "mtime",
                    "SCHILY.xattr.user.x",
                    "hdrcharset",
                    "GNU.sparse.map",
                ]
            ),
            st.text(max_size=20),
            max_size=2,
        )
    )
    fmt = draw(st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]))
    try:
        header = bytearray(info.tobuf(fmt, "utf-8", "surrogateescape"))
    except (ValueError, OverflowError, UnicodeError):
        assume(False)
        raise  # pragma: no cover
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(header) - 1))
        header[at] = draw(st.integers(0, 255))
    last = len(header) - BLOCK
    checksum = sum(header[last : last + 148]) + 8 * 32 + sum(header[last + 156 : last + BLOCK])
    header[last + 148 : last + 156] = b"%06o\0 " % checksum
    return bytes(header) + data + bytes(-len(data) % BLOCK)


@bounded(400)
@given(hostile_entries(), st.sampled_from(["tar", "gzip"]))
def test_random_tar_headers_raise_only_image_errors(entry: bytes, kind: str) -> None:
    entries = good_entries()
    archive = tar_bytes(entries[:-1], end=False) + entry + tar_bytes([entries[-1]])
    data = compress(archive, kind)
    only(ImageError, lambda: validate_archive(io.BytesIO(data)))
    with tempfile.TemporaryDirectory() as tmp:
        watched = pathlib.Path(tmp, "watched")
        watched.mkdir()
        (watched / "bait").write_text("bait")
        target = pathlib.Path(tmp, "area", "target")
        for options in (
            ExtractOptions(owners=False),
            ExtractOptions(owners=True, devices=True, xattrs=True),
        ):
            only(
                ImageError,
                lambda options=options: extract_image(io.BytesIO(data), target, options=options),
            )  # type: ignore[misc]
            assert sorted(os.listdir(watched)) == ["bait"]
            assert sorted(os.listdir(target.parent)) in ([], ["target"])
            if target.exists():
                subprocess.run(["rm", "-rf", str(target)], check=True)


@bounded(200)
@given(st.binary(min_size=1, max_size=2048), st.integers(0, 6000))
def test_random_bytes_in_an_archive_raise_only_image_errors(junk: bytes, at: int) -> None:
    good = tar_bytes(good_entries())
    at = min(at, len(good))
    for data in (
        good[:at] + junk + good[at:],
        good[:at] + junk,
        compress(good, "gzip")[:at] + junk,
    ):
        only(ImageError, lambda data=data: validate_archive(io.BytesIO(data)))  # type: ignore[misc]


# --- crafted input that used to take minutes or hours -----------------------------------------

_SLOW_INPUTS = """
import time
from appc.discovery import parse_meta_tags
from appc.docker.reference import parse_reference
from appc.errors import ValidationError
from appc.schema import ImageManifest
from appc.types import Quantity
M = 1024 * 1024
for page in ("<meta" * (M // 5), "<" * M, "<a " + 'b="' * (M // 3), "<meta" + "/" * M, "<!--" + "a" * M):
    parse_meta_tags(page)
for text in ("a" * 5000 + "!", "a-" * 3000 + "!", "a." * 3000 + "!", "a/" * 3000 + "!"):
    try:
        parse_reference(text)
    except ValidationError:
        pass
for value in ("1" * M + "X", "1." * (M // 2)):
    try:
        Quantity.parse(value)
    except ValidationError:
        pass
try:
    ImageManifest.from_json('{"acKind":"ImageManifest","acVersion":"' + "9" * M + '.0.0","name":"a"}')
except ValidationError:
    pass
print("done")
"""


def test_crafted_inputs_take_linear_time() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SLOW_INPUTS],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert done.stdout.strip() == "done", done.stderr


@pytest.mark.parametrize(
    "header",
    [
        'Bearer realm="unterminated',
        "Bearer ,,,,",
        "=",
        'Basic realm="a\\',
        "Bearer a=b=c",
        "\x00",
    ],
)
def test_bad_www_authenticate_headers(header: str) -> None:
    only(FetchError, lambda: parse_www_authenticate(header))
