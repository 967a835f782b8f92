"""The command-line strings (volumes, mount points, ports), the Volume and Port rules, and
ExposedPort (appc-spec §2.2 ports/mountPoints, §3 volumes and pod ports, §8 patch-manifest).
"""

from __future__ import annotations

from typing import Any

import pytest

from appc.errors import InvalidManifest, ValidationError
from appc.types import (
    ExposedPort,
    MountPoint,
    Port,
    Volume,
    mount_point_from_string,
    port_from_string,
    volume_from_string,
)
from appc.types.volumes import volumes


def errors_of(exc: ValidationError) -> list[tuple[str, str]]:
    """Each error of *exc* as (dotted field, message)."""
    return [(e.field, e.message) for e in exc.errors]


def numbered(rows: list[Any]) -> list[str]:
    """Test ids for a table: its row numbers."""
    return [str(i) for i in range(len(rows))]


def first(rows: list[tuple[Any, ...]]) -> list[str]:
    """Test ids for a table: the repr of each row's input."""
    return [repr(row[0]) for row in rows]


# --- Volume ------------------------------------------------------------------------------

GOOD_VOLUMES = [
    # (JSON, canonical JSON written back)
    (
        {"name": "data", "kind": "host", "source": "/srv/data"},
        {"name": "data", "kind": "host", "source": "/srv/data"},
    ),
    (
        {"name": "data", "kind": "host", "source": "/", "readOnly": True, "recursive": False},
        {"name": "data", "kind": "host", "source": "/", "readOnly": True, "recursive": False},
    ),
    # empty: mode defaults to "0755", uid and gid to 0
    ({"name": "scratch", "kind": "empty"},
     {"name": "scratch", "kind": "empty", "mode": "0755", "uid": 0, "gid": 0}),
    ({"name": "scratch", "kind": "empty", "source": ""},
     {"name": "scratch", "kind": "empty", "mode": "0755", "uid": 0, "gid": 0}),
    # mode is a string whose content is not checked; uid and gid may be negative
    ({"name": "s", "kind": "empty", "mode": "rwx", "uid": -1, "gid": -2, "readOnly": False},
     {"name": "s", "kind": "empty", "readOnly": False, "mode": "rwx", "uid": -1, "gid": -2}),
]


@pytest.mark.parametrize(("data", "canonical"), GOOD_VOLUMES, ids=numbered(GOOD_VOLUMES))
def test_volume_good(data: dict[str, Any], canonical: dict[str, Any]) -> None:
    volume = Volume.from_dict(data)
    assert volume.to_dict() == canonical
    assert Volume.from_dict(canonical) == volume


BAD_VOLUMES = [
    ({"name": "v", "kind": "host"}, [("source", "source for host volume cannot be empty")]),
    ({"name": "v", "kind": "host", "source": ""},
     [("source", "source for host volume cannot be empty")]),
    ({"name": "v", "kind": "host", "source": "rel/path"},
     [("source", "source for host volume must be absolute path")]),
    ({"name": "v", "kind": "host", "source": "/x", "mode": "0755"},
     [("mode", "mode for host volume cannot be set")]),
    ({"name": "v", "kind": "host", "source": "/x", "uid": 0},
     [("uid", "uid for host volume cannot be set")]),
    ({"name": "v", "kind": "host", "source": "/x", "gid": 0},
     [("gid", "gid for host volume cannot be set")]),
    ({"name": "v", "kind": "empty", "source": "/x"},
     [("source", "source for empty volume must be empty")]),
    ({"name": "v", "kind": "bogus"},
     [("kind", 'unrecognized volume kind: should be one of "empty", "host"')]),
    ({"name": "v", "kind": "Host", "source": "/x"},
     [("kind", 'unrecognized volume kind: should be one of "empty", "host"')]),
    ({"name": "v"}, [("kind", 'unrecognized volume kind: should be one of "empty", "host"')]),
    ({"kind": "empty"}, [("name", "name must be set")]),
    ({"name": "V", "kind": "empty"},
     [("name", "ACName must contain only lower case alphanumeric characters plus '-': 'V'")]),
    ({"name": "v", "kind": "empty", "mode": 493}, [("mode", "must be a string, not number")]),
    ({"name": "v", "kind": "empty", "uid": "0"}, [("uid", "must be an integer, not string")]),
    ({"name": "v", "kind": "empty", "gid": 1.5}, [("gid", "must be an integer, not number")]),
    ({"name": "v", "kind": "empty", "uid": 2**63},
     [("uid", f"must fit in a 64-bit signed integer, not {2**63}")]),
    ({"name": "v", "kind": "host", "source": "/x", "readOnly": "yes"},
     [("readOnly", "must be a boolean, not string")]),
    # Field errors are all reported; the kind rules run only on a well-typed volume.
    ({"name": "", "kind": 1, "source": 2},
     [("name", "ACName cannot be empty"), ("kind", "must be a string, not number"),
      ("source", "must be a string, not number")]),
]


