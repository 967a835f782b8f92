"""AC Name: app names in pods, volume, mount point and port names (spec: AC Name Type)."""

from __future__ import annotations

from appc.types._validated import SeparatedName

__all__ = ["ACName", "sanitize_acname"]


def __dir__() -> list[str]:
    return __all__


class ACName(SeparatedName):
    """A validated AC Name: lower-case alphanumerics joined by ``-``.

    >>> ACName("database")
    ACName('database')

    Decision (reference code over spec regex): ``a--b`` is accepted, as actool does.
    """

    __slots__ = ()
    _kind = "ACName"
    _separators = "-"


def sanitize_acname(value: str) -> ACName:
    """Suggest an ACName for *value*: lower-case, invalid characters to ``-``, edge dashes stripped.

    >>> sanitize_acname("sub-domain.example.com/org/product/release-1.0.0")
    ACName('sub-domain-example-com-org-product-release-1-0-0')
    """
    return ACName.sanitize(value, "-")
