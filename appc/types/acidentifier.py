"""AC Identifier: image names, label and annotation names, isolator names (spec: Identifiers)."""

from __future__ import annotations

from appc.types._validated import SeparatedName

__all__ = ["ACIdentifier", "sanitize_acidentifier"]


def __dir__() -> list[str]:
    return __all__


class ACIdentifier(SeparatedName):
    """A validated AC Identifier: lower-case alphanumerics joined by ``-._~/``.

    The constructor is the parser::

        >>> ACIdentifier("example.com/reduce-worker")
        ACIdentifier('example.com/reduce-worker')
        >>> ACIdentifier("Example.com")
        Traceback (most recent call last):
        ...
        appc.errors.ValidationError: ACIdentifier must contain only lower case alphanumeric characters plus '-._~/': 'Example.com'

    Decision (reference code over spec regex): a run of separators inside the name
    (``a..b``, ``a//b``) is accepted, as actool does; only the edges must be
    alphanumeric.
    """

    __slots__ = ()
    _kind = "ACIdentifier"
    _separators = "-._~/"


def sanitize_acidentifier(value: str) -> ACIdentifier:
    """Suggest an ACIdentifier for *value*: lower-case, invalid characters to ``_``, edges stripped.

    >>> sanitize_acidentifier("Example.com/My App!")
    ACIdentifier('example.com/my_app')
    """
    return ACIdentifier.sanitize(value, "_")
