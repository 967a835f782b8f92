"""An app's command line (``exec``) and its event handlers (``eventHandlers``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from appc.errors import InvalidManifest, ValidationError
from appc.types._struct import Struct, duplicate_errors, expect_str, json_field, list_of

__all__ = [
    "EVENT_HANDLER_NAMES",
    "EventHandler",
    "event_handlers",
    "exec_from_string",
    "parse_exec",
]


def __dir__() -> list[str]:
    return __all__


#: The event handler names the spec defines.
EVENT_HANDLER_NAMES = ("pre-start", "post-stop")


def parse_exec(value: Iterable[str] | None) -> tuple[str, ...]:
    """Return an exec list as a tuple of strings (``None`` is the empty list).

    Since spec 0.7.2 ``exec[0]`` need not be absolute: a bare name is looked up on
    ``PATH`` like ``execvp``.
    """
    return list_of(value, expect_str)


def exec_from_string(text: str) -> tuple[str, ...]:
    """Split a command line on single spaces, as ``actool patch-manifest --exec`` does.

    No shell quoting; doubled spaces give empty arguments, as in the reference:

    >>> exec_from_string("/app --debug")
    ('/app', '--debug')
    >>> exec_from_string("/app  x")
    ('/app', '', 'x')
    """
    return tuple(text.split(" "))


def _handler_name(value: object) -> str:
    name = expect_str(value)
    if name == "":
        raise ValidationError('eventHandler "name" cannot be empty', value=name)
    if name not in EVENT_HANDLER_NAMES:
        raise ValidationError(f'bad eventHandler "name": {name!r}', value=name)
    return name


@attrs.frozen
class EventHandler(Struct):
    """A ``pre-start`` or ``post-stop`` command (its ``exec`` may be empty)."""

    name: str = attrs.field(
        converter=_handler_name,
        metadata=json_field("name", omit="never", missing='eventHandler "name" cannot be empty'),
    )
    exec: tuple[str, ...] = attrs.field(
        default=(), converter=parse_exec, metadata=json_field("exec")
    )


def _event_handler(item: object) -> EventHandler:
    return item if isinstance(item, EventHandler) else EventHandler.from_dict(item)


def event_handlers(value: Iterable[Any] | None) -> tuple[EventHandler, ...]:
    """Converter: the event handler list, each name at most once."""
    handlers = list_of(value, _event_handler)
    errors = duplicate_errors(
        handlers, lambda h: h.name, lambda name: f"Only one eventHandler of name {name!r} allowed"
    )
    if errors:
        raise InvalidManifest(errors)
    return handlers
