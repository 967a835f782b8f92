"""appc.docker.auth: ``WWW-Authenticate`` parsing and Docker client credentials.

The parser is checked on headers real registries send (and the ones that broke the
original's comma split); credentials are read from a temporary HOME, then used against the
real basic-auth registry.
"""

from __future__ import annotations

import base64
import json
import pathlib

import pytest

from appc.docker.auth import (
    Challenge,
    Credentials,
    credentials_from_string,
    load_docker_credentials,
    parse_www_authenticate,
)
from appc.docker.reference import parse_reference
from appc.docker.registry import RegistryOptions
from appc.errors import FetchError, ValidationError
from tests import docker_images as di
from tests.registry_fixtures import Registry, push
from tests.test_docker_common import convert_remote, read_aci

# --------------------------------------------------------------------------- WWW-Authenticate


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (  # docker/distribution's token challenge
            'Bearer realm="https://auth.example/token",service="registry.example",'
            'scope="repository:library/busybox:pull"',
            [
                Challenge(
                    "bearer",
                    {
                        "realm": "https://auth.example/token",
                        "service": "registry.example",
                        "scope": "repository:library/busybox:pull",
                    },
                )
            ],
        ),
        (  # a quoted comma (the original's 3-part split broke on it)
            'Bearer realm="https://a/token",service="s",scope="repository:x:pull,push"',
            [
                Challenge(
                    "bearer",
                    {"realm": "https://a/token", "service": "s", "scope": "repository:x:pull,push"},
                )
            ],
        ),
        (  # any order, extra parameters, quay-style missing scope
            'Bearer service="quay.io", realm="https://quay.io/v2/auth", error="invalid_token"',
            [
                Challenge(
                    "bearer",
                    {
                        "service": "quay.io",
                        "realm": "https://quay.io/v2/auth",
                        "error": "invalid_token",
                    },
                )
            ],
        ),
        ('Basic realm="Registry Realm"', [Challenge("basic", {"realm": "Registry Realm"})]),
        (  # several challenges in one header; scheme and parameter names case-insensitive
            'Negotiate, BASIC Realm="x, y", bearer REALM=http://t/token,service=reg',
            [
                Challenge("negotiate"),
                Challenge("basic", {"realm": "x, y"}),
                Challenge("bearer", {"realm": "http://t/token", "service": "reg"}),
            ],
        ),
        (
            "Negotiate YIIBhwYGKwYBBQUCoIIBezCCAXeg==",
            [Challenge("negotiate", {"token68": "YIIBhwYGKwYBBQUCoIIBezCCAXeg=="})],
        ),
        (
            "NTLM abc123, Basic realm=r",
            [Challenge("ntlm", {"token68": "abc123"}), Challenge("basic", {"realm": "r"})],
        ),
        (
            r'Basic realm="say \"hi\", then go"',
            [Challenge("basic", {"realm": 'say "hi", then go'})],
        ),
        ("Bearer", [Challenge("bearer")]),
        ("", []),
        ("  ,  ", []),
    ],
)
def test_parse_www_authenticate(header: str, expected: list[Challenge]) -> None:
    assert parse_www_authenticate(header) == expected


@pytest.mark.parametrize(
    "header", ['Bearer realm="unterminated', "realm=x", "Bearer a b c", '="x"']
)
def test_malformed_www_authenticate(header: str) -> None:
    with pytest.raises(FetchError, match="malformed WWW-Authenticate"):
        parse_www_authenticate(header)


