"""HTTP(S) URLs (the ``homepage`` and ``documentation`` annotations)."""

from __future__ import annotations

import urllib.parse

from appc.errors import ValidationError

__all__ = ["check_http_url"]


def __dir__() -> list[str]:
    return __all__


def check_http_url(text: str) -> str:
    """Return *text* when it is an ``http`` or ``https`` URL (scheme in any case, as Go).

    ``http://`` with no host is accepted, as the reference does.

    :raises ValidationError: ``bad URL scheme, must be http/https`` otherwise.
    """
    if any(ord(c) < 0x20 or c == "\x7f" for c in text):
        raise ValidationError(f"bad URL (control character): {text!r}", value=text)
    try:
        scheme = urllib.parse.urlsplit(text).scheme
    except ValueError as err:
        raise ValidationError(f"bad URL ({err}): {text!r}", value=text) from None
    if scheme not in ("http", "https"):
        raise ValidationError(f"bad URL scheme, must be http/https: {text!r}", value=text)
    return text
