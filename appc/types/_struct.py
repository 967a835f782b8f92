"""JSON (de)serialization shared by every struct type of the spec.

A struct type is a frozen attrs class whose JSON-visible fields carry
``metadata=json_field("jsonName")``.  Field order is the canonical output order.
:meth:`Struct.from_dict` converts and validates *every* field and reports all the
problems at once, each with its field path; :meth:`Struct.to_dict` writes the
canonical JSON form, leaving out empty optional fields as the reference does.

Keys are matched exactly here.  Case-insensitive reading of documents (a rule of the
reference decoder) is done once for a whole document by :mod:`appc.schema`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import attrs

from appc.errors import InvalidManifest, ValidationError

__all__ = [
    "Struct",
    "duplicate_errors",
    "expect_bool",
    "expect_int",
    "expect_list",
    "expect_object",
    "expect_str",
    "json_field",
    "json_type",
    "list_of",
    "to_json",
]

_META = "appc.json"
_T = TypeVar("_T")
_S = TypeVar("_S", bound="Struct")


_Omit = Literal["empty", "none", "never", "null"]


@attrs.frozen
class _JSONField:
    name: str
    omit: _Omit
    missing: str
    required: bool


def json_field(
    name: str, *, omit: _Omit = "empty", missing: str = "", required: bool = False
) -> dict[str, object]:
    """Field metadata: the field's JSON key, and when :meth:`Struct.to_dict` leaves it out.

    ``omit="empty"`` (Go's ``omitempty``) drops ``None``, ``""``, ``0``, ``False`` and
    empty lists; ``"none"`` drops only ``None`` (Go pointer fields); ``"never"`` always
    writes the field; ``"null"`` writes an empty value as ``null`` (a Go nil slice
    without ``omitempty``).  A field without a default, or with *required*, must be in
    the JSON (code may rely on the default); *missing* is the message when it is not
    (default: ``"<name> must be set"``).
    """
    return {_META: _JSONField(name, omit, missing or f"{name} must be set", required)}


def json_type(value: object) -> str:
    """Name *value*'s JSON type for messages (``string``, ``number``, ``object``, ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _type_error(what: str, value: object) -> ValidationError:
    return ValidationError(f"must be {what}, not {json_type(value)}", value=value)


def expect_str(value: object) -> str:
    """Return *value* if it is a string; raise :class:`ValidationError` otherwise."""
    if not isinstance(value, str):
        raise _type_error("a string", value)
    return value


def expect_bool(value: object) -> bool:
    """Return *value* if it is a JSON boolean."""
    if not isinstance(value, bool):
        raise _type_error("a boolean", value)
    return value


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_UINT64_MAX = 2**64 - 1


def expect_int(value: object, *, minimum: int | None = None) -> int:
    """Return *value* if it is a JSON integer that fits the reference's Go field, at least *minimum*.

    As Go's decoder: a number written with a fraction or an exponent (``80.0``,
    ``1e3``, which JSON reading gives as a Python ``float``) is not an integer, and the
    value must fit in 64 bits: ``uint64`` when *minimum* is 0 or more (Go ``uint``
    fields), ``int64`` otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error("an integer", value)
    if minimum is not None and value < minimum:
        raise ValidationError(f"must be at least {minimum}, not {value}", value=value)
    unsigned = minimum is not None and minimum >= 0
    if not (_INT64_MIN <= value <= _INT64_MAX or (unsigned and 0 <= value <= _UINT64_MAX)):
        bits = "unsigned" if unsigned else "signed"
        raise ValidationError(f"must fit in a 64-bit {bits} integer, not {value}", value=value)
    return value


def expect_list(value: object) -> list[Any] | tuple[Any, ...]:
    """Return *value* if it is a JSON array (a list or tuple)."""
    if not isinstance(value, (list, tuple)):
        raise _type_error("an array", value)
    return value


def expect_object(value: object) -> Mapping[str, Any]:
    """Return *value* if it is a JSON object."""
    if not isinstance(value, Mapping):
        raise _type_error("an object", value)
    return value


def list_of(value: object, item: Callable[[Any], _T]) -> tuple[_T, ...]:
    """Convert each element of the array *value* with *item*, reporting every bad element.

    ``None`` is the empty list (JSON ``null`` for a Go slice).
    """
    if value is None:
        return ()
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise _type_error("an array", value)
    items = value
    out: list[_T] = []
    errors: list[ValidationError] = []
    for index, element in enumerate(items):
        try:
            out.append(item(element))
        except ValidationError as err:
            errors.append(err.prefixed(index))
    if errors:
        raise InvalidManifest(errors)
    return tuple(out)


def duplicate_errors(
    items: Sequence[_T], key: Callable[[_T], str | None], message: Callable[[str], str]
) -> list[ValidationError]:
    """An error for each element whose *key* (its name) an earlier element already has.

    Each error sits at ``[index].name`` and says *message(name)*.
    """
    seen: set[str | None] = set()
    errors = []
    for index, item in enumerate(items):
        name = key(item)
        if name in seen:
            text = str(name or "")
            errors.append(ValidationError(message(text), path=(index, "name"), value=text))
        seen.add(name)
    return errors


def to_json(value: object) -> Any:
    """Return the JSON-ready form of a spec value (structs, validated strings, lists, maps).

    Values with a ``json_value()`` method (structs, label lists, quantities, versions)
    give their own form.
    """
    method = getattr(value, "json_value", None)
    if method is not None:
        return method()
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


def _is_empty(value: object) -> bool:
    if value is None or value is False:
        return True
    if isinstance(value, int) and value == 0:
        return True
    if isinstance(value, (str, tuple, list, Mapping)):
        return len(value) == 0
    return False


def _holds_array(field: attrs.Attribute[Any]) -> bool:
    """Whether *field* holds a JSON array: its empty (default) value is a tuple.

    Read from JSON, such a field takes only an array, even where the Python builder
    also takes a mapping for convenience (``Labels({"os": "linux"})``): the reference
    decodes labels, annotations and environment from arrays alone.
    """
    default = field.default
    factory = getattr(default, "factory", None)
    return isinstance(factory() if callable(factory) else default, tuple)


class Struct:
    """Mixin giving an attrs class JSON reading and writing by its fields' metadata."""

    __slots__ = ()

    @classmethod
    def from_dict(cls: type[_S], data: object) -> _S:
        """Build an instance from a JSON object, checking every field.

        Unknown keys are ignored and ``null`` counts as absent, as with Go's decoder.

        :raises ValidationError: for a single problem, or :class:`InvalidManifest`
            listing every problem with its field path.
        """
        return cls._from_fields(data)

    @classmethod
    def _from_fields(cls: type[_S], data: object) -> _S:
        if isinstance(data, cls):
            return data
        obj = expect_object(data)
        kwargs: dict[str, Any] = {}
        errors: list[ValidationError] = []
        for field in attrs.fields(cls):  # type: ignore[arg-type]
            meta: _JSONField | None = field.metadata.get(_META)
            if meta is None:
                continue
            raw = obj.get(meta.name)
            try:
                if raw is not None:
                    if _holds_array(field) and not isinstance(raw, (list, tuple)):
                        raise _type_error("an array", raw)
                    converter = field.converter
                    value = converter(raw) if callable(converter) else raw
                    kwargs[field.name] = value
                elif field.default is attrs.NOTHING or meta.required:
                    raise ValidationError(meta.missing)
                else:
                    default = field.default
                    is_factory = isinstance(default, attrs.Factory)  # type: ignore[arg-type]
                    value = default.factory() if is_factory else default
                if field.validator is not None:
                    field.validator(None, field, value)
            except ValidationError as err:
                errors.append(err.prefixed(meta.name))
        if errors:
            raise InvalidManifest(errors)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Return the canonical JSON object (key order = field order, empty optionals left out)."""
        out: dict[str, Any] = {}
        for field in attrs.fields(type(self)):  # type: ignore[arg-type]
            meta: _JSONField | None = field.metadata.get(_META)
            if meta is None:
                continue
            value = getattr(self, field.name)
            if (meta.omit == "empty" and _is_empty(value)) or (
                meta.omit == "none" and value is None
            ):
                continue
            out[meta.name] = None if meta.omit == "null" and _is_empty(value) else to_json(value)
        return out

    def json_value(self) -> dict[str, Any]:
        """Same as :meth:`to_dict`: the JSON-ready value (lets structs nest inside other values)."""
        return self.to_dict()
