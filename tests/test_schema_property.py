"""Property tests (hypothesis) for the spec types and the two manifests.

* valid manifests built from strategies round-trip through ``to_json``/``from_json``;
* any JSON-ish value, and any text or bytes, fed to the readers raises nothing but
  :class:`appc.errors.ValidationError`;
* the string parsers raise nothing but ``ValidationError`` on any text, and accept
  exactly what the reference's rules accept;
* on randomly damaged manifests, what the JSON Schema rejects the validator rejects.

Example counts are bounded so the whole file runs in a few seconds.
"""

from __future__ import annotations

import decimal
import json
import re
import string
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from appc.errors import InvalidManifest, ValidationError
from appc.schema import ImageManifest, PodManifest, _document
from appc.types import (
    UUID,
    VALID_OS_ARCH,
    ACIdentifier,
    ACName,
    Hash,
    Quantity,
    SemVer,
    check_http_url,
    exec_from_string,
    isolator_from_string,
    mount_point_from_string,
    parse_rfc3339,
    port_from_string,
    sanitize_acidentifier,
    sanitize_acname,
    volume_from_string,
)

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]
FAST = settings(max_examples=200, deadline=None, suppress_health_check=_QUIET)
MANIFESTS = settings(max_examples=100, deadline=None, suppress_health_check=_QUIET)
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=_QUIET)


def unique_by_name(items: list[dict[str, Any]], key: str = "name") -> list[dict[str, Any]]:
    """Keep the first item of each name."""
    seen: set[Any] = set()
    out = []
    for item in items:
        if item.get(key) not in seen:
            seen.add(item.get(key))
            out.append(item)
    return out


# --- strategies for valid values ---------------------------------------------------------

ALNUM = string.ascii_lowercase + string.digits
runs = st.text(ALNUM, min_size=1, max_size=6)
identifiers = st.builds(
    lambda first, rest: first + "".join(sep + run for sep, run in rest),
    runs,
    st.lists(st.tuples(st.text("-._~/", min_size=1, max_size=2), runs), max_size=3),
)
names = st.builds(
    lambda first, rest: first + "".join(sep + run for sep, run in rest),
    runs,
    st.lists(st.tuples(st.text("-", min_size=1, max_size=2), runs), max_size=3),
)
free_text = st.text(max_size=12)  # any Unicode but lone surrogates
semvers = st.builds(
    lambda major, minor, patch, pre, meta: f"{major}.{minor}.{patch}{pre}{meta}",
    st.integers(0, 2**63 - 1), st.integers(0, 99), st.integers(1, 99),
    st.one_of(st.just(""), st.text(ALNUM + ".-", min_size=1, max_size=8).map("-{}".format)),
    st.one_of(st.just(""), st.text(ALNUM + ".+-", min_size=1, max_size=8).map("+{}".format)),
)
hashes = st.text(string.hexdigits.lower(), min_size=1, max_size=128).map("sha512-{}".format)
quantities = st.one_of(
    st.integers(-(10**12), 10**12),
    st.builds(
        lambda n, suffix: f"{n}{suffix}",
        st.integers(0, 10**6),
        st.sampled_from(["", "m", "k", "M", "G", "T", "Ki", "Mi", "Gi", "e3", "E2", "n", "u"]),
    ),
)
timestamps = st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()).filter(
    lambda t: re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d", t) is not None
)
env_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,8}", fullmatch=True)


@st.composite
def label_lists(draw: st.DrawFn) -> list[dict[str, str]]:
    items = draw(st.lists(st.builds(lambda n, v: {"name": n, "value": v}, identifiers, free_text),
                          max_size=4))
    items = [i for i in unique_by_name(items) if i["name"] not in ("name", "os", "arch")]
    if draw(st.booleans()):
        os_ = draw(st.sampled_from(sorted(VALID_OS_ARCH)))
        items.append({"name": "os", "value": os_})
        if draw(st.booleans()):
            items.append({"name": "arch", "value": draw(st.sampled_from(VALID_OS_ARCH[os_]))})
    return draw(st.permutations(items))


