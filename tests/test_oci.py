"""ACIs as OCI images (``appc.oci``): layers, config, index, layouts and archives, and the way
back with docker2aci.  Registries and containerd are in ``test_push.py``."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from typing import Any

import pytest

from appc.docker.archive import open_archive_image
from appc.docker.convert import convert_image
from appc.docker.image import Platform
from appc.docker.manifest import carried_manifest
from appc.errors import ImageError, StoreError
from appc.oci import (
    ANNOTATION_PREFIX,
    LABEL_PREFIX,
    MANIFEST_LABEL,
    OCIImage,
    image_index,
    oci_image_from_aci,
    write_oci,
)
from appc.oci.image import HISTORY_CREATED_BY, MEDIA_INDEX, MEDIA_MANIFEST, image_config
from appc.schema.image import ImageManifest
from appc.store import ImageStore
from tests.aci_fixtures import (
    CORRUPT,
    Entry,
    compress,
    directory,
    hardlink,
    regular,
    symlink,
    tar_bytes,
)
from tests.store_fixtures import make_image

# --- helpers ----------------------------------------------------------------------------


def manifest_doc(name: str = "example.com/oci-test", **fields: Any) -> dict[str, Any]:
    """An image manifest with a full app section; *fields* replace top-level ones."""
    document: dict[str, Any] = {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": name,
        "labels": [
            {"name": "version", "value": "1.2.3"},
            {"name": "os", "value": "linux"},
            {"name": "arch", "value": "amd64"},
        ],
        "app": {
            "exec": ["/bin/server", "--port", "8080"],
            "user": "1000",
            "group": "1001",
            "environment": [
                {"name": "PATH", "value": "/bin:/usr/bin"},
                {"name": "GREETING", "value": "hello world"},
            ],
            "workingDirectory": "/srv",
            "ports": [
                {"name": "http", "protocol": "tcp", "port": 8080},
                {"name": "dns", "protocol": "udp", "port": 53},
                {"name": "range", "protocol": "tcp", "port": 9000, "count": 3},
            ],
            "mountPoints": [
                {"name": "data", "path": "/var/lib/data"},
                {"name": "conf", "path": "/etc/conf", "readOnly": True},
            ],
            "userLabels": {"team": "storage"},
        },
        "annotations": [
            {"name": "authors", "value": "appc developers"},
            {"name": "created", "value": "2024-05-06T07:08:09Z"},
            {"name": "homepage", "value": "https://example.com/"},
        ],
    }
    document.update(fields)
    return document


def with_labels(document: dict[str, Any], **labels: str) -> dict[str, Any]:
    """*document* with its labels replaced (``os``/``arch`` omitted when not given)."""
    return {**document, "labels": [{"name": k, "value": v} for k, v in labels.items()]}


#: Every kind of entry an ACI may hold, with the metadata the layer must keep.
RICH_ENTRIES = [
    directory("rootfs"),
    directory("rootfs/bin"),
    Entry("rootfs/bin/server", data=b"#!/bin/sh\necho server\n", mode=0o4755, uid=0, gid=0),
    directory("rootfs/srv", mode=0o750),
    Entry("rootfs/srv/owned", data=b"owned\n", mode=0o640, uid=1000, gid=1001),
    Entry(
        "rootfs/srv/attrs",
        data=b"attrs\n",
        pax={"SCHILY.xattr.user.note": "kept", "SCHILY.xattr.security.capability": "\x01"},
    ),
    hardlink("rootfs/srv/owned.link", "rootfs/srv/owned"),
    symlink("rootfs/srv/current", "owned"),
    symlink("rootfs/bin/sh", "/bin/busybox"),
    Entry("rootfs/srv/pipe", tarfile.FIFOTYPE, mode=0o600),
    Entry("rootfs/srv/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3),
    Entry("rootfs/srv/" + "long-" * 30, data=b"long\n", pax={"path": "rootfs/srv/" + "long-" * 30}),
    directory("rootfs/empty", mode=0o1777),
]


def write_aci(
    path: pathlib.Path, entries: Sequence[Entry], manifest: dict[str, Any] | None = None
) -> pathlib.Path:
    """A gzip ACI of *entries* followed by *manifest* (default :func:`manifest_doc`)."""
    document = manifest_doc() if manifest is None else manifest
    body = [*entries, regular("manifest", json.dumps(document).encode())]
    path.write_bytes(compress(tar_bytes(body), "gzip"))
    return path


def layer_members(image: OCIImage, index: int = -1) -> dict[str, tarfile.TarInfo]:
    """The entries of one layer of *image*, by name."""
    path = image.layers[index].path
    assert path is not None
    with tarfile.open(path, "r:gz") as tar:
        return {info.name: info for info in tar.getmembers()}


def layer_data(image: OCIImage, name: str, index: int = -1) -> bytes:
    path = image.layers[index].path
    assert path is not None
    with tarfile.open(path, "r:gz") as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read()


def config_of(image: OCIImage) -> dict[str, Any]:
    assert image.config.data is not None
    return json.loads(image.config.data)


def tree_of(aci: pathlib.Path | str) -> dict[str, tuple[Any, ...]]:
    """The rootfs of an ACI: name → (kind, mode, uid, gid, symlink target or sha256 of the
    data, xattrs); a hard link is described as the file it shares."""
    tree: dict[str, tuple[Any, ...]] = {}
    with tarfile.open(aci, "r:*") as tar:
        members = tar.getmembers()
        by_name = {m.name: m for m in members}
        for info in members:
            if not info.name.startswith("rootfs/"):
                continue
            source = by_name[info.linkname] if info.islnk() else info
            if source.isreg():
                member = tar.extractfile(source)
                assert member is not None
                detail: Any = hashlib.sha256(member.read()).hexdigest()
                kind = "file"
            elif source.issym():
                detail, kind = source.linkname, "symlink"
            elif source.isdir():
                detail, kind = "", "dir"
            else:
                detail, kind = (source.devmajor, source.devminor), source.type.decode()
            xattrs = {k: v for k, v in info.pax_headers.items() if k.startswith("SCHILY.xattr.")}
            mode = source.mode & 0o7777 if kind != "symlink" else 0o777
            tree[info.name[len("rootfs/") :]] = (kind, mode, source.uid, source.gid, detail, xattrs)
    return tree


def manifest_of(aci: pathlib.Path | str) -> ImageManifest:
    with tarfile.open(aci, "r:*") as tar:
        member = tar.extractfile("manifest")
        assert member is not None
        return ImageManifest.from_json(member.read())


def skopeo_inspect(target: str, *extra: str) -> dict[str, Any]:
    proc = subprocess.run(
        ["skopeo", "inspect", *extra, target],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def docker2aci(source: pathlib.Path, output: pathlib.Path, **platform: str) -> pathlib.Path:
    """Convert an OCI layout or archive with the library docker2aci uses; returns the ACI."""
    wanted = Platform(platform.get("os", "linux"), platform.get("arch", "amd64"))
    with open_archive_image(source, platform=wanted) as image:
        result = convert_image(image, str(output))
    assert len(result.paths) == 1
    return pathlib.Path(result.paths[0])


def actool(*args: str, cwd: pathlib.Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appc_tools.actool", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


# --- layers -----------------------------------------------------------------------------


def test_layer_keeps_every_entry_without_the_rootfs_prefix(tmp_path: pathlib.Path) -> None:
    aci = write_aci(tmp_path / "rich.aci", RICH_ENTRIES)
    image = oci_image_from_aci(aci, str(tmp_path))
    members = layer_members(image)
    expected = {e.name[len("rootfs/") :] for e in RICH_ENTRIES if e.name != "rootfs"}
    assert set(members) == expected  # no manifest, no rootfs entry, no rootfs/ prefix
    assert oct(members["bin/server"].mode) == oct(0o4755)
    assert (members["srv/owned"].uid, members["srv/owned"].gid) == (1000, 1001)
    assert oct(members["srv/owned"].mode) == oct(0o640)
    assert oct(members["srv"].mode) == oct(0o750)
    assert oct(members["empty"].mode) == oct(0o1777)
    assert members["srv/owned.link"].islnk()
    assert members["srv/owned.link"].linkname == "srv/owned"
    assert members["srv/current"].issym() and members["srv/current"].linkname == "owned"
    assert members["bin/sh"].linkname == "/bin/busybox"
    assert members["srv/pipe"].isfifo()
    assert members["srv/null"].ischr()
    assert (members["srv/null"].devmajor, members["srv/null"].devminor) == (1, 3)
    assert members["srv/attrs"].pax_headers["SCHILY.xattr.user.note"] == "kept"
    assert members["srv/attrs"].pax_headers["SCHILY.xattr.security.capability"] == "\x01"
    assert layer_data(image, "bin/server") == b"#!/bin/sh\necho server\n"
    assert layer_data(image, "srv/" + "long-" * 30) == b"long\n"
    # mtimes are the ACI's
    assert {m.mtime for m in members.values()} == {1_500_000_000}


def test_layer_digests_and_diff_ids(tmp_path: pathlib.Path) -> None:
    aci = write_aci(tmp_path / "rich.aci", RICH_ENTRIES)
    image = oci_image_from_aci(aci, str(tmp_path))
    layer = image.layers[0]
    assert layer.path is not None
    blob = pathlib.Path(layer.path).read_bytes()
    assert layer.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert layer.size == len(blob)
    assert layer.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest()
    assert config_of(image)["rootfs"] == {"type": "layers", "diff_ids": [diff_id]}
    manifest = json.loads(image.manifest.data or b"")
    assert manifest["mediaType"] == MEDIA_MANIFEST
    assert manifest["config"]["digest"] == image.config.digest
    assert manifest["layers"] == [layer.descriptor()]
    assert manifest["annotations"]["org.opencontainers.image.title"] == "example.com/oci-test"
    assert manifest["annotations"]["org.opencontainers.image.version"] == "1.2.3"
    # the same ACI gives the same image
    again = oci_image_from_aci(aci, str(tmp_path))
    assert again.manifest.digest == image.manifest.digest


def test_whitelist_drops_files_keeps_directories_and_carries_hard_links(
    tmp_path: pathlib.Path,
) -> None:
    entries = [
        directory("rootfs"),
        directory("rootfs/bin"),
        regular("rootfs/bin/kept", b"kept", 0o755),
        regular("rootfs/bin/dropped", b"dropped data", 0o700),
        hardlink("rootfs/bin/first-link", "rootfs/bin/dropped"),
        hardlink("rootfs/bin/second-link", "rootfs/bin/first-link"),
        hardlink("rootfs/bin/kept-link", "rootfs/bin/kept"),
        directory("rootfs/var"),
        directory("rootfs/var/empty"),
        symlink("rootfs/bin/gone", "kept"),
    ]
    whitelist = ["/bin/kept", "/bin/first-link", "/bin/second-link", "/bin/kept-link"]
    aci = write_aci(tmp_path / "w.aci", entries, manifest_doc(pathWhitelist=whitelist))
    image = oci_image_from_aci(aci, str(tmp_path))
    members = layer_members(image)
    assert set(members) == {
        "bin",
        "bin/kept",
        "bin/first-link",
        "bin/second-link",
        "bin/kept-link",
        "var",
        "var/empty",
    }
    # the dropped file's data is carried by the first kept link, the others point at it
    assert members["bin/first-link"].isreg()
    assert layer_data(image, "bin/first-link") == b"dropped data"
    assert oct(members["bin/first-link"].mode) == oct(0o700)
    assert members["bin/second-link"].linkname == "bin/first-link"
    assert members["bin/kept-link"].linkname == "bin/kept"
    # every hard link in the layer points at an earlier entry of the layer
    names = list(members)
    for info in members.values():
        if info.islnk():
            assert names.index(info.linkname) < names.index(info.name)


def test_whitelist_paths_are_cleaned(tmp_path: pathlib.Path) -> None:
    entries = [directory("rootfs"), directory("rootfs/a"), regular("rootfs/a/b", b"x")]
    aci = write_aci(tmp_path / "w.aci", entries, manifest_doc(pathWhitelist=["//a/./b"]))
    assert set(layer_members(oci_image_from_aci(aci, str(tmp_path)))) == {"a", "a/b"}


def test_whiteout_names_are_refused(tmp_path: pathlib.Path) -> None:
    entries = [directory("rootfs"), regular("rootfs/.wh.secret", b"")]
    aci = write_aci(tmp_path / "wh.aci", entries)
    (tmp_path / "work").mkdir()
    with pytest.raises(ImageError, match="whiteout"):
        oci_image_from_aci(aci, str(tmp_path / "work"))
    assert [p.name for p in (tmp_path / "work").iterdir()] == []  # no half-written layer


@pytest.mark.parametrize("case", CORRUPT[:20], ids=lambda c: c.id)
def test_invalid_acis_are_refused(tmp_path: pathlib.Path, case: Any) -> None:
    aci = tmp_path / "bad.aci"
    aci.write_bytes(case.make())
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(ImageError):
        oci_image_from_aci(aci, str(work))
    assert list(work.iterdir()) == []


# --- dependencies -----------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: pathlib.Path):
    with ImageStore(tmp_path / "data") as opened:
        yield opened


def test_dependencies_become_lower_layers(tmp_path: pathlib.Path, store: ImageStore) -> None:
    base = tmp_path / "base.aci"
    make_image(
        base,
        "example.com/base",
        [
            ("dir", "etc"),
            ("file", "etc/os-release", b"base\n"),
            ("file", "etc/shadowed", b"from base\n"),
            ("file", "etc/not-listed", b"filtered\n"),
            ("dir", "lib"),
            ("file", "lib/libc.so", b"libc", 0o755),
        ],
        labels={"version": "1"},
    )
    store.import_image(base)
    app = tmp_path / "app.aci"
    make_image(
        app,
        "example.com/app",
        [("dir", "etc"), ("file", "etc/shadowed", b"from app\n"), ("file", "app", b"app", 0o755)],
        dependencies=[
            {"imageName": "example.com/base", "labels": [{"name": "version", "value": "1"}]}
        ],
        whitelist=["/etc/os-release", "/etc/shadowed", "/lib/libc.so", "/app"],
    )
    image = oci_image_from_aci(app, str(tmp_path), store=store)
    assert len(image.layers) == 2
    lower, upper = layer_members(image, 0), layer_members(image, 1)
    assert set(lower) == {"etc", "etc/os-release", "etc/shadowed", "lib", "lib/libc.so"}
    assert set(upper) == {"etc", "etc/shadowed", "app"}
    assert layer_data(image, "etc/shadowed", 1) == b"from app\n"
    config = config_of(image)
    assert len(config["rootfs"]["diff_ids"]) == 2
    assert len(config["history"]) == 2
    assert all(h["created_by"] == HISTORY_CREATED_BY for h in config["history"])
    # the top image's manifest is the one carried
    assert json.loads(config["config"]["Labels"][MANIFEST_LABEL])["name"] == "example.com/app"
    assert config["config"]["Entrypoint"] == ["/bin/true"]


def test_diamond_dependencies(tmp_path: pathlib.Path, store: ImageStore) -> None:
    make_image(tmp_path / "d.aci", "example.com/d", [("file", "d", b"d")])
    store.import_image(tmp_path / "d.aci")
    for short in ("b", "c"):
        make_image(
            tmp_path / f"{short}.aci",
            f"example.com/{short}",
            [("file", short, short.encode())],
            dependencies=[{"imageName": "example.com/d"}],
        )
        store.import_image(tmp_path / f"{short}.aci")
    make_image(
        tmp_path / "a.aci",
        "example.com/a",
        [("file", "a", b"a")],
        dependencies=[{"imageName": "example.com/b"}, {"imageName": "example.com/c"}],
    )
    image = oci_image_from_aci(tmp_path / "a.aci", str(tmp_path), store=store)
    # rendering's list (top first, first wins) is A, C, D, B, D: bottom-up, as layers
    # where the upper wins, D B D C A (each D under the whitelists of its own branch)
    tops = [sorted(layer_members(image, i)) for i in range(len(image.layers))]
    assert tops == [["d"], ["b"], ["d"], ["c"], ["a"]]
    assert image.layers[0].digest == image.layers[2].digest


def test_dependencies_need_a_store(tmp_path: pathlib.Path, store: ImageStore) -> None:
    app = tmp_path / "app.aci"
    make_image(app, "example.com/app", [], dependencies=[{"imageName": "example.com/missing"}])
    with pytest.raises(ImageError, match="give a store that holds them"):
        oci_image_from_aci(app, str(tmp_path))
    with pytest.raises(StoreError, match=r"example\.com/missing"):
        oci_image_from_aci(app, str(tmp_path), store=store)


# --- config -----------------------------------------------------------------------------


def test_config_from_the_manifest(tmp_path: pathlib.Path) -> None:
    document = manifest_doc()
    aci = write_aci(tmp_path / "a.aci", [directory("rootfs")], document)
    config = config_of(oci_image_from_aci(aci, str(tmp_path)))
    assert config["os"] == "linux"
    assert config["architecture"] == "amd64"
    assert "variant" not in config
    assert config["created"] == "2024-05-06T07:08:09Z"
    run = config["config"]
    assert run["Entrypoint"] == ["/bin/server", "--port", "8080"]
    assert "Cmd" not in run
    assert run["Env"] == ["PATH=/bin:/usr/bin", "GREETING=hello world"]
    assert run["WorkingDir"] == "/srv"
    assert run["User"] == "1000:1001"
    assert run["ExposedPorts"] == {
        "8080/tcp": {},
        "53/udp": {},
        "9000/tcp": {},
        "9001/tcp": {},
        "9002/tcp": {},
    }
    assert run["Volumes"] == {"/var/lib/data": {}, "/etc/conf": {}}
    labels = run["Labels"]
    assert labels[f"{LABEL_PREFIX}version"] == "1.2.3"
    assert labels[f"{LABEL_PREFIX}os"] == "linux"
    assert labels[f"{LABEL_PREFIX}arch"] == "amd64"
    assert labels[f"{ANNOTATION_PREFIX}authors"] == "appc developers"
    assert labels[f"{ANNOTATION_PREFIX}homepage"] == "https://example.com/"
    assert labels["team"] == "storage"  # userLabels as they are
    carried = ImageManifest.from_json(labels[MANIFEST_LABEL])
    assert carried == ImageManifest.from_json(json.dumps(document))
    assert LABEL_PREFIX == "org.appc.label."
    assert ANNOTATION_PREFIX == "org.appc.annotation."
    assert MANIFEST_LABEL == "org.appc.manifest"


def test_config_without_app(tmp_path: pathlib.Path) -> None:
    document = manifest_doc()
    del document["app"]
    aci = write_aci(tmp_path / "a.aci", [directory("rootfs")], document)
    run = config_of(oci_image_from_aci(aci, str(tmp_path)))["config"]
    assert set(run) == {"Labels"}


@pytest.mark.parametrize(
    ("labels", "platform"),
    [
        ({"os": "linux", "arch": "amd64"}, {"os": "linux", "architecture": "amd64"}),
        (
            {"os": "linux", "arch": "aarch64"},
            {"os": "linux", "architecture": "arm64", "variant": "v8"},
        ),
        (
            {"os": "linux", "arch": "armv7l"},
            {"os": "linux", "architecture": "arm", "variant": "v7"},
        ),
        (
            {"os": "linux", "arch": "armv6l"},
            {"os": "linux", "architecture": "arm", "variant": "v6"},
        ),
        ({"os": "linux", "arch": "i386"}, {"os": "linux", "architecture": "386"}),
        ({"os": "linux", "arch": "ppc64le"}, {"os": "linux", "architecture": "ppc64le"}),
        ({"os": "linux", "arch": "s390x"}, {"os": "linux", "architecture": "s390x"}),
        ({"os": "freebsd", "arch": "amd64"}, {"os": "freebsd", "architecture": "amd64"}),
        ({"os": "darwin", "arch": "x86_64"}, {"os": "darwin", "architecture": "amd64"}),
        ({}, {"os": "linux", "architecture": "amd64"}),
        ({"arch": "aarch64"}, {"os": "linux", "architecture": "arm64", "variant": "v8"}),
    ],
    ids=lambda v: "/".join(v.values()) or "none",
)
def test_os_arch_to_oci_platform(
    tmp_path: pathlib.Path, labels: dict[str, str], platform: dict[str, str]
) -> None:
    aci = write_aci(
        tmp_path / "a.aci", [directory("rootfs")], with_labels(manifest_doc(), **labels)
    )
    image = oci_image_from_aci(aci, str(tmp_path))
    assert image.platform == platform
    config = config_of(image)
    assert {k: config[k] for k in platform} == platform


def test_os_arch_without_an_oci_name(tmp_path: pathlib.Path) -> None:
    aci = write_aci(
        tmp_path / "a.aci",
        [directory("rootfs")],
        with_labels(manifest_doc(), os="linux", arch="armv7b"),
    )
    with pytest.raises(ImageError, match="no OCI platform"):
        oci_image_from_aci(aci, str(tmp_path))


def test_image_config_function_matches_the_built_config(tmp_path: pathlib.Path) -> None:
    aci = write_aci(tmp_path / "a.aci", [directory("rootfs")])
    image = oci_image_from_aci(aci, str(tmp_path))
    config = config_of(image)
    manifest = ImageManifest.from_json(config["config"]["Labels"][MANIFEST_LABEL])
    rebuilt = image_config(manifest, config["rootfs"]["diff_ids"], created=config["created"])
    assert rebuilt == config


# --- index, layouts, archives -------------------------------------------------------------


def arch_aci(tmp_path: pathlib.Path, arch: str, name: str = "example.com/multi") -> pathlib.Path:
    entries = [directory("rootfs"), regular("rootfs/arch", arch.encode())]
    return write_aci(
        tmp_path / f"{arch}.aci",
        entries,
        with_labels(manifest_doc(name), version="1.0", os="linux", arch=arch),
    )


def test_index_of_several_platforms(tmp_path: pathlib.Path) -> None:
    images = [
        oci_image_from_aci(arch_aci(tmp_path, a), str(tmp_path)) for a in ("amd64", "aarch64")
    ]
    index = image_index(images)
    document = json.loads(index.data or b"")
    assert document["mediaType"] == MEDIA_INDEX
    assert [m["platform"] for m in document["manifests"]] == [
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm64", "variant": "v8"},
    ]
    assert [m["digest"] for m in document["manifests"]] == [i.manifest.digest for i in images]
    with pytest.raises(ImageError, match="two images for the platform linux/amd64"):
        image_index([images[0], images[0]])
    other = oci_image_from_aci(arch_aci(tmp_path, "armv7l", "example.com/other"), str(tmp_path))
    with pytest.raises(ImageError, match="the names differ"):
        image_index([images[0], other])


def test_layout_and_archive_read_by_skopeo_and_docker2aci(tmp_path: pathlib.Path) -> None:
    original = write_aci(tmp_path / "rich.aci", RICH_ENTRIES)
    image = oci_image_from_aci(original, str(tmp_path))
    layout, archive = tmp_path / "layout", tmp_path / "image.tar"
    assert write_oci([image], str(layout), tag="v1") == image.manifest.digest
    assert write_oci([image], str(archive), tag="v1", archive=True) == image.manifest.digest
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["annotations"] == {"org.opencontainers.image.ref.name": "v1"}
    for target in (f"oci:{layout}:v1", f"oci-archive:{archive}"):
        info = skopeo_inspect(target)
        assert info["Digest"] == image.manifest.digest
        assert info["Architecture"] == "amd64" and info["Os"] == "linux"
        assert info["Layers"] == [image.layers[0].digest]
        assert info["Labels"][f"{LABEL_PREFIX}version"] == "1.2.3"
        assert info["Env"] == ["PATH=/bin:/usr/bin", "GREETING=hello world"]
    for source in (layout, archive):
        out = tmp_path / f"out-{source.name}"
        aci = docker2aci(source, out)
        assert manifest_of(aci) == manifest_of(original)
        assert tree_of(aci) == tree_of(original)


def test_multi_arch_layout(tmp_path: pathlib.Path) -> None:
    acis = {a: arch_aci(tmp_path, a) for a in ("amd64", "aarch64")}
    images = [oci_image_from_aci(p, str(tmp_path)) for p in acis.values()]
    layout = tmp_path / "layout"
    digest = write_oci(images, str(layout))
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{layout}:latest"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == digest
    assert json.loads(raw)["mediaType"] == MEDIA_INDEX
    for arch, goarch in (("amd64", "amd64"), ("aarch64", "arm64")):
        info = skopeo_inspect(f"oci:{layout}:latest", f"--override-arch={goarch}")
        assert info["Architecture"] == goarch
        aci = docker2aci(layout, tmp_path / f"out-{arch}", arch=goarch)
        assert manifest_of(aci) == manifest_of(acis[arch])
        assert tree_of(aci) == tree_of(acis[arch])


def test_existing_targets_need_overwrite(tmp_path: pathlib.Path) -> None:
    image = oci_image_from_aci(arch_aci(tmp_path, "amd64"), str(tmp_path))
    write_oci([image], str(tmp_path / "layout"))
    write_oci([image], str(tmp_path / "image.tar"), archive=True)
    with pytest.raises(ImageError, match="exists"):
        write_oci([image], str(tmp_path / "layout"))
    with pytest.raises(ImageError, match="exists"):
        write_oci([image], str(tmp_path / "image.tar"), archive=True)
    write_oci([image], str(tmp_path / "layout"), overwrite=True)
    write_oci([image], str(tmp_path / "image.tar"), archive=True, overwrite=True)
    with pytest.raises(ImageError, match="no image"):
        write_oci([], str(tmp_path / "none"))


# --- the carried manifest -----------------------------------------------------------------


def _rewrite_config(layout: pathlib.Path, change: Any) -> None:
    """Change the config of the single image of *layout* with ``change(config)``."""
    blobs = layout / "blobs" / "sha256"
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"]
    manifest = json.loads((blobs / manifest_digest.split(":")[1]).read_text())
    config = json.loads((blobs / manifest["config"]["digest"].split(":")[1]).read_text())
    change(config)
    data = json.dumps(config).encode()
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    manifest["config"] = {**manifest["config"], "digest": f"sha256:{digest}", "size": len(data)}
    body = json.dumps(manifest).encode()
    (blobs / hashlib.sha256(body).hexdigest()).write_bytes(body)
    index["manifests"][0].update(
        digest="sha256:" + hashlib.sha256(body).hexdigest(), size=len(body)
    )
    (layout / "index.json").write_text(json.dumps(index))


def _derived_build(config: dict[str, Any]) -> None:
    config["history"].append({"created_by": '/bin/sh -c #(nop) CMD ["sh"]', "empty_layer": True})
    config["config"]["Cmd"] = ["sh"]


def _new_entrypoint(config: dict[str, Any]) -> None:
    config["config"]["Entrypoint"] = ["/bin/other"]


def _bad_label(config: dict[str, Any]) -> None:
    config["config"]["Labels"][MANIFEST_LABEL] = "{not a manifest"


@pytest.mark.parametrize("change", [_derived_build, _new_entrypoint, _bad_label])
def test_carried_manifest_only_for_the_image_as_pushed(tmp_path: pathlib.Path, change: Any) -> None:
    original = write_aci(tmp_path / "a.aci", [directory("rootfs"), regular("rootfs/f", b"f")])
    layout = tmp_path / "layout"
    write_oci([oci_image_from_aci(original, str(tmp_path))], str(layout))
    with open_archive_image(layout) as image:
        assert carried_manifest(image) == manifest_of(original)
    _rewrite_config(layout, change)
    with open_archive_image(layout) as image:
        assert carried_manifest(image) is None
    converted = manifest_of(docker2aci(layout, tmp_path / "out"))
    assert str(converted.name) != "example.com/oci-test"  # made from the config instead
    assert converted.app is not None
    assert list(converted.app.exec) != ["/bin/server", "--port", "8080"] or change is _bad_label


def test_carried_manifest_drops_dependencies_and_whitelist(
    tmp_path: pathlib.Path, store: ImageStore
) -> None:
    make_image(tmp_path / "base.aci", "example.com/base", [("file", "base", b"b")])
    store.import_image(tmp_path / "base.aci")
    app = tmp_path / "app.aci"
    make_image(
        app,
        "example.com/app",
        [("file", "app", b"a")],
        dependencies=[{"imageName": "example.com/base"}],
        whitelist=["/app", "/base"],
    )
    layout = tmp_path / "layout"
    write_oci([oci_image_from_aci(app, str(tmp_path), store=store)], str(layout))
    aci = docker2aci(layout, tmp_path / "out")
    manifest = manifest_of(aci)
    assert str(manifest.name) == "example.com/app"
    assert not manifest.dependencies and not manifest.path_whitelist
    assert set(tree_of(aci)) == {"app", "base"}  # squashed: the dependency's files too


# --- actool export-oci --------------------------------------------------------------------


def test_actool_export_oci(tmp_path: pathlib.Path) -> None:
    acis = [str(arch_aci(tmp_path, a)) for a in ("amd64", "aarch64")]
    proc = actool("export-oci", "-o", str(tmp_path / "layout"), *acis)
    assert proc.returncode == 0, proc.stderr
    digest = proc.stdout.strip()
    assert digest.startswith("sha256:")
    index = json.loads((tmp_path / "layout" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest
    proc = actool("export-oci", "-archive", "-tag=v2", "-o", str(tmp_path / "a.tar"), acis[0])
    assert proc.returncode == 0, proc.stderr
    assert skopeo_inspect(f"oci-archive:{tmp_path / 'a.tar'}")["Architecture"] == "amd64"


def test_actool_export_oci_bad_input(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.aci"
    bad.write_bytes(b"not an image at all")
    proc = actool("export-oci", "--archive", "-o", str(tmp_path / "a.tar"), str(bad))
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "unknown image filetype" in proc.stderr
    assert not (tmp_path / "a.tar").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.aci"]  # nothing half-written
    proc = actool("export-oci", "-o", str(tmp_path / "l"), str(tmp_path / "missing.aci"))
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    amd = str(arch_aci(tmp_path, "amd64"))
    proc = actool("export-oci", "-o", str(tmp_path / "l"), amd, amd)
    assert proc.returncode == 1
    assert "two images for the platform linux/amd64" in proc.stderr
    proc = actool("export-oci", "--compression-level=0", "-o", str(tmp_path / "l"), amd)
    assert proc.returncode == 2
    proc = actool("export-oci", amd)
    assert proc.returncode == 2  # -o is required


def test_archive_of_the_layout_is_a_plain_tar(tmp_path: pathlib.Path) -> None:
    image = oci_image_from_aci(arch_aci(tmp_path, "amd64"), str(tmp_path))
    archive = tmp_path / "a.tar"
    write_oci([image], str(archive), archive=True)
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    blobs = {f"blobs/sha256/{b.digest.split(':')[1]}" for b in [*image.blobs(), image.manifest]}
    assert {"oci-layout", "index.json"} | blobs <= names
    assert not any(n.endswith(".tmp") for n in os.listdir(tmp_path))


def test_actool_export_oci_with_dependencies_from_a_data_dir(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "rkt"
    make_image(tmp_path / "base.aci", "example.com/base", [("file", "base", b"b")])
    with ImageStore(data) as opened:
        opened.import_image(tmp_path / "base.aci")
    app = tmp_path / "app.aci"
    make_image(
        app,
        "example.com/app",
        [("file", "app", b"a")],
        dependencies=[{"imageName": "example.com/base"}],
    )
    proc = actool("export-oci", "-o", str(tmp_path / "layout"), str(app))
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "give a store that holds them (--dir)" in proc.stderr
    proc = actool("export-oci", f"--dir={data}", "-o", str(tmp_path / "layout"), str(app))
    assert proc.returncode == 0, proc.stderr
    assert len(skopeo_inspect(f"oci:{tmp_path / 'layout'}:latest")["Layers"]) == 2
