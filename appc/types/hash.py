"""Image IDs: ``sha512-<hex>`` hashes of an image's uncompressed tar stream."""

from __future__ import annotations

from appc.errors import ValidationError

__all__ = ["SHORT_HASH_LENGTH", "Hash"]


def __dir__() -> list[str]:
    return __all__


#: rkt shows and matches image IDs by their first 39 characters: ``sha512-`` plus 32 hex digits.
SHORT_HASH_LENGTH = len("sha512-") + 32


class Hash(str):
    """A validated image ID string, ``<type>-<value>``.

    The rules are the reference's: exactly one ``-``, the type exactly ``sha512``, and a
    non-empty value.  Decision (reference over strictness): the value is *not* required
    to be 128 hex digits, because the spec's own examples use ``sha512-...`` and actool
    accepts them; :attr:`is_full` tells whether a hash can name real content.

    >>> Hash("sha512-abc").value
    'abc'
    >>> Hash("sha256-abc")
    Traceback (most recent call last):
    ...
    appc.errors.ValidationError: unrecognized hash type: 'sha256'
    """

    __slots__ = ()

    def __new__(cls, value: object) -> Hash:
        if isinstance(value, Hash):
            return value
        if not isinstance(value, str):
            raise ValidationError(f"hash must be a string, not {type(value).__name__}", value=value)
        parts = value.split("-")
        if len(parts) != 2:
            raise ValidationError(f"badly formatted hash string: {value!r}", value=value)
        algorithm, digest = parts
        if algorithm == "":
            raise ValidationError(f"unexpected empty hash type: {value!r}", value=value)
        if algorithm != "sha512":
            raise ValidationError(f"unrecognized hash type: {algorithm!r}", value=value)
        if digest == "":
            raise ValidationError(f"unexpected empty hash value: {value!r}", value=value)
        return str.__new__(cls, value)

    @classmethod
    def from_digest(cls, hexdigest: str) -> Hash:
        """Return the image ID for a SHA-512 hex digest (``hashlib.sha512().hexdigest()``)."""
        return cls(f"sha512-{hexdigest.lower()}")

    def __repr__(self) -> str:
        return f"Hash({str.__repr__(self)})"

    @property
    def algorithm(self) -> str:
        """The hash type: always ``sha512``."""
        return self.partition("-")[0]

    @property
    def value(self) -> str:
        """The digest after the ``-``."""
        return self.partition("-")[2]

    @property
    def is_full(self) -> bool:
        """True when the value is a complete lower-case SHA-512 hex digest."""
        digest = self.value
        return len(digest) == 128 and all(c in "0123456789abcdef" for c in digest)

    def short(self) -> str:
        """The first :data:`SHORT_HASH_LENGTH` characters, as rkt prints image IDs."""
        return self[:SHORT_HASH_LENGTH]
