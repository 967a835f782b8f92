"""Image dependencies (spec: image manifest ``dependencies``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from appc.types._struct import Struct, expect_int, json_field, list_of
from appc.types.acidentifier import ACIdentifier
from appc.types.hash import Hash
from appc.types.labels import Labels

__all__ = ["Dependency", "dependencies"]


def __dir__() -> list[str]:
    return __all__


def _optional_hash(value: object) -> Hash | None:
    return None if value is None else Hash(value)


def _size(value: object) -> int:
    return expect_int(value, minimum=0)


@attrs.frozen(kw_only=True)
class Dependency(Struct):
    """An image this one is laid over: by name (and labels), optionally pinned by image ID."""

    image_name: ACIdentifier = attrs.field(
        converter=ACIdentifier,
        metadata=json_field("imageName", omit="never", missing="imageName cannot be empty"),
    )
    image_id: Hash | None = attrs.field(
        default=None, converter=_optional_hash, metadata=json_field("imageID")
    )
    labels: Labels = attrs.field(factory=Labels, converter=Labels, metadata=json_field("labels"))
    size: int = attrs.field(default=0, converter=_size, metadata=json_field("size"))


def _dependency(item: object) -> Dependency:
    return item if isinstance(item, Dependency) else Dependency.from_dict(item)


def dependencies(value: Iterable[Any] | None) -> tuple[Dependency, ...]:
    """Converter: a list of :class:`Dependency` (dicts are read as JSON)."""
    return list_of(value, _dependency)
