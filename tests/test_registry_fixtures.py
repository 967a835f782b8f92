"""Smoke tests of the docker2aci test infrastructure: the image builders and writers of
``tests/docker_images.py`` and the real registries, token server and push helpers of
``tests/registry_fixtures.py``."""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import pathlib
import posixpath
import ssl
import subprocess
import tarfile
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests import docker_images as di
from tests.registry_fixtures import (
    DOCKER2ACI_ACCEPT,
    Registry,
    RegistryError,
    TokenServer,
    push,
    push_list,
    running_registry,
    skopeo_copy,
)

# --------------------------------------------------------------------------- image builders

BUILDERS: dict[str, Callable[[], di.TestImage]] = {
    "busybox": di.busybox_image,
    "whiteout": di.whiteout_image,
    "whiteout-mixed": functools.partial(di.whiteout_image, ("gzip", "zstd", "none", "gzip")),
    "full-config": di.full_config_image,
    "full-config-nginx": functools.partial(di.full_config_image, user="nginx"),
    "empty-config": di.empty_config_image,
    "no-config-key": functools.partial(di.empty_config_image, with_config_key=False),
    "multiarch-amd64": lambda: di.multiarch_images().for_arch("amd64"),
    "multiarch-arm64": lambda: di.multiarch_images().for_arch("arm64"),
}


@functools.cache
def build(name: str) -> di.TestImage:
    return BUILDERS[name]()


@pytest.mark.parametrize("name", BUILDERS)
def test_layers_config_and_manifests_agree(name: str) -> None:
    image = build(name)
    for layer in image.layers:
        assert layer.digest == di.sha256_digest(layer.blob_bytes())
        assert layer.size == len(layer.blob_bytes())
        assert layer.diff_id == di.sha256_digest(layer.tar_bytes())
        assert layer.tar_size == len(layer.tar_bytes())
    config = json.loads(image.config_blob())
    assert config["rootfs"] == {"type": "layers",
                                "diff_ids": [layer.diff_id for layer in image.layers]}
    assert len(config["history"]) == len(image.layers)
    for fmt in ("schema2", "oci"):
        manifest = json.loads(image.manifest(fmt))
        assert manifest["config"]["digest"] == image.config_digest
        assert manifest["config"]["size"] == len(image.config_blob())
        assert [(la["digest"], la["size"]) for la in manifest["layers"]] == [
            (layer.digest, layer.size) for layer in image.layers]
    assert image.manifest("schema2") == BUILDERS[name]().manifest("schema2")  # deterministic


def _norm(name: str) -> str:
    """Tar member name → tree path ('' for the root)."""
    path = posixpath.normpath("/" + name).lstrip("/")
    return "" if path == "." else path


def apply_layers(layers: tuple[di.Layer, ...]) -> dict[str, dict[str, Any]]:
    """An independent, deliberately simple OCI layer applier (in memory) used to check the
    hand-written expected trees: whiteouts hide lower layers only, opaque markers empty the
    directory of lower contents, upper directories take over metadata, hard links share an
    inode (``ino``)."""
    tree: dict[str, dict[str, Any]] = {}
    inodes = 0

    def remove(path: str, keep_self: bool = False) -> None:
        for key in [k for k in tree if k.startswith(path + "/") or (k == path and not keep_self)]:
            del tree[key]

    for layer in layers:
        with tarfile.open(fileobj=io.BytesIO(layer.tar_bytes())) as tar:
            members = tar.getmembers()
            data = {m.name: tar.extractfile(m).read() for m in members if m.isreg()}  # type: ignore[union-attr]
        for m in members:
            path = _norm(m.name)
            base, parent = posixpath.basename(path), posixpath.dirname(path)
            if base == ".wh..wh..opq":
                remove(parent, keep_self=True)
            elif base.startswith(".wh."):
                remove(posixpath.join(parent, base[4:]))
        for m in members:
            path = _norm(m.name)
            if not path or posixpath.basename(path).startswith(".wh."):
                continue
            node = {"mode": m.mode, "uid": m.uid, "gid": m.gid}
            if m.isdir():
                if tree.get(path, {}).get("kind") != "dir":
                    remove(path)
                tree[path] = {**tree.get(path, {}), "kind": "dir", **node}
                continue
            remove(path)
            if m.islnk():
                tree[path] = tree[_norm(m.linkname)]  # the same inode object
            elif m.issym():
                tree[path] = {"kind": "symlink", "target": m.linkname, **node}
            else:
                inodes += 1
                tree[path] = {"kind": "file", "data": data[m.name], "ino": inodes, **node}
    return tree


