"""Go-style durations (``30m``, ``1h30m``, ``10s``, ``0s``) for rkt's flags."""

from __future__ import annotations

import re

from appc_tools._cli import UsageError

__all__ = ["parse_duration"]

_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string (``0`` alone is allowed, as in Go).

    >>> parse_duration("1h30m")
    5400.0

    :raises UsageError: for anything else.
    """
    if text == "0":
        return 0.0
    position, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _SECONDS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise UsageError(f"invalid duration {text!r} (e.g. 30s, 10m, 1h30m)")
    return total
