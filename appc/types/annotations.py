"""Annotations: free-form ``{name, value}`` metadata with a few checked names (spec: Annotations)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from appc.errors import InvalidManifest, ValidationError
from appc.types._struct import Struct, duplicate_errors, expect_str, json_field, list_of
from appc.types.acidentifier import ACIdentifier
from appc.types.date import parse_rfc3339
from appc.types.url import check_http_url

__all__ = ["Annotation", "Annotations"]


def __dir__() -> list[str]:
    return __all__


def _annotation_value(value: object) -> str:
    return expect_str(value)


@attrs.frozen
class Annotation(Struct):
    """One ``{name, value}`` annotation."""

    name: ACIdentifier = attrs.field(
        converter=ACIdentifier, metadata=json_field("name", omit="never")
    )
    value: str = attrs.field(
        default="", converter=_annotation_value, metadata=json_field("value", omit="never")
    )


def _annotation(item: object) -> Annotation:
    if isinstance(item, Annotation):
        return item
    if isinstance(item, tuple) and len(item) == 2:
        return Annotation(*item)
    return Annotation.from_dict(item)


#: Annotation names whose values the spec gives a format to, and the check for each.
_CHECKED = {
    "created": parse_rfc3339,
    "homepage": check_http_url,
    "documentation": check_http_url,
}


class Annotations(tuple[Annotation, ...]):
    """The validated list of annotations of an image, a pod or a pod's app.

    Names are unique; ``created`` must be an RFC 3339 time and ``homepage`` /
    ``documentation`` http(s) URLs.  Other names (``authors``,
    ``appc.io/executor/supports-systemd-notify``, ...) are not checked, as in the
    reference.  Decision (reference over spec text): pod annotations use ACIdentifier
    names too, so ``x.com/y`` is accepted in a pod.
    """

    __slots__ = ()

    def __new__(cls, items: Iterable[Any] | Mapping[str, str] | None = ()) -> Annotations:
        if isinstance(items, Annotations):
            return items
        if isinstance(items, Mapping):
            items = [Annotation(k, v) for k, v in items.items()]
        annotations = list_of(items, _annotation)
        errors = duplicate_errors(
            annotations,
            lambda a: str(a.name),
            lambda name: f"duplicate annotations of name {name!r}",
        )
        for index, annotation in enumerate(annotations):
            check = _CHECKED.get(annotation.name)
            if check is not None:
                try:
                    check(annotation.value)
                except ValidationError as err:
                    errors.append(err.prefixed(index, "value"))
        errors.sort(key=lambda error: error.path[0])  # by element, as they were found
        if errors:
            raise InvalidManifest(errors)
        return tuple.__new__(cls, annotations)

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the value of the annotation *name*, or *default*."""
        for annotation in self:
            if annotation.name == name:
                return annotation.value
        return default

    def as_dict(self) -> dict[str, str]:
        """Return ``{name: value}`` in list order."""
        return {str(a.name): a.value for a in self}

    def with_annotation(self, name: str, value: str) -> Annotations:
        """Return a copy with *name* set: replaced in place if present (any case), else appended.

        These are the reference's ``Set`` semantics, used to merge image and pod
        annotations for the metadata service.
        """
        items = list(self)
        for index, annotation in enumerate(items):
            if annotation.name.equals(name):
                items[index] = Annotation(name, value)
                return Annotations(items)
        items.append(Annotation(name, value))
        return Annotations(items)

    def merged(self, other: Iterable[Annotation]) -> Annotations:
        """Return this list with every annotation of *other* set on it (other wins)."""
        result = self
        for annotation in other:
            result = result.with_annotation(annotation.name, annotation.value)
        return result

    def json_value(self) -> list[dict[str, Any]]:
        """The JSON array of ``{name, value}`` objects."""
        return [a.to_dict() for a in self]

    def __repr__(self) -> str:
        return f"Annotations({self.as_dict()!r})"