@st.composite
def annotation_lists(draw: st.DrawFn) -> list[dict[str, str]]:
    items = draw(st.lists(st.builds(lambda n, v: {"name": n, "value": v}, identifiers, free_text),
                          max_size=3))
    items = [i for i in items if i["name"] not in ("created", "homepage", "documentation")]
    if draw(st.booleans()):
        items.append({"name": "created", "value": draw(timestamps)})
    if draw(st.booleans()):
        url = draw(st.sampled_from(["http", "https", "HTTP"])) + "://" + draw(identifiers)
        items.append({"name": draw(st.sampled_from(["homepage", "documentation"])), "value": url})
    return unique_by_name(items)


KNOWN_VALUES: list[tuple[str, st.SearchStrategy[Any]]] = [
    ("resource/cpu", st.fixed_dictionaries({}, optional={"request": quantities, "limit": quantities})),
    ("resource/memory", st.fixed_dictionaries({"limit": quantities})),
    ("resource/block-bandwidth", st.fixed_dictionaries({"default": st.just(True)},
                                                       optional={"limit": quantities})),
    ("resource/block-iops", st.fixed_dictionaries({"default": st.just(True), "limit": quantities})),
    ("resource/network-bandwidth", st.fixed_dictionaries({"default": st.just(True)})),
    ("os/linux/capabilities-retain-set", st.fixed_dictionaries(
        {"set": st.lists(st.from_regex(r"CAP_[A-Z_]{1,12}", fullmatch=True), min_size=1, max_size=3)})),
    ("os/linux/capabilities-remove-set", st.fixed_dictionaries(
        {"set": st.lists(free_text, min_size=1, max_size=3)})),
    ("os/linux/no-new-privileges", st.booleans()),
    ("os/linux/seccomp-remove-set", st.fixed_dictionaries(
        {"set": st.lists(free_text, min_size=1, max_size=3)},
        optional={"errno": st.from_regex(r"(E[A-Z0-9]{0,6})?", fullmatch=True)})),
    ("os/linux/oom-score-adj", st.integers(-1000, 1000)),
    ("os/linux/cpu-shares", st.integers(2, 262144)),
    ("os/linux/selinux-context", st.fixed_dictionaries({
        "user": st.from_regex(r"[a-z_]{1,8}", fullmatch=True),
        "role": st.from_regex(r"[a-z_]{1,8}", fullmatch=True),
        "type": st.from_regex(r"[a-z_]{1,8}", fullmatch=True),
        "level": st.from_regex(r"s0(:c[0-9]{1,3})?", fullmatch=True),
    })),
    ("os/linux/apparmor-profile", st.fixed_dictionaries({"profile": free_text.filter(bool)})),
    ("os/unix/sysctl", st.dictionaries(free_text, free_text, max_size=2)),
]
SINGLE_USE = {"os/linux/seccomp-remove-set", "os/linux/seccomp-retain-set",
              "os/linux/oom-score-adj", "os/linux/cpu-shares", "os/linux/selinux-context",
              "os/linux/apparmor-profile", "os/unix/sysctl"}

known_isolators = st.one_of([
    value.map(lambda v, n=name: {"name": n, "value": v}) for name, value in KNOWN_VALUES
])