# --------------------------------------------------------------------------- credentials


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _write(path: pathlib.Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@pytest.fixture
def home(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    return tmp_path


KEYS = parse_reference("127.0.0.1:5000/x").credential_keys()


def test_config_json_auth_field(home: pathlib.Path) -> None:
    _write(home / ".docker/config.json", {"auths": {"127.0.0.1:5000": {"auth": _auth("u", "p:w")}}})
    assert load_docker_credentials(KEYS) == Credentials("u", "p:w")  # split at the first colon


def test_config_json_username_password(home: pathlib.Path) -> None:
    _write(
        home / ".docker/config.json",
        {"auths": {"127.0.0.1:5000": {"username": "u", "password": "p"}}},
    )
    assert load_docker_credentials(KEYS) == Credentials("u", "p")


def test_config_json_url_keys_and_hub(home: pathlib.Path) -> None:
    _write(
        home / ".docker/config.json",
        {
            "auths": {
                "https://127.0.0.1:5000": {"auth": _auth("url", "p")},
                "https://index.docker.io/v1/": {"auth": _auth("hub", "p")},
            }
        },
    )
    assert load_docker_credentials(KEYS) == Credentials("url", "p")
    assert load_docker_credentials(parse_reference("busybox").credential_keys()) == Credentials(
        "hub", "p"
    )
    assert load_docker_credentials(parse_reference("quay.io/x/y").credential_keys()) is None


def test_dockercfg_fallback_only_without_config_json(home: pathlib.Path) -> None:
    _write(home / ".dockercfg", {"127.0.0.1:5000": {"auth": _auth("old", "p"), "email": "x@y"}})
    assert load_docker_credentials(KEYS) == Credentials("old", "p")
    _write(home / ".docker/config.json", {"auths": {}})
    assert load_docker_credentials(KEYS) is None  # config.json exists: .dockercfg is not read


def test_docker_config_variable(home: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(
        home / "elsewhere/config.json", {"auths": {"127.0.0.1:5000": {"auth": _auth("env", "p")}}}
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(home / "elsewhere"))
    assert load_docker_credentials(KEYS) == Credentials("env", "p")


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        json.dumps([1, 2]),
        json.dumps({"auths": []}),
        json.dumps({"auths": {"127.0.0.1:5000": {"auth": "!!!not base64"}}}),
        json.dumps({"auths": {"127.0.0.1:5000": {"auth": _auth("nocolon", "")[:-4]}}}),
        json.dumps({"auths": {"127.0.0.1:5000": "string"}}),
        json.dumps({"auths": {"127.0.0.1:5000": {"username": "u"}}}),
    ],
)
def test_unusable_config_gives_no_credentials(home: pathlib.Path, content: str) -> None:
    (home / ".docker").mkdir()
    (home / ".docker/config.json").write_text(content)
    assert load_docker_credentials(KEYS) is None


def test_no_files_at_all(home: pathlib.Path) -> None:
    assert load_docker_credentials(KEYS) is None
    assert load_docker_credentials(KEYS, home=home / "missing") is None


def test_credentials_from_string_and_repr() -> None:
    creds = credentials_from_string("user:pa:ss")
    assert creds == Credentials("user", "pa:ss")
    assert "pa:ss" not in repr(creds) and "hidden" in repr(creds)
    for bad in ("nocolon", ":password"):
        with pytest.raises(ValidationError, match="USER:PASSWORD"):
            credentials_from_string(bad)


# --------------------------------------------------------------------------- against a registry


@pytest.mark.parametrize("where", ["config.json", ".dockercfg"])
def test_registry_credentials_from_home(
    tls_registry: Registry, tmp_path: pathlib.Path, where: str
) -> None:
    """Credentials read from a (temporary) HOME answer the basic-auth registry's challenge."""
    repo = f"auth/home-{where.strip('.').replace('.', '-')}"
    image = di.empty_config_image()
    push(tls_registry, repo, "v1", image)
    home = tmp_path / "home"
    if where == "config.json":
        tls_registry.write_docker_config(home)
    else:
        _write(
            home / ".dockercfg",
            {
                tls_registry.host: {
                    "auth": _auth(tls_registry.username or "", tls_registry.password or "")
                }
            },
        )
    ref = parse_reference(tls_registry.ref(repo, "v1"))
    creds = load_docker_credentials(ref.credential_keys(), home=home)
    assert creds == Credentials(tls_registry.username or "", tls_registry.password or "")
    options = RegistryOptions(ca_file=str(tls_registry.ca_file), credentials=creds)
    result = convert_remote(tls_registry.ref(repo, "v1"), tmp_path / "out", options=options)
    assert read_aci(result.paths[0]).files["hello.txt"].data == b"hello\n"
