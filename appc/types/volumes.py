"""Pod volumes: ``host`` bind mounts and pod-lifetime ``empty`` directories (spec: Volumes)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from appc.errors import InvalidManifest, ValidationError
from appc.types._options import go_int, parse_go_bool, parse_options
from appc.types._struct import (
    Struct,
    duplicate_errors,
    expect_bool,
    expect_int,
    expect_str,
    json_field,
    list_of,
)
from appc.types.acname import ACName

__all__ = ["VOLUME_KINDS", "Volume", "volume_from_string", "volumes"]


def __dir__() -> list[str]:
    return __all__


#: The volume kinds of the spec.
VOLUME_KINDS = ("empty", "host")
_EMPTY_DEFAULTS = {"mode": "0755", "uid": 0, "gid": 0}


def _volume_name(value: object) -> ACName:
    return ACName(value)


def _str(value: object) -> str:
    return expect_str(value)


def _optional_str(value: object) -> str | None:
    return None if value is None else expect_str(value)


def _optional_bool(value: object) -> bool | None:
    return None if value is None else expect_bool(value)


def _optional_int(value: object) -> int | None:
    return None if value is None else expect_int(value)


@attrs.frozen(kw_only=True)
class Volume(Struct):
    """A pod volume.

    ``host``: ``source`` is required and absolute; ``mode``/``uid``/``gid`` must not be
    set.  ``empty``: no ``source``; ``mode`` (a string, content unchecked as in the
    reference) defaults to ``"0755"`` and ``uid``/``gid`` to 0.  ``readOnly`` and
    ``recursive`` stay unset unless given (the spec's default for ``recursive`` on host
    volumes is true: see :attr:`is_recursive`).
    """

    name: ACName = attrs.field(converter=_volume_name, metadata=json_field("name", omit="never"))
    kind: str = attrs.field(default="", converter=_str, metadata=json_field("kind", omit="never"))
    source: str = attrs.field(default="", converter=_str, metadata=json_field("source"))
    read_only: bool | None = attrs.field(
        default=None, converter=_optional_bool, metadata=json_field("readOnly", omit="none")
    )
    recursive: bool | None = attrs.field(
        default=None, converter=_optional_bool, metadata=json_field("recursive", omit="none")
    )
    mode: str | None = attrs.field(
        default=None, converter=_optional_str, metadata=json_field("mode", omit="none")
    )
    uid: int | None = attrs.field(
        default=None, converter=_optional_int, metadata=json_field("uid", omit="none")
    )
    gid: int | None = attrs.field(
        default=None, converter=_optional_int, metadata=json_field("gid", omit="none")
    )

    def __attrs_post_init__(self) -> None:
        if self.kind == "host":
            if self.source == "":
                raise ValidationError("source for host volume cannot be empty", path=("source",))
            if not self.source.startswith("/"):
                raise ValidationError(
                    "source for host volume must be absolute path",
                    path=("source",),
                    value=self.source,
                )
            for key in _EMPTY_DEFAULTS:
                if getattr(self, key) is not None:
                    raise ValidationError(f"{key} for host volume cannot be set", path=(key,))
        elif self.kind == "empty":
            if self.source != "":
                raise ValidationError("source for empty volume must be empty", path=("source",))
            for key, default in _EMPTY_DEFAULTS.items():
                if getattr(self, key) is None:
                    object.__setattr__(self, key, default)
        else:
            raise ValidationError(
                'unrecognized volume kind: should be one of "empty", "host"',
                path=("kind",),
                value=self.kind,
            )

    @property
    def is_recursive(self) -> bool:
        """Whether a host volume is bind-mounted recursively (the spec's default: yes)."""
        return True if self.recursive is None else self.recursive

    def __str__(self) -> str:
        """The command-line form; round-trips through :func:`volume_from_string`."""
        parts = [str(self.name), f"kind={self.kind}"]
        if self.source:
            parts.append(f"source={self.source}")
        if self.read_only is not None:
            parts.append(f"readOnly={str(self.read_only).lower()}")
        if self.recursive is not None:
            parts.append(f"recursive={str(self.recursive).lower()}")
        for key, default in _EMPTY_DEFAULTS.items():
            value = getattr(self, key)
            if value is not None and value != default:
                parts.append(f"{key}={value}")
        return ",".join(parts)


def _volume(item: object) -> Volume:
    return item if isinstance(item, Volume) else Volume.from_dict(item)


def volumes(value: Iterable[Any] | None) -> tuple[Volume, ...]:
    """Converter: a pod's volume list, names unique."""
    result = list_of(value, _volume)
    errors = duplicate_errors(
        result, lambda v: str(v.name), lambda name: f"duplicate volume name {name!r}"
    )
    if errors:
        raise InvalidManifest(errors)
    return result


def volume_from_string(text: str) -> Volume:
    """Read ``name,kind=host,source=/x,readOnly=true,recursive=false,mode=..,uid=..,gid=..``.

    >>> str(volume_from_string("data,kind=empty,mode=0700"))
    'data,kind=empty,mode=0700'
    """
    options = parse_options(text)
    kwargs: dict[str, Any] = {"name": options.pop("name")}
    for key, value in options.items():
        if key in ("kind", "source", "mode"):
            kwargs[key] = value
        elif key in ("readOnly", "recursive"):
            kwargs["read_only" if key == "readOnly" else key] = parse_go_bool(value)
        elif key in ("uid", "gid"):
            number = go_int(value)
            if number is None:
                raise ValidationError(f"bad {key} {value!r} in {text!r}", value=text)
            kwargs[key] = number
        else:
            raise ValidationError(f"unknown volume parameter {key!r}", value=text)
    return Volume(**kwargs)
