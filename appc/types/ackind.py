"""AC Kind: the two document kinds of the spec."""

from __future__ import annotations

import enum

from appc.errors import ValidationError

__all__ = ["ACKind"]


def __dir__() -> list[str]:
    return __all__


class ACKind(str, enum.Enum):
    """``ImageManifest`` or ``PodManifest``; ``ACKind("x")`` raises :class:`ValidationError`."""

    IMAGE_MANIFEST = "ImageManifest"
    POD_MANIFEST = "PodManifest"

    @classmethod
    def _missing_(cls, value: object) -> ACKind:
        if value == "" or value is None:
            raise ValidationError("ACKind must be set", value=value)
        raise ValidationError(f"bad ACKind: {value!r}", value=value)

    def __str__(self) -> str:
        return self.value