@pytest.mark.parametrize(("data", "errors"), BAD_VOLUMES, ids=numbered(BAD_VOLUMES))
def test_error_volume_bad(data: dict[str, Any], errors: list[tuple[str, str]]) -> None:
    with pytest.raises(ValidationError) as info:
        Volume.from_dict(data)
    assert errors_of(info.value) == errors


def test_error_volume_list_duplicate_names() -> None:
    with pytest.raises(InvalidManifest) as info:
        volumes([
            {"name": "a", "kind": "empty"},
            {"name": "b", "kind": "empty"},
            {"name": "a", "kind": "host", "source": "/a"},
        ])
    assert errors_of(info.value) == [("[2].name", "duplicate volume name 'a'")]


def test_volume_recursive_defaults_to_true() -> None:
    assert Volume(name="h", kind="host", source="/x").is_recursive
    assert Volume(name="h", kind="host", source="/x", recursive=True).is_recursive
    assert not Volume(name="h", kind="host", source="/x", recursive=False).is_recursive
    assert Volume(name="h", kind="host", source="/x").recursive is None  # unset stays unset


GOOD_VOLUME_STRINGS = [
    # (string, Volume, str() of it)
    ("data,kind=empty", Volume(name="data", kind="empty"), "data,kind=empty"),
    ("data,kind=empty,mode=0700,uid=1,gid=2",
     Volume(name="data", kind="empty", mode="0700", uid=1, gid=2),
     "data,kind=empty,mode=0700,uid=1,gid=2"),
    # values equal to the empty-volume defaults are left out of the string
    ("data,kind=empty,mode=0755,uid=0,gid=0", Volume(name="data", kind="empty"), "data,kind=empty"),
    ("data,kind=empty,uid=-5", Volume(name="data", kind="empty", uid=-5), "data,kind=empty,uid=-5"),
    # '+' is a space in a query string: a plus sign must be written %2B
    ("data,kind=empty,uid=%2B5", Volume(name="data", kind="empty", uid=5), "data,kind=empty,uid=5"),
    ("data,kind=host,source=/x,readOnly=true,recursive=false",
     Volume(name="data", kind="host", source="/x", read_only=True, recursive=False),
     "data,kind=host,source=/x,readOnly=true,recursive=false"),
    ("data,kind=host,source=/x,readOnly=1",
     Volume(name="data", kind="host", source="/x", read_only=True),
     "data,kind=host,source=/x,readOnly=true"),
    # values are URL-unescaped, as url.ParseQuery does
    ("data,kind=host,source=/a%2Cb", Volume(name="data", kind="host", source="/a,b"),
     "data,kind=host,source=/a,b"),
    ("data,kind=host,source=/a+b", Volume(name="data", kind="host", source="/a b"),
     "data,kind=host,source=/a b"),
    ("data,kind=empty,,", Volume(name="data", kind="empty"), "data,kind=empty"),
]


