"""Isolators: every known name and its value rules, the list rules of an app against a
pod's, and the ``patch-manifest --isolators`` string form (appc-spec §2.4, §3).
"""

from __future__ import annotations

from typing import Any

import pytest

from appc.errors import InvalidManifest, ValidationError
from appc.types import (
    DEFAULT_CAPABILITIES,
    KNOWN_ISOLATORS,
    AppArmorProfile,
    CapabilitySet,
    Isolator,
    Isolators,
    Quantity,
    ResourceValue,
    SeccompSet,
    SELinuxContext,
    isolator_from_string,
)
from appc.types.isolators import app_isolators, pod_isolators


def errors_of(exc: ValidationError) -> list[tuple[str, str]]:
    """Each error of *exc* as (dotted field, message)."""
    return [(e.field, e.message) for e in exc.errors]


def numbered(rows: list[Any]) -> list[str]:
    """Test ids for a table: the isolator name and the row number."""
    return [f"{row[0]}#{i}" for i, row in enumerate(rows)]


def test_known_isolators_are_the_spec_table() -> None:
    table = {
        name: (kind.multiple, kind.conflicts) for name, kind in KNOWN_ISOLATORS.items()
    }
    assert table == {
        "resource/cpu": (True, ()),
        "resource/memory": (True, ()),
        "resource/block-bandwidth": (True, ()),
        "resource/block-iops": (True, ()),
        "resource/network-bandwidth": (True, ()),
        "os/linux/capabilities-retain-set": (True, ()),
        "os/linux/capabilities-remove-set": (True, ()),
        "os/linux/no-new-privileges": (True, ()),
        "os/linux/seccomp-remove-set": (False, ("os/linux/seccomp-retain-set",)),
        "os/linux/seccomp-retain-set": (False, ("os/linux/seccomp-remove-set",)),
        "os/linux/oom-score-adj": (False, ()),
        "os/linux/cpu-shares": (False, ()),
        "os/linux/selinux-context": (False, ()),
        "os/linux/apparmor-profile": (False, ()),
        "os/unix/sysctl": (False, ()),
    }


def test_default_capabilities_are_the_fourteen_of_the_spec() -> None:
    assert len(DEFAULT_CAPABILITIES) == 14
    assert set(DEFAULT_CAPABILITIES) == {
        "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER",
        "CAP_KILL", "CAP_MKNOD", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE", "CAP_SETUID",
        "CAP_SETGID", "CAP_SETPCAP", "CAP_SETFCAP", "CAP_SYS_CHROOT",
    }


def resource(request: str | int | None, limit: str | int | None, default: bool = False) -> ResourceValue:
    """The parsed value of a resource isolator."""
    return ResourceValue(
        None if request is None else Quantity.parse(request),
        None if limit is None else Quantity.parse(limit),
        default,
    )


