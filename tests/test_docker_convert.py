"""appc.docker.convert, manifest and nosquash: Docker/OCI images → ACIs, checked file by file.

Each builder image of ``tests/docker_images.py`` is pushed to the real registry, converted,
read back with :mod:`tarfile` and compared with the image's expected tree; the manifests are
compared with the reference notes §4; ``-nosquash`` output with §1, §4 and §5.
"""

from __future__ import annotations

import functools
import json
import pathlib
import tarfile
from collections.abc import Callable
from typing import Any

import pytest

from appc.aci.filetype import FileType, detect_path
from appc.aci.validate import validate_archive
from appc.docker.manifest import parse_user
from appc.errors import ImageError
from tests import docker_images as di
from tests.registry_fixtures import Registry, push
from tests.test_docker_common import (
    STDIO_FILES,
    check_files,
    convert_archive,
    convert_remote,
    dir_listing,
    read_aci,
)

BUILDERS: dict[str, Callable[[], di.TestImage]] = {
    "busybox": di.busybox_image,
    "whiteout": di.whiteout_image,
    "whiteout-mixed": functools.partial(di.whiteout_image, ("gzip", "zstd", "none", "gzip")),
    "full-config": di.full_config_image,
    "full-config-nginx": functools.partial(di.full_config_image, user="nginx"),
    "empty-config": di.empty_config_image,
    "no-config-key": functools.partial(di.empty_config_image, with_config_key=False),
    "multiarch-arm64": lambda: di.multiarch_images().for_arch("arm64"),
}


@functools.cache
def build(name: str) -> di.TestImage:
    return BUILDERS[name]()


@functools.cache
def _pushed(registry: Registry, name: str, fmt: di.ManifestFormat) -> tuple[str, str]:
    """Push a builder image once per session; return (reference, manifest digest)."""
    repo = f"conv/{name}"
    digest = push(registry, repo, fmt, build(name), fmt)
    return registry.ref(repo, fmt), digest


def annotations(manifest: dict[str, Any]) -> dict[str, str]:
    return {a["name"]: a["value"] for a in manifest.get("annotations", [])}


def labels(manifest: dict[str, Any]) -> dict[str, str]:
    return {a["name"]: a["value"] for a in manifest.get("labels", [])}


# --------------------------------------------------------------------------- squashed trees


@pytest.mark.parametrize("name", BUILDERS)
def test_squashed_tree_is_exactly_the_image(
    registry: Registry, tmp_path: pathlib.Path, name: str
) -> None:
    ref, _ = _pushed(registry, name, "schema2")
    result = convert_remote(ref, tmp_path)
    assert [pathlib.Path(p).name for p in result.paths] == [f"conv-{name}-schema2.aci"]
    report = validate_archive(result.paths[0])
    assert report.compression == FileType.GZIP
    aci = read_aci(result.paths[0])
    check_files(aci, build(name).files)
    assert aci.names[:2] == ["manifest", "rootfs"]
    assert aci.manifest == json.loads(report.manifest.to_json())
    assert result.manifest == report.manifest


@pytest.mark.parametrize("fmt", ["oci", "schema1"])
def test_squashed_tree_other_formats(
    registry: Registry, tmp_path: pathlib.Path, fmt: di.ManifestFormat
) -> None:
    for name in ("whiteout", "full-config"):
        ref, _ = _pushed(registry, name, fmt)
        result = convert_remote(ref, tmp_path / name)
        validate_archive(result.paths[0])
        check_files(read_aci(result.paths[0]), build(name).files)