@pytest.mark.parametrize(
    ("text", "volume", "printed"), GOOD_VOLUME_STRINGS, ids=first(GOOD_VOLUME_STRINGS)
)
def test_volume_from_string(text: str, volume: Volume, printed: str) -> None:
    assert volume_from_string(text) == volume
    assert str(volume) == printed


# str() does not escape: a source holding ',' or ' ' does not survive the trip.
PLAIN_VOLUMES = [g[1] for g in GOOD_VOLUME_STRINGS if not {",", " "} & set(g[1].source)]


@pytest.mark.parametrize("volume", PLAIN_VOLUMES, ids=[str(v) for v in PLAIN_VOLUMES])
def test_volume_string_round_trips(volume: Volume) -> None:
    assert volume_from_string(str(volume)) == volume


BAD_VOLUME_STRINGS = [
    ("data,kind=host", "source for host volume cannot be empty"),
    ("data,kind=host,source=rel", "source for host volume must be absolute path"),
    ("data,kind=host,source=/x,mode=0755", "mode for host volume cannot be set"),
    ("data,kind=empty,source=/x", "source for empty volume must be empty"),
    ("data", 'unrecognized volume kind: should be one of "empty", "host"'),
    ("data,kind=bogus", 'unrecognized volume kind: should be one of "empty", "host"'),
    ("Data,kind=empty",
     "ACName must contain only lower case alphanumeric characters plus '-': 'Data'"),
    ("", "ACName cannot be empty"),
    (",kind=empty", "ACName cannot be empty"),
    ("data,kind=empty,uid=x", "bad uid 'x' in 'data,kind=empty,uid=x'"),
    ("data,kind=empty,gid= 1", "bad gid ' 1' in 'data,kind=empty,gid= 1'"),
    ("data,kind=empty,uid=+5", "bad uid ' 5' in 'data,kind=empty,uid=+5'"),  # '+' is a space
    ("data,kind=empty,uid=1_000", "bad uid '1_000' in 'data,kind=empty,uid=1_000'"),
    ("data,kind=empty,uid=\u0663", "bad uid '\u0663' in 'data,kind=empty,uid=\u0663'"),
    ("data,kind=empty,foo=1", "unknown volume parameter 'foo'"),
    ("data,kind=empty,kind=host",
     "parameter 'kind' given more than once in 'data,kind=empty,kind=host'"),
    ("data,kind=host,source=/x%zz", "invalid URL escape in 'source=/x%zz'"),
    ("data,kind=empty,readOnly=maybe", "invalid boolean 'maybe'"),
    ("data,kind=empty,recursive=", "invalid boolean ''"),
]