def valid_app_isolators(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop what an app's list rules refuse: repeated single-use kinds, seccomp remove+retain."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in items:
        name = item["name"]
        if name in SINGLE_USE and name in seen:
            continue
        if name.startswith("os/linux/seccomp-") and any(s.startswith("os/linux/seccomp-") for s in seen):
            continue
        seen.add(name)
        out.append(item)
    return out


@st.composite
def ports_json(draw: st.DrawFn) -> dict[str, Any]:
    port = draw(st.integers(1, 65535))
    item: dict[str, Any] = {"port": port}
    if draw(st.booleans()):
        item["count"] = draw(st.integers(0, 65536 - port))
    optional = draw(st.fixed_dictionaries({}, optional={
        "name": names, "protocol": st.sampled_from(["tcp", "udp", ""]),
        "socketActivated": st.booleans(),
    }))
    return {**item, **optional}


apps = st.fixed_dictionaries(
    {"user": free_text.filter(bool), "group": free_text.filter(bool)},
    optional={
        "exec": st.lists(free_text, max_size=3),
        "eventHandlers": st.lists(
            st.fixed_dictionaries({"name": st.sampled_from(["pre-start", "post-stop"])},
                                  optional={"exec": st.lists(free_text, max_size=2)}),
            max_size=2,
        ).map(unique_by_name),
        "supplementaryGIDs": st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3),
        "workingDirectory": free_text.map("/{}".format),
        "environment": st.lists(st.fixed_dictionaries({"name": env_names, "value": free_text}),
                                max_size=3).map(unique_by_name),
        "isolators": st.lists(known_isolators, max_size=4).map(valid_app_isolators),
        "mountPoints": st.lists(st.fixed_dictionaries(
            {}, optional={"name": names, "path": free_text, "readOnly": st.booleans()}), max_size=2),
        "ports": st.lists(ports_json(), max_size=3),
        "userAnnotations": st.dictionaries(free_text, free_text, max_size=2),
        "userLabels": st.dictionaries(free_text, free_text, max_size=2),
    },
)

dependencies = st.fixed_dictionaries(
    {"imageName": identifiers},
    optional={"imageID": hashes, "labels": label_lists(), "size": st.integers(0, 2**64 - 1)},
)

image_manifests = st.fixed_dictionaries(
    {"acKind": st.just("ImageManifest"), "acVersion": semvers, "name": identifiers},
    optional={
        "labels": label_lists(),
        "app": st.one_of(st.none(), apps),
        "annotations": annotation_lists(),
        "dependencies": st.lists(dependencies, max_size=2),
        "pathWhitelist": st.lists(free_text, max_size=3),
    },
)

volumes = st.one_of(
    st.fixed_dictionaries(
        {"name": names, "kind": st.just("host"), "source": free_text.map("/{}".format)},
        optional={"readOnly": st.booleans(), "recursive": st.booleans()},
    ),
    st.fixed_dictionaries(
        {"name": names, "kind": st.just("empty")},
        optional={"mode": free_text, "uid": st.integers(-(2**31), 2**31), "gid": st.integers(0, 2**31),
                  "readOnly": st.booleans()},
    ),
)

runtime_apps = st.fixed_dictionaries(
    {},
    optional={
        "name": names,
        "image": st.fixed_dictionaries({}, optional={
            "name": identifiers, "id": hashes, "labels": label_lists()}),
        "app": apps,
        "readOnlyRootFS": st.booleans(),
        "mounts": st.lists(st.fixed_dictionaries({}, optional={
            "volume": names, "path": free_text, "appVolume": volumes}), max_size=2),
        "annotations": annotation_lists(),
    },
)

pod_isolators = st.one_of(
    known_isolators,
    st.builds(lambda n, v: {"name": n, "value": v}, identifiers.filter(lambda n: n not in {
        name for name, _ in KNOWN_VALUES}), st.one_of(st.none(), st.integers(), free_text)),
)

pod_manifests = st.fixed_dictionaries(
    {"acKind": st.just("PodManifest")},
    optional={
        "acVersion": semvers,
        "apps": st.lists(runtime_apps, max_size=3).map(unique_by_name),
        "volumes": st.lists(volumes, max_size=3).map(unique_by_name),
        "isolators": st.lists(pod_isolators, max_size=4),
        "annotations": annotation_lists(),
        "ports": st.lists(st.fixed_dictionaries(
            {"name": names},
            optional={"hostPort": st.integers(0, 2**64 - 1),
                      "hostIP": st.ip_addresses().map(str), "podPort": ports_json()},
        ), max_size=2),
        "userAnnotations": st.dictionaries(free_text, free_text, max_size=2),
        "userLabels": st.dictionaries(free_text, free_text, max_size=2),
    },
)