def check_tree(files: dict[str, di.FileSpec], tree: dict[str, dict[str, Any]]) -> None:
    assert sorted(files) == sorted(tree)
    for path, spec in files.items():
        node = tree[path]
        kind = "file" if spec.kind == "hardlink" else spec.kind
        assert (node["kind"], node["mode"], node["uid"], node["gid"]) == (
            kind, spec.mode, spec.uid, spec.gid), path
        if kind == "file":
            assert node["data"] == spec.data, path
        if kind == "symlink":
            assert node["target"] == spec.target, path
    groups: dict[int, set[str]] = {}
    for path, node in tree.items():
        if node["kind"] == "file":
            groups.setdefault(node["ino"], set()).add(path)
    actual = {frozenset(g) for g in groups.values() if len(g) > 1}
    expected: dict[str, set[str]] = {}
    for path, spec in files.items():
        if spec.kind == "hardlink":
            expected.setdefault(spec.target, {spec.target}).add(path)
    assert actual == {frozenset(g) for g in expected.values()}


@pytest.mark.parametrize("name", BUILDERS)
def test_expected_tree_is_what_the_layers_leave(name: str) -> None:
    image = build(name)
    check_tree(dict(image.files), apply_layers(image.layers))


def test_whiteout_image_entry_names_are_written_verbatim() -> None:
    layers = build("whiteout").layers
    first_names = [layer.tar_bytes()[:100].rstrip(b"\0") for layer in layers]
    assert first_names == [b"etc/", b".", b"./", b"bin/"]
    names = list(di.iter_tar_names(layers[2].tar_bytes()))
    assert "./var/olddir/.wh..wh..opq" in names
    assert names.index("./var/olddir/new1") < names.index("./var/olddir/.wh..wh..opq") \
        < names.index("./var/olddir/new2")
    with tarfile.open(fileobj=io.BytesIO(layers[2].tar_bytes())) as tar:
        xlink = tar.getmember("./app/xlink")
    assert xlink.islnk() and xlink.linkname == "./app/lower.txt"
    assert [layer.compression for layer in build("whiteout-mixed").layers] == [
        "gzip", "zstd", "none", "gzip"]
    assert build("whiteout-mixed").layers[1].media_type("oci") == di.OCI_LAYER_ZSTD


