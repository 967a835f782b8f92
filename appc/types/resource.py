"""Resource quantities (``1G``, ``250m``, ``2Gi``) as the reference's k8s-derived parser reads them."""

from __future__ import annotations

import decimal
import math
import re

import attrs

from appc.errors import ValidationError

__all__ = ["Quantity", "quantity"]


def __dir__() -> list[str]:
    return __all__


_SHAPE_TEXT = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"  # the reference's, for messages
# The same language, unambiguous: a suffix never starts with a digit (the number took it),
# so a long number followed by junk is refused in linear time (the reference's form
# backtracks quadratically: a 1 MB quantity in a manifest took hours).
_SHAPE = re.compile(r"([+-]?[0-9.]+)((?:[eEinumkKMGTP]+[-+]?|[-+])[0-9]*|)")
_EXPONENT = re.compile(r"[eE][-+]?[0-9]+")
_SUFFIXES: dict[str, decimal.Decimal] = {
    "": decimal.Decimal(1),
    "n": decimal.Decimal("1e-9"),
    "u": decimal.Decimal("1e-6"),
    "m": decimal.Decimal("1e-3"),
    "k": decimal.Decimal("1e3"),
    "M": decimal.Decimal("1e6"),
    "G": decimal.Decimal("1e9"),
    "T": decimal.Decimal("1e12"),
    "P": decimal.Decimal("1e15"),
    "E": decimal.Decimal("1e18"),
    "Ki": decimal.Decimal(2**10),
    "Mi": decimal.Decimal(2**20),
    "Gi": decimal.Decimal(2**30),
    "Ti": decimal.Decimal(2**40),
    "Pi": decimal.Decimal(2**50),
    "Ei": decimal.Decimal(2**60),
}
_CONTEXT = decimal.Context(
    prec=60, Emax=10_000, Emin=-10_000, traps=[decimal.Overflow, decimal.InvalidOperation]
)


@attrs.frozen
class Quantity:
    """A parsed quantity: the text as written and its exact value.

    Accepted: an optional sign, digits with an optional fraction, then a suffix among
    ``n u m k M G T P E`` (decimal), ``Ki Mi Gi Ti Pi Ei`` (binary) or an exponent
    (``1e3``).  Upper-case ``K`` is refused, as in the reference (use ``k``).  Negative
    values and ``0.5`` are accepted; no request ≤ limit rule exists.

    >>> Quantity.parse("2Gi").value
    Decimal('2147483648')
    >>> Quantity.parse("250m").milli_value()
    250
    """

    text: str
    value: decimal.Decimal

    @classmethod
    def parse(cls, raw: object) -> Quantity:
        """Parse a JSON string or number (surrounding blanks are trimmed).

        :raises ValidationError: for a bad shape, number or suffix.
        """
        if isinstance(raw, Quantity):
            return raw
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise ValidationError(
                f"quantity must be a string or a number, not {type(raw).__name__}", value=raw
            )
        text = str(raw).strip() if isinstance(raw, str) else repr(raw)
        match = _SHAPE.fullmatch(text)
        if match is None:
            raise ValidationError(
                f"quantities must match the regular expression {_SHAPE_TEXT!r}: {text!r}",
                value=raw,
            )
        number, suffix = match.groups()
        try:
            amount = decimal.Decimal(number)
        except decimal.InvalidOperation:
            raise ValidationError(
                f"unable to parse quantity's numeric part: {text!r}", value=raw
            ) from None
        if suffix in _SUFFIXES:
            factor = _SUFFIXES[suffix]
        elif _EXPONENT.fullmatch(suffix):
            factor = decimal.Decimal(f"1{suffix.lower()}")
        else:
            raise ValidationError(f"unable to parse quantity's suffix: {text!r}", value=raw)
        try:
            return cls(text, _CONTEXT.multiply(amount, factor))
        except decimal.DecimalException:
            raise ValidationError(f"quantity out of range: {text!r}", value=raw) from None

    def int_value(self) -> int:
        """The value rounded up to a whole number (bytes for memory)."""
        return math.ceil(self.value)

    def milli_value(self) -> int:
        """The value in thousandths, rounded up (milli-cores for cpu)."""
        return math.ceil(_CONTEXT.multiply(self.value, decimal.Decimal(1000)))

    def __str__(self) -> str:
        return self.text

    def json_value(self) -> str:
        """The quantity as written."""
        return self.text


def quantity(value: object) -> Quantity | None:
    """Converter: a :class:`Quantity`, or ``None`` for JSON ``null`` (unset)."""
    return None if value is None else Quantity.parse(value)
