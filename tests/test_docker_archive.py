"""appc.docker.archive: ``docker save`` files, OCI layouts and oci-archives → ACIs.

Archives are written by ``tests/docker_images.py`` and, as an independent writer, by skopeo.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import pathlib
import shutil
import tarfile
from typing import Any

import pytest
import zstandard

from appc.aci.validate import validate_archive
from appc.docker.image import Platform
from appc.errors import AppcError, ImageError
from tests import docker_images as di
from tests.registry_fixtures import skopeo_copy
from tests.test_docker_common import check_files, convert_archive, dir_listing, read_aci


@functools.cache
def whiteout() -> di.TestImage:
    return di.whiteout_image()


@functools.cache
def busybox() -> di.TestImage:
    return di.busybox_image()


@functools.cache
def full() -> di.TestImage:
    return di.full_config_image()


def annotations(manifest: dict[str, Any]) -> dict[str, str]:
    return {a["name"]: a["value"] for a in manifest.get("annotations", [])}


def labels(manifest: dict[str, Any]) -> dict[str, str]:
    return {a["name"]: a["value"] for a in manifest.get("labels", [])}


def _convert(path: pathlib.Path, out: pathlib.Path, **kw: Any) -> tuple[str, Any]:
    result = convert_archive(path, out, **kw)
    (aci,) = result.paths
    validate_archive(aci)
    return pathlib.Path(aci).name, read_aci(aci)


# --------------------------------------------------------------------------- docker save


@pytest.mark.parametrize("symlinks", [False, True], ids=["files", "symlinked-layers"])
@pytest.mark.parametrize("layout", ["repositories", "manifest.json", "both"])
def test_docker_save_layouts(tmp_path: pathlib.Path, layout: Any, symlinks: bool) -> None:
    """Both index files, with layers stored as files or (skopeo's way) as symlinks; the
    original read symlinked layers as empty and never read manifest.json."""
    image = full()
    path = di.write_docker_save(
        image, tmp_path / "save.tar", layout=layout, symlink_layers=symlinks
    )
    name, aci = _convert(path, tmp_path / "out")
    assert name == "library-fullconfig-latest.aci"
    check_files(aci, image.files)
    manifest = aci.manifest
    assert manifest["name"] == "library/fullconfig"  # no registry without --image
    assert labels(manifest) == {"version": "latest", "os": "linux", "arch": di.host_platform()[1]}
    notes = annotations(manifest)
    assert "appc.io/docker/registryurl" not in notes and "appc.io/docker/originalname" not in notes
    assert notes["appc.io/docker/repository"] == "library/fullconfig"
    assert manifest["app"]["exec"] == ["/bin/sh", "-c", "/app/hello.sh"]
    assert manifest["app"]["userLabels"] == {
        "org.example.version": "1.0",
        "org.example.vendor": "appc tests",
    }
    if layout == "manifest.json":  # V22 style: the config's digest, the top layer's diff id
        assert notes["author"] == "appc tests <tests@example.com>"
        assert notes["appc.io/docker/manifesthash"] == image.config_digest
        assert notes["appc.io/docker/imageid"] == image.layers[-1].diff_id
    else:  # the classic layout, V1 style as the original
        v1 = image.v1_layers()
        assert notes["authors"] == "appc tests <tests@example.com>"
        assert notes["appc.io/docker/manifesthash"] == v1[-1][0]
        assert notes["appc.io/docker/imageid"] == v1[-1][0]
        assert notes["appc.io/docker/parentimageid"] == v1[-2][0]
        assert notes["appc.io/docker/tag"] == "latest"


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_compressed_docker_save(tmp_path: pathlib.Path, compression: str) -> None:
    plain = di.write_docker_save(whiteout(), tmp_path / "save.tar")
    packed = tmp_path / f"save.tar.{compression}"
    data = plain.read_bytes()
    packed.write_bytes(gzip.compress(data) if compression == "gzip" else zstandard.compress(data))
    _, aci = _convert(packed, tmp_path / "out")
    check_files(aci, whiteout().files)


@pytest.mark.parametrize("layout", ["repositories", "manifest.json"])
def test_empty_layers(tmp_path: pathlib.Path, layout: Any) -> None:
    """``docker save`` writes a layer without files as a tar of zero blocks only (the
    original read any unrecognised blob as empty); an empty file is an empty layer too."""
    base = busybox()
    empty_tar = di.make_layer([], "none")
    assert not empty_tar.tar_bytes().strip(b"\0")
    image = di._image("library/empties", {"Cmd": ["sh"]}, [base.layers[0], empty_tar], base.files)
    path = di.write_docker_save(image, tmp_path / "save.tar", layout=layout)
    _, aci = _convert(path, tmp_path / "out")
    check_files(aci, base.files)


SAVED = {
    "example.com/test/whiteouts:v1": "whiteout",
    "example.com/test/whiteouts:also": "whiteout",
    "library/busybox:latest": "busybox",
}


@pytest.fixture(scope="module")
def several(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    """docker save files holding three tags of two images, in each layout."""
    images = {
        ref: {"whiteout": whiteout, "busybox": busybox}[name]() for ref, name in SAVED.items()
    }
    root = tmp_path_factory.mktemp("several")
    return {
        layout: di.write_docker_save(images, root / f"{layout}.tar", layout=layout)  # type: ignore[arg-type]
        for layout in ("repositories", "manifest.json")
    }


@pytest.mark.parametrize("layout", ["repositories", "manifest.json"])
@pytest.mark.parametrize(
    ("wanted", "image", "file_name"),
    [
        ("example.com/test/whiteouts:v1", "whiteout", "test-whiteouts-v1.aci"),
        ("test/whiteouts:also", "whiteout", "test-whiteouts-also.aci"),
        ("busybox", "busybox", "library-busybox-latest.aci"),
        ("library/busybox:latest", "busybox", "library-busybox-latest.aci"),
    ],
)
def test_image_option_chooses(
    several: dict[str, pathlib.Path],
    tmp_path: pathlib.Path,
    layout: str,
    wanted: str,
    image: str,
    file_name: str,
) -> None:
    name, aci = _convert(several[layout], tmp_path, image=wanted)
    assert name == file_name
    check_files(aci, {"whiteout": whiteout, "busybox": busybox}[image]().files)
    notes = annotations(aci.manifest)
    assert notes["appc.io/docker/originalname"] == wanted  # with --image, as the original


@pytest.mark.parametrize("layout", ["repositories", "manifest.json"])
def test_several_images_need_the_option(
    several: dict[str, pathlib.Path], tmp_path: pathlib.Path, layout: str
) -> None:
    with pytest.raises(ImageError) as info:
        convert_archive(several[layout], tmp_path)
    message = str(info.value)
    assert "several images found, use option --image with one of: " in message
    for ref in ("test/whiteouts", "library/busybox"):
        assert ref in message
    for wanted in ("library/nothere", "busybox:nope", "test/whiteouts:latest"):
        with pytest.raises(ImageError, match="not found"):
            convert_archive(several[layout], tmp_path, image=wanted)
    assert dir_listing(tmp_path) == []


def test_single_tag_is_used_quietly(tmp_path: pathlib.Path) -> None:
    """Without --image, a repository with one tag other than latest is used (the original's rule)."""
    path = di.write_docker_save(
        {"library/busybox:1.0": busybox()}, tmp_path / "save.tar", layout="repositories"
    )
    name, _ = _convert(path, tmp_path / "out")
    assert name == "library-busybox-1.0.aci"


def test_skopeo_docker_archive(tmp_path: pathlib.Path) -> None:
    """A docker-archive written by skopeo (symlinked layers, both index files)."""
    layout = di.write_oci_layout(whiteout(), tmp_path / "layout", "v1")
    archive = tmp_path / "skopeo.tar"
    skopeo_copy(f"oci:{layout}:v1", f"docker-archive:{archive}:example.com/test/whiteouts:v1")
    with tarfile.open(archive) as tar:
        assert any(m.issym() and m.name.endswith("/layer.tar") for m in tar)
    name, aci = _convert(archive, tmp_path / "out")
    assert name == "test-whiteouts-v1.aci"
    check_files(aci, whiteout().files)


def test_nosquash_classic_docker_save(tmp_path: pathlib.Path) -> None:
    """V1-style layer ACIs from a file: ``<repo>-<tag>[-os-arch]-<n>.aci``, base first."""
    image = whiteout()
    path = di.write_docker_save(image, tmp_path / "save.tar", layout="repositories")
    result = convert_archive(path, tmp_path / "out", squash=False)
    arch = di.host_platform()[1]
    assert [pathlib.Path(p).name for p in result.paths] == [
        "library-whiteouts-latest-3.aci",
        "library-whiteouts-latest-2.aci",
        "library-whiteouts-latest-1.aci",
        f"library-whiteouts-latest-linux-{arch}-0.aci",
    ]
    v1 = image.v1_layers()
    docs = [json.loads(validate_archive(p).manifest.to_json()) for p in result.paths]
    assert [d["name"] for d in docs] == [f"library/whiteouts-{layer_id}" for layer_id, _ in v1]
    assert docs[-1]["dependencies"][0]["imageName"] == docs[-2]["name"]
    assert docs[-1]["pathWhitelist"][:-4] == sorted("/" + p for p in image.files)


# --------------------------------------------------------------------------- OCI layouts


def test_oci_layout_directory(tmp_path: pathlib.Path) -> None:
    image = full()
    layout = di.write_oci_layout(image, tmp_path / "myimage", "v1")
    name, aci = _convert(layout, tmp_path / "out")
    assert name == "myimage-v1.aci"  # the directory's name and the ref name
    check_files(aci, image.files)
    assert aci.manifest["name"] == "myimage"
    assert labels(aci.manifest)["version"] == "v1"
    assert annotations(aci.manifest)["appc.io/docker/manifesthash"] == image.config_digest


def test_oci_archive(tmp_path: pathlib.Path) -> None:
    """An oci-archive whose layers are gzip, zstd, plain tar and gzip."""
    image = di.whiteout_image(("gzip", "zstd", "none", "gzip"))
    archive = di.write_oci_archive(image, tmp_path / "whiteouts.oci.tar", "v2")
    name, aci = _convert(archive, tmp_path / "out")
    assert name == "whiteouts-v2.aci"  # the file name up to its first dot
    check_files(aci, image.files)


def test_skopeo_oci_archive_with_a_full_ref_name(tmp_path: pathlib.Path) -> None:
    """skopeo writes ``org.opencontainers.image.ref.name`` as a whole reference."""
    layout = di.write_oci_layout(whiteout(), tmp_path / "layout", "v1")
    archive = tmp_path / "skopeo.tar"
    skopeo_copy(f"oci:{layout}:v1", f"oci-archive:{archive}:docker.io/library/whiteouts:v1")
    name, aci = _convert(archive, tmp_path / "out")
    assert name == "library-whiteouts-v1.aci"
    assert aci.manifest["name"] == "library/whiteouts"
    assert labels(aci.manifest)["version"] == "v1"
    check_files(aci, whiteout().files)
    name, _ = _convert(archive, tmp_path / "out2", image="whiteouts:v1")
    assert name == "library-whiteouts-v1.aci"


def test_oci_layout_with_several_tags(tmp_path: pathlib.Path) -> None:
    layout = di.write_oci_layout(
        {"latest": busybox(), "v1": whiteout(), "multi": di.multiarch_images()}, tmp_path / "repo"
    )
    with pytest.raises(
        ImageError, match="several images found, use option --image with one of: latest, v1, multi"
    ):
        convert_archive(layout, tmp_path / "out")
    name, aci = _convert(layout, tmp_path / "out", image="v1")
    assert name == "repo-v1.aci"
    check_files(aci, whiteout().files)
    name, aci = _convert(layout, tmp_path / "out", image="latest")
    assert name == "repo-latest.aci"
    check_files(aci, busybox().files)
    # a multi-platform index inside the layout: linux/amd64 by default, or the platform asked for
    _, aci = _convert(layout, tmp_path / "amd64", image="multi")
    assert aci.files["etc/arch"].data == b"amd64\n"
    _, aci = _convert(
        layout, tmp_path / "arm64", image="multi", platform=Platform("linux", "arm64")
    )
    assert aci.files["etc/arch"].data == b"arm64\n"
    assert labels(aci.manifest)["arch"] == "aarch64"
    with pytest.raises(
        AppcError, match=r"no image for linux/s390x .*available: linux/amd64, linux/arm64/v8"
    ):
        convert_archive(
            layout, tmp_path / "none", image="multi", platform=Platform("linux", "s390x")
        )
    layout = di.write_oci_layout({"V1": busybox()}, tmp_path / "repo")  # a tag with a capital
    name, _ = _convert(layout, tmp_path / "caps", image="V1")
    assert name == "repo-V1.aci"
    with pytest.raises(ImageError, match="'nope' not found"):
        convert_archive(layout, tmp_path / "none", image="nope")


def test_oci_index_json_listing_platforms(tmp_path: pathlib.Path) -> None:
    """An index.json that lists one image's platforms directly (no ref names)."""
    multi = di.multiarch_images()
    layout = di.write_oci_layout(multi, tmp_path / "plat")
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text())
    inner = json.loads(
        (layout / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]).read_text()
    )
    index_path.write_text(json.dumps({"schemaVersion": 2, "manifests": inner["manifests"]}))
    _, aci = _convert(layout, tmp_path / "amd64")
    assert aci.files["etc/arch"].data == b"amd64\n"
    _, aci = _convert(layout, tmp_path / "arm64", platform=Platform("linux", "arm64"))
    assert aci.files["etc/arch"].data == b"arm64\n"