def test_whiteouts_in_detail(registry: Registry, tmp_path: pathlib.Path) -> None:
    """The cases the original got wrong, spelled out (reference notes §5)."""
    ref, _ = _pushed(registry, "whiteout", "schema2")
    aci = read_aci(convert_remote(ref, tmp_path).paths[0])
    files = aci.files
    # file and directory whiteouts; a whited-out path re-added later
    assert "app/wh-target.txt" not in files and "bin/tool-link" not in files
    assert files["app/remove-me.txt"].data == b"back again\n"
    assert sorted(p for p in files if p.startswith("var/gone")) == ["var/gone", "var/gone/fresh"]
    # opaque directory: lower contents gone, this layer's files (before and after the marker) kept
    assert sorted(p for p in files if p.startswith("var/olddir")) == [
        "var/olddir",
        "var/olddir/new1",
        "var/olddir/new2",
    ]
    assert files["var/olddir"].mode == 0o700
    # cross-layer hard link kept, after its target
    assert files["app/xlink"].kind == "hardlink" and files["app/xlink"].target == "app/lower.txt"
    assert files["app/lower.txt"].position < files["app/xlink"].position
    # a link whose target was whited out: a regular file with the data
    assert files["app/linkB"].kind == "file"
    assert files["app/linkB"].data == b"whited-out link target\n"
    # '.' and './' entries are not copied; no whiteout marker survives
    assert not any(n in ("rootfs/.", "rootfs/./") or ".wh." in n for n in aci.names)
    assert files["app/new.txt"].uid == 1000


# --------------------------------------------------------------------------- manifests


def _full_manifest(
    registry: Registry,
    *,
    repo: str,
    tag: str,
    image: di.TestImage,
    digest: str,
    user: str,
    group: str,
) -> dict[str, Any]:
    host_port = registry.host.replace(":", "_")
    return {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": f"{host_port}/{repo}",
        "labels": [
            {"name": "arch", "value": "amd64"},
            {"name": "os", "value": "linux"},
            {"name": "version", "value": tag},
        ],
        "app": {
            "exec": ["/bin/sh", "-c", "/app/hello.sh"],
            "user": user,
            "group": group,
            "workingDirectory": "/app",
            "environment": [
                {"name": "PATH", "value": di.DEFAULT_PATH},
                {"name": "FOO", "value": "bar"},
                {"name": "EMPTY", "value": ""},
            ],
            "mountPoints": [
                {"name": "volume-data", "path": "/data"},
                {"name": "volume-var-cache-app", "path": "/var/cache/app"},
            ],
            "ports": [  # sorted by name; count 1 in the squashed image, as the original
                {
                    "name": "53-udp",
                    "protocol": "udp",
                    "port": 53,
                    "count": 1,
                    "socketActivated": False,
                },
                {
                    "name": "8080-tcp",
                    "protocol": "tcp",
                    "port": 8080,
                    "count": 1,
                    "socketActivated": False,
                },
                {
                    "name": "9000",
                    "protocol": "tcp",
                    "port": 9000,
                    "count": 1,
                    "socketActivated": False,
                },
            ],
            "userLabels": {"org.example.version": "1.0", "org.example.vendor": "appc tests"},
        },
        "annotations": [
            {"name": "author", "value": "appc tests <tests@example.com>"},
            {"name": "created", "value": "2020-09-13T12:26:40Z"},
            {"name": "appc.io/docker/originalname", "value": f"{registry.host}/{repo}:{tag}"},
            {"name": "appc.io/docker/registryurl", "value": registry.host},
            {"name": "appc.io/docker/repository", "value": repo},
            {"name": "appc.io/docker/imageid", "value": image.layers[-1].digest},
            {"name": "appc.io/docker/manifesthash", "value": digest},
            {"name": "appc.io/docker/entrypoint", "value": '["/bin/sh","-c"]'},
            {"name": "appc.io/docker/cmd", "value": '["/app/hello.sh"]'},
        ],
    }


@pytest.mark.skipif(di.host_platform()[1] != "amd64", reason="the expected labels say amd64")
@pytest.mark.parametrize(
    "case",
    [("full-config", "1000", "1000"), ("full-config-nginx", "nginx", "nginx")],
    ids=["uid-gid", "named-user"],
)
@pytest.mark.parametrize("fmt", ["schema2", "oci"])
def test_full_config_manifest(
    registry: Registry, tmp_path: pathlib.Path, case: tuple[str, str, str], fmt: di.ManifestFormat
) -> None:
    """Every field of notes §4; a named user gives user and group of that name (nginx/nginx)."""
    name, user, group = case
    ref, digest = _pushed(registry, name, fmt)
    manifest = read_aci(convert_remote(ref, tmp_path).paths[0]).manifest
    expected = _full_manifest(
        registry,
        repo=f"conv/{name}",
        tag=fmt,
        image=build(name),
        digest=digest,
        user=user,
        group=group,
    )
    assert manifest == expected


