"""App environment variables (spec: app ``environment``)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from appc.errors import InvalidManifest, ValidationError
from appc.types._struct import Struct, duplicate_errors, expect_str, json_field, list_of

__all__ = ["Environment", "EnvironmentVariable"]


def __dir__() -> list[str]:
    return __all__


# Relaxed in spec 0.8.11: '.' and '-' are allowed after the first character.
_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9.\-]*")


def _env_name(value: object) -> str:
    name = expect_str(value)
    if name == "":
        raise ValidationError("environment variable name must not be empty", value=name)
    if not _NAME.fullmatch(name):
        raise ValidationError(
            f"environment variable does not have valid identifier {name!r}", value=name
        )
    return name


def _env_value(value: object) -> str:
    return expect_str(value)


@attrs.frozen
class EnvironmentVariable(Struct):
    """One ``{name, value}`` variable; the name matches ``[A-Za-z_][A-Za-z_0-9.-]*``."""

    name: str = attrs.field(converter=_env_name, metadata=json_field("name", omit="never"))
    value: str = attrs.field(
        default="", converter=_env_value, metadata=json_field("value", omit="never")
    )


def _variable(item: object) -> EnvironmentVariable:
    if isinstance(item, EnvironmentVariable):
        return item
    if isinstance(item, tuple) and len(item) == 2:
        return EnvironmentVariable(*item)
    return EnvironmentVariable.from_dict(item)


class Environment(tuple[EnvironmentVariable, ...]):
    """The validated list of an app's environment variables (names unique).

    >>> Environment({"PATH": "/bin"}).as_dict()
    {'PATH': '/bin'}
    """

    __slots__ = ()

    def __new__(cls, items: Iterable[Any] | Mapping[str, str] | None = ()) -> Environment:
        if isinstance(items, Environment):
            return items
        if isinstance(items, Mapping):
            items = list(items.items())
        variables = list_of(items, _variable)
        errors = duplicate_errors(
            variables,
            lambda v: v.name,
            lambda name: f"duplicate environment variable of name {name!r}",
        )
        if errors:
            raise InvalidManifest(errors)
        return tuple.__new__(cls, variables)

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the value of *name*, or *default*."""
        for variable in self:
            if variable.name == name:
                return variable.value
        return default

    def as_dict(self) -> dict[str, str]:
        """Return ``{name: value}`` in list order."""
        return {v.name: v.value for v in self}

    def with_variable(self, name: str, value: str) -> Environment:
        """Return a copy with *name* set to *value* (replaced in place or appended)."""
        items = [(v.name, value if v.name == name else v.value) for v in self]
        if name not in self.as_dict():
            items.append((name, value))
        return Environment(items)

    def json_value(self) -> list[dict[str, Any]]:
        """The JSON array of ``{name, value}`` objects."""
        return [v.to_dict() for v in self]

    def __repr__(self) -> str:
        return f"Environment({self.as_dict()!r})"
