"""The ``name,key=value,...`` strings of the command-line tools (volumes, mount points, ports)."""

from __future__ import annotations

import re
import urllib.parse

from appc.errors import ValidationError

__all__ = ["go_int", "parse_go_bool", "parse_options"]

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SIGNED = re.compile(r"[+-]?[0-9]+")
_UNSIGNED = re.compile(r"[0-9]+")


def parse_options(text: str, first_key: str = "name") -> dict[str, str]:
    """Read ``first,key=value,...`` into a dict, as the reference does with ``url.ParseQuery``.

    The leading bare item is the value of *first_key*; values are URL-unescaped
    (``%2C`` is a comma, ``+`` a space); a key given twice is an error.
    """
    result: dict[str, str] = {}
    for index, item in enumerate(f"{first_key}={text}".replace(",", "&").split("&")):
        if item == "" and index:
            continue
        key, _, value = item.partition("=")
        if _BAD_ESCAPE.search(item):
            raise ValidationError(f"invalid URL escape in {item!r}", value=text)
        key = urllib.parse.unquote_plus(key)
        if key in result:
            raise ValidationError(f"parameter {key!r} given more than once in {text!r}", value=text)
        result[key] = urllib.parse.unquote_plus(value)
    return result


def parse_go_bool(text: str) -> bool:
    """Go's ``strconv.ParseBool``: ``1 t T TRUE true True`` / ``0 f F FALSE false False``."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValidationError(f"invalid boolean {text!r}", value=text)


def go_int(text: str, *, signed: bool = True) -> int | None:
    """Go's ``strconv.Atoi`` (or, unsigned, ``ParseUint``): an optional sign and ASCII
    digits (``int()`` would also take blanks, underscores and other scripts' digits), at
    most a 64-bit value's worth of digits; ``None`` for anything else (``int()`` itself
    raises ``ValueError`` past 4300 digits).
    """
    if not (_SIGNED if signed else _UNSIGNED).fullmatch(text):
        return None
    if len(text.lstrip("+-").lstrip("0")) > 20:
        return None
    return int(text)
