"""RFC 3339 timestamps (the ``created`` annotation), parsed as Go's ``time.RFC3339``."""

from __future__ import annotations

import datetime
import re

from appc.errors import ValidationError

__all__ = ["parse_rfc3339"]


def __dir__() -> list[str]:
    return __all__


# ASCII digits only: Python's \d would also take other scripts' digits (full-width digits, say), Go does not.
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})"
)


def parse_rfc3339(text: str) -> datetime.datetime:
    """Return the aware datetime for *text*.

    Like Go: an upper-case ``T`` and a zone (``Z`` or ``±hh:mm``) are required,
    fractional seconds are optional, a space for ``T``, a date alone or a lower-case
    ``t``/``z`` are refused.

    >>> parse_rfc3339("2014-10-27T19:32:27.67021798Z").year
    2014

    :raises ValidationError: when *text* is not such a timestamp.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValidationError(f"bad RFC3339 timestamp: {text!r}", value=text)
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7), match.group(8)
    microsecond = int((fraction[1:] + "000000")[:6]) if fraction else 0
    if zone == "Z":
        tz = datetime.UTC
    else:
        zone_hours, zone_minutes = int(zone[1:3]), int(zone[4:6])
        if zone_hours > 23 or zone_minutes > 59:
            raise ValidationError(f"bad RFC3339 timestamp (zone): {text!r}", value=text)
        offset = datetime.timedelta(hours=zone_hours, minutes=zone_minutes)
        tz = datetime.timezone(-offset if zone[0] == "-" else offset)
    try:
        return datetime.datetime(year, month, day, hour, minute, second, microsecond, tzinfo=tz)
    except ValueError as err:
        raise ValidationError(f"bad RFC3339 timestamp ({err}): {text!r}", value=text) from None
