"""HTTP(S) URLs (the ``homepage`` and ``documentation`` annotations)."""

from __future__ import annotations

import re
import urllib.parse

from appc.errors import ValidationError

__all__ = ["check_http_url"]


def __dir__() -> list[str]:
    return __all__


# Go's getScheme: a letter, then letters, digits, '+', '-' or '.', up to the first ':'.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")


def check_http_url(text: str) -> str:
    """Return *text* when it is an ``http`` or ``https`` URL (scheme in any case, as Go).

    ``http://`` with no host is accepted, as the reference does.  The scheme is read
    where Go reads it, at the very start: ``urllib`` would skip leading blanks
    (``" http://x"``), which Go's ``url.Parse`` refuses.

    :raises ValidationError: ``bad URL scheme, must be http/https`` otherwise.
    """
    if any(ord(c) < 0x20 or c == "\x7f" for c in text):
        raise ValidationError(f"bad URL (control character): {text!r}", value=text)
    try:
        urllib.parse.urlsplit(text)
    except ValueError as err:
        raise ValidationError(f"bad URL ({err}): {text!r}", value=text) from None
    match = _SCHEME.match(text)
    scheme = match.group(1).lower() if match else ""
    if scheme not in ("http", "https"):
        raise ValidationError(f"bad URL scheme, must be http/https: {text!r}", value=text)
    return text
