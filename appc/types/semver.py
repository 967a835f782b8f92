"""Semantic versions (``acVersion``, the ``version`` label when it is one)."""

from __future__ import annotations

import functools
import re

import attrs

from appc.errors import ValidationError

__all__ = ["SemVer", "semver"]


def __dir__() -> list[str]:
    return __all__


_DIGITS = re.compile(r"[0-9]+")
_INT64_MAX = 2**63 - 1


@functools.total_ordering
@attrs.frozen(eq=True, order=False)
class SemVer:
    """A version ``MAJOR.MINOR.PATCH[-PRERELEASE][+METADATA]``, parsed as the reference does.

    The reference (an old go-semver) splits off ``+metadata``, then ``-prerelease``, and
    needs exactly three base-10 integers in the rest.  Leading zeros are accepted
    (``01.02.03``) and lost when printed; ``1.0.0-`` and ``1.0.0+`` are valid.

    ``0.0.0`` (the reference's unset value) is refused: "SemVer cannot be zero";
    ``0.0.0-alpha`` is fine.  Decision: a sign before a number (``1.+2.3``, which Go's
    ``ParseInt`` would take) is refused; versions are plain digits.

    >>> SemVer.parse("0.8.11")
    SemVer('0.8.11')
    >>> SemVer.parse("1.0.0-alpha") < SemVer.parse("1.0.0")
    True
    """

    major: int
    minor: int
    patch: int
    prerelease: str = ""
    metadata: str = ""

    @classmethod
    def parse(cls, text: object) -> SemVer:
        """Parse *text*; a :class:`SemVer` is returned unchanged.

        :raises ValidationError: ``SemVer is bad`` (with the input) for anything else.
        """
        if isinstance(text, SemVer):
            return text
        if not isinstance(text, str):
            raise ValidationError(f"SemVer must be a string, not {type(text).__name__}", value=text)
        rest, _, metadata = text.partition("+")
        rest, _, prerelease = rest.partition("-")
        parts = rest.split(".")
        if len(parts) != 3 or not all(_DIGITS.fullmatch(p) for p in parts):
            raise ValidationError(f"SemVer is bad: {text!r}", value=text)
        if any(len(p.lstrip("0")) > len(str(_INT64_MAX)) for p in parts):
            # Too big for int64, and for int() itself past 4300 digits (a ValueError).
            raise ValidationError(f"SemVer is bad: {text[:80]!r}", value=text)
        numbers = [int(p) for p in parts]
        if any(n > _INT64_MAX for n in numbers):
            raise ValidationError(f"SemVer is bad: {text!r}", value=text)
        version = cls(numbers[0], numbers[1], numbers[2], prerelease, metadata)
        if version == _ZERO:
            raise ValidationError(f"SemVer cannot be zero: {text!r}", value=text)
        return version

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += f"-{self.prerelease}"
        if self.metadata:
            text += f"+{self.metadata}"
        return text

    def __repr__(self) -> str:
        return f"SemVer({str(self)!r})"

    def json_value(self) -> str:
        """The version as a JSON string."""
        return str(self)

    def _key(self) -> tuple[object, ...]:
        # Semantic Versioning precedence: a pre-release sorts before its release;
        # numeric identifiers compare as numbers and sort before alphanumeric ones.
        if not self.prerelease:
            pre: tuple[object, ...] = ((2,),)
        else:
            # A numeric identifier (ASCII digits, of any length) compares as a number:
            # by its length without leading zeros, then its digits.
            pre = tuple(
                (0, len(part.lstrip("0")), part.lstrip("0"))
                if part.isascii() and part.isdigit()
                else (1, 0, part)
                for part in self.prerelease.split(".")
            )
        return (self.major, self.minor, self.patch, pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self._key() < other._key()


_ZERO = SemVer(0, 0, 0)


def semver(value: object) -> SemVer:
    """Converter: a :class:`SemVer` from a string or a SemVer."""
    return SemVer.parse(value)