def test_oci_blob_digests_are_checked(tmp_path: pathlib.Path) -> None:
    image = whiteout()
    layout = di.write_oci_layout(image, tmp_path / "layout", "v1")
    blob = layout / "blobs/sha256" / image.layers[1].digest.split(":")[1]
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[-12] ^= 1
    blob.write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"does not match its digest|corrupt"):
        convert_archive(layout, tmp_path / "out")
    assert dir_listing(tmp_path / "out") == []
    config = layout / "blobs/sha256" / image.config_digest.split(":")[1]
    config.write_bytes(config.read_bytes() + b" ")
    with pytest.raises(ImageError, match=f"blob {image.config_digest} does not match its digest"):
        convert_archive(layout, tmp_path / "out")


# --------------------------------------------------------------------------- corrupt input


def _rewrite(source: pathlib.Path, target: pathlib.Path, edit: Any) -> None:
    """Copy a tar, passing each regular member's data through ``edit(name, data)``, which
    returns new data or None to leave the member out."""
    with tarfile.open(source) as src, tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as dst:
        for member in src:
            if not member.isreg():
                dst.addfile(member)
                continue
            data = edit(member.name, src.extractfile(member).read())  # type: ignore[union-attr]
            if data is not None:
                member.size = len(data)
                dst.addfile(member, io.BytesIO(data))


