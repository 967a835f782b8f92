"""Mount points: the paths where an app wants volumes (image manifest ``app.mountPoints``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from appc.errors import ValidationError
from appc.types._options import parse_go_bool, parse_options
from appc.types._struct import Struct, expect_bool, expect_str, json_field, list_of
from appc.types.acname import ACName

__all__ = ["MountPoint", "mount_point_from_string", "mount_points"]


def __dir__() -> list[str]:
    return __all__


def _optional_acname(value: object) -> ACName | None:
    return None if value is None else ACName(value)


def _path(value: object) -> str:
    return expect_str(value)


def _bool(value: object) -> bool:
    return expect_bool(value)


@attrs.frozen(kw_only=True)
class MountPoint(Struct):
    """A named path in the app's filesystem where a volume is mounted.

    As in the reference's JSON reading, only the name's format is checked: a missing
    name or path, and duplicate names, are accepted (an executor reports them when it
    cannot satisfy the mount).  :func:`mount_point_from_string` needs both.
    """

    name: ACName | None = attrs.field(
        default=None, converter=_optional_acname, metadata=json_field("name", omit="none")
    )
    path: str = attrs.field(default="", converter=_path, metadata=json_field("path"))
    read_only: bool = attrs.field(default=False, converter=_bool, metadata=json_field("readOnly"))


def _mount_point(item: object) -> MountPoint:
    return item if isinstance(item, MountPoint) else MountPoint.from_dict(item)


def mount_points(value: Iterable[Any] | None) -> tuple[MountPoint, ...]:
    """Converter: a list of :class:`MountPoint`."""
    return list_of(value, _mount_point)


def mount_point_from_string(text: str) -> MountPoint:
    """Read ``name,path=/p,readOnly=true`` (``patch-manifest --mounts``); name and path required."""
    options = parse_options(text)
    name = options.pop("name")
    path = options.pop("path", "")
    read_only = parse_go_bool(options.pop("readOnly")) if "readOnly" in options else False
    if options:
        raise ValidationError(f"unknown mountpoint parameter {next(iter(options))!r}", value=text)
    if not name:
        raise ValidationError(f"mount point name must be set: {text!r}", value=text)
    if not path:
        raise ValidationError(f"mount point path must be set: {text!r}", value=text)
    return MountPoint(name=name, path=path, read_only=read_only)