GOOD_VALUES = [
    # (name, JSON value, parsed reading)
    ("resource/cpu", {"request": "250m", "limit": "500m"}, resource("250m", "500m")),
    ("resource/cpu", {}, resource(None, None)),
    ("resource/cpu", {"default": False, "limit": 2}, resource(None, 2)),
    ("resource/cpu", {"request": "30m", "limit": "1m"}, resource("30m", "1m")),  # no order rule
    ("resource/memory", {"limit": "1G"}, resource(None, "1G")),
    ("resource/memory", {"request": "2Gi", "limit": " 4Gi "}, resource("2Gi", "4Gi")),
    ("resource/memory", {"limit": "-1G"}, resource(None, "-1G")),
    ("resource/block-bandwidth", {"default": True, "limit": "1M"}, resource(None, "1M", True)),
    ("resource/block-iops", {"default": True, "limit": 1000}, resource(None, 1000, True)),
    ("resource/block-iops", {"default": True}, resource(None, None, True)),
    ("resource/network-bandwidth", {"default": True, "limit": "1e3"}, resource(None, "1e3", True)),
    ("os/linux/capabilities-retain-set", {"set": ["CAP_NET_BIND_SERVICE"]},
     CapabilitySet(("CAP_NET_BIND_SERVICE",))),
    ("os/linux/capabilities-retain-set", {"set": ["CAP_PONIES"]}, CapabilitySet(("CAP_PONIES",))),
    ("os/linux/capabilities-remove-set", {"set": ["CAP_KILL", "CAP_MKNOD"]},
     CapabilitySet(("CAP_KILL", "CAP_MKNOD"))),
    ("os/linux/no-new-privileges", True, True),
    ("os/linux/no-new-privileges", False, False),
    ("os/linux/seccomp-remove-set", {"set": ["@appc.io/empty"]}, SeccompSet(("@appc.io/empty",))),
    ("os/linux/seccomp-remove-set", {"set": ["reboot", "kexec_load"], "errno": "EPERM"},
     SeccompSet(("reboot", "kexec_load"), "EPERM")),
    ("os/linux/seccomp-retain-set", {"set": ["@appc.io/all"], "errno": "E2BIG"},
     SeccompSet(("@appc.io/all",), "E2BIG")),
    ("os/linux/seccomp-retain-set", {"set": ["read"], "errno": "EACCESS"},
     SeccompSet(("read",), "EACCESS")),
    ("os/linux/seccomp-retain-set", {"set": ["read"], "errno": ""}, SeccompSet(("read",))),
    ("os/linux/seccomp-retain-set", {"set": ["read"], "errno": "E"}, SeccompSet(("read",), "E")),
    ("os/linux/oom-score-adj", -1000, -1000),
    ("os/linux/oom-score-adj", 0, 0),
    ("os/linux/oom-score-adj", 1000, 1000),
    ("os/linux/cpu-shares", 2, 2),
    ("os/linux/cpu-shares", 1024, 1024),
    ("os/linux/cpu-shares", 262144, 262144),
    ("os/linux/selinux-context",
     {"user": "system_u", "role": "system_r", "type": "svirt_lxc_net_t", "level": "s0:c1,c2"},
     SELinuxContext("system_u", "system_r", "svirt_lxc_net_t", "s0:c1,c2")),
    ("os/linux/apparmor-profile", {"profile": "docker-default"}, AppArmorProfile("docker-default")),
    ("os/unix/sysctl", {"net.ipv4.ip_forward": "1", "kernel.shmmax": "68719476736"},
     {"net.ipv4.ip_forward": "1", "kernel.shmmax": "68719476736"}),
    ("os/unix/sysctl", {}, {}),
]


@pytest.mark.parametrize(("name", "value", "parsed"), GOOD_VALUES, ids=numbered(GOOD_VALUES))
def test_isolator_good_value(name: str, value: Any, parsed: Any) -> None:
    isolator = Isolator.from_dict({"name": name, "value": value})
    assert isolator.known
    assert isolator.parsed == parsed
    # The value is kept as given, so it is written back unchanged.
    assert isolator.value == value
    assert isolator.to_dict() == {"name": name, "value": value}
    assert Isolator.from_dict(isolator.to_dict()) == isolator