def test_full_config_manifest_schema1(registry: Registry, tmp_path: pathlib.Path) -> None:
    """V1-style annotations: ``authors``, the v1 ids, the tag (reference notes §4)."""
    ref, digest = _pushed(registry, "full-config", "schema1")
    manifest = read_aci(convert_remote(ref, tmp_path).paths[0]).manifest
    v1 = build("full-config").v1_layers()
    assert list(annotations(manifest).items()) == [
        ("authors", "appc tests <tests@example.com>"),
        ("created", "2020-09-13T12:26:40Z"),
        ("appc.io/docker/originalname", f"{registry.host}/conv/full-config:schema1"),
        ("appc.io/docker/registryurl", registry.host),
        ("appc.io/docker/repository", "conv/full-config"),
        ("appc.io/docker/imageid", v1[-1][0]),
        ("appc.io/docker/parentimageid", v1[-2][0]),
        ("appc.io/docker/manifesthash", digest),
        ("appc.io/docker/entrypoint", '["/bin/sh","-c"]'),
        ("appc.io/docker/cmd", '["/app/hello.sh"]'),
        ("appc.io/docker/tag", "schema1"),
    ]
    assert manifest["app"]["userLabels"] == {
        "org.example.version": "1.0",
        "org.example.vendor": "appc tests",
    }
    assert manifest["app"]["user"] == "1000"


def test_empty_config(registry: Registry, tmp_path: pathlib.Path) -> None:
    ref, _ = _pushed(registry, "empty-config", "schema2")
    manifest = read_aci(convert_remote(ref, tmp_path / "a").paths[0]).manifest
    assert manifest["app"] == {"user": "0", "group": "0"}  # no exec (the original wrote null)
    assert "appc.io/docker/entrypoint" not in annotations(manifest)
    ref, _ = _pushed(registry, "no-config-key", "schema2")
    manifest = read_aci(convert_remote(ref, tmp_path / "b").paths[0]).manifest
    assert "app" not in manifest


def test_arm64_labels(registry: Registry, tmp_path: pathlib.Path) -> None:
    ref, _ = _pushed(registry, "multiarch-arm64", "schema2")
    manifest = read_aci(convert_remote(ref, tmp_path).paths[0]).manifest
    assert labels(manifest) == {"os": "linux", "arch": "aarch64", "version": "schema2"}


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", ("0", "0")),
        ("1000:1000", ("1000", "1000")),
        ("nginx", ("nginx", "nginx")),
        ("0", ("0", "0")),
        ("a:b:c", ("a", "b")),
        ("www:staff", ("www", "staff")),
    ],
)
def test_user_rules(user: str, expected: tuple[str, str]) -> None:
    assert parse_user(user) == expected


