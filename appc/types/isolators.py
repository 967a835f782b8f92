"""Isolators: resource limits and Linux security settings (spec: Isolators, OS-SPEC Linux isolators).

Each known isolator name has a value parser producing a typed value; the reference's
constructors are used for app and pod isolators alike.  At the *app* level the list
is also checked as a whole (:func:`app_isolators`): every name must be known, the
single-use kinds appear once, and the seccomp remove/retain sets do not mix.  At the
*pod* level only each known isolator's value is checked (:func:`pod_isolators`), as in
the reference.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from appc.errors import InvalidManifest, ValidationError
from appc.types._options import go_int, parse_go_bool
from appc.types._struct import (
    Struct,
    expect_bool,
    expect_int,
    expect_list,
    expect_object,
    expect_str,
    json_field,
    list_of,
)
from appc.types.acidentifier import ACIdentifier
from appc.types.resource import Quantity, quantity

__all__ = [
    "DEFAULT_CAPABILITIES",
    "KNOWN_ISOLATORS",
    "AppArmorProfile",
    "CapabilitySet",
    "Isolator",
    "IsolatorKind",
    "Isolators",
    "ResourceValue",
    "SELinuxContext",
    "SeccompSet",
    "app_isolators",
    "isolator_from_string",
    "pod_isolators",
]


def __dir__() -> list[str]:
    return __all__


#: The capability bounding set an app gets when no capability isolator says otherwise.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETUID",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETFCAP",
    "CAP_SYS_CHROOT",
)


@attrs.frozen
class ResourceValue:
    """The value of a ``resource/*`` isolator: request and limit quantities (``None`` if unset)."""

    request: Quantity | None = None
    limit: Quantity | None = None
    default: bool = False


@attrs.frozen
class CapabilitySet:
    """The capability names of a retain or remove set (names are not checked, as in the reference)."""

    names: tuple[str, ...]


@attrs.frozen
class SeccompSet:
    """A seccomp retain or remove set of syscall names (or ``@appc.io/...`` wildcards) and an errno."""

    names: tuple[str, ...]
    errno: str = ""


@attrs.frozen
class SELinuxContext:
    """An SELinux context ``user:role:type:level``."""

    user: str
    role: str
    type: str
    level: str

    def __str__(self) -> str:
        return f"{self.user}:{self.role}:{self.type}:{self.level}"


@attrs.frozen
class AppArmorProfile:
    """The AppArmor profile an app runs under."""

    profile: str


def _resource(default_must_be: bool) -> Callable[[Any], ResourceValue]:
    def parse(value: Any) -> ResourceValue:
        obj = expect_object(value)
        default = _field(obj, "default", lambda v: False if v is None else expect_bool(v))
        request = _field(obj, "request", quantity)
        limit = _field(obj, "limit", quantity)
        if default != default_must_be:
            raise ValidationError(
                f"default must be {'true' if default_must_be else 'false'}", path=("default",)
            )
        if default_must_be and request is not None:
            raise ValidationError(
                "request not supported by this resource, must be empty", path=("request",)
            )
        return ResourceValue(request, limit, default)

    return parse


def _field(obj: Mapping[str, Any], key: str, parse: Callable[[Any], Any]) -> Any:
    try:
        return parse(obj.get(key))
    except ValidationError as err:
        raise err.prefixed(key) from None


def _name_set(obj: Mapping[str, Any]) -> tuple[str, ...]:
    names = _field(
        obj, "set", lambda v: list_of(expect_list(v) if v is not None else v, expect_str)
    )
    if not names:
        raise ValidationError("set must be non-empty", path=("set",))
    return tuple(names)


def _capabilities(value: Any) -> CapabilitySet:
    return CapabilitySet(_name_set(expect_object(value)))


def _is_errno(text: str) -> bool:
    # Decision: ASCII only (the reference takes any Unicode upper-case letter or digit,
    # but errno names are ASCII and the JSON Schema pattern must say the same).
    return re.fullmatch(r"E[A-Z0-9]*", text) is not None


def _seccomp(value: Any) -> SeccompSet:
    obj = expect_object(value)
    names = _name_set(obj)
    errno = _field(obj, "errno", lambda v: "" if v is None else expect_str(v))
    if errno and not _is_errno(errno):
        raise ValidationError(f"invalid errno {errno!r}", path=("errno",), value=errno)
    return SeccompSet(names, errno)


def _ranged_int(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        number = expect_int(value)
        if not low <= number <= high:
            raise ValidationError(f"must be between {low} and {high}, not {number}", value=number)
        return number

    return parse


def _selinux(value: Any) -> SELinuxContext:
    obj = expect_object(value)
    parts = {}
    for key in ("user", "role", "type", "level"):
        text = _field(obj, key, lambda v: "" if v is None else expect_str(v))
        if text == "":
            raise ValidationError(f"invalid SELinux {key}: must be set", path=(key,))
        if key != "level" and ":" in text:
            raise ValidationError(f"invalid SELinux {key}: {text!r} contains ':'", path=(key,))
        parts[key] = text
    return SELinuxContext(**parts)


def _apparmor(value: Any) -> AppArmorProfile:
    profile = _field(expect_object(value), "profile", lambda v: "" if v is None else expect_str(v))
    if profile == "":
        raise ValidationError("apparmor profile must be set", path=("profile",))
    return AppArmorProfile(profile)


def _sysctl(value: Any) -> dict[str, str]:
    obj = expect_object(value)
    return {key: _field(obj, key, expect_str) for key in obj}


@attrs.frozen
class IsolatorKind:
    """What the spec says of one isolator name: how to read its value, and the list rules."""

    name: str
    parse: Callable[[Any], object]
    multiple: bool = True
    conflicts: tuple[str, ...] = ()
    scopes: frozenset[str] = frozenset({"app", "pod"})


_APP = frozenset({"app"})
_POD = frozenset({"pod"})

#: Every isolator the spec (and the reference code after v0.8.11) defines, by name.
KNOWN_ISOLATORS: Mapping[str, IsolatorKind] = {
    kind.name: kind
    for kind in (
        IsolatorKind("resource/cpu", _resource(False)),
        IsolatorKind("resource/memory", _resource(False)),
        IsolatorKind("resource/block-bandwidth", _resource(True)),
        IsolatorKind("resource/block-iops", _resource(True)),
        IsolatorKind("resource/network-bandwidth", _resource(True)),
        IsolatorKind("os/linux/capabilities-retain-set", _capabilities, scopes=_APP),
        IsolatorKind("os/linux/capabilities-remove-set", _capabilities, scopes=_APP),
        IsolatorKind("os/linux/no-new-privileges", expect_bool, scopes=_APP),
        IsolatorKind(
            "os/linux/seccomp-remove-set",
            _seccomp,
            multiple=False,
            conflicts=("os/linux/seccomp-retain-set",),
            scopes=_APP,
        ),
        IsolatorKind(
            "os/linux/seccomp-retain-set",
            _seccomp,
            multiple=False,
            conflicts=("os/linux/seccomp-remove-set",),
            scopes=_APP,
        ),
        IsolatorKind("os/linux/oom-score-adj", _ranged_int(-1000, 1000), multiple=False),
        IsolatorKind("os/linux/cpu-shares", _ranged_int(2, 262144), multiple=False),
        IsolatorKind("os/linux/selinux-context", _selinux, multiple=False),
        IsolatorKind("os/linux/apparmor-profile", _apparmor, multiple=False),
        IsolatorKind("os/unix/sysctl", _sysctl, multiple=False, scopes=_POD),
    )
}


def _any_value(value: object) -> object:
    return value


@attrs.frozen(kw_only=False)
class Isolator(Struct):
    """One ``{name, value}`` isolator.

    ``value`` is kept as the JSON it was given (so it is written back unchanged);
    :attr:`parsed` holds the typed reading for a known name (``None`` for an unknown
    one, which only a pod may carry).  Decision: a known isolator without a value is
    an error (the reference crashes on it).

    >>> Isolator("resource/memory", {"limit": "1G"}).parsed.limit.int_value()
    1000000000
    """

    name: ACIdentifier = attrs.field(
        converter=ACIdentifier, metadata=json_field("name", omit="never")
    )
    value: Any = attrs.field(
        default=None, converter=_any_value, metadata=json_field("value", omit="never")
    )
    parsed: object = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        kind = KNOWN_ISOLATORS.get(self.name)
        parsed: object = None
        if kind is not None:
            if self.value is None:
                raise ValidationError(f"isolator {str(self.name)!r} needs a value", path=("value",))
            try:
                parsed = kind.parse(self.value)
            except ValidationError as err:
                raise err.prefixed("value") from None
        object.__setattr__(self, "parsed", parsed)

    @property
    def known(self) -> bool:
        """True when the spec defines this isolator name."""
        return self.name in KNOWN_ISOLATORS


def _isolator(item: object) -> Isolator:
    return item if isinstance(item, Isolator) else Isolator.from_dict(item)


class Isolators(tuple[Isolator, ...]):
    """A list of isolators, with lookups; list rules are applied by :func:`app_isolators`."""

    __slots__ = ()

    def __new__(cls, items: Iterable[Any] | None = ()) -> Isolators:
        if isinstance(items, Isolators):
            return items
        return tuple.__new__(cls, list_of(items, _isolator))

    def get(self, name: str) -> Isolator | None:
        """Return the last isolator called *name* (the one that wins), or ``None``."""
        found = [i for i in self if i.name == name]
        return found[-1] if found else None

    def all(self, name: str) -> tuple[Isolator, ...]:
        """Return every isolator called *name*, in order."""
        return tuple(i for i in self if i.name == name)

    def without(self, *names: str) -> Isolators:
        """Return a copy without the isolators called any of *names*."""
        return Isolators(i for i in self if i.name not in names)

    def json_value(self) -> list[dict[str, Any]]:
        """The JSON array of ``{name, value}`` objects."""
        return [i.to_dict() for i in self]


def pod_isolators(value: Iterable[Any] | None) -> Isolators:
    """Converter for a pod's isolators: each known value checked, no list rules (as the reference)."""
    return Isolators(value)


def app_isolators(value: Iterable[Any] | None) -> Isolators:
    """Converter for an app's isolators, with the reference's list rules.

    :raises ValidationError: ``invalid isolator`` for an unknown name, ``too many
        instances`` for a repeated single-use kind, ``incompatible types`` for
        seccomp remove and retain sets together.
    """
    isolators = Isolators(value)
    errors = []
    seen: set[str] = set()
    for index, isolator in enumerate(isolators):
        kind = KNOWN_ISOLATORS.get(isolator.name)
        if kind is None:
            errors.append(
                ValidationError(
                    f"invalid isolator {str(isolator.name)!r}",
                    path=(index, "name"),
                    value=str(isolator.name),
                )
            )
            continue
        if not kind.multiple and isolator.name in seen:
            errors.append(
                ValidationError(
                    f"isolators set contains too many instances of type {str(isolator.name)!r}",
                    path=(index, "name"),
                )
            )
        if any(other in seen for other in kind.conflicts):
            errors.append(
                ValidationError("isolators set contains incompatible types", path=(index, "name"))
            )
        seen.add(isolator.name)
    if errors:
        raise InvalidManifest(errors)
    return isolators


_PATCHABLE_SCALARS = {"os/linux/no-new-privileges", "os/linux/oom-score-adj"}


def isolator_from_string(text: str) -> Isolator:
    """Read the ``actool patch-manifest --isolators`` form of one isolator.

    ``resource/cpu,request=50m,limit=100m``, ``resource/memory,limit=1G``,
    ``os/linux/no-new-privileges,true``, ``os/linux/oom-score-adj,-100``.  Only those
    kinds can be patched, as in the reference.

    >>> isolator_from_string("os/linux/oom-score-adj,-100").value
    -100
    """
    name, _, rest = text.partition(",")
    if name.startswith("resource/") and name in KNOWN_ISOLATORS:
        value: dict[str, object] = {}
        for item in rest.split(",") if rest else []:
            key, sep, val = item.partition("=")
            if not sep or key not in ("request", "limit", "default"):
                raise ValidationError(f"bad isolator parameter {item!r} in {text!r}", value=text)
            value[key] = val if key != "default" else parse_go_bool(val)
        if name not in ("resource/cpu", "resource/memory"):
            value.setdefault("default", True)
        return Isolator(name, value)
    if name == "os/linux/no-new-privileges":
        return Isolator(name, parse_go_bool(rest))
    if name == "os/linux/oom-score-adj":
        number = go_int(rest)  # not int(): it would take " 5" or "1_0"
        if number is None:
            raise ValidationError(f"bad oom-score-adj value {rest!r}", value=rest)
        return Isolator(name, number)
    shown = name if name.isprintable() else repr(name)  # one line, whatever was typed
    raise ValidationError(f"isolator {shown} is not supported for patching", value=name)