BAD_VALUES = [
    ("resource/cpu", {"default": True}, [("value.default", "default must be false")]),
    ("resource/memory", {"default": True, "limit": "1G"},
     [("value.default", "default must be false")]),
    ("resource/cpu", {"limit": "1K"}, [("value.limit", "unable to parse quantity's suffix: '1K'")]),
    ("resource/cpu", {"request": "lots"}, [(
        "value.request",
        "quantities must match the regular expression "
        "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': 'lots'",
    )]),
    ("resource/cpu", {"limit": True},
     [("value.limit", "quantity must be a string or a number, not bool")]),
    ("resource/cpu", {"default": "no"}, [("value.default", "must be a boolean, not string")]),
    ("resource/cpu", "500m", [("value", "must be an object, not string")]),
    ("resource/block-bandwidth", {"limit": "1M"}, [("value.default", "default must be true")]),
    ("resource/block-iops", {"default": False}, [("value.default", "default must be true")]),
    ("resource/network-bandwidth", {"default": True, "request": "1M"},
     [("value.request", "request not supported by this resource, must be empty")]),
    ("os/linux/capabilities-retain-set", {"set": []}, [("value.set", "set must be non-empty")]),
    ("os/linux/capabilities-remove-set", {}, [("value.set", "set must be non-empty")]),
    ("os/linux/capabilities-remove-set", {"set": "CAP_KILL"},
     [("value.set", "must be an array, not string")]),
    ("os/linux/capabilities-remove-set", {"set": ["CAP_KILL", 7]},
     [("value.set[1]", "must be a string, not number")]),
    ("os/linux/capabilities-remove-set", ["CAP_KILL"], [("value", "must be an object, not array")]),
    ("os/linux/no-new-privileges", "true", [("value", "must be a boolean, not string")]),
    ("os/linux/no-new-privileges", 1, [("value", "must be a boolean, not number")]),
    ("os/linux/no-new-privileges", {}, [("value", "must be a boolean, not object")]),
    ("os/linux/seccomp-remove-set", {"set": []}, [("value.set", "set must be non-empty")]),
    ("os/linux/seccomp-remove-set", {"set": ["a"], "errno": "eperm"},
     [("value.errno", "invalid errno 'eperm'")]),
    ("os/linux/seccomp-retain-set", {"set": ["a"], "errno": "-EPERM"},
     [("value.errno", "invalid errno '-EPERM'")]),
    ("os/linux/seccomp-retain-set", {"set": ["a"], "errno": "E_X"},
     [("value.errno", "invalid errno 'E_X'")]),
    ("os/linux/seccomp-retain-set", {"set": ["a"], "errno": "PERM"},
     [("value.errno", "invalid errno 'PERM'")]),
    ("os/linux/seccomp-retain-set", {"set": ["a"], "errno": 1},
     [("value.errno", "must be a string, not number")]),
    ("os/linux/oom-score-adj", 1001, [("value", "must be between -1000 and 1000, not 1001")]),
    ("os/linux/oom-score-adj", -1001, [("value", "must be between -1000 and 1000, not -1001")]),
    ("os/linux/oom-score-adj", "5", [("value", "must be an integer, not string")]),
    ("os/linux/oom-score-adj", 5.0, [("value", "must be an integer, not number")]),  # as Go
    ("os/linux/oom-score-adj", True, [("value", "must be an integer, not boolean")]),
    ("os/linux/cpu-shares", 1, [("value", "must be between 2 and 262144, not 1")]),
    ("os/linux/cpu-shares", 262145, [("value", "must be between 2 and 262144, not 262145")]),
    ("os/linux/cpu-shares", 2**63,
     [("value", f"must fit in a 64-bit signed integer, not {2**63}")]),
    ("os/linux/selinux-context", {"user": "", "role": "r", "type": "t", "level": "s0"},
     [("value.user", "invalid SELinux user: must be set")]),
    ("os/linux/selinux-context", {"user": "u:x", "role": "r", "type": "t", "level": "s0"},
     [("value.user", "invalid SELinux user: 'u:x' contains ':'")]),
    ("os/linux/selinux-context", {"user": "u", "role": "r:x", "type": "t", "level": "s0"},
     [("value.role", "invalid SELinux role: 'r:x' contains ':'")]),
    ("os/linux/selinux-context", {"user": "u", "role": "r", "type": "t:x", "level": "s0"},
     [("value.type", "invalid SELinux type: 't:x' contains ':'")]),
    ("os/linux/selinux-context", {"user": "u", "role": "r", "type": "t"},
     [("value.level", "invalid SELinux level: must be set")]),
    ("os/linux/selinux-context", {"user": 1, "role": "r", "type": "t", "level": "s0"},
     [("value.user", "must be a string, not number")]),
    ("os/linux/apparmor-profile", {"profile": ""},
     [("value.profile", "apparmor profile must be set")]),
    ("os/linux/apparmor-profile", {}, [("value.profile", "apparmor profile must be set")]),
    ("os/linux/apparmor-profile", "docker-default", [("value", "must be an object, not string")]),
    ("os/unix/sysctl", {"a": 1}, [("value.a", "must be a string, not number")]),
    ("os/unix/sysctl", ["a"], [("value", "must be an object, not array")]),
]


@pytest.mark.parametrize(("name", "value", "errors"), BAD_VALUES, ids=numbered(BAD_VALUES))
def test_error_isolator_bad_value(name: str, value: Any, errors: list[tuple[str, str]]) -> None:
    with pytest.raises(ValidationError) as info:
        Isolator.from_dict({"name": name, "value": value})
    assert errors_of(info.value) == errors
    # Inside a list (app or pod alike) the same error gets the element's index.
    for convert in (app_isolators, pod_isolators):
        with pytest.raises(InvalidManifest) as info:
            convert([{"name": name, "value": value}])
        assert errors_of(info.value) == [(f"[0].{field}", message) for field, message in errors]


@pytest.mark.parametrize("name", sorted(KNOWN_ISOLATORS))
def test_error_known_isolator_without_value(name: str) -> None:
    # The reference crashes (nil pointer) here; we report it.
    message = f"isolator {name!r} needs a value"
    for data in ({"name": name}, {"name": name, "value": None}):
        with pytest.raises(ValidationError) as info:
            Isolator.from_dict(data)
        assert errors_of(info.value) == [("value", message)]
    with pytest.raises(InvalidManifest) as info:
        pod_isolators([{"name": name}])
    assert errors_of(info.value) == [("[0].value", message)]