@pytest.mark.parametrize(
    ("user", "message"), [("1000:", "group is required"), (":1000", "user is required")]
)
def test_user_rules_failing(user: str, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        parse_user(user)


def _layout(tmp_path: pathlib.Path, image: di.TestImage) -> pathlib.Path:
    return di.write_oci_layout(image, tmp_path / "layout", "v1")


@pytest.mark.parametrize(
    ("changes", "check"),
    [
        (
            {"ExposedPorts": {"8080/TCP": {}, "10000/tcp": {}, "80": {}, "80/tcp": {}}},
            lambda app: (
                [(p["name"], p["protocol"]) for p in app["ports"]]
                == [("10000-tcp", "tcp"), ("80", "tcp"), ("80-tcp", "tcp"), ("8080-tcp", "TCP")]
            ),
        ),
        (
            {"Volumes": {"/Data/": {}, "/data": {}, "/var/x": {}}},
            lambda app: (
                [(m["name"], m["path"]) for m in app["mountPoints"]]
                == [
                    ("volume-data", "/Data/"),
                    ("volume-data-1", "/data"),
                    ("volume-var-x", "/var/x"),
                ]
            ),
        ),
        (
            {"Env": ["A=1", "NOEQUALS", "B=x=y", "A=2", "C="]},
            lambda app: (
                app["environment"]
                == [
                    {"name": "A", "value": "2"},
                    {"name": "B", "value": "x=y"},
                    {"name": "C", "value": ""},
                ]
            ),
        ),
        ({"Entrypoint": ["/bin/echo"]}, lambda app: app["exec"] == ["/bin/echo"]),
        ({"Cmd": ["sh"]}, lambda app: app["exec"] == ["sh"]),
    ],
)
def test_config_rules(
    tmp_path: pathlib.Path, changes: dict[str, Any], check: Callable[[dict[str, Any]], bool]
) -> None:
    image = build("empty-config").with_config(config=changes)
    result = convert_archive(_layout(tmp_path, image), tmp_path / "out")
    assert check(read_aci(result.paths[0]).manifest["app"])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ExposedPorts": {"8000-8010/tcp": {}}}, "only single ports"),
        ({"ExposedPorts": {"70000/tcp": {}}}, "out of range"),
        ({"ExposedPorts": {"http": {}}}, "only single ports"),
        ({"User": "1000:"}, "group is required"),
        ({"Env": ["=x"]}, "cannot convert the image config"),
    ],
)
def test_config_rules_failing(
    tmp_path: pathlib.Path, changes: dict[str, Any], message: str
) -> None:
    image = build("empty-config").with_config(config=changes)
    with pytest.raises(ImageError, match=message):
        convert_archive(_layout(tmp_path, image), tmp_path / "out")
    assert dir_listing(tmp_path / "out") == []


def test_platform_labels_from_the_image(tmp_path: pathlib.Path) -> None:
    """The image's own os/arch decide the labels; an unmappable pair leaves them out (the
    original claimed the converting host's platform)."""
    cases = [
        (
            {"os": "linux", "architecture": "arm", "variant": "v7"},
            {"os": "linux", "arch": "armv7l"},
        ),
        ({"os": "linux", "architecture": "386"}, {"os": "linux", "arch": "i386"}),
        ({"os": "windows", "architecture": "amd64"}, {}),
        ({"os": "", "architecture": ""}, {}),
    ]
    for i, (platform, expected) in enumerate(cases):
        image = build("empty-config").with_config(**platform)
        result = convert_archive(_layout(tmp_path / str(i), image), tmp_path / str(i) / "out")
        found = labels(read_aci(result.paths[0]).manifest)
        found.pop("version")
        assert found == expected, platform


# --------------------------------------------------------------------------- odd layers


def _image_of(*layers: list[di.TarEntry], config: dict[str, Any] | None = None) -> di.TestImage:
    return di._image(
        "library/odd", config or {}, [di.make_layer(entries) for entries in layers], {}
    )


def _convert_layers(
    tmp_path: pathlib.Path, *layers: list[di.TarEntry], squash: bool = True
) -> pathlib.Path:
    result = convert_archive(_layout(tmp_path, _image_of(*layers)), tmp_path / "out", squash=squash)
    return pathlib.Path(result.paths[-1])


F, D, L, S = (
    functools.partial(di.TarEntry, kind="file"),
    functools.partial(di.TarEntry, kind="dir"),
    functools.partial(di.TarEntry, kind="hardlink"),
    functools.partial(di.TarEntry, kind="symlink"),
)


