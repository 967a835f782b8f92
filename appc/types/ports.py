"""Ports an app listens on (image manifest) and ports a pod exposes on the host (pod manifest)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

import attrs

from appc.errors import ValidationError
from appc.types._options import go_int, parse_go_bool, parse_options
from appc.types._struct import Struct, expect_bool, expect_int, expect_str, json_field, list_of
from appc.types.acname import ACName

__all__ = ["ExposedPort", "Port", "exposed_ports", "port_from_string", "ports"]


def __dir__() -> list[str]:
    return __all__


def _optional_acname(value: object) -> ACName | None:
    return None if value is None else ACName(value)


def _uint(value: object) -> int:
    return expect_int(value, minimum=0)


def _protocol(value: object) -> str:
    return expect_str(value)


def _bool(value: object) -> bool:
    return expect_bool(value)


@attrs.frozen(kw_only=True)
class Port(Struct):
    """A port (or a range of ``count`` ports) an app listens on.

    ``port`` must be 1..65535 and ``port + count`` at most 65536, checked with the
    count as given (the reference's order).  A ``count`` of 0 or none is stored as 1.
    ``name`` and ``protocol`` are not required, as in the reference.
    """

    name: ACName | None = attrs.field(
        default=None, converter=_optional_acname, metadata=json_field("name", omit="none")
    )
    protocol: str = attrs.field(default="", converter=_protocol, metadata=json_field("protocol"))
    port: int = attrs.field(default=0, converter=_uint, metadata=json_field("port", omit="never"))
    count: int = attrs.field(default=1, converter=_uint, metadata=json_field("count", omit="never"))
    socket_activated: bool = attrs.field(
        default=False, converter=_bool, metadata=json_field("socketActivated", omit="never")
    )

    def __attrs_post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValidationError("port must be in 1-65535 range", path=("port",), value=self.port)
        if self.port + self.count > 65536:
            raise ValidationError(
                "end of port range must be in 1-65535 range", path=("count",), value=self.count
            )
        if self.count == 0:
            object.__setattr__(self, "count", 1)


def _port(item: object) -> Port:
    return item if isinstance(item, Port) else Port.from_dict(item)


def ports(value: Iterable[Any] | None) -> tuple[Port, ...]:
    """Converter: a list of :class:`Port` (duplicate names are not checked, as in the reference)."""
    return list_of(value, _port)


def port_from_string(text: str) -> Port:
    """Read ``name,protocol=tcp,port=80,count=1,socketActivated=true`` (``patch-manifest --ports``).

    ``port`` and ``count`` are unsigned decimal numbers in ASCII digits, as Go's
    ``strconv.ParseUint`` reads them (``str.isdigit`` would also take ``²`` or ``٣``).
    """
    options = parse_options(text)
    kwargs: dict[str, Any] = {"name": options.pop("name")}
    for key, value in options.items():
        if key == "protocol":
            kwargs["protocol"] = value
        elif key in ("port", "count"):
            number = go_int(value, signed=False)
            if number is None:
                raise ValidationError(f"bad {key} {value!r} in {text!r}", value=text)
            kwargs[key] = number
        elif key == "socketActivated":
            kwargs["socket_activated"] = parse_go_bool(value)
        else:
            raise ValidationError(f"unknown port parameter {key!r}", value=text)
    return Port(**kwargs)


def _host_ip(value: object) -> str:
    # Go's net.ParseIP: IPv4 or IPv6, but no IPv6 zone ("fe80::1%eth0"), which
    # Python's ipaddress accepts.
    text = expect_str(value)
    try:
        if "%" in text:
            raise ValueError(text)
        ipaddress.ip_address(text)
    except ValueError:
        raise ValidationError(f"invalid IP address: {text}", value=text) from None
    return text


def _optional_host_ip(value: object) -> str | None:
    return None if value is None else _host_ip(value)


def _optional_port(value: object) -> Port | None:
    return None if value is None else _port(value)


def _port_name(value: object) -> ACName:
    return ACName(value)


@attrs.frozen(kw_only=True)
class ExposedPort(Struct):
    """A pod port forwarded from the host: app port ``name`` on ``hostIP:hostPort``.

    Decisions (reference over spec text): ``hostIP`` may be IPv6 (without a zone) as well as IPv4, and
    ``hostPort`` is not range-checked (0 means "let the executor choose").
    """

    name: ACName = attrs.field(converter=_port_name, metadata=json_field("name", omit="never"))
    host_port: int = attrs.field(
        default=0, converter=_uint, metadata=json_field("hostPort", omit="never")
    )
    host_ip: str | None = attrs.field(
        default=None, converter=_optional_host_ip, metadata=json_field("hostIP")
    )
    pod_port: Port | None = attrs.field(
        default=None, converter=_optional_port, metadata=json_field("podPort")
    )


def _exposed_port(item: object) -> ExposedPort:
    return item if isinstance(item, ExposedPort) else ExposedPort.from_dict(item)


def exposed_ports(value: Iterable[Any] | None) -> tuple[ExposedPort, ...]:
    """Converter: a list of :class:`ExposedPort`."""
    return list_of(value, _exposed_port)
