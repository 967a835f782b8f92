"""Registry credentials and authentication challenges.

* ``WWW-Authenticate`` headers are parsed by the RFC 7235 grammar: several challenges
  in one header, quoted values holding commas (``scope="repository:x:pull,push"``),
  any parameter order.  (The original split on commas and needed exactly three parts.)
* Credentials come from the command line, or from ``~/.docker/config.json``
  (``auths[host].auth`` = base64 ``user:password``, or ``username``/``password``),
  falling back to the older ``~/.dockercfg`` when there is no config.json.
* Tokens are read from ``token`` or ``access_token`` (the original knew only ``token``).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import pathlib
from collections.abc import Iterable

import attrs

from appc.errors import FetchError, ValidationError

__all__ = [
    "Challenge",
    "Credentials",
    "credentials_from_string",
    "load_docker_credentials",
    "parse_www_authenticate",
]


def __dir__() -> list[str]:
    return __all__


@attrs.frozen(repr=False)
class Credentials:
    """A user name and password (never shown in ``repr``, logs or errors)."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<hidden>)"


def credentials_from_string(text: str) -> Credentials:
    """Read ``--creds USER:PASSWORD``.

    :raises ValidationError: when there is no ``:``.
    """
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise ValidationError("credentials must be USER:PASSWORD")
    return Credentials(user, password)


def _from_entry(entry: object) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=False).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        return Credentials(user, password) if sep else None
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(secret, str) and name:
        return Credentials(name, secret)
    return None


def load_docker_credentials(
    keys: Iterable[str], home: str | os.PathLike[str] | None = None
) -> Credentials | None:
    """Find credentials for a registry in Docker's client configuration.

    :param keys: the names the registry may be filed under (see
        :meth:`DockerReference.credential_keys`).
    :param home: the home directory (default: ``$HOME``); ``$DOCKER_CONFIG`` overrides
        the ``~/.docker`` directory.
    """
    base = pathlib.Path(home if home is not None else os.path.expanduser("~"))
    config_dir = (
        pathlib.Path(os.environ["DOCKER_CONFIG"])
        if os.environ.get("DOCKER_CONFIG")
        else base / ".docker"
    )
    config = config_dir / "config.json"
    try:
        if config.is_file():
            data = json.loads(config.read_text("utf-8"))
            auths = data.get("auths", {}) if isinstance(data, dict) else {}
        else:
            legacy = base / ".dockercfg"
            auths = json.loads(legacy.read_text("utf-8")) if legacy.is_file() else {}
    except (OSError, ValueError):
        return None
    if not isinstance(auths, dict):
        return None
    for key in keys:
        found = _from_entry(auths.get(key))
        if found is not None:
            return found
    return None


@attrs.frozen
class Challenge:
    """One authentication challenge: the scheme (lower case) and its parameters (keys lower case)."""

    scheme: str
    params: dict[str, str] = attrs.field(factory=dict)


def _lex(header: str) -> list[tuple[str, str]]:
    """Split a header into ("tok", text), ("str", text), ("=", "") and (",", "") items."""
    items: list[tuple[str, str]] = []
    i = 0
    while i < len(header):
        c = header[i]
        if c in " \t":
            i += 1
        elif c in ",=":
            items.append((c, ""))
            i += 1
        elif c == '"':
            out = []
            i += 1
            while i < len(header) and header[i] != '"':
                if header[i] == "\\" and i + 1 < len(header):
                    i += 1
                out.append(header[i])
                i += 1
            if i >= len(header):
                raise FetchError("malformed WWW-Authenticate header: unterminated quoted string")
            items.append(("str", "".join(out)))
            i += 1
        else:
            start = i
            while i < len(header) and header[i] not in ' \t,="':
                i += 1
            items.append(("tok", header[start:i]))
    return items


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` header into its challenges.

    >>> parse_www_authenticate('Bearer realm="https://auth/token",service="reg",scope="repository:a:pull,push"')
    [Challenge(scheme='bearer', params={'realm': 'https://auth/token', 'service': 'reg', 'scope': 'repository:a:pull,push'})]
    >>> [c.scheme for c in parse_www_authenticate('Negotiate, Basic realm="x"')]
    ['negotiate', 'basic']

    :raises FetchError: for a header that cannot be parsed.
    """
    elements: list[list[tuple[str, str]]] = [[]]
    for item in _lex(header):
        if item[0] == ",":
            elements.append([])
        else:
            elements[-1].append(item)
    challenges: list[Challenge] = []
    for element in elements:
        kinds = [kind for kind, _ in element]
        if not element:
            continue
        if kinds == ["tok"]:
            challenges.append(Challenge(element[0][1].lower()))
        elif kinds[:2] == ["tok", "tok"] and all(k == "=" for k in kinds[2:]):
            challenges.append(
                Challenge(
                    element[0][1].lower(), {"token68": element[1][1] + "=" * (len(kinds) - 2)}
                )
            )
        elif len(element) == 4 and kinds[:3] == ["tok", "tok", "="] and kinds[3] in ("tok", "str"):
            challenges.append(
                Challenge(element[0][1].lower(), {element[1][1].lower(): element[3][1]})
            )
        elif (
            len(element) == 3
            and kinds[:2] == ["tok", "="]
            and kinds[2] in ("tok", "str")
            and challenges
        ):
            challenges[-1].params[element[0][1].lower()] = element[2][1]
        else:
            raise FetchError(f"malformed WWW-Authenticate header: {header!r}")
    return challenges
