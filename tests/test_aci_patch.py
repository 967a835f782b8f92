"""appc.aci.patch: changing the manifest inside an image (``actool patch-manifest``).

The command line is tested in test_actool.py; here the library: every change of the
notes' §8, and the copy (entry order, headers, atomic output).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pathlib
import tarfile
from typing import Any

import pytest

from appc.aci import ManifestPatch, apply_patch, compute_image_id, patch_image, read_manifest_bytes
from appc.errors import ImageError, ValidationError
from appc.schema import ImageManifest
from tests import aci_fixtures as fx

CAP_RETAIN = {"name": "os/linux/capabilities-retain-set", "value": {"set": ["CAP_CHOWN"]}}
CAP_REMOVE = {"name": "os/linux/capabilities-remove-set", "value": {"set": ["CAP_KILL"]}}
MEMORY = {"name": "resource/memory", "value": {"limit": "1G"}}
SECCOMP = {"name": "os/linux/seccomp-remove-set", "value": {"set": ["reboot"]}}


def manifest_with(**app: Any) -> ImageManifest:
    document = json.loads(fx.manifest_bytes())
    document["app"].update(app)
    return ImageManifest.from_dict(document)


def patched(patch: ManifestPatch, manifest: ImageManifest | None = None) -> dict[str, Any]:
    result = apply_patch(manifest or ImageManifest.from_json(fx.manifest_bytes()), patch)
    return json.loads(result.to_json())  # type: ignore[no-any-return]


def isolator_names(document: dict[str, Any]) -> list[str]:
    return [i["name"] for i in document["app"].get("isolators", [])]


# --- apply_patch: each change --------------------------------------------------------


def test_no_change() -> None:
    manifest = ImageManifest.from_json(fx.manifest_bytes())
    assert apply_patch(manifest, ManifestPatch()) == manifest


def test_name() -> None:
    assert patched(ManifestPatch(name="example.com/other"))["name"] == "example.com/other"
    with pytest.raises(ValidationError, match="ACIdentifier"):
        patched(ManifestPatch(name="Not Valid"))


@pytest.mark.parametrize(
    ("command", "exec_"),
    [
        ("/app --debug", ["/app", "--debug"]),
        ("/app", ["/app"]),
        ("/app  --debug", ["/app", "", "--debug"]),  # single spaces only, as the reference
        ("/app --flag='a b'", ["/app", "--flag='a", "b'"]),  # no shell quoting
        ("/app ", ["/app", ""]),
    ],
)
def test_exec(command: str, exec_: list[str]) -> None:
    assert patched(ManifestPatch(exec=command))["app"]["exec"] == exec_


def test_user_group_supplementary_groups() -> None:
    app = patched(ManifestPatch(user="1000", group="/etc/group-file",
                                supplementary_gids=[10, 20]))["app"]
    assert (app["user"], app["group"], app["supplementaryGIDs"]) == ("1000", "/etc/group-file",
                                                                    [10, 20])
    with pytest.raises(ValidationError, match="user is required"):
        patched(ManifestPatch(user=""))


def test_capability_retain_and_remove() -> None:
    doc = patched(ManifestPatch(capability=["CAP_NET_ADMIN", "CAP_SYS_TIME"]))
    assert doc["app"]["isolators"] == [
        {"name": "os/linux/capabilities-retain-set",
         "value": {"set": ["CAP_NET_ADMIN", "CAP_SYS_TIME"]}},
    ]
    doc = patched(ManifestPatch(revoke_capability=["CAP_NET_RAW"]))
    assert doc["app"]["isolators"] == [
        {"name": "os/linux/capabilities-remove-set", "value": {"set": ["CAP_NET_RAW"]}},
    ]


def test_capability_conflict() -> None:
    with pytest.raises(ValidationError, match=r"^conflicting capabilities isolators provided$"):
        patched(ManifestPatch(capability=["CAP_A"], revoke_capability=["CAP_B"]))


@pytest.mark.parametrize("patch", [ManifestPatch(capability=["CAP_NET_BIND_SERVICE"]),
                                   ManifestPatch(revoke_capability=["CAP_NET_BIND_SERVICE"])])
def test_capability_replaces_both_kinds_and_goes_last(patch: ManifestPatch) -> None:
    manifest = manifest_with(isolators=[CAP_RETAIN, MEMORY, CAP_REMOVE, SECCOMP])
    doc = patched(patch, manifest)
    kind = "retain" if patch.capability else "remove"
    assert isolator_names(doc) == ["resource/memory", "os/linux/seccomp-remove-set",
                                   f"os/linux/capabilities-{kind}-set"]
    assert doc["app"]["isolators"][-1]["value"] == {"set": ["CAP_NET_BIND_SERVICE"]}


def test_mounts_append() -> None:
    manifest = manifest_with(mountPoints=[{"name": "old", "path": "/old"}])
    doc = patched(ManifestPatch(mounts=["data,path=/data,readOnly=true", "logs,path=/var/log"]),
                  manifest)
    assert doc["app"]["mountPoints"] == [
        {"name": "old", "path": "/old"},
        {"name": "data", "path": "/data", "readOnly": True},
        {"name": "logs", "path": "/var/log"},
    ]
    with pytest.raises(ValidationError):
        patched(ManifestPatch(mounts=["data,path=/d,readOnly=maybe"]))


def test_ports_append() -> None:
    doc = patched(ManifestPatch(ports=["dns,protocol=udp,port=53,count=2,socketActivated=true",
                                       "http,protocol=tcp,port=80"]))
    assert doc["app"]["ports"] == [
        {"name": "www", "protocol": "tcp", "port": 5000, "count": 1, "socketActivated": False},
        {"name": "dns", "protocol": "udp", "port": 53, "count": 2, "socketActivated": True},
        # The reference writes count 0 here; 1 is the spec's default and what it reads back.
        {"name": "http", "protocol": "tcp", "port": 80, "count": 1, "socketActivated": False},
    ]
    with pytest.raises(ValidationError, match="port"):
        patched(ManifestPatch(ports=["x"]))


def test_isolators_append() -> None:
    manifest = manifest_with(isolators=[CAP_RETAIN])
    doc = patched(ManifestPatch(isolators=[
        "resource/cpu,request=50m,limit=100m", "resource/memory,limit=1G",
        "os/linux/no-new-privileges,true", "os/linux/oom-score-adj,-100",
    ]), manifest)
    assert doc["app"]["isolators"] == [
        CAP_RETAIN,
        {"name": "resource/cpu", "value": {"request": "50m", "limit": "100m"}},
        {"name": "resource/memory", "value": {"limit": "1G"}},
        {"name": "os/linux/no-new-privileges", "value": True},
        {"name": "os/linux/oom-score-adj", "value": -100},
    ]


@pytest.mark.parametrize("name", ["os/linux/capabilities-retain-set", "os/linux/seccomp-remove-set",
                                  "os/linux/selinux-context", "example.com/custom"])
def test_unsupported_isolator(name: str) -> None:
    with pytest.raises(ValidationError, match=f"^isolator {name} is not supported for patching$"):
        patched(ManifestPatch(isolators=[f"{name},x"]))


def test_bad_isolator_value() -> None:
    with pytest.raises(ValidationError, match="quantities must match"):
        patched(ManifestPatch(isolators=["resource/cpu,limit=lots"]))


@pytest.mark.parametrize(
    ("mode", "value"),
    [("remove", {"set": ["reboot", "mount"]}),
     ("retain", {"set": ["reboot", "mount"]}),
     ("remove,errno=EPERM", {"set": ["reboot", "mount"], "errno": "EPERM"})],
)
def test_seccomp_replaces(mode: str, value: dict[str, Any]) -> None:
    existing = {"name": "os/linux/seccomp-retain-set", "value": {"set": ["read"]}}
    manifest = manifest_with(isolators=[existing, MEMORY])
    doc = patched(ManifestPatch(seccomp_mode=mode, seccomp_set=["reboot", "mount"]), manifest)
    kind = mode.split(",", maxsplit=1)[0]
    assert doc["app"]["isolators"] == [MEMORY, {"name": f"os/linux/seccomp-{kind}-set",
                                                "value": value}]


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (ManifestPatch(seccomp_set=["reboot"]), "--seccomp-set needs --seccomp-mode"),
        (ManifestPatch(seccomp_mode="remove"), "--seccomp-mode needs --seccomp-set"),
        (ManifestPatch(seccomp_mode="block", seccomp_set=["a"]),
         "bad seccomp mode 'block' (remove or retain)"),
        (ManifestPatch(seccomp_mode="remove,code=1", seccomp_set=["a"]),
         "bad seccomp mode option 'code=1' (errno=...)"),
    ],
)
def test_seccomp_errors(patch: ManifestPatch, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        patched(patch)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "patch",
    [ManifestPatch(user="1"), ManifestPatch(group="1"), ManifestPatch(supplementary_gids=[1]),
     ManifestPatch(capability=["CAP_A"]), ManifestPatch(revoke_capability=["CAP_A"]),
     ManifestPatch(mounts=["a,path=/a"]), ManifestPatch(ports=["a,protocol=tcp,port=1"]),
     ManifestPatch(isolators=["resource/cpu,limit=1"]),
     ManifestPatch(seccomp_mode="remove", seccomp_set=["a"])],
)
def test_options_needing_an_app(patch: ManifestPatch) -> None:
    no_app = ImageManifest.from_json(fx.manifest_bytes(fx.NO_APP_MANIFEST))
    with pytest.raises(ValidationError, match="the manifest has no app: give --exec to create one"):
        apply_patch(no_app, patch)


def test_a_new_app() -> None:
    no_app = ImageManifest.from_json(fx.manifest_bytes(fx.NO_APP_MANIFEST))
    with pytest.raises(ValidationError, match="a new app needs --user and --group"):
        apply_patch(no_app, ManifestPatch(exec="/bin/sh"))
    doc = patched(ManifestPatch(exec="/bin/sh -c true", user="0", group="0",
                                ports=["p,protocol=tcp,port=1"]), no_app)
    assert doc["app"]["exec"] == ["/bin/sh", "-c", "true"]
    assert doc["app"]["ports"][0]["name"] == "p"
    # The name alone needs no app.
    assert patched(ManifestPatch(name="a.com/b"), no_app)["name"] == "a.com/b"


# --- patch_image: the copy -----------------------------------------------------------


def write(tmp_path: pathlib.Path, data: bytes, name: str = "in.aci") -> pathlib.Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def headers(path: pathlib.Path) -> list[dict[str, Any]]:
    out = []
    for info in fx.read_tar(path.read_bytes()):
        fields = dict(info.get_info())
        fields.pop("chksum", None)
        fields["pax"] = dict(info.pax_headers)
        out.append(fields)
    return out


def leftovers(directory: pathlib.Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".tmp"))


def test_entries_and_headers_are_kept(tmp_path: pathlib.Path) -> None:
    entries = fx.good_entries()
    # The manifest in the middle, a PAX record, odd metadata: all are kept.
    manifest = entries.pop()
    manifest.mode, manifest.mtime, manifest.uid = 0o600, 42, 7
    entries.insert(3, manifest)
    entries[2].pax = {"SCHILY.xattr.user.x": "y"}
    entries[4].mtime, entries[4].uid, entries[4].gid = 123, 1000, 2000
    source = write(tmp_path, fx.compress(fx.tar_bytes(entries), "xz"))
    output = tmp_path / "out.aci"
    patch_image(source, output, ManifestPatch(name="example.com/renamed"), level=1)
    before, after = headers(source), headers(output)
    assert [h["name"] for h in after] == [h["name"] for h in before]
    for old, new in zip(before, after, strict=True):
        if old["name"] == "manifest":
            assert new.pop("size") != old.pop("size")
        assert new == old
    assert json.loads(read_manifest_bytes(output))["name"] == "example.com/renamed"


def test_unchanged_copy_has_the_same_image_id(tmp_path: pathlib.Path) -> None:
    layout = fx.make_layout(tmp_path / "layout")
    from appc.aci import build_image

    source = tmp_path / "in.aci"
    image_id = build_image(layout, source, level=1, mtime=0).image_id
    output = tmp_path / "out.aci"
    assert patch_image(source, output, ManifestPatch(), level=1) == image_id
    assert gzip.decompress(output.read_bytes()) == gzip.decompress(source.read_bytes())


def test_returns_the_new_image_id(tmp_path: pathlib.Path) -> None:
    source = write(tmp_path, fx.good_tar())
    output = tmp_path / "out.aci"
    image_id = patch_image(source, output, ManifestPatch(exec="/x"))
    assert image_id == compute_image_id(output)
    assert image_id != compute_image_id(source)
    assert output.read_bytes()[:2] == b"\x1f\x8b"


def test_manifest_verbatim(tmp_path: pathlib.Path) -> None:
    source = write(tmp_path, fx.good_tar())
    output = tmp_path / "out.aci"
    raw = b'{"not": "validated",   "at": "all"}\n'
    patch_image(source, output, ManifestPatch(manifest=raw), compression="none")
    assert read_manifest_bytes(output) == raw
    assert output.read_bytes()[257:262] == b"ustar"


def test_manifest_verbatim_excludes_field_options(tmp_path: pathlib.Path) -> None:
    source = write(tmp_path, fx.good_tar())
    for patch in (ManifestPatch(manifest=b"{}", name="a.com/b"),
                  ManifestPatch(manifest=b"{}", exec="/x"),
                  ManifestPatch(manifest=b"{}", user="0"),
                  ManifestPatch(manifest=b"{}", mounts=["a,path=/a"])):
        with pytest.raises(ValidationError, match="--manifest cannot be combined"):
            patch_image(source, tmp_path / "out.aci", patch)
    assert not (tmp_path / "out.aci").exists()


def test_manifest_verbatim_too_large(tmp_path: pathlib.Path) -> None:
    source = write(tmp_path, fx.good_tar())
    with pytest.raises(ImageError, match="manifest larger than 4194304 bytes"):
        patch_image(source, tmp_path / "out.aci", ManifestPatch(manifest=b" " * (5 << 20)))
    assert sorted(os.listdir(tmp_path)) == ["in.aci"]


def test_replace(tmp_path: pathlib.Path) -> None:
    source = write(tmp_path, fx.compress(fx.good_tar(), "bzip2"))
    image_id = patch_image(source, None, ManifestPatch(user="1234"))
    assert compute_image_id(source) == image_id
    assert source.read_bytes()[:2] == b"\x1f\x8b"  # rewritten as gzip
    assert json.loads(read_manifest_bytes(source))["app"]["user"] == "1234"
    assert sorted(os.listdir(tmp_path)) == ["in.aci"]


def test_overwrite(tmp_path: pathlib.Path) -> None:
    source = write(tmp_path, fx.good_tar())
    output = write(tmp_path, b"precious", "out.aci")
    with pytest.raises(ImageError) as info:
        patch_image(source, output, ManifestPatch(user="1"))
    assert str(info.value) == f"{output}: target file exists (try --overwrite)"
    assert output.read_bytes() == b"precious"
    patch_image(source, output, ManifestPatch(user="1"), overwrite=True)
    assert json.loads(read_manifest_bytes(output))["app"]["user"] == "1"


def test_output_must_end_in_aci(tmp_path: pathlib.Path) -> None:
    source = write(tmp_path, fx.good_tar())
    with pytest.raises(ImageError) as info:
        patch_image(source, tmp_path / "out.tar", ManifestPatch(user="1"))
    assert str(info.value) == f"{tmp_path / 'out.tar'}: extension must be .aci"
    # --replace on an input not called *.aci: the same rule.
    other = write(tmp_path, fx.good_tar(), "image.tar")
    with pytest.raises(ImageError, match=r"extension must be \.aci"):
        patch_image(other, None, ManifestPatch(user="1"))
    assert sorted(os.listdir(tmp_path)) == ["image.tar", "in.aci"]


@pytest.mark.parametrize(
    "case",
    [c for c in fx.CORRUPT if c.id in ("tar-garbage-after", "gzip-truncated-trailer",
                                       "duplicate-file", "traversal-rootfs-dotdot",
                                       "hardlink-later-entry", "missing-rootfs", "pod-manifest",
                                       "two-manifests", "unknown-entry-type", "bad-magic")],
    ids=lambda c: c.id,
)
def test_failure_leaves_no_output(tmp_path: pathlib.Path, case: fx.Corrupt) -> None:
    source = write(tmp_path, case.make())
    output = tmp_path / "out.aci"
    with pytest.raises((ImageError, ValidationError)) as info:
        patch_image(source, output, ManifestPatch(user="1"))
    assert str(info.value).startswith(f"{source}: ")
    assert sorted(os.listdir(tmp_path)) == ["in.aci"]
    # --replace: the input is left as it was.
    before = source.read_bytes()
    with pytest.raises((ImageError, ValidationError)):
        patch_image(source, None, ManifestPatch(user="1"))
    assert source.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_bad_patch_leaves_no_output(tmp_path: pathlib.Path) -> None:
    source = write(tmp_path, fx.good_tar())
    with pytest.raises(ValidationError):
        patch_image(source, tmp_path / "out.aci", ManifestPatch(isolators=["example.com/x,1"]))
    assert sorted(os.listdir(tmp_path)) == ["in.aci"]


def test_patched_image_stays_valid(tmp_path: pathlib.Path) -> None:
    from appc.aci import validate_archive

    source = write(tmp_path, fx.compress(fx.good_tar(), "zstd"))
    output = tmp_path / "out.aci"
    patch_image(source, output, ManifestPatch(
        name="example.com/patched", exec="/bin/hello --verbose", user="100", group="100",
        supplementary_gids=[1, 2], capability=["CAP_NET_BIND_SERVICE"],
        mounts=["data,path=/data"], ports=["dns,protocol=udp,port=53"],
        isolators=["resource/memory,limit=512M"], seccomp_mode="retain", seccomp_set=["read"],
    ), level=1)
    report = validate_archive(output)
    assert str(report.manifest.name) == "example.com/patched"
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(output.read_bytes()))) as tar:
        assert tar.getnames() == [e.name for e in fx.good_entries()]
