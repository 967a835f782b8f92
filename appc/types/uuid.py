"""Pod UUIDs (RFC 4122 text form)."""

from __future__ import annotations

import re
import uuid as _uuid

from appc.errors import ValidationError

__all__ = ["UUID", "new_uuid"]


def __dir__() -> list[str]:
    return __all__


_HEX32 = re.compile(r"[0-9a-fA-F]{32}")


class UUID(str):
    """A pod UUID in canonical lower-case ``8-4-4-4-12`` form.

    As the reference: dashes are removed and exactly 32 hex digits must remain
    (upper case accepted).  Decision: the all-zero UUID is refused everywhere, not only
    when read from JSON, because it never names a pod.

    >>> UUID("6733C088-4E4E-4C3C-B1B2-0C5BD43F8A9B")
    UUID('6733c088-4e4e-4c3c-b1b2-0c5bd43f8a9b')
    """

    __slots__ = ()

    def __new__(cls, value: object) -> UUID:
        if isinstance(value, UUID):
            return value
        if not isinstance(value, str):
            raise ValidationError(f"UUID must be a string, not {type(value).__name__}", value=value)
        digits = value.replace("-", "")
        if not _HEX32.fullmatch(digits):
            raise ValidationError(f"bad UUID: {value!r}", value=value)
        if int(digits, 16) == 0:
            raise ValidationError("UUID cannot be all zeros", value=value)
        d = digits.lower()
        return str.__new__(cls, f"{d[:8]}-{d[8:12]}-{d[12:16]}-{d[16:20]}-{d[20:]}")

    def __repr__(self) -> str:
        return f"UUID({str.__repr__(self)})"


def new_uuid() -> UUID:
    """Return a fresh random (version 4) pod UUID."""
    return UUID(str(_uuid.uuid4()))
