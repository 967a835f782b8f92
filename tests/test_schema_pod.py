"""PodManifest: the little the reference checks at pod level, templates against reified
runtime manifests, Go's output (first seven fields always, null when empty) (appc-spec §3).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from appc.errors import InvalidManifest, ValidationError
from appc.schema import App, ImageManifest, Mount, PodManifest, RuntimeApp, RuntimeImage
from appc.types import ExposedPort, Hash, Isolator, Port, SemVer, Volume

IMAGE_ID = "sha512-" + "ab" * 64


def errors_of(exc: ValidationError) -> list[tuple[str, str]]:
    """Each error of *exc* as (dotted field, message)."""
    return [(e.field, e.message) for e in exc.errors]


def pod(**fields: Any) -> dict[str, Any]:
    """A minimal valid pod manifest as JSON, with *fields* added or replaced."""
    return {"acVersion": "0.8.11", "acKind": "PodManifest", **fields}


NULLS = {"apps": None, "volumes": None, "isolators": None, "annotations": None, "ports": None}

# A pod template in the style of the spec's examples/pod_template.json: apps by name
# and labels, no image IDs, an old acVersion.
TEMPLATE: dict[str, Any] = {
    "acVersion": "0.3.0",
    "acKind": "PodManifest",
    "apps": [
        {
            "name": "reduce-worker",
            "image": {
                "name": "example.com/reduce-worker",
                "labels": [{"name": "version", "value": "1.0.0"}],
            },
            "app": {
                "exec": ["/bin/reduce-worker", "--debug=true"],
                "user": "100",
                "group": "300",
                "environment": [{"name": "REDUCE_WORKER_DEBUG", "value": "true"}],
                "mountPoints": [{"name": "work", "path": "/mnt/foo"}],
            },
            "mounts": [{"volume": "work", "path": "/mnt/foo"}],
        },
        {"name": "backup", "image": {"name": "example.com/worker-backup"}},
    ],
    "volumes": [{"name": "work", "kind": "host", "source": "/opt/tenant1/work", "readOnly": True}],
    "isolators": [{"name": "resource/memory", "value": {"limit": "4G"}}],
    "annotations": [{"name": "ip-address", "value": "10.1.2.3"}],
    "ports": [{"name": "health", "hostPort": 4000}],
}

# The two-app pod the ACE validator needs (appc-spec §7), reified.
ACE_POD: dict[str, Any] = {
    "acVersion": "0.8.11",
    "acKind": "PodManifest",
    "apps": [
        {
            "name": "ace-validator-main",
            "image": {"name": "coreos.com/ace-validator-main", "id": IMAGE_ID,
                      "labels": [{"name": "version", "value": "0.8.11"}]},
            "mounts": [{"volume": "database", "path": "/db"}],
        },
        {
            "name": "ace-validator-sidekick",
            "image": {"name": "coreos.com/ace-validator-sidekick", "id": "sha512-" + "cd" * 64},
            "readOnlyRootFS": True,
            "mounts": [{"volume": "database", "path": "/db"}],
            "annotations": [{"name": "created", "value": "2017-09-19T00:00:00Z"}],
        },
    ],
    "volumes": [{"name": "database", "kind": "empty", "mode": "0755", "uid": 0, "gid": 0}],
    "isolators": None,
    "annotations": [{"name": "appc.io/executor/supports-systemd-notify", "value": "true"}],
    "ports": [{"name": "www", "hostPort": 8080, "hostIP": "127.0.0.1"}],
}


# --- minimal pods and Go's output --------------------------------------------------------


def test_minimal_pod_needs_only_ackind() -> None:
    # acVersion is not required for a pod (it is for an image).
    m = PodManifest.from_json('{"acKind":"PodManifest"}')
    assert m.ac_version == SemVer.parse("0.8.11")
    assert m.apps == ()
    assert m.is_reified  # vacuously
    assert m.to_json() == (
        '{"acVersion":"0.8.11","acKind":"PodManifest",'
        '"apps":null,"volumes":null,"isolators":null,"annotations":null,"ports":null}'
    )


def test_first_seven_fields_always_written_null_when_empty() -> None:
    out = PodManifest.from_dict(pod(apps=[], volumes=[], isolators=[], annotations=[], ports=[]))
    assert out.to_dict() == {**pod(), **NULLS}
    assert list(out.to_dict()) == [
        "acVersion", "acKind", "apps", "volumes", "isolators", "annotations", "ports",
    ]


def test_user_maps_written_only_when_set() -> None:
    out = PodManifest.from_dict(pod(userAnnotations={"a": "1"}, userLabels={"b": "2"})).to_dict()
    assert list(out)[-2:] == ["userAnnotations", "userLabels"]
    assert out["userAnnotations"] == {"a": "1"}
    empty = PodManifest.from_dict(pod(userAnnotations={}, userLabels=None)).to_dict()
    assert "userAnnotations" not in empty
    assert "userLabels" not in empty


def test_build_in_code() -> None:
    m = PodManifest(
        apps=[
            RuntimeApp(
                name="hello",
                image=RuntimeImage(id=IMAGE_ID, name="example.com/hello"),
                app=App(exec=["/bin/hello"], user="0", group="0"),
                mounts=[Mount(volume="data", path="/data")],
            ),
        ],
        volumes=[Volume(name="data", kind="empty")],
        ports=[ExposedPort(name="www", host_port=8080, pod_port=Port(port=80))],
        isolators=[Isolator("resource/cpu", {"limit": "1"})],
    )
    assert m.is_reified
    assert m.app("hello") is m.apps[0]
    assert m.app("missing") is None
    assert json.loads(m.to_json()) == {
        "acVersion": "0.8.11",
        "acKind": "PodManifest",
        "apps": [{
            "name": "hello",
            "image": {"name": "example.com/hello", "id": IMAGE_ID},
            "app": {"exec": ["/bin/hello"], "user": "0", "group": "0"},
            "mounts": [{"volume": "data", "path": "/data"}],
        }],
        "volumes": [{"name": "data", "kind": "empty", "mode": "0755", "uid": 0, "gid": 0}],
        "isolators": [{"name": "resource/cpu", "value": {"limit": "1"}}],
        "annotations": None,
        "ports": [{"name": "www", "hostPort": 8080,
                   "podPort": {"port": 80, "count": 1, "socketActivated": False}}],
    }
    assert PodManifest.from_json(m.to_json()) == m


# --- templates and runtime manifests -----------------------------------------------------


def test_template_reads_and_is_not_reified() -> None:
    m = PodManifest.from_dict(TEMPLATE)
    assert m.ac_version == SemVer.parse("0.3.0")
    assert not m.is_reified
    assert [a.name for a in m.apps] == ["reduce-worker", "backup"]
    assert m.apps[0].image.labels.get("version") == "1.0.0"
    assert m.apps[0].image.id is None
    assert m.volumes[0].read_only is True
    assert PodManifest.from_json(m.to_json()) == m


def test_ace_validator_pod_reads_and_round_trips() -> None:
    m = PodManifest.from_dict(ACE_POD)
    assert m.is_reified
    sidekick = m.app("ace-validator-sidekick")
    assert sidekick is not None
    assert sidekick.read_only_rootfs
    assert sidekick.image.id == Hash("sha512-" + "cd" * 64)
    assert m.ports[0].host_ip == "127.0.0.1"
    assert json.loads(m.to_json()) == {**ACE_POD, "isolators": None}
    assert PodManifest.from_json(m.to_json()) == m


def test_runtime_app_defaults() -> None:
    # name, image, image id, app, mounts: none is required by the reference's reader.
    m = PodManifest.from_dict(pod(apps=[{}]))
    app = m.apps[0]
    assert (app.name, app.image.id, app.app, app.mounts, app.read_only_rootfs) == (
        None, None, None, (), False,
    )
    assert m.to_dict()["apps"] == [{"image": {}}]


def test_app_override_has_the_full_app_rules() -> None:
    with pytest.raises(InvalidManifest) as info:
        PodManifest.from_dict(pod(apps=[{"name": "a", "app": {"exec": ["x"], "user": "0"}}]))
    assert errors_of(info.value) == [("apps[0].app.group", "group is required")]
    with pytest.raises(InvalidManifest) as info:
        PodManifest.from_dict(pod(apps=[{"name": "a", "app": {
            "user": "0", "group": "0", "isolators": [{"name": "x/unknown", "value": 1}],
        }}]))
    assert errors_of(info.value) == [("apps[0].app.isolators[0].name", "invalid isolator 'x/unknown'")]


# --- what a pod accepts that an image app does not ---------------------------------------


def test_pod_annotation_names_are_acidentifiers() -> None:
    # The spec text says AC Name; the reference code (and we) use ACIdentifier.
    m = PodManifest.from_dict(pod(annotations=[{"name": "x.com/y", "value": "v"}]))
    assert m.annotations.get("x.com/y") == "v"


def test_pod_accepts_unknown_isolator_but_app_does_not() -> None:
    unknown = [{"name": "example.com/unknown", "value": {"anything": [1, 2]}}]
    m = PodManifest.from_dict(pod(isolators=unknown))
    assert not m.isolators[0].known
    assert m.to_dict()["isolators"] == unknown
    with pytest.raises(InvalidManifest) as info:
        ImageManifest.from_dict({
            "acKind": "ImageManifest", "acVersion": "0.8.11", "name": "a",
            "app": {"user": "0", "group": "0", "isolators": unknown},
        })
    assert errors_of(info.value) == [("app.isolators[0].name", "invalid isolator 'example.com/unknown'")]


def test_pod_accepts_seccomp_remove_and_retain_but_app_does_not() -> None:
    both = [
        {"name": "os/linux/seccomp-remove-set", "value": {"set": ["reboot"]}},
        {"name": "os/linux/seccomp-retain-set", "value": {"set": ["read"]}},
        {"name": "os/linux/seccomp-retain-set", "value": {"set": ["write"]}},
    ]
    assert len(PodManifest.from_dict(pod(isolators=both)).isolators) == 3
    with pytest.raises(InvalidManifest) as info:
        PodManifest.from_dict(pod(apps=[{"name": "a", "app": {"user": "0", "group": "0", "isolators": both}}]))
    assert errors_of(info.value) == [
        ("apps[0].app.isolators[1].name", "isolators set contains incompatible types"),
        ("apps[0].app.isolators[2].name",
         "isolators set contains too many instances of type 'os/linux/seccomp-retain-set'"),
        ("apps[0].app.isolators[2].name", "isolators set contains incompatible types"),
    ]


POD_ISOLATOR_VALUES = [
    ({"name": "resource/cpu", "value": {"default": True}},
     [("isolators[0].value.default", "default must be false")]),
    ({"name": "resource/memory"}, [("isolators[0].value", "isolator 'resource/memory' needs a value")]),
    ({"name": "os/linux/oom-score-adj", "value": 5000},
     [("isolators[0].value", "must be between -1000 and 1000, not 5000")]),
    ({"name": "os/unix/sysctl", "value": {"net.core.somaxconn": 1024}},
     [("isolators[0].value.net.core.somaxconn", "must be a string, not number")]),
]


@pytest.mark.parametrize(("isolator", "errors"), POD_ISOLATOR_VALUES, ids=[i["name"] for i, _ in POD_ISOLATOR_VALUES])
def test_error_pod_checks_known_isolator_values(isolator: dict[str, Any], errors: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidManifest) as info:
        PodManifest.from_dict(pod(isolators=[isolator]))
    assert errors_of(info.value) == errors


# --- errors ------------------------------------------------------------------------------

BAD_PODS = [
    ({"acKind": "ImageManifest"}, [("acKind", 'missing or bad ACKind (must be "PodManifest")')]),
    ({}, [("acKind", 'missing or bad ACKind (must be "PodManifest")')]),
    (pod(acVersion="0.0.0"), [("acVersion", "SemVer cannot be zero: '0.0.0'")]),
    (pod(acVersion="v1"), [("acVersion", "SemVer is bad: 'v1'")]),
    (pod(apps=[{"name": "a"}, {"name": "b"}, {"name": "a"}]), [("apps[2].name", "duplicate apps of name 'a'")]),
    (pod(apps=[{}, {}]), [("apps[1].name", "duplicate apps of name ''")]),
    (pod(apps=[{"name": "A"}]),
     [("apps[0].name", "ACName must contain only lower case alphanumeric characters plus '-': 'A'")]),
    (pod(apps=[{"name": "example.com/app"}]),
     [("apps[0].name", "ACName must contain only lower case alphanumeric characters plus '-': "
       "'example.com/app'")]),
    (pod(apps=[{"image": {"id": "sha512-ab-c"}}]),
     [("apps[0].image.id", "badly formatted hash string: 'sha512-ab-c'")]),
    (pod(apps=[{"image": {"id": ""}}]), [("apps[0].image.id", "badly formatted hash string: ''")]),
    (pod(apps=[{"image": {"name": "-x"}}]),
     [("apps[0].image.name", "ACIdentifier must start and end with only lower case alphanumeric "
       "characters: '-x'")]),
    (pod(apps=[{"image": {"labels": [{"name": "os", "value": "darwin"}, {"name": "arch", "value": "amd64"}]}}]),
     [("apps[0].image.labels[1].value", "bad arch 'amd64' for darwin (must be one of: [x86_64 i386])")]),
    (pod(apps=[{"image": "sha512-x"}]), [("apps[0].image", "must be an object, not string")]),
    (pod(apps=[{"readOnlyRootFS": "true"}]), [("apps[0].readOnlyRootFS", "must be a boolean, not string")]),
    (pod(apps=[{"mounts": [{"volume": "Data", "path": "/d"}]}]),
     [("apps[0].mounts[0].volume", "ACName must contain only lower case alphanumeric characters "
       "plus '-': 'Data'")]),
    (pod(apps=[{"mounts": [{"volume": "d", "appVolume": {"name": "q", "kind": "host"}}]}]),
     [("apps[0].mounts[0].appVolume.source", "source for host volume cannot be empty")]),
    (pod(apps=[{"annotations": [{"name": "homepage", "value": "example.com"}]}]),
     [("apps[0].annotations[0].value", "bad URL scheme, must be http/https: 'example.com'")]),
    (pod(volumes=[{"name": "v", "kind": "host"}]),
     [("volumes[0].source", "source for host volume cannot be empty")]),
    (pod(volumes=[{"name": "v", "kind": "host", "source": "data"}]),
     [("volumes[0].source", "source for host volume must be absolute path")]),
    (pod(volumes=[{"name": "v", "kind": "host", "source": "/d", "gid": 1}]),
     [("volumes[0].gid", "gid for host volume cannot be set")]),
    (pod(volumes=[{"name": "v", "kind": "empty", "source": "/d"}]),
     [("volumes[0].source", "source for empty volume must be empty")]),
    (pod(volumes=[{"name": "v", "kind": "tmpfs"}]),
     [("volumes[0].kind", 'unrecognized volume kind: should be one of "empty", "host"')]),
    (pod(volumes=[{"kind": "empty"}]), [("volumes[0].name", "name must be set")]),
    (pod(volumes=[{"name": "v", "kind": "empty", "mode": 755}]),
     [("volumes[0].mode", "must be a string, not number")]),
    (pod(volumes=[{"name": "v", "kind": "empty"}, {"name": "v", "kind": "empty"}]),
     [("volumes[1].name", "duplicate volume name 'v'")]),
    (pod(ports=[{"name": "p", "hostIP": "not-an-ip"}]), [("ports[0].hostIP", "invalid IP address: not-an-ip")]),
    (pod(ports=[{"hostPort": 80}]), [("ports[0].name", "name must be set")]),
    (pod(ports=[{"name": "p", "podPort": {"port": 65535, "count": 2}}]),
     [("ports[0].podPort.count", "end of port range must be in 1-65535 range")]),
    (pod(annotations=[{"name": "created", "value": "2014-10-27"}]),
     [("annotations[0].value", "bad RFC3339 timestamp: '2014-10-27'")]),
    (pod(annotations={"a": "b"}), [("annotations", "must be an array, not object")]),
    (pod(userLabels={"a": 1}), [("userLabels.a", "must be a string, not number")]),
    (pod(apps={"name": "a"}), [("apps", "must be an array, not object")]),
]


@pytest.mark.parametrize(("data", "errors"), BAD_PODS, ids=[str(i) for i in range(len(BAD_PODS))])
def test_error_pod_bad(data: dict[str, Any], errors: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidManifest) as info:
        PodManifest.from_dict(data)
    assert errors_of(info.value) == errors
    assert info.value.kind == "PodManifest"


GOOD_PODS = [
    pod(ports=[{"name": "p", "hostPort": 0}]),  # hostPort is not range-checked
    pod(ports=[{"name": "p", "hostPort": 70000, "hostIP": "::1"}]),  # IPv6 accepted
    pod(volumes=[{"name": "v", "kind": "empty", "mode": "rwx", "uid": -1, "gid": -1}]),
    pod(volumes=[{"name": "v", "kind": "host", "source": "/", "recursive": False}]),
    pod(apps=[{"name": "a", "mounts": [{}]}]),  # mount fields are not required
    pod(apps=[{"name": "a"}, {"name": "b"}], annotations=[{"name": "a-b.c/d", "value": ""}]),
    pod(acVersion="99.0.0"),
]


@pytest.mark.parametrize("data", GOOD_PODS, ids=[str(i) for i in range(len(GOOD_PODS))])
def test_pod_good_and_round_trips(data: dict[str, Any]) -> None:
    m = PodManifest.from_dict(data)
    again = PodManifest.from_json(m.to_json())
    assert again == m
    assert again.to_json() == m.to_json()


def test_error_every_bad_field_of_a_pod_at_once() -> None:
    data = pod(
        apps=[
            {"name": "a", "image": {"id": "md5-x"}, "app": {"user": "0"}},
            {"name": "a", "mounts": [{"volume": "-v"}]},
        ],
        volumes=[{"name": "v", "kind": "host", "source": "rel"}, {"name": "w", "kind": "?"}],
        isolators=[{"name": "resource/cpu", "value": {"limit": "1K"}}],
        annotations=[{"name": "created", "value": "now"}],
        ports=[{"name": "p", "hostIP": "300.1.1.1"}],
    )
    with pytest.raises(InvalidManifest) as info:
        PodManifest.from_dict(data)
    assert errors_of(info.value) == [
        ("apps[0].image.id", "unrecognized hash type: 'md5'"),
        ("apps[0].app.group", "group is required"),
        ("apps[1].mounts[0].volume",
         "ACName must start and end with only lower case alphanumeric characters: '-v'"),
        ("volumes[0].source", "source for host volume must be absolute path"),
        ("volumes[1].kind", 'unrecognized volume kind: should be one of "empty", "host"'),
        ("isolators[0].value.limit", "unable to parse quantity's suffix: '1K'"),
        ("annotations[0].value", "bad RFC3339 timestamp: 'now'"),
        ("ports[0].hostIP", "invalid IP address: 300.1.1.1"),
    ]


def test_structural_error_is_added_where_the_semantic_pass_stopped() -> None:
    # The semantic pass reports a volume's first problem; the JSON Schema pass finds the
    # others, and its errors are kept where no semantic error covers the same field.
    data = pod(volumes=[{"name": "w", "kind": "host", "source": "rel", "mode": "0755"}])
    with pytest.raises(InvalidManifest) as info:
        PodManifest.from_dict(data)
    assert errors_of(info.value) == [
        ("volumes[0].source", "source for host volume must be absolute path"),
        ("volumes[0].mode", "'0755' is not of type 'null'"),
    ]
    with pytest.raises(InvalidManifest) as info:
        PodManifest.from_dict(data, structural=False)
    assert errors_of(info.value) == [("volumes[0].source", "source for host volume must be absolute path")]


def test_case_insensitive_keys_and_nulls() -> None:
    text = json.dumps({
        "ACKIND": "PodManifest",
        "APPS": [{"NAME": "a", "Image": {"ID": IMAGE_ID, "Labels": None}, "ReadOnlyRootFS": True,
                  "Mounts": [{"Volume": "v", "PATH": "/v", "AppVolume": None}]}],
        "Volumes": [{"Name": "v", "Kind": "empty", "UID": 5, "Mode": None}],
        "Ports": [{"NAME": "p", "HOSTPORT": 80, "hostip": "10.0.0.1", "PodPort": None}],
        "isolators": None,
        "UserLabels": {"Key": "Value"},
    })
    assert PodManifest.from_json(text).to_dict() == pod(
        apps=[{"name": "a", "image": {"id": IMAGE_ID}, "readOnlyRootFS": True,
               "mounts": [{"volume": "v", "path": "/v"}]}],
        volumes=[{"name": "v", "kind": "empty", "mode": "0755", "uid": 5, "gid": 0}],
        isolators=None,
        annotations=None,
        ports=[{"name": "p", "hostPort": 80, "hostIP": "10.0.0.1"}],
        userLabels={"Key": "Value"},
    )


@pytest.mark.parametrize(
    ("text", "errors"),
    [
        ("[]", [("", "PodManifest must be a JSON object, not array")]),
        ("null", [("", "PodManifest must be a JSON object, not NoneType")]),
        ("{}", [("acKind", 'missing or bad ACKind (must be "PodManifest")')]),
    ],
    ids=["array", "null", "empty"],
)
def test_error_not_a_pod_is_a_clean_error(text: str, errors: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidManifest) as info:
        PodManifest.from_json(text)
    assert errors_of(info.value) == errors


def test_error_invalid_json_names_the_pod_manifest() -> None:
    with pytest.raises(ValidationError) as info:
        PodManifest.from_json('{"acKind": "PodManifest",\n\n  "apps": [}')
    assert info.value.message == "invalid JSON in pod manifest at line 3, column 12: Expecting value"