# --- round trips -------------------------------------------------------------------------


@MANIFESTS
@given(image_manifests)
def test_valid_image_manifests_round_trip(data: dict[str, Any]) -> None:
    manifest = ImageManifest.from_dict(data)
    text = manifest.to_json()
    again = ImageManifest.from_json(text.encode("utf-8"))
    assert again == manifest
    assert again.to_json() == text
    assert ImageManifest.from_json(manifest.to_json(indent=2), structural=False) == manifest


@MANIFESTS
@given(pod_manifests)
def test_valid_pod_manifests_round_trip(data: dict[str, Any]) -> None:
    manifest = PodManifest.from_dict(data)
    text = manifest.to_json()
    again = PodManifest.from_json(text)
    assert again == manifest
    assert again.to_json() == text


@MANIFESTS
@given(image_manifests)
def test_case_of_keys_does_not_matter(data: dict[str, Any]) -> None:
    def shout(value: Any) -> Any:
        if isinstance(value, dict):
            return {k.upper(): shout(v) for k, v in value.items()}
        if isinstance(value, list):
            return [shout(v) for v in value]
        return value

    # Free-form maps keep their keys; only spec field names are folded.
    data = {k: v for k, v in data.items() if k != "app"}
    assert ImageManifest.from_dict(shout(data)) == ImageManifest.from_dict(data)


# --- arbitrary input: only ValidationError -----------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)

FIELD_NAMES = [
    "acKind", "acVersion", "name", "labels", "app", "annotations", "dependencies",
    "pathWhitelist", "apps", "volumes", "isolators", "ports", "value", "exec", "user", "group",
    "image", "id", "mounts", "kind", "source", "port", "count", "limit", "set", "default",
]
json_objects = st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=6), json_values,
                               max_size=6)


def only_validation_errors(read: Callable[[], object]) -> None:
    """Run *read*: it may succeed or raise ValidationError, nothing else."""
    try:
        read()
    except ValidationError as err:
        assert err.errors
        assert str(err)


@FAST
@given(st.one_of(json_values, json_objects))
def test_arbitrary_json_values_raise_only_validation_errors(value: Any) -> None:
    only_validation_errors(lambda: ImageManifest.from_dict(value))
    only_validation_errors(lambda: PodManifest.from_dict(value))
    only_validation_errors(lambda: ImageManifest.from_dict(value, structural=False))


@st.composite
def damaged(draw: st.DrawFn, documents: st.SearchStrategy[dict[str, Any]]) -> Any:
    """A valid document with one member, at any depth, replaced by an arbitrary value."""
    document = draw(documents)
    paths: list[tuple[Any, ...]] = []

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        paths.append(path)
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*path, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, (*path, index))

    walk(document, ())
    path = draw(st.sampled_from(paths))
    replacement = draw(json_values)
    if not path:
        return replacement
    node = document
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = replacement
    return document


@SLOW
@given(st.one_of(damaged(image_manifests), damaged(pod_manifests)))
def test_damaged_manifests_raise_only_validation_errors(value: Any) -> None:
    only_validation_errors(lambda: ImageManifest.from_dict(value))
    only_validation_errors(lambda: PodManifest.from_dict(value))


@SLOW
@given(st.one_of(damaged(image_manifests).map(lambda d: ("image-manifest.schema.json", d)),
                 damaged(pod_manifests).map(lambda d: ("pod-manifest.schema.json", d))))
def test_what_the_schema_rejects_the_validator_rejects(case: tuple[str, Any]) -> None:
    schema, document = case
    reader = ImageManifest if schema.startswith("image") else PodManifest
    structural = _document.structural_errors(_document.canonicalize(document, schema), schema)
    try:
        reader.from_dict(document, structural=False)
    except InvalidManifest:
        return
    assert structural == []