def _damage(good: pathlib.Path, bad: pathlib.Path, damage: str) -> None:
    data = good.read_bytes()
    if damage == "truncated-early":
        bad.write_bytes(data[: len(data) // 10])
    elif damage == "truncated-late":
        bad.write_bytes(data[: len(data) * 6 // 10])
    elif damage == "garbage":
        bad.write_bytes(bytes(range(256)) * 40)
    elif damage == "empty":
        bad.write_bytes(b"")
    elif damage == "gzip-truncated":
        packed = gzip.compress(data)
        bad.write_bytes(packed[: len(packed) // 2])
    elif damage == "missing-layer":
        first = whiteout().v1_layers()[0][0]
        _rewrite(good, bad, lambda name, d: None if name == f"{first}/layer.tar" else d)
    elif damage == "config-not-json":
        _rewrite(
            good,
            bad,
            lambda name, d: (
                b"{not json"
                if name.endswith(".json") and "/" not in name and name != "manifest.json"
                else d
            ),
        )
    elif damage == "layer-json-not-json":
        _rewrite(good, bad, lambda name, d: b"[1, 2" if name.endswith("/json") else d)
    elif damage == "layer-garbage":
        _rewrite(good, bad, lambda name, d: b"garbage" * 100 if name.endswith("layer.tar") else d)
    else:
        raise AssertionError(damage)


@pytest.mark.parametrize("layout", ["repositories", "manifest.json"])
@pytest.mark.parametrize(
    "damage",
    [
        "truncated-early",
        "truncated-late",
        "garbage",
        "empty",
        "gzip-truncated",
        "missing-layer",
        "config-not-json",
        "layer-json-not-json",
        "layer-garbage",
    ],
)
def test_corrupt_archives(tmp_path: pathlib.Path, damage: str, layout: Any) -> None:
    """One clear error naming the file; nothing written."""
    if damage == "config-not-json" and layout == "repositories":
        pytest.skip("the classic layout reads the layers' json, not the config")
    if damage == "layer-json-not-json" and layout == "manifest.json":
        pytest.skip("the manifest.json layout reads the config, not the layers' json")
    good = di.write_docker_save(whiteout(), tmp_path / "good.tar", layout=layout)
    bad = tmp_path / "bad.tar"
    _damage(good, bad, damage)
    out = tmp_path / "out"
    with pytest.raises(AppcError) as info:
        convert_archive(bad, out)
    assert isinstance(info.value, ImageError), repr(info.value)
    message = str(info.value)
    assert "bad.tar" in message or "layer" in message, message
    assert "\n" not in message
    assert not out.exists() or dir_listing(out) == []


def test_not_an_image(tmp_path: pathlib.Path) -> None:
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tar:
        tar.add(__file__, arcname="hello.py")
    with pytest.raises(ImageError, match="Could not find image"):
        convert_archive(plain, tmp_path / "out")
    (tmp_path / "dir").mkdir()
    with pytest.raises(ImageError, match="not an OCI image layout"):
        convert_archive(tmp_path / "dir", tmp_path / "out")
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