@pytest.mark.parametrize("order", ["whiteout-first", "whiteout-last"])
def test_directory_whiteout_and_new_files_in_one_layer(tmp_path: pathlib.Path, order: str) -> None:
    """A whiteout hides the layers below only: files the same layer puts under the
    whited-out directory stay, and so does their directory."""
    new = [F("d/new", data=b"new\n")]
    whiteout = [F(".wh.d")]
    upper = whiteout + new if order == "whiteout-first" else new + whiteout
    aci = read_aci(
        _convert_layers(tmp_path, [D("d/", mode=0o700), F("d/old", data=b"old\n")], upper)
    )
    assert sorted(p for p in aci.files if not p.startswith("dev")) == ["d", "d/new"]
    assert (aci.files["d"].kind, aci.files["d"].mode) == ("dir", 0o755)
    assert aci.files["d"].position < aci.files["d/new"].position


def test_replacing_kinds(tmp_path: pathlib.Path) -> None:
    """A file over a directory removes its contents; a directory over a file replaces it;
    an upper directory's metadata wins."""
    aci = read_aci(
        _convert_layers(
            tmp_path,
            [
                D("a/"),
                F("a/x", data=b"x"),
                F("b", data=b"file"),
                D("c/", mode=0o755),
                F("c/keep", data=b"k"),
            ],
            [F("a", data=b"now a file"), D("b/"), F("b/y", data=b"y"), D("c/", mode=0o711)],
        )
    )
    files = aci.files
    assert files["a"].kind == "file" and "a/x" not in files
    assert files["b"].kind == "dir" and files["b/y"].data == b"y"
    assert files["c"].mode == 0o711 and files["c/keep"].data == b"k"


def test_long_names_links_and_xattrs(tmp_path: pathlib.Path) -> None:
    long_dir = "d" * 90
    long_name = f"{long_dir}/{'f' * 120}"
    layer = di.make_tar(
        [
            D(f"{long_dir}/"),
            F(long_name, data=b"long"),
            L(f"{long_dir}/link", target=long_name),
            S("sym", target="/" + "t" * 150),
        ]
    )
    # add an xattr to the long-named file with a PAX header
    with tarfile.open(fileobj=__import__("io").BytesIO(layer)) as tar:
        members = tar.getmembers()
        contents = {m.name: tar.extractfile(m).read() for m in members if m.isreg()}  # type: ignore[union-attr]
    members[1].pax_headers = {"SCHILY.xattr.user.appc": "yes"}
    buf = __import__("io").BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            tar.addfile(m, __import__("io").BytesIO(contents[m.name]) if m.isreg() else None)
    image = di._image("library/odd", {}, [di.Layer.from_tar(buf.getvalue())], {})
    result = convert_archive(_layout(tmp_path, image), tmp_path / "out")
    validate_archive(result.paths[0])
    aci = read_aci(result.paths[0])
    assert aci.files[long_name].data == b"long"
    assert aci.files[f"{long_dir}/link"].target == long_name
    assert aci.files["sym"].target == "/" + "t" * 150
    with tarfile.open(result.paths[0]) as tar:
        assert (
            tar.getmember(f"rootfs/{long_name}").pax_headers.get("SCHILY.xattr.user.appc") == "yes"
        )


@pytest.mark.parametrize("squash", [True, False])
@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ([[F("../escape", data=b"x")]], "climbs out of the image root"),
        ([[F("a/../../escape", data=b"x")]], "climbs out of the image root"),
        ([[F("dev", data=b"not a dir")]], "/dev exists in the image but is not a directory"),
        ([[F("a", data=b"x"), L("b", target="../a")]], "climbs out of the image root"),
    ],
)
def test_bad_layers(
    tmp_path: pathlib.Path, layers: list[list[di.TarEntry]], message: str, squash: bool
) -> None:
    with pytest.raises(ImageError, match=message):
        _convert_layers(tmp_path, *layers, squash=squash)
    assert dir_listing(tmp_path / "out") == []


def test_hard_link_to_a_missing_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ImageError, match="hard link 'b' to missing file 'nowhere'"):
        _convert_layers(tmp_path, [L("b", target="nowhere")])