def test_unknown_isolator_keeps_any_value() -> None:
    for value in (1, "x", None, [1, {"a": None}], {"deep": {"er": [True]}}):
        isolator = Isolator.from_dict({"name": "example.com/custom", "value": value})
        assert not isolator.known
        assert isolator.parsed is None
        assert isolator.to_dict() == {"name": "example.com/custom", "value": value}


BAD_NAMES = [
    ({"name": "Resource/CPU", "value": {}}, [(
        "name",
        "ACIdentifier must contain only lower case alphanumeric characters plus '-._~/': "
        "'Resource/CPU'",
    )]),
    ({"value": {}}, [("name", "name must be set")]),
    ({"name": 5, "value": 1}, [("name", "ACIdentifier must be a string, not int")]),
]


@pytest.mark.parametrize(("data", "errors"), BAD_NAMES, ids=["upper", "missing", "number"])
def test_error_isolator_bad_name(data: dict[str, Any], errors: list[tuple[str, str]]) -> None:
    with pytest.raises(ValidationError) as info:
        Isolator.from_dict(data)
    assert errors_of(info.value) == errors


def test_isolator_builder_in_code() -> None:
    isolator = Isolator("resource/memory", {"limit": "1G"})
    assert isinstance(isolator.parsed, ResourceValue)
    assert isolator.parsed.limit is not None
    assert isolator.parsed.limit.int_value() == 10**9
    with pytest.raises(ValidationError, match="default must be true"):
        Isolator("resource/block-iops", {"limit": "10"})


# --- list rules: app against pod ---------------------------------------------------------

REMOVE = {"name": "os/linux/seccomp-remove-set", "value": {"set": ["reboot"]}}
RETAIN = {"name": "os/linux/seccomp-retain-set", "value": {"set": ["read"]}}
CAPS_RETAIN = {"name": "os/linux/capabilities-retain-set", "value": {"set": ["CAP_KILL"]}}
CAPS_REMOVE = {"name": "os/linux/capabilities-remove-set", "value": {"set": ["CAP_KILL"]}}
UNKNOWN = {"name": "example.com/unknown", "value": {"x": 1}}
CPU = {"name": "resource/cpu", "value": {"limit": "1"}}
OOM = {"name": "os/linux/oom-score-adj", "value": 5}

