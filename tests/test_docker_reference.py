"""appc.docker.reference: image references parsed as docker2aci does (reference notes §2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appc.docker.reference import DEFAULT_REGISTRY, DockerReference, parse_reference
from appc.errors import ValidationError

DIGEST = "sha256:" + "ab" * 32
HUB = DEFAULT_REGISTRY

# input, registry, repository, tag, digest: every row of the notes' table
TABLE = [
    ("busybox", HUB, "library/busybox", "latest", ""),
    ("docker.io/busybox", HUB, "library/busybox", "latest", ""),
    ("index.docker.io/busybox", HUB, "library/busybox", "latest", ""),
    ("registry-1.docker.io/library/busybox", HUB, "library/busybox", "latest", ""),
    ("foo/bar/baz:1", HUB, "foo/bar/baz", "1", ""),
    ("my_registry/x", HUB, "my_registry/x", "latest", ""),
    ("localhost/foo", "localhost", "foo", "latest", ""),
    ("quay.io/coreos/etcd:v3.1", "quay.io", "coreos/etcd", "v3.1", ""),
    (f"127.0.0.1:5000/library/busybox@{DIGEST}", "127.0.0.1:5000", "library/busybox", "", DIGEST),
    (f"busybox:tag@{DIGEST}", HUB, "library/busybox", "", DIGEST),
    # more of the same rules
    ("127.0.0.1:5000/library/busybox:latest", "127.0.0.1:5000", "library/busybox", "latest", ""),
    ("localhost:5000/foo:1.0", "localhost:5000", "foo", "1.0", ""),
    ("crosbymichael/redis", HUB, "crosbymichael/redis", "latest", ""),
    ("example.com/a/b/c:Tag_1", "example.com", "a/b/c", "Tag_1", ""),
]


@pytest.mark.parametrize(("text", "registry", "repository", "tag", "digest"), TABLE)
def test_table(text: str, registry: str, repository: str, tag: str, digest: str) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )
    assert ref.original == text
    assert ref.ref == (digest or tag)


@pytest.mark.parametrize("row", TABLE, ids=[row[0] for row in TABLE])
def test_docker_scheme_prefix_is_stripped(row: tuple[str, ...]) -> None:
    plain, prefixed = parse_reference(row[0]), parse_reference("docker://" + row[0])
    assert prefixed == plain
    assert prefixed.original == row[0]  # OriginalName: as typed, without docker://


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Busybox", "repository name must be lowercase"),
        ("docker://Busybox", "repository name must be lowercase"),
        ("foo:bar/baz", "invalid reference format"),
        ("busybox:", "invalid reference format"),
        ("[::1]:5000/foo", "invalid reference format"),
        ("foo@sha256:abc", "invalid reference format"),
        ("", "invalid reference format"),
        ("docker://", "invalid reference format"),
        ("busybox@md5:" + "a" * 32, "invalid reference format"),
        ("busybox@sha256:" + "a" * 63, "invalid reference format"),
        ("/busybox", "invalid reference format"),
        ("busybox/", "invalid reference format"),
        ("a//b", "invalid reference format"),
        ("busybox:" + "t" * 129, "invalid reference format"),
        ("busy box", "invalid reference format"),
    ],
)
def test_bad_references(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        parse_reference(text)
    assert repr(text.removeprefix("docker://")) in str(info.value)


def test_long_names_are_refused() -> None:
    with pytest.raises(ValidationError, match="more than 255 characters"):
        parse_reference("a/" * 127 + "bb")


@pytest.mark.parametrize(
    ("text", "file_name"),
    [
        ("busybox", "library-busybox-latest.aci"),
        ("127.0.0.1:5000/library/busybox:latest", "library-busybox-latest.aci"),
        (f"127.0.0.1:5000/library/busybox@{DIGEST}", "library-busybox.aci"),
        (f"busybox:1.0@{DIGEST}", "library-busybox.aci"),
        ("crosbymichael/redis:latest", "crosbymichael-redis-latest.aci"),
        ("localhost:5000/testorg/busybox-v2s2:1.0", "testorg-busybox-v2s2-1.0.aci"),
        ("quay.io/coreos/etcd:v3.1", "coreos-etcd-v3.1.aci"),
    ],
)
def test_output_file_names(text: str, file_name: str) -> None:
    """The registry host never appears in the file name; by digest there is no tag."""
    assert parse_reference("docker://" + text).output_name() == file_name


def test_str_and_credential_keys() -> None:
    ref = parse_reference("127.0.0.1:5000/library/busybox:1")
    assert str(ref) == "127.0.0.1:5000/library/busybox:1"
    assert ref.credential_keys()[0] == "127.0.0.1:5000"  # the host as typed comes first
    assert parse_reference(f"busybox@{DIGEST}").__str__() == f"{HUB}/library/busybox@{DIGEST}"
    hub = parse_reference("busybox")
    assert hub.is_docker_hub and not hub.explicit_registry
    assert hub.credential_keys()[0] == "https://index.docker.io/v1/"
    assert not parse_reference("quay.io/a/b").is_docker_hub


_component = st.from_regex(r"[a-z0-9]{1,5}(?:[._-][a-z0-9]{1,5}){0,2}", fullmatch=True)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}", fullmatch=True)
_host = st.sampled_from(["", "quay.io/", "127.0.0.1:5000/", "localhost/", "example.com:443/"])


@given(
    host=_host,
    path=st.lists(_component, min_size=1, max_size=3),
    tag=st.none() | _tag,
    digest=st.none() | st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex()),
)
def test_parse_print_round_trip(
    host: str, path: list[str], tag: str | None, digest: str | None
) -> None:
    text = host + "/".join(path) + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    ref = parse_reference(text)
    assert ref.digest == (digest or "")
    assert ref.tag == ("" if digest else tag or "latest")
    again = parse_reference(str(ref))
    assert (again.registry, again.repository, again.tag, again.digest) == (
        ref.registry,
        ref.repository,
        ref.tag,
        ref.digest,
    )
    assert isinstance(ref, DockerReference)
    assert ref.output_name().endswith(".aci") and "/" not in ref.output_name()