def test_busybox_and_configs() -> None:
    assert build("busybox").files["bin/busybox"].data == pathlib.Path("/bin/busybox").read_bytes()
    assert build("busybox").config["config"]["Cmd"] == ["sh"]
    run = build("full-config").config["config"]
    assert run["User"] == "1000:1000" and "EMPTY=" in run["Env"]
    assert set(run["ExposedPorts"]) == {"8080/tcp", "53/udp", "9000"}
    assert build("full-config-nginx").config["config"]["User"] == "nginx"
    assert build("empty-config").config["config"] == {}
    assert "config" not in build("no-config-key").config
    multi = di.multiarch_images()
    index = json.loads(multi.manifest("oci"))
    assert [m["platform"] for m in index["manifests"]] == [
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm64", "variant": "v8"}]
    assert [m["digest"] for m in index["manifests"]] == [
        i.manifest_digest("oci") for i in multi.images]
    assert json.loads(multi.manifest("schema2"))["mediaType"] == di.DOCKER_MANIFEST_LIST


def test_schema1_manifest_is_signed_like_libtrust() -> None:
    image = build("whiteout")
    signed = image.schema1_manifest("test/x", "v1")
    doc = json.loads(signed)
    assert (doc["name"], doc["tag"], doc["schemaVersion"]) == ("test/x", "v1", 1)
    assert [fs["blobSum"] for fs in doc["fsLayers"]] == [la.digest for la in image.layers[::-1]]
    top = json.loads(doc["history"][0]["v1Compatibility"])
    assert top["config"] == image.config["config"] and "parent" in top
    assert "parent" not in json.loads(doc["history"][-1]["v1Compatibility"])
    (sig,) = doc["signatures"]
    protected = json.loads(base64.urlsafe_b64decode(sig["protected"] + "=="))
    payload = signed[:protected["formatLength"]] + base64.urlsafe_b64decode(
        protected["formatTail"] + "==")
    assert "signatures" not in json.loads(payload)
    signing_input = f"{sig['protected']}.{di.b64url(payload)}".encode()
    key = di.RsaKey.generate()
    assert key.verify(signing_input, base64.urlsafe_b64decode(sig["signature"] + "=="))
    assert sig["header"]["jwk"] == key.public_jwk()


def test_big_image_is_streamed_to_files(tmp_path: pathlib.Path) -> None:
    image = di.big_image(3, tmp_path, layers=2, seed=7)
    assert len(image.layers) == 2
    for layer in image.layers:
        assert layer.blob is None and layer.blob_path is not None
        assert layer.blob_path.parent == tmp_path
        assert layer.digest == "sha256:" + hashlib.sha256(layer.blob_path.read_bytes()).hexdigest()
        with layer.open_tar() as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if member.isreg():
                    content = tar.extractfile(member).read()  # type: ignore[union-attr]
                    spec = image.files[member.name]
                    assert (len(content), hashlib.sha256(content).hexdigest()) == (
                        spec.size, spec.sha256)
    total = sum(s.size for s in image.files.values())
    assert 3 << 20 <= total < (3 << 20) + 4096
    again = di.big_image(3, tmp_path / "again", layers=2, seed=7)
    assert [la.digest for la in again.layers] == [la.digest for la in image.layers]


def test_layer_from_tar_file_and_recompression(tmp_path: pathlib.Path) -> None:
    image = build("whiteout")
    tar_path = tmp_path / "layer.tar"
    tar_path.write_bytes(image.layers[0].tar_bytes())
    for compression in ("gzip", "zstd", "none"):
        layer = di.Layer.from_tar_file(tar_path, tmp_path / "blobs", compression)
        assert layer.blob_path is not None and layer.blob_path.exists()
        assert layer.diff_id == image.layers[0].diff_id
        assert layer.tar_bytes() == image.layers[0].tar_bytes()
        assert layer.digest == di.sha256_digest(layer.blob_path.read_bytes())
    zstd = image.with_compression("zstd")
    assert zstd.config == image.config
    assert [la.media_type("schema2") for la in zstd.layers] == [di.OCI_LAYER_ZSTD] * 4
    assert {la.digest for la in zstd.layers}.isdisjoint(la.digest for la in image.layers)


# --------------------------------------------------------------------------- writers


def _read_tar(path: pathlib.Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return {m.name: m for m in tar.getmembers()}


def _member_bytes(path: pathlib.Path, name: str) -> bytes:
    with tarfile.open(path) as tar:
        member = tar.getmember(name)
        if member.issym():
            member = tar.getmember(posixpath.normpath(posixpath.join(
                posixpath.dirname(name), member.linkname)))
        return tar.extractfile(member).read()  # type: ignore[union-attr]


@pytest.mark.parametrize(("layout", "symlinks"), [
    ("manifest.json", False), ("repositories", False), ("both", False), ("both", True)])
def test_docker_save_layouts(tmp_path: pathlib.Path, layout: Any, symlinks: bool) -> None:
    image, other = build("whiteout"), build("busybox")
    path = di.write_docker_save({"example.com/test/whiteouts:v1": image,
                                 "example.com/test/whiteouts:also": image,
                                 "library/busybox:latest": other},
                                tmp_path / "save.tar", layout=layout, symlink_layers=symlinks)
    members = _read_tar(path)
    v1 = image.v1_layers()
    for (layer_id, v1json), layer in zip(v1, image.layers, strict=True):
        assert json.loads(_member_bytes(path, f"{layer_id}/json")) == v1json
        assert members[f"{layer_id}/layer.tar"].issym() == symlinks
        assert di.sha256_digest(_member_bytes(path, f"{layer_id}/layer.tar")) == layer.diff_id
    assert ("manifest.json" in members) == (layout != "repositories")
    assert ("repositories" in members) == (layout != "manifest.json")
    if layout != "repositories":
        manifest = json.loads(_member_bytes(path, "manifest.json"))
        assert [m["RepoTags"] for m in manifest] == [
            ["example.com/test/whiteouts:v1", "example.com/test/whiteouts:also"],
            ["library/busybox:latest"]]
        assert _member_bytes(path, manifest[0]["Config"]) == image.config_blob()
        assert [di.sha256_digest(_member_bytes(path, n)) for n in manifest[0]["Layers"]] == [
            layer.diff_id for layer in image.layers]
    if layout != "manifest.json":
        repositories = json.loads(_member_bytes(path, "repositories"))
        assert repositories == {"example.com/test/whiteouts": {"v1": v1[-1][0], "also": v1[-1][0]},
                                "library/busybox": {"latest": other.v1_layers()[-1][0]}}
        chain, layer_id = [], v1[-1][0]
        while layer_id:
            chain.append(layer_id)
            layer_id = json.loads(_member_bytes(path, f"{layer_id}/json")).get("parent")
        assert chain == [i for i, _ in reversed(v1)]
    if layout != "repositories":  # skopeo reads manifest.json: an independent reader
        skopeo_copy(f"docker-archive:{path}:library/busybox:latest", f"oci:{tmp_path / 'o'}:x")


def _check_oci_layout(root: pathlib.Path, tag: str) -> dict[str, Any]:
    assert json.loads((root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    for blob in (root / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    index = json.loads((root / "index.json").read_text())
    (entry,) = [m for m in index["manifests"]
                if m["annotations"][di.REF_NAME_ANNOTATION] == tag]
    body = (root / "blobs" / "sha256" / entry["digest"].removeprefix("sha256:")).read_bytes()
    assert len(body) == entry["size"]
    return {"entry": entry, "manifest": json.loads(body)}


def test_oci_layout_and_archive(tmp_path: pathlib.Path) -> None:
    image, multi = build("whiteout-mixed"), di.multiarch_images()
    root = di.write_oci_layout(image, tmp_path / "layout", "v1")
    di.write_oci_layout({"multi": multi, "busybox": build("busybox")}, root)
    found = _check_oci_layout(root, "v1")
    assert found["entry"]["mediaType"] == di.OCI_MANIFEST
    assert found["manifest"] == json.loads(image.oci_manifest())
    found = _check_oci_layout(root, "multi")
    assert found["entry"]["mediaType"] == di.OCI_INDEX
    assert found["manifest"] == json.loads(multi.manifest("oci"))
    _check_oci_layout(root, "busybox")

    archive = di.write_oci_archive(multi, tmp_path / "multi.tar", "latest")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "unpacked", filter="data")
    assert names[:2] == ["oci-layout", "index.json"]
    _check_oci_layout(tmp_path / "unpacked", "latest")
    assert archive.read_bytes() == di.write_oci_archive(
        multi, tmp_path / "again.tar", "latest").read_bytes()


# --------------------------------------------------------------------------- registries

FORMATS: tuple[di.ManifestFormat, ...] = ("schema2", "oci", "schema1")
KINDS = ("registry", "tls_registry", "token_registry")


@pytest.fixture(params=KINDS)
def any_registry(request: pytest.FixtureRequest) -> Registry:
    reg: Registry = request.getfixturevalue(request.param)
    return reg


def check_pulled(reg: Registry, repo: str, ref: str, image: di.TestImage, *, fmt: Any,
                 digest: str) -> None:
    """Fetch the manifest (by tag and by digest) and every blob back and compare.  Schema1 is
    re-signed by the registry on every GET: compare the signed payload."""
    expected = image.manifest(fmt, name=repo, tag=ref)
    comparable = di.schema1_payload if fmt == "schema1" else (lambda body: body)
    assert digest == di.sha256_digest(comparable(expected))
    for by in (ref, digest):
        resp = reg.get_manifest(repo, by, image.media_type(fmt))
        assert resp.status_code == 200, resp.text
        assert resp.headers["Content-Type"] == image.media_type(fmt)
        assert resp.headers["Docker-Content-Digest"] == digest
        assert comparable(resp.content) == comparable(expected)
    for blob_digest, size, _ in image.blobs(fmt):
        assert len(reg.get_blob(repo, blob_digest)) == size


@pytest.mark.parametrize("name", BUILDERS)
def test_push_every_image_to_every_registry(any_registry: Registry, name: str) -> None:
    image = build(name)
    for fmt in FORMATS:
        repo = f"smoke/{name}"
        digest = push(any_registry, repo, fmt, image, fmt)
        check_pulled(any_registry, repo, fmt, image, fmt=fmt, digest=digest)


def test_manifest_lists(registry: Registry) -> None:
    multi = di.multiarch_images()
    docker_digest = push_list(registry, "smoke/multi", "docker", multi, "schema2")
    oci_digest = push_list(registry, "smoke/multi", "oci", multi, "oci")
    assert (docker_digest, oci_digest) == (multi.manifest_digest("schema2"),
                                           multi.manifest_digest("oci"))
    lists: list[tuple[str, di.ListFormat]] = [
        ("docker", "schema2"), ("oci", "oci"), (docker_digest, "schema2")]
    for ref, fmt in lists:
        resp = registry.get_manifest("smoke/multi", ref, [*DOCKER2ACI_ACCEPT,
                                                          multi.media_type(fmt)])
        assert resp.status_code == 200
        assert (resp.headers["Content-Type"], resp.content) == (multi.media_type(fmt),
                                                                multi.manifest(fmt))
    # Without list types in Accept, registry 2.8 picks linux/amd64 of a Docker list itself
    # and answers 404 for an OCI index (what docker2aci sees).
    resp = registry.get_manifest("smoke/multi", "docker")
    assert resp.status_code == 200
    assert resp.content == multi.for_arch("amd64").manifest("schema2")
    assert registry.get_manifest("smoke/multi", "oci").status_code == 404


def test_basic_auth(tls_registry: Registry) -> None:
    url = tls_registry.url + "/v2/"
    ca = str(tls_registry.ca_file)
    assert requests.get(url, verify=ca, timeout=10).status_code == 401
    wrong = requests.get(url, verify=ca, auth=(tls_registry.username, "wrong"), timeout=10)  # type: ignore[arg-type]
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Basic realm=")
    right = requests.get(url, verify=ca, auth=(tls_registry.username, tls_registry.password),  # type: ignore[arg-type]
                         timeout=10)
    assert right.status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, timeout=10)  # the system CAs do not know the test certificate
    context = ssl.create_default_context(cafile=ca)
    assert context.get_ca_certs()


def _jwt_part(token: str, i: int) -> Any:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[i] + "=="))


def test_token_server_and_registry(token_registry: Registry, token_server: TokenServer) -> None:
    challenge = requests.get(token_registry.url + "/v2/", timeout=10)
    assert challenge.status_code == 401
    assert challenge.headers["WWW-Authenticate"] == (
        f'Bearer realm="{token_server.url}",service="{token_server.service}"')
    pull = requests.get(token_registry.url + "/v2/smoke/x/manifests/latest", timeout=10)
    assert pull.headers["WWW-Authenticate"].endswith(
        ',scope="repository:smoke/x:pull"')

    scope = "repository:smoke/token:pull,push"
    answer = requests.get(token_server.url, params={"service": token_server.service,
                                                    "scope": scope}, timeout=10).json()
    assert answer["token"] == answer["access_token"] and answer["expires_in"] == 300
    token = answer["token"]
    header, claims = _jwt_part(token, 0), _jwt_part(token, 1)
    assert header["alg"] == "RS256"
    assert base64.b64decode(header["x5c"][0]) == token_server.cert_der
    assert claims["iss"] == token_server.issuer and claims["aud"] == token_server.service
    assert claims["sub"] == "" and claims["nbf"] <= claims["iat"] < claims["exp"]
    assert claims["access"] == [{"type": "repository", "name": "smoke/token",
                                 "actions": ["pull", "push"]}]
    signing_input, _, signature = token.rpartition(".")
    assert token_server.key.verify(signing_input.encode(),
                                   base64.urlsafe_b64decode(signature + "=="))
    ok = requests.get(token_registry.url + "/v2/", timeout=10,
                      headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    bad = token_server.issue([scope], service="another-service")
    assert requests.get(token_registry.url + "/v2/", timeout=10,
                        headers={"Authorization": f"Bearer {bad}"}).status_code == 401
    assert token_server.requests[-1].scopes == (scope,)


@pytest.mark.parametrize("fields", [("token",), ("access_token",)])
def test_token_fields(token_registry: Registry, token_server: TokenServer,
                      fields: tuple[str, ...]) -> None:
    with token_server.settings(token_fields=fields):
        body = requests.get(token_server.url, params={"scope": "repository:a:pull"},
                            timeout=10).json()
        assert set(body) == {*fields, "expires_in", "issued_at"}
        image = build("empty-config")
        digest = push(token_registry, f"smoke/fields-{fields[0]}", "v1", image)
        assert digest == image.manifest_digest()


def test_token_server_requires_credentials(token_registry: Registry,
                                           token_server: TokenServer) -> None:
    params = {"service": token_server.service, "scope": "repository:smoke/auth:pull"}
    first = len(token_server.requests)
    with token_server.settings(require_basic=True):
        anonymous = requests.get(token_server.url, params=params, timeout=10)
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
        wrong = requests.get(token_server.url, params=params, timeout=10,
                             auth=(token_server.username, "nope"))
        assert wrong.status_code == 401
        right = requests.get(token_server.url, params=params, timeout=10,
                             auth=(token_server.username, token_server.password))
        assert right.status_code == 200
        assert _jwt_part(right.json()["token"], 1)["sub"] == token_server.username
        with pytest.raises(RegistryError, match="401"):
            token_registry.token("repository:smoke/auth:pull", credentials=False)
        push(token_registry, "smoke/auth", "v1", build("empty-config"))
    seen = token_server.requests[first:]
    assert [(r.user, r.status) for r in seen[:3]] == [
        (None, 401), (None, 401), (token_server.username, 200)]
    assert not token_server.config.require_basic  # restored


# --------------------------------------------------------------------------- skopeo


@pytest.mark.parametrize("fmt", ["v2s2", "v2s1", "oci"])
def test_skopeo_pushes_an_oci_layout(any_registry: Registry, tmp_path: pathlib.Path,
                                     fmt: str, token_server: TokenServer) -> None:
    image = build("whiteout")
    layout = di.write_oci_layout(image, tmp_path / "layout", "v1")
    repo = f"skopeo/{fmt}"
    with token_server.settings(require_basic=True):
        skopeo_copy(f"oci:{layout}:v1", any_registry.ref(repo, "v1"), format=fmt,
                    dest_registry=any_registry)
    media_type = {"v2s2": di.DOCKER_SCHEMA2, "v2s1": di.DOCKER_SCHEMA1_SIGNED,
                  "oci": di.OCI_MANIFEST}[fmt]
    resp = any_registry.get_manifest(repo, "v1", media_type)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == media_type
    manifest = resp.json()
    if fmt == "v2s1":
        blobs = [fs["blobSum"] for fs in manifest["fsLayers"]]
        assert manifest["signatures"]
    else:
        blobs = [manifest["config"]["digest"]] + [la["digest"] for la in manifest["layers"]]
    for digest in blobs:
        any_registry.get_blob(repo, digest)
    assert {la.digest for la in image.layers} <= set(blobs)


def test_skopeo_reads_our_archives_and_registry(registry: Registry,
                                                tmp_path: pathlib.Path) -> None:
    image = build("full-config")
    archive = di.write_oci_archive(image, tmp_path / "image.tar", "v1")
    skopeo_copy(f"oci-archive:{archive}:v1", registry.ref("skopeo/archive", "v1"),
                dest_registry=registry)
    pulled = registry.get_manifest("skopeo/archive", "v1", di.OCI_MANIFEST)
    assert pulled.content == image.oci_manifest()  # skopeo kept the exact bytes
    digest = push(registry, "smoke/source", "v1", image, "schema2")
    out = tmp_path / "from-registry"
    skopeo_copy(registry.ref("smoke/source", digest), f"oci:{out}:x", src_registry=registry)
    for layer in image.layers:  # (the config is rewritten when converting to OCI)
        assert (out / "blobs" / "sha256" / layer.digest.removeprefix("sha256:")).exists()


# --------------------------------------------------------------------------- lifecycle


def test_schema1_can_be_disabled(registry_factory: Callable[..., Registry]) -> None:
    strict = registry_factory(schema1=False)
    image = build("empty-config")
    push(strict, "smoke/s2", "v1", image, "schema2")
    with pytest.raises(RegistryError, match="HTTP 500"):  # registry 2.8's answer, not a 400
        push(strict, "smoke/s1", "v1", image, "schema1")
    assert "manifest schema v1 unsupported" in strict.log_text()


def test_registry_start_failure_and_teardown(tmp_path: pathlib.Path) -> None:
    with running_registry(tmp_path / "ok") as reg:
        process = reg.process
        assert process.poll() is None
    assert process.returncode is not None  # stopped (and waited for)
    with TokenServer(tmp_path / "token") as server:
        server.cert_path.unlink()  # the registry cannot read its rootcertbundle
        with pytest.raises(RegistryError, match="exited") as failure, \
                running_registry(tmp_path / "bad", token_server=server):
            pass
    assert "rootcertbundle" in str(failure.value) or "certificate" in str(failure.value)


def test_no_leaked_registry_processes(registry: Registry) -> None:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True)
    mine = [line for line in ps.stdout.splitlines() if "docker-registry serve" in line
            and str(registry.workdir) in line]
    assert len(mine) == 1