@FAST
@given(st.one_of(
    json_values.map(json.dumps),
    image_manifests.map(json.dumps).flatmap(
        lambda text: st.integers(0, len(text)).map(lambda n: text[:n])),  # truncated
    st.text(max_size=40),
))
def test_arbitrary_text_raises_only_validation_errors(text: str) -> None:
    only_validation_errors(lambda: ImageManifest.from_json(text))
    only_validation_errors(lambda: PodManifest.from_json(text))


@FAST
@given(st.binary(max_size=60))
def test_arbitrary_bytes_raise_only_validation_errors(data: bytes) -> None:
    only_validation_errors(lambda: ImageManifest.from_json(data))
    only_validation_errors(lambda: PodManifest.from_json(data))


# --- the string parsers ------------------------------------------------------------------

PARSERS: list[Callable[[str], object]] = [
    ACIdentifier, ACName, SemVer.parse, Hash, Quantity.parse, UUID, parse_rfc3339,
    check_http_url, volume_from_string, port_from_string, mount_point_from_string,
    isolator_from_string, sanitize_acidentifier, sanitize_acname,
]
OPTION_TOKENS = [
    *"abc,=%+/-.:0123456789 ", "kind", "host", "empty", "source", "port", "count", "path",
    "readOnly", "uid", "gid", "mode", "resource/cpu", "limit", "request", "true",
    "os/linux/oom-score-adj", "\u0663", "\u00b2",
]
option_text = st.lists(st.sampled_from(OPTION_TOKENS), max_size=10).map("".join)


@FAST
@given(st.one_of(st.text(max_size=30), option_text))
def test_parsers_raise_only_validation_errors(text: str) -> None:
    for parse in PARSERS:
        only_validation_errors(lambda parse=parse: parse(text))  # type: ignore[misc]
    assert " ".join(exec_from_string(text)) == text


REFERENCE_IDENTIFIER = re.compile(r"[a-z0-9]([a-z0-9\-._~/]*[a-z0-9])?")
REFERENCE_NAME = re.compile(r"[a-z0-9]([a-z0-9\-]*[a-z0-9])?")


@FAST
@given(st.one_of(st.text(max_size=12), st.text(ALNUM + "-._~/A ", max_size=12)))
def test_names_accept_exactly_the_reference_rule(text: str) -> None:
    # The reference's three checks (interior runs of separators accepted).
    for cls, rule in ((ACIdentifier, REFERENCE_IDENTIFIER), (ACName, REFERENCE_NAME)):
        try:
            cls(text)
            accepted = True
        except ValidationError:
            accepted = False
        assert accepted == (rule.fullmatch(text) is not None)


@FAST
@given(st.text(max_size=16))
def test_sanitized_names_are_valid(text: str) -> None:
    for sanitize, cls in ((sanitize_acidentifier, ACIdentifier), (sanitize_acname, ACName)):
        try:
            result = sanitize(text)
        except ValidationError:
            assume(False)
        assert cls(result) == result


@FAST
@given(semvers)
def test_semver_prints_what_it_parses(text: str) -> None:
    version = SemVer.parse(text)
    assert SemVer.parse(str(version)) == version
    major, minor, patch = (int(p) for p in text.split("+", maxsplit=1)[0].split("-", maxsplit=1)[0].split("."))
    assert (version.major, version.minor, version.patch) == (major, minor, patch)


@FAST
@given(st.integers(-(10**15), 10**15), st.sampled_from(
    [("", 1), ("k", 10**3), ("M", 10**6), ("G", 10**9), ("Ki", 2**10), ("Mi", 2**20),
     ("Gi", 2**30), ("m", decimal.Decimal("0.001"))]))
def test_quantity_values(number: int, suffix: tuple[str, Any]) -> None:
    text, factor = suffix
    assert Quantity.parse(f"{number}{text}").value == number * factor
    assert Quantity.parse(f" {number}{text}\n").text == f"{number}{text}"


@FAST
@given(st.uuids())
def test_uuid_canonical_form(value: Any) -> None:
    assume(value.int != 0)
    assert UUID(str(value).upper().replace("-", "")) == str(value)