def test_duplicate_entry_in_a_layer(tmp_path: pathlib.Path) -> None:
    """Squashing keeps the last copy; -nosquash refuses the layer, as the original."""
    layers = [[F("a", data=b"1"), F("a", data=b"2")]]
    assert read_aci(_convert_layers(tmp_path / "s", *layers)).files["a"].data == b"2"
    with pytest.raises(ImageError, match="duplicate file entry in layer: 'a'"):
        _convert_layers(tmp_path / "n", *layers, squash=False)


def test_image_with_dev_entries(tmp_path: pathlib.Path) -> None:
    """An image that has /dev/stdout itself keeps it; the other stdio links are added."""
    aci = read_aci(
        _convert_layers(tmp_path, [D("dev/", mode=0o700), S("dev/stdout", target="/mine")])
    )
    assert aci.files["dev"].mode == 0o700
    assert aci.files["dev/stdout"].target == "/mine"
    assert aci.files["dev/stdin"].target == "/proc/self/fd/0"


def test_image_without_layers(tmp_path: pathlib.Path) -> None:
    """Squashed: just the stdio links; -nosquash: a clear error, nothing written."""
    aci = read_aci(_convert_layers(tmp_path / "s"))
    assert sorted(aci.files) == sorted(STDIO_FILES)
    with pytest.raises(ImageError, match="the image has no layers"):
        _convert_layers(tmp_path / "n", squash=False)
    assert dir_listing(tmp_path / "n" / "out") == []


def test_compression_none_and_determinism(registry: Registry, tmp_path: pathlib.Path) -> None:
    ref, _ = _pushed(registry, "whiteout", "schema2")
    first = convert_remote(ref, tmp_path / "a", compression="none").paths[0]
    second = convert_remote(ref, tmp_path / "b", compression="none").paths[0]
    assert detect_path(first) == FileType.TAR
    assert pathlib.Path(first).read_bytes() == pathlib.Path(second).read_bytes()
    gz = convert_remote(ref, tmp_path / "c").paths[0]
    assert validate_archive(gz).image_id == validate_archive(first).image_id


# --------------------------------------------------------------------------- -nosquash


def _render(layer_acis: list[pathlib.Path]) -> dict[str, Any]:
    """What rkt would render: the top image's whitelist, each path from the topmost layer
    having it."""
    acis = [read_aci(p) for p in layer_acis]
    whitelist = acis[-1].manifest["pathWhitelist"]
    tree = {}
    for path in whitelist:
        rel = path.lstrip("/")
        tree[rel] = next(a.files[rel] for a in reversed(acis) if rel in a.files)
    return tree