LIST_CASES = [
    # (items, app errors; None when an app accepts the list too)
    ([REMOVE, RETAIN], [("[1].name", "isolators set contains incompatible types")]),
    ([RETAIN, REMOVE], [("[1].name", "isolators set contains incompatible types")]),
    ([REMOVE, REMOVE], [(
        "[1].name",
        "isolators set contains too many instances of type 'os/linux/seccomp-remove-set'",
    )]),
    ([OOM, OOM], [(
        "[1].name", "isolators set contains too many instances of type 'os/linux/oom-score-adj'"
    )]),
    ([UNKNOWN], [("[0].name", "invalid isolator 'example.com/unknown'")]),
    ([CPU, UNKNOWN, OOM], [("[1].name", "invalid isolator 'example.com/unknown'")]),
    # Capability retain and remove sets may be mixed (the spec says no; the code says yes).
    ([CAPS_RETAIN, CAPS_REMOVE], None),
    ([CPU, CPU, CAPS_RETAIN, CAPS_RETAIN], None),  # multi-use kinds
    ([REMOVE, OOM, CPU], None),
    ([], None),
    (
        [RETAIN, REMOVE, REMOVE, {"name": "x/y", "value": 1}],
        [
            ("[1].name", "isolators set contains incompatible types"),
            ("[2].name", "isolators set contains too many instances of type "
             "'os/linux/seccomp-remove-set'"),
            ("[2].name", "isolators set contains incompatible types"),
            ("[3].name", "invalid isolator 'x/y'"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("items", "app_errors"), LIST_CASES, ids=[str(i) for i in range(len(LIST_CASES))]
)
def test_isolator_list_rules_app_against_pod(
    items: list[dict[str, Any]], app_errors: list[tuple[str, str]] | None
) -> None:
    # A pod checks each known isolator's value but no list rule: every list is accepted.
    if app_errors is None:
        assert [i.name for i in app_isolators(items)] == [i["name"] for i in items]
    else:
        with pytest.raises(InvalidManifest) as info:
            app_isolators(items)
        assert errors_of(info.value) == app_errors
    assert [i.name for i in pod_isolators(items)] == [i["name"] for i in items]


def test_isolators_lookups() -> None:
    cpu2 = {"name": "resource/cpu", "value": {"limit": "2"}}
    isolators = Isolators([CPU, OOM, cpu2])
    assert isolators.get("resource/cpu") == Isolator.from_dict(cpu2)  # the last one wins
    assert isolators.get("resource/memory") is None
    assert len(isolators.all("resource/cpu")) == 2
    assert [i.name for i in isolators.without("resource/cpu")] == ["os/linux/oom-score-adj"]
    assert isolators.json_value() == [CPU, OOM, cpu2]
    assert Isolators(isolators) is isolators
    assert Isolators(None) == ()


# --- isolator_from_string ----------------------------------------------------------------

GOOD_STRINGS = [
    ("resource/cpu,request=50m,limit=100m", "resource/cpu", {"request": "50m", "limit": "100m"}),
    ("resource/memory,limit=1G", "resource/memory", {"limit": "1G"}),
    ("resource/cpu", "resource/cpu", {}),
    ("resource/cpu,default=false", "resource/cpu", {"default": False}),
    # default: true is added for the kinds that need it.
    ("resource/block-bandwidth,limit=1M", "resource/block-bandwidth",
     {"limit": "1M", "default": True}),
    ("resource/block-iops,default=true,limit=10", "resource/block-iops",
     {"default": True, "limit": "10"}),
    ("resource/network-bandwidth,limit=1G", "resource/network-bandwidth",
     {"limit": "1G", "default": True}),
    ("os/linux/no-new-privileges,true", "os/linux/no-new-privileges", True),
    ("os/linux/no-new-privileges,false", "os/linux/no-new-privileges", False),
    ("os/linux/no-new-privileges,1", "os/linux/no-new-privileges", True),
    ("os/linux/oom-score-adj,-100", "os/linux/oom-score-adj", -100),
    ("os/linux/oom-score-adj,+5", "os/linux/oom-score-adj", 5),
]


@pytest.mark.parametrize(("text", "name", "value"), GOOD_STRINGS, ids=[g[0] for g in GOOD_STRINGS])
def test_isolator_from_string(text: str, name: str, value: Any) -> None:
    isolator = isolator_from_string(text)
    assert (isolator.name, isolator.value) == (name, value)
    assert isolator.known


BAD_STRINGS = [
    ("resource/cpu,bogus=1", "bad isolator parameter 'bogus=1' in 'resource/cpu,bogus=1'"),
    ("resource/cpu,limit", "bad isolator parameter 'limit' in 'resource/cpu,limit'"),
    ("resource/cpu,limit=1K", "unable to parse quantity's suffix: '1K'"),
    ("resource/cpu,default=true", "default must be false"),
    ("resource/cpu,default=maybe", "invalid boolean 'maybe'"),
    ("resource/block-iops,default=false,limit=1", "default must be true"),
    ("resource/network-bandwidth,request=1",
     "request not supported by this resource, must be empty"),
    ("resource/foo,limit=1", "isolator resource/foo is not supported for patching"),
    ("os/linux/cpu-shares,100", "isolator os/linux/cpu-shares is not supported for patching"),
    ("os/linux/seccomp-remove-set,reboot",
     "isolator os/linux/seccomp-remove-set is not supported for patching"),
    ("", "isolator  is not supported for patching"),
    ("os/linux/no-new-privileges,maybe", "invalid boolean 'maybe'"),
    ("os/linux/no-new-privileges", "invalid boolean ''"),
    ("os/linux/oom-score-adj,abc", "bad oom-score-adj value 'abc'"),
    ("os/linux/oom-score-adj,", "bad oom-score-adj value ''"),
    ("os/linux/oom-score-adj, 5", "bad oom-score-adj value ' 5'"),  # as Go's Atoi
    ("os/linux/oom-score-adj,1_0", "bad oom-score-adj value '1_0'"),
    ("os/linux/oom-score-adj,\u0663", "bad oom-score-adj value '\u0663'"),
    ("os/linux/oom-score-adj,2000", "must be between -1000 and 1000, not 2000"),
]


@pytest.mark.parametrize(("text", "message"), BAD_STRINGS, ids=[repr(b[0]) for b in BAD_STRINGS])
def test_error_isolator_from_string(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        isolator_from_string(text)
    assert info.value.message == message