@pytest.mark.parametrize(("text", "message"), BAD_VOLUME_STRINGS, ids=first(BAD_VOLUME_STRINGS))
def test_error_volume_from_string(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        volume_from_string(text)
    assert info.value.message == message


# --- Port --------------------------------------------------------------------------------

GOOD_PORTS = [
    # (JSON, canonical JSON written back: count defaulted to 1, socketActivated always)
    ({"name": "www", "protocol": "tcp", "port": 80},
     {"name": "www", "protocol": "tcp", "port": 80, "count": 1, "socketActivated": False}),
    ({"port": 1}, {"port": 1, "count": 1, "socketActivated": False}),  # name, protocol optional
    ({"port": 65535, "count": 1}, {"port": 65535, "count": 1, "socketActivated": False}),
    ({"port": 65535, "count": 0}, {"port": 65535, "count": 1, "socketActivated": False}),
    ({"port": 65000, "count": 536}, {"port": 65000, "count": 536, "socketActivated": False}),
    ({"port": 1, "count": 65535}, {"port": 1, "count": 65535, "socketActivated": False}),
    ({"name": "dns", "protocol": "udp", "port": 53, "count": 2, "socketActivated": True},
     {"name": "dns", "protocol": "udp", "port": 53, "count": 2, "socketActivated": True}),
    ({"port": 8080, "protocol": "weird"}, {"protocol": "weird", "port": 8080, "count": 1,
                                           "socketActivated": False}),  # protocol unchecked
]


@pytest.mark.parametrize(("data", "canonical"), GOOD_PORTS, ids=numbered(GOOD_PORTS))
def test_port_good(data: dict[str, Any], canonical: dict[str, Any]) -> None:
    port = Port.from_dict(data)
    assert port.to_dict() == canonical
    assert Port.from_dict(canonical) == port


_RANGE = "port must be in 1-65535 range"
_END = "end of port range must be in 1-65535 range"

BAD_PORTS = [
    ({"port": 65535, "count": 2}, [("count", _END)]),
    ({"port": 65000, "count": 537}, [("count", _END)]),
    ({"port": 2, "count": 65535}, [("count", _END)]),
    ({"port": 0}, [("port", _RANGE)]),
    ({}, [("port", _RANGE)]),
    ({"port": 65536}, [("port", _RANGE)]),
    ({"port": 70000, "count": 1}, [("port", _RANGE)]),
    ({"port": -1}, [("port", "must be at least 0, not -1")]),
    ({"port": 80.5}, [("port", "must be an integer, not number")]),
    ({"port": 80.0}, [("port", "must be an integer, not number")]),  # as Go's decoder
    ({"port": "80"}, [("port", "must be an integer, not string")]),
    ({"port": True}, [("port", "must be an integer, not boolean")]),
    ({"port": 80, "count": -1}, [("count", "must be at least 0, not -1")]),
    ({"port": 80, "socketActivated": "true"},
     [("socketActivated", "must be a boolean, not string")]),
    ({"port": 80, "protocol": 6}, [("protocol", "must be a string, not number")]),
    ({"port": 80, "name": "WWW"},
     [("name", "ACName must contain only lower case alphanumeric characters plus '-': 'WWW'")]),
    ({"port": "x", "count": "y", "name": "-"},
     [("name", "ACName must start and end with only lower case alphanumeric characters: '-'"),
      ("port", "must be an integer, not string"), ("count", "must be an integer, not string")]),
]


@pytest.mark.parametrize(("data", "errors"), BAD_PORTS, ids=numbered(BAD_PORTS))
def test_error_port_bad(data: dict[str, Any], errors: list[tuple[str, str]]) -> None:
    with pytest.raises(ValidationError) as info:
        Port.from_dict(data)
    assert errors_of(info.value) == errors


def test_port_builder_checks_the_range_with_the_count_as_given() -> None:
    assert Port(port=65535, count=0).count == 1
    assert Port(port=65535).count == 1
    with pytest.raises(ValidationError, match="end of port range"):
        Port(port=65535, count=2)
    with pytest.raises(ValidationError, match="port must be in 1-65535 range"):
        Port(port=0)


GOOD_PORT_STRINGS = [
    ("www,protocol=tcp,port=80", Port(name="www", protocol="tcp", port=80)),
    ("www,protocol=tcp,port=80,count=2,socketActivated=true",
     Port(name="www", protocol="tcp", port=80, count=2, socket_activated=True)),
    ("www,port=65535,count=1", Port(name="www", port=65535)),
    ("www,port=65000,count=536", Port(name="www", port=65000, count=536)),
    ("www,port=80,count=0", Port(name="www", port=80, count=1)),
    ("www,port=80,socketActivated=F", Port(name="www", port=80)),
]


@pytest.mark.parametrize(("text", "port"), GOOD_PORT_STRINGS, ids=first(GOOD_PORT_STRINGS))
def test_port_from_string(text: str, port: Port) -> None:
    assert port_from_string(text) == port


BAD_PORT_STRINGS = [
    ("www,port=0", _RANGE),
    ("www", _RANGE),
    ("www,port=65535,count=2", _END),
    ("www,port=65000,count=537", _END),
    ("www,port=-1", "bad port '-1' in 'www,port=-1'"),
    ("www,port=x", "bad port 'x' in 'www,port=x'"),
    ("www,port=80,count=+1", "bad count ' 1' in 'www,port=80,count=+1'"),  # '+' is a space
    ("www,port=80,count=%2B1", "bad count '+1' in 'www,port=80,count=%2B1'"),  # unsigned
    ("www,port=\u0663", "bad port '\u0663' in 'www,port=\u0663'"),  # ParseUint: ASCII digits
    ("www,port=\u00b2", "bad port '\u00b2' in 'www,port=\u00b2'"),  # isdigit() but not int()
    ("www,foo=1", "unknown port parameter 'foo'"),
    ("www,port=80,socketActivated=yes", "invalid boolean 'yes'"),
    ("WWW,port=80", "ACName must contain only lower case alphanumeric characters plus '-': 'WWW'"),
    (",port=80", "ACName cannot be empty"),
]


@pytest.mark.parametrize(("text", "message"), BAD_PORT_STRINGS, ids=first(BAD_PORT_STRINGS))
def test_error_port_from_string(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        port_from_string(text)
    assert info.value.message == message


# --- MountPoint --------------------------------------------------------------------------

GOOD_MOUNT_POINTS = [
    # (JSON, canonical JSON: readOnly false is left out)
    ({"name": "db", "path": "/db", "readOnly": False}, {"name": "db", "path": "/db"}),
    ({"name": "db", "path": "/db", "readOnly": True},
     {"name": "db", "path": "/db", "readOnly": True}),
    ({"name": "db"}, {"name": "db"}),  # JSON reading accepts a missing path ...
    ({"path": "/db"}, {"path": "/db"}),  # ... and a missing name
    ({}, {}),
    ({"name": "db", "path": "relative"}, {"name": "db", "path": "relative"}),
]


@pytest.mark.parametrize(("data", "canonical"), GOOD_MOUNT_POINTS, ids=numbered(GOOD_MOUNT_POINTS))
def test_mount_point_good(data: dict[str, Any], canonical: dict[str, Any]) -> None:
    point = MountPoint.from_dict(data)
    assert point.to_dict() == canonical
    assert MountPoint.from_dict(canonical) == point


BAD_MOUNT_POINTS = [
    ({"name": "DB", "path": "/db"},
     [("name", "ACName must contain only lower case alphanumeric characters plus '-': 'DB'")]),
    ({"name": "db", "path": 1}, [("path", "must be a string, not number")]),
    ({"name": "db", "readOnly": "true"}, [("readOnly", "must be a boolean, not string")]),
]


@pytest.mark.parametrize(("data", "errors"), BAD_MOUNT_POINTS, ids=numbered(BAD_MOUNT_POINTS))
def test_error_mount_point_bad(data: dict[str, Any], errors: list[tuple[str, str]]) -> None:
    with pytest.raises(ValidationError) as info:
        MountPoint.from_dict(data)
    assert errors_of(info.value) == errors


GOOD_MOUNT_STRINGS = [
    ("db,path=/db", MountPoint(name="db", path="/db")),
    ("db,path=/db,readOnly=true", MountPoint(name="db", path="/db", read_only=True)),
    ("db,path=/a%2Cb", MountPoint(name="db", path="/a,b")),
    ("db,path=relative", MountPoint(name="db", path="relative")),
]


@pytest.mark.parametrize(("text", "point"), GOOD_MOUNT_STRINGS, ids=first(GOOD_MOUNT_STRINGS))
def test_mount_point_from_string(text: str, point: MountPoint) -> None:
    assert mount_point_from_string(text) == point


BAD_MOUNT_STRINGS = [
    ("db", "mount point path must be set: 'db'"),  # the string form needs name and path
    ("db,path=", "mount point path must be set: 'db,path='"),
    (",path=/x", "mount point name must be set: ',path=/x'"),
    ("Db,path=/x", "ACName must contain only lower case alphanumeric characters plus '-': 'Db'"),
    ("db,path=/x,foo=1", "unknown mountpoint parameter 'foo'"),
    ("db,path=/x,readOnly=nope", "invalid boolean 'nope'"),
    ("db,path=/x,path=/y", "parameter 'path' given more than once in 'db,path=/x,path=/y'"),
]


@pytest.mark.parametrize(("text", "message"), BAD_MOUNT_STRINGS, ids=first(BAD_MOUNT_STRINGS))
def test_error_mount_point_from_string(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        mount_point_from_string(text)
    assert info.value.message == message


# --- ExposedPort -------------------------------------------------------------------------

GOOD_EXPOSED = [
    ({"name": "www", "hostPort": 8080}, {"name": "www", "hostPort": 8080}),
    ({"name": "www"}, {"name": "www", "hostPort": 0}),  # hostPort written always
    ({"name": "www", "hostPort": 0}, {"name": "www", "hostPort": 0}),  # not range-checked ...
    ({"name": "www", "hostPort": 70000}, {"name": "www", "hostPort": 70000}),  # ... at all
    ({"name": "www", "hostPort": 80, "hostIP": "127.0.0.1"},
     {"name": "www", "hostPort": 80, "hostIP": "127.0.0.1"}),
    ({"name": "www", "hostIP": "::1"}, {"name": "www", "hostPort": 0, "hostIP": "::1"}),  # IPv6 too
    ({"name": "www", "hostIP": "::ffff:1.2.3.4"},
     {"name": "www", "hostPort": 0, "hostIP": "::ffff:1.2.3.4"}),
    ({"name": "www", "hostPort": 80, "podPort": {"name": "www", "protocol": "tcp", "port": 8080}},
     {"name": "www", "hostPort": 80,
      "podPort": {"name": "www", "protocol": "tcp", "port": 8080, "count": 1,
                  "socketActivated": False}}),
]


@pytest.mark.parametrize(("data", "canonical"), GOOD_EXPOSED, ids=numbered(GOOD_EXPOSED))
def test_exposed_port_good(data: dict[str, Any], canonical: dict[str, Any]) -> None:
    exposed = ExposedPort.from_dict(data)
    assert exposed.to_dict() == canonical
    assert ExposedPort.from_dict(canonical) == exposed


BAD_EXPOSED = [
    ({"name": "www", "hostIP": "not-an-ip"}, [("hostIP", "invalid IP address: not-an-ip")]),
    ({"name": "www", "hostIP": "fe80::1%eth0"}, [("hostIP", "invalid IP address: fe80::1%eth0")]),
    ({"name": "www", "hostIP": "1.2.3.4 "}, [("hostIP", "invalid IP address: 1.2.3.4 ")]),
    ({"name": "www", "hostIP": "01.2.3.4"}, [("hostIP", "invalid IP address: 01.2.3.4")]),
    ({"name": "www", "hostIP": ""}, [("hostIP", "invalid IP address: ")]),
    ({"name": "www", "hostIP": 1}, [("hostIP", "must be a string, not number")]),
    ({"hostPort": 80}, [("name", "name must be set")]),
    ({"name": "www", "hostPort": -1}, [("hostPort", "must be at least 0, not -1")]),
    ({"name": "www", "hostPort": 2**64},
     [("hostPort", f"must fit in a 64-bit unsigned integer, not {2**64}")]),
    ({"name": "www", "podPort": {"port": 0}}, [("podPort.port", _RANGE)]),
    ({"name": "www", "podPort": {"port": 65535, "count": 2}}, [("podPort.count", _END)]),
    ({"name": "www", "podPort": 80}, [("podPort", "must be an object, not number")]),
]


@pytest.mark.parametrize(("data", "errors"), BAD_EXPOSED, ids=numbered(BAD_EXPOSED))
def test_error_exposed_port_bad(data: dict[str, Any], errors: list[tuple[str, str]]) -> None:
    with pytest.raises(ValidationError) as info:
        ExposedPort.from_dict(data)
    assert errors_of(info.value) == errors
