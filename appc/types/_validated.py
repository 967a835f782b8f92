"""The shared machinery of the validated string types (ACIdentifier, ACName, ...)."""

from __future__ import annotations

import re
from typing import ClassVar, TypeVar

from appc.errors import ValidationError

_T = TypeVar("_T", bound="SeparatedName")


class SeparatedName(str):
    """A lower-case name made of alphanumeric runs joined by separator characters.

    Subclasses set ``_kind`` (the type's name in messages) and ``_separators``.  The
    checks follow the reference code, in its order: empty, then a character outside
    the alphabet, then a separator at either edge.  Runs of separators *inside* the
    name are accepted, as the reference tool does (the spec's regex would refuse
    ``a..b``); images built by the reference tools must keep validating here.
    """

    __slots__ = ()
    _kind: ClassVar[str] = ""
    _separators: ClassVar[str] = ""
    _bad_char: ClassVar[re.Pattern[str]]
    _bad_edge: ClassVar[re.Pattern[str]]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        seps = re.escape(cls._separators)
        cls._bad_char = re.compile(f"[^a-z0-9{seps}]")
        cls._bad_edge = re.compile(f"^[{seps}]|[{seps}]$")

    def __new__(cls: type[_T], value: object) -> _T:
        if isinstance(value, cls):
            return value
        if not isinstance(value, str):
            raise ValidationError(
                f"{cls._kind} must be a string, not {type(value).__name__}", value=value
            )
        if value == "":
            raise ValidationError(f"{cls._kind} cannot be empty", value=value)
        if cls._bad_char.search(value):
            raise ValidationError(
                f"{cls._kind} must contain only lower case alphanumeric characters plus "
                f"{cls._separators!r}: {value!r}",
                value=value,
            )
        if cls._bad_edge.search(value):
            raise ValidationError(
                f"{cls._kind} must start and end with only lower case alphanumeric "
                f"characters: {value!r}",
                value=value,
            )
        return str.__new__(cls, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str.__repr__(self)})"

    def equals(self, other: str) -> bool:
        """Compare ignoring case, as the reference ``Equals`` does."""
        return self.lower() == other.lower()

    @classmethod
    def sanitize(cls: type[_T], value: str, replacement: str) -> _T:
        """Suggest a valid name close to *value* (not part of the spec; never applied implicitly).

        Lower-cases, replaces each invalid character with *replacement* and strips
        separators from both edges.

        :raises ValidationError: when nothing valid remains.
        """
        lowered = cls._bad_char.sub(replacement, value.lower())
        stripped = lowered.strip(cls._separators)
        return cls(stripped)