@pytest.mark.parametrize("fmt", ["schema2", "oci"])
def test_nosquash_v22(registry: Registry, tmp_path: pathlib.Path, fmt: di.ManifestFormat) -> None:
    image = build("whiteout")
    ref, digest = _pushed(registry, "whiteout", fmt)
    result = convert_remote(ref, tmp_path, squash=False)
    digests = [layer.digest for layer in image.layers]
    base = f"{registry.host}/conv/whiteout"
    expected = [f"{base}-{d.replace(':', '-')}-{fmt}-linux-amd64.aci" for d in digests[:-1]]
    expected.append(f"{base}-{digests[-1]}-{fmt}-linux-amd64.aci")  # the top keeps its colon
    assert [str(pathlib.Path(p).relative_to(tmp_path)) for p in result.paths] == expected
    assert dir_listing(tmp_path) == sorted([registry.host, f"{registry.host}/conv", *expected])
    manifests = [validate_archive(p).manifest for p in result.paths]
    docs = [json.loads(m.to_json()) for m in manifests]
    host_port = registry.host.replace(":", "_")
    names = [f"{host_port}/conv/whiteout-{d.replace(':', '_')}" for d in digests]
    platform = [{"name": "arch", "value": "amd64"}, {"name": "os", "value": "linux"}]
    for doc, name in zip(docs[:-1], names, strict=False):
        assert set(doc) == {"acKind", "acVersion", "name", "labels", "pathWhitelist"}
        assert doc["name"] == name and doc["labels"] == platform
    top = docs[-1]
    assert top["name"] == names[-1]
    assert top["dependencies"] == [{"imageName": n, "labels": platform} for n in names[:-1]]
    assert labels(top) == {"os": "linux", "arch": "amd64", "version": fmt}
    assert top["app"]["exec"] == ["/bin/tool"]
    assert annotations(top)["appc.io/docker/manifesthash"] == digest
    # whitelists are cumulative and apply whiteouts (and, deliberately, the opaque marker)
    stdio = ["/dev/stdin", "/dev/stdout", "/dev/stderr", "/dev/fd"]
    assert top["pathWhitelist"] == sorted("/" + p for p in image.files) + stdio
    assert "/var/olddir/keep1" in docs[0]["pathWhitelist"]
    assert "/var/olddir/keep1" not in docs[2]["pathWhitelist"]
    assert "/app/wh-target.txt" in docs[0]["pathWhitelist"]
    assert "/app/wh-target.txt" not in docs[1]["pathWhitelist"]
    # each layer holds its own entries only; the cross-layer link points into a dependency
    layer2 = read_aci(result.paths[2])
    assert layer2.files["app/xlink"].kind == "hardlink" and "app/lower.txt" not in layer2.files
    assert not any(".wh." in n for p in result.paths for n in read_aci(p).names)
    rendered = _render([pathlib.Path(p) for p in result.paths])
    assert sorted(rendered) == sorted([*image.files, *(s.lstrip("/") for s in stdio)])
    for path, spec in image.files.items():
        if spec.kind == "file" and rendered[path].kind == "file":
            assert rendered[path].data == spec.data, path


def test_nosquash_schema1(registry: Registry, tmp_path: pathlib.Path) -> None:
    image = build("whiteout")
    ref, _ = _pushed(registry, "whiteout", "schema1")
    result = convert_remote(ref, tmp_path, squash=False)
    assert [pathlib.Path(p).name for p in result.paths] == [
        "conv-whiteout-schema1-3.aci",
        "conv-whiteout-schema1-2.aci",
        "conv-whiteout-schema1-1.aci",
        "conv-whiteout-schema1-linux-amd64-0.aci",
    ]
    host_port = registry.host.replace(":", "_")
    v1 = image.v1_layers()
    docs = [json.loads(validate_archive(p).manifest.to_json()) for p in result.paths]
    for index, (doc, (layer_id, _)) in enumerate(zip(docs, v1, strict=True)):
        assert doc["name"] == f"{host_port}/conv/whiteout-{layer_id}"
        own = labels(doc)
        assert own["layer"] == layer_id and own["version"] == "schema1"
        assert ("arch" in own) == (index == 3)
        if index == 0:
            assert "dependencies" not in doc
        else:  # the parent's own labels (the original copied the child's)
            assert doc["dependencies"] == [
                {"imageName": docs[index - 1]["name"], "labels": docs[index - 1]["labels"]}
            ]
        notes = annotations(doc)
        assert notes["appc.io/docker/imageid"] == layer_id
        assert ("appc.io/docker/tag" in notes) == (index > 0)
    assert docs[-1]["pathWhitelist"][:-4] == sorted("/" + p for p in image.files)
    assert "app" not in docs[0] and docs[-1]["app"]["exec"] == ["/bin/tool"]


def test_nosquash_from_an_archive(tmp_path: pathlib.Path) -> None:
    """Without a registry the nested names start at the repository (no host directory)."""
    image = build("busybox")
    layout = di.write_oci_layout(image, tmp_path / "busybox", "v1")
    result = convert_archive(layout, tmp_path / "out", squash=False)
    (only,) = result.paths
    assert pathlib.Path(only).relative_to(tmp_path / "out") == pathlib.Path(
        f"busybox-{image.layers[0].digest}-v1-linux-amd64.aci"
    )
    aci = read_aci(only)
    assert set(aci.files) == set(image.files) | (set(STDIO_FILES) - {"dev"})  # no /dev entry
    assert aci.files["bin/busybox"].data == image.files["bin/busybox"].data
