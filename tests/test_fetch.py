"""appc.fetch: images into the store by name, URL, file or hash, verified first
(reference: rkt.md §1 fetch, §3, §5; the issue's "Bad input" list)."""

from __future__ import annotations

import hashlib
import os
import pathlib
import random
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

from appc.errors import (
    DiscoveryError,
    FetchError,
    ImageError,
    SignatureError,
    StoreError,
    ValidationError,
)
from appc.fetch import Fetcher, FetchOptions, InsecureOptions, classify_image_argument, host_os_arch
from appc.keystore import Keystore
from appc.store import ImageStore
from tests.discovery_server import DiscoveryServer, image_bytes, publish
from tests.gpg_keys import GpgKeys, sign_bytes

pytest_plugins = ["tests.discovery_server", "tests.gpg_keys"]

ETCD = "localhost/etcd"


@attrs.define
class Env:
    """A store, a keystore, the server and the keys of one test."""

    tmp: pathlib.Path
    store: ImageStore
    keystore: Keystore
    server: DiscoveryServer
    keys: GpgKeys
    log: list[str] = attrs.field(factory=list)

    def fetcher(self, **options: Any) -> Fetcher:
        values: dict[str, Any] = {
            "discovery_port": self.server.https_port,
            "ca_file": str(self.server.ca_file),
            "log": self.log.append,
        }
        values.update(options)
        return Fetcher(self.store, self.keystore, FetchOptions(**values))

    def trust(self, prefix: str = ETCD, key: str = "signer") -> None:
        self.keystore.add_prefix_key(prefix, getattr(self.keys, key).public)

    def publish(
        self,
        name: str = ETCD,
        *,
        labels: dict[str, str] | None = None,
        signer: str | None = "signer",
        version: str = "v2.0.0",
        hello: bytes = b"hello\n",
        **serve: Any,
    ) -> bytes:
        """Serve a signed image for *name*; return its bytes."""
        aci = image_bytes(name, labels, hello=hello)
        signature = (
            None if signer is None else sign_bytes(self.keys, getattr(self.keys, signer), aci)
        )
        publish(self.server, name, aci, signature, version=version, **serve)
        return aci

    def assert_empty(self) -> None:
        """Nothing entered the store, and it is consistent."""
        assert self.store.list() == []
        assert self.store.check() == []
        assert os.listdir(self.store.tmp_dir) == []


@pytest.fixture
def env(
    tmp_path: pathlib.Path, discovery_server: DiscoveryServer, gpg_keys: GpgKeys
) -> Iterator[Env]:
    with ImageStore(tmp_path / "rkt") as store:
        yield Env(
            tmp_path,
            store,
            Keystore(str(tmp_path / "etc"), str(tmp_path / "usr")),
            discovery_server,
            gpg_keys,
        )


def _image_path(version: str = "v2.0.0", name: str = ETCD) -> str:
    return f"/images/{name}-{version}-linux-amd64.aci"


def _key(data: bytes) -> str:
    """The store key of an ACI's bytes (gzip-compressed by image_bytes)."""
    import gzip

    return "sha512-" + hashlib.sha512(gzip.decompress(data)).hexdigest()[:64]


# --- argument kinds and options -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("sha512-" + "a" * 64, "hash"),
        ("sha512-abc", "hash"),
        ("docker://busybox", "docker"),
        ("https://example.com/x.aci", "url"),
        ("http://example.com/x.aci", "url"),
        ("file:///tmp/x.aci", "path"),
        ("/tmp/x.aci", "path"),
        ("./x.aci", "path"),
        ("dir/./x.aci", "path"),
        ("example.com/app", "name"),
        ("example.com/app:1.0", "name"),
        ("localhost/etcd:v2.0.0,os=linux", "name"),
        ("x.aci", "name"),  # no such file here: a name, as rkt decides
    ],
)
def test_classify(
    text: str, kind: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert classify_image_argument(text) == kind


def test_classify_existing_file(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.aci").write_bytes(b"")
    assert classify_image_argument("x.aci") == "path"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("none", InsecureOptions()),
        ("", InsecureOptions()),
        ("image", InsecureOptions(image=True)),
        ("image,tls", InsecureOptions(image=True, tls=True)),
        ("ondisk", InsecureOptions()),
        ("all-fetch", InsecureOptions(image=True, tls=True, http=True, pubkey=True)),
        ("all-run", InsecureOptions(capabilities=True, paths=True, seccomp=True)),
        ("all", InsecureOptions(True, True, True, True, True, True, True)),
    ],
)
def test_insecure_options(text: str, expected: InsecureOptions) -> None:
    assert InsecureOptions.parse(text) == expected


def test_insecure_options_unknown() -> None:
    with pytest.raises(ValidationError, match="unknown insecure option 'everything'"):
        InsecureOptions.parse("image,everything")


def test_host_os_arch() -> None:
    assert host_os_arch()[0] == "linux"
    if os.uname().machine == "x86_64":
        assert host_os_arch() == ("linux", "amd64")


def test_unknown_pull_policy(env: Env) -> None:
    with pytest.raises(ValidationError, match="unknown pull policy"):
        env.fetcher(pull_policy="sometimes")


# --- by name ---------------------------------------------------------------------------


def test_fetch_by_name(env: Env) -> None:
    env.trust()
    aci = env.publish()
    stored = env.fetcher().fetch(f"{ETCD}:v2.0.0")
    assert stored.key == _key(aci)
    assert (stored.name, stored.latest) == (ETCD, False)
    assert env.log == ["signature verified:", "  Test Signer <signer@example.com>"]
    assert env.server.requests() == [
        "https:/etcd?ac-discovery=1",
        f"https:{_image_path()}",
        f"https:{_image_path()}.asc",
    ]
    assert env.store.check() == []
    remote = env.store.get_remote(env.server.url(_image_path()))
    assert remote is not None and remote.blob_key == stored.key
    assert remote.sig_url == env.server.url(_image_path()) + ".asc"


def test_fetch_latest(env: Env) -> None:
    """No version asked: the template gets ``latest`` and the image is marked latest."""
    env.trust("localhost")  # a parent prefix's key counts
    env.publish(labels={"os": "linux", "arch": "amd64"}, version="latest")
    stored = env.fetcher().fetch(ETCD)
    assert stored.latest is True
    assert env.store.find(ETCD) == stored


def test_fetch_with_root_key(env: Env) -> None:
    env.keystore.add_root_key(env.keys.protected.public)
    env.publish(signer="protected")
    assert env.fetcher().fetch(f"{ETCD}:v2.0.0").name == ETCD
    assert env.log[1] == "  Protected Signer <protected@example.com>"


def test_tampered_image(env: Env) -> None:
    env.trust()
    aci = env.publish()
    tampered = image_bytes(ETCD, hello=b"evil\n")
    assert tampered != aci
    env.server.file(_image_path(), tampered)  # same signature, other bytes
    with pytest.raises(SignatureError, match="bad signature"):
        env.fetcher().fetch(f"{ETCD}:v2.0.0")
    env.assert_empty()


def test_name_mismatch(env: Env) -> None:
    """A correctly signed image whose manifest names another image is refused."""
    env.trust("localhost")
    aci = image_bytes("localhost/other")
    publish(env.server, ETCD, aci, sign_bytes(env.keys, env.keys.signer, aci))
    with pytest.raises(ImageError) as info:
        env.fetcher().fetch(f"{ETCD}:v2.0.0")
    assert str(info.value) == (
        f"{env.server.url(_image_path())}: image name 'localhost/other' "
        "does not match the requested 'localhost/etcd'"
    )
    env.assert_empty()


def test_label_mismatch(env: Env) -> None:
    env.trust()
    env.publish(labels={"version": "v9.9.9", "os": "linux", "arch": "amd64"})
    with pytest.raises(
        ImageError, match=r"image label version='v9\.9\.9' does not match the requested 'v2\.0\.0'"
    ):
        env.fetcher().fetch(f"{ETCD}:v2.0.0")
    env.assert_empty()


def test_image_404(env: Env) -> None:
    env.trust()
    env.publish()
    env.server.remove(_image_path())
    with pytest.raises(FetchError, match="HTTP 404 not found") as info:
        env.fetcher().fetch(f"{ETCD}:v2.0.0")
    assert env.server.url(_image_path()) in str(info.value)
    env.assert_empty()


def test_missing_signature(env: Env) -> None:
    env.trust()
    env.publish(signer=None)
    with pytest.raises(FetchError, match=r"\.aci\.asc: HTTP 404 not found"):
        env.fetcher().fetch(f"{ETCD}:v2.0.0")
    env.assert_empty()


def test_bad_signature_data(env: Env) -> None:
    env.trust()
    env.publish()
    env.server.file(_image_path() + ".asc", b"-----BEGIN PGP SIGNATURE-----\n\nbroken\n")
    with pytest.raises(SignatureError, match="signature verification failed"):
        env.fetcher().fetch(f"{ETCD}:v2.0.0")
    env.assert_empty()


def test_untrusted_signer(env: Env) -> None:
    env.trust()
    env.publish(signer="other")
    with pytest.raises(SignatureError, match="signed by a key that is not trusted"):
        env.fetcher().fetch(f"{ETCD}:v2.0.0")
    env.assert_empty()


def test_key_for_another_prefix(env: Env) -> None:
    env.trust("localhost/etcd-other")
    env.trust("example.com", key="other")
    env.publish()
    with pytest.raises(SignatureError, match="no keys trusted for 'localhost/etcd'"):
        env.fetcher().fetch(f"{ETCD}:v2.0.0")
    env.assert_empty()


def test_no_meta_tags(env: Env) -> None:
    env.trust()
    env.server.page("/etcd", html_text="<html><head><title>etcd</title></head></html>")
    with pytest.raises(DiscoveryError, match="discovery failed"):
        env.fetcher().fetch(f"{ETCD}:v2.0.0")
    env.assert_empty()


def test_template_that_yields_nothing(env: Env) -> None:
    env.trust()
    env.server.page("/etcd", [("ac-discovery", f"{ETCD} https://h/{{name}}-{{channel}}.{{ext}}")])
    with pytest.raises(DiscoveryError, match="localhost/etcd: no usable ac-discovery meta tag"):
        env.fetcher().fetch(f"{ETCD}:v2.0.0")
    assert env.server.requests() == ["https:/etcd?ac-discovery=1", "https:/?ac-discovery=1"]
    env.assert_empty()


def test_https_failure_without_insecure(env: Env) -> None:
    env.trust()
    env.publish()
    with pytest.raises(DiscoveryError, match="CERTIFICATE_VERIFY_FAILED"):
        env.fetcher(ca_file=None).fetch(f"{ETCD}:v2.0.0")
    env.assert_empty()
    stored = env.fetcher(ca_file=None, insecure=InsecureOptions(tls=True)).fetch(f"{ETCD}:v2.0.0")
    assert stored.name == ETCD


def test_insecure_image_skips_verification(env: Env) -> None:
    env.publish(signer=None)  # no key trusted, no signature served
    stored = env.fetcher(insecure=InsecureOptions(image=True)).fetch(f"{ETCD}:v2.0.0")
    assert stored.name == ETCD
    assert any("skipping signature verification" in line for line in env.log)
    assert not any(p.endswith(".asc") for p in env.server.requests())


def test_insecure_image_still_checks_the_name(env: Env) -> None:
    aci = image_bytes("localhost/other")
    publish(env.server, ETCD, aci, None)
    with pytest.raises(ImageError, match="does not match the requested"):
        env.fetcher(insecure=InsecureOptions(image=True)).fetch(f"{ETCD}:v2.0.0")
    env.assert_empty()


def test_trust_keys_from_https(env: Env, tmp_path: pathlib.Path) -> None:
    env.publish(pubkey=env.keys.signer.public)
    stored = env.fetcher(trust_keys_from_https=True).fetch(f"{ETCD}:v2.0.0")
    assert stored.name == ETCD
    key_file = tmp_path / "etc/trustedkeys/prefix.d/localhost/etcd" / env.keys.signer.fingerprint
    assert key_file.read_bytes() == env.keys.signer.public
    key_url = env.server.url("/keys/etcd.gpg")
    assert env.log[:2] == [
        f'Trusting "{key_url}" for prefix "{ETCD}" without fingerprint review.',
        f'Added key for prefix "{ETCD}" at "{key_file}"',
    ]
    assert env.log[2] == "signature verified:"


def test_trust_keys_from_https_is_off_by_default(env: Env) -> None:
    env.publish(pubkey=env.keys.signer.public)
    with pytest.raises(SignatureError, match="no keys trusted for 'localhost/etcd'"):
        env.fetcher().fetch(f"{ETCD}:v2.0.0")
    assert "https:/keys/etcd.gpg" not in env.server.requests()
    env.assert_empty()


def test_trust_keys_from_https_does_not_trust_a_wrong_key(env: Env) -> None:
    """The discovered key is trusted, but the image is signed by another one: refused."""
    env.publish(pubkey=env.keys.other.public)
    with pytest.raises(SignatureError, match="not trusted"):
        env.fetcher(trust_keys_from_https=True).fetch(f"{ETCD}:v2.0.0")
    env.assert_empty()


# --- pull policies and HTTP caching ----------------------------------------------------


def test_pull_policy_never(env: Env) -> None:
    env.trust()
    env.publish()
    with pytest.raises(StoreError, match="not found in the store"):
        env.fetcher(pull_policy="never").fetch(f"{ETCD}:v2.0.0")
    assert env.server.requests() == []
    first = env.fetcher().fetch(f"{ETCD}:v2.0.0")
    env.server.reset()
    assert env.fetcher(pull_policy="never").fetch(f"{ETCD}:v2.0.0").key == first.key
    assert env.server.requests() == []


def test_pull_policy_new(env: Env) -> None:
    env.trust()
    env.publish()
    first = env.fetcher(pull_policy="new").fetch(f"{ETCD}:v2.0.0")
    env.server.reset()
    again = env.fetcher(pull_policy="new").fetch(f"{ETCD}:v2.0.0")
    assert again.key == first.key
    assert env.server.requests() == []
    assert again.last_used >= first.last_used


def test_pull_policy_update_etag(env: Env) -> None:
    env.trust()
    env.publish(etag='"v1"')
    first = env.fetcher(pull_policy="update").fetch(f"{ETCD}:v2.0.0")
    env.server.log.clear()
    again = env.fetcher(pull_policy="update").fetch(f"{ETCD}:v2.0.0")
    assert again.key == first.key
    assert env.server.requests() == ["https:/etcd?ac-discovery=1", f"https:{_image_path()}"]
    assert env.server.log[-1].headers["if-none-match"] == '"v1"'
    # A new image behind the same URL (a new ETag) is downloaded, verified and stored.
    env.publish(etag='"v2"', hello=b"v2\n")
    env.server.log.clear()
    updated = env.fetcher(pull_policy="update").fetch(f"{ETCD}:v2.0.0")
    assert updated.key != first.key
    assert env.server.requests()[-1] == f"https:{_image_path()}.asc"
    assert len(env.store.list()) == 2
    remote = env.store.get_remote(env.server.url(_image_path()))
    assert remote is not None and (remote.etag, remote.blob_key) == ('"v2"', updated.key)


def test_pull_policy_update_cache_control(env: Env) -> None:
    env.trust()
    env.publish(cache_control="max-age=3600")
    first = env.fetcher(pull_policy="update").fetch(f"{ETCD}:v2.0.0")
    env.server.log.clear()
    again = env.fetcher(pull_policy="update").fetch(f"{ETCD}:v2.0.0")
    assert again.key == first.key
    assert env.server.requests() == ["https:/etcd?ac-discovery=1"]  # discovery only, no download


def test_pull_policy_update_stale_cache(env: Env) -> None:
    env.trust()
    env.publish(cache_control="max-age=0")
    env.fetcher(pull_policy="update").fetch(f"{ETCD}:v2.0.0")
    env.server.log.clear()
    env.fetcher(pull_policy="update").fetch(f"{ETCD}:v2.0.0")
    assert f"https:{_image_path()}" in env.server.requests()


def test_not_modified_restarts_the_cache_period(env: Env) -> None:
    """A 304 answer records its Cache-Control max-age: the next fetch makes no download."""
    env.trust()
    env.publish(etag='"v1"', cache_control="max-age=0")
    first = env.fetcher(pull_policy="update").fetch(f"{ETCD}:v2.0.0")
    env.server.route(
        _image_path(),
        attrs.evolve(
            env.server._route(_image_path(), "https"),  # type: ignore[arg-type]
            headers={"Cache-Control": "max-age=3600"},
        ),
    )
    env.fetcher(pull_policy="update").fetch(f"{ETCD}:v2.0.0")
    assert env.server.log[-1].path == _image_path()  # answered 304
    env.server.log.clear()
    assert env.fetcher(pull_policy="update").fetch(f"{ETCD}:v2.0.0").key == first.key
    assert env.server.requests() == ["https:/etcd?ac-discovery=1"]


def test_update_after_the_image_was_removed(env: Env) -> None:
    """A cached ETag whose image was removed from the store: downloaded again, not an error."""
    env.trust()
    env.publish(etag='"v1"')
    first = env.fetcher(pull_policy="update").fetch(f"{ETCD}:v2.0.0")
    env.store.remove(first.key)
    again = env.fetcher(pull_policy="update").fetch(f"{ETCD}:v2.0.0")
    assert again.key == first.key
    assert env.store.check() == []


# --- URLs, files and hashes ----------------------------------------------------------


def test_fetch_https_url(env: Env) -> None:
    env.trust()
    env.publish()
    url = env.server.url(_image_path())
    stored = env.fetcher().fetch(url)
    assert stored.name == ETCD
    assert env.server.requests() == [f"https:{_image_path()}", f"https:{_image_path()}.asc"]


def test_a_download_larger_than_any_image_is_stopped(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 3 MB that gzip cannot shrink, with images limited to 1 KiB: the download limit is
    # 1 KiB + 1/64 + 1 MiB; nothing of it stays in the store.
    env.trust()
    env.publish(hello=random.Random(7).randbytes(3 * 1024 * 1024))
    monkeypatch.setenv("APPC_MAX_IMAGE_SIZE", "1K")
    with pytest.raises(FetchError, match=r"larger than the download limit of 1049616 bytes"):
        env.fetcher().fetch(env.server.url(_image_path()))
    env.assert_empty()


def test_fetch_url_with_signature_option(env: Env) -> None:
    env.trust()
    aci = env.publish(signer=None)
    env.server.file("/elsewhere.sig", sign_bytes(env.keys, env.keys.signer, aci))
    stored = env.fetcher().fetch(
        env.server.url(_image_path()), signature=env.server.url("/elsewhere.sig")
    )
    assert stored.key == _key(aci)


def test_fetch_url_cache_control_makes_no_request(env: Env) -> None:
    env.trust()
    env.publish(cache_control="max-age=600")
    url = env.server.url(_image_path())
    first = env.fetcher(pull_policy="update").fetch(url)
    env.server.log.clear()
    assert env.fetcher(pull_policy="update").fetch(url).key == first.key
    assert env.server.requests() == []


def test_fetch_url_policy_new_uses_the_store(env: Env) -> None:
    env.trust()
    env.publish()
    url = env.server.url(_image_path())
    first = env.fetcher(pull_policy="new").fetch(url)
    env.server.log.clear()
    assert env.fetcher(pull_policy="new").fetch(url).key == first.key
    assert env.fetcher(pull_policy="never").fetch(url).key == first.key
    assert env.server.requests() == []
    with pytest.raises(StoreError, match="--pull-policy=never"):
        env.fetcher(pull_policy="never").fetch(env.server.url("/images/unknown.aci"))


def test_fetch_plain_http_url_needs_insecure(env: Env) -> None:
    env.trust()
    env.publish()
    url = env.server.url(_image_path(), scheme="http")
    with pytest.raises(FetchError, match="plain HTTP is not allowed"):
        env.fetcher().fetch(url)
    env.assert_empty()
    assert env.fetcher(insecure=InsecureOptions(http=True)).fetch(url).name == ETCD


def test_fetch_redirect_to_http_refused(env: Env) -> None:
    env.trust()
    env.publish()
    env.server.redirect("/moved.aci", env.server.url(_image_path(), scheme="http"))
    with pytest.raises(FetchError, match="refusing redirect to plain HTTP"):
        env.fetcher().fetch(env.server.url("/moved.aci"))
    env.assert_empty()


def _local_image(env: Env, name: str = ETCD, signer: str | None = "signer") -> pathlib.Path:
    path = env.tmp / "images" / "etcd.aci"
    path.parent.mkdir(exist_ok=True)
    data = image_bytes(name)
    path.write_bytes(data)
    if signer is not None:
        path.with_name("etcd.aci.asc").write_bytes(
            sign_bytes(env.keys, getattr(env.keys, signer), data)
        )
    return path


def test_fetch_file(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env.trust()
    path = _local_image(env)
    stored = env.fetcher().fetch(str(path))
    assert stored.key == _key(path.read_bytes())
    assert env.fetcher().fetch(f"file://{path}").key == stored.key
    monkeypatch.chdir(path.parent)
    assert env.fetcher().fetch("./etcd.aci").key == stored.key
    assert env.fetcher().fetch("etcd.aci").key == stored.key  # an existing file
    assert len(env.store.list()) == 1
    assert env.server.requests() == []


def test_fetch_file_without_signature(env: Env) -> None:
    env.trust()
    path = _local_image(env, signer=None)
    with pytest.raises(
        SignatureError, match=r"cannot read the signature .*etcd\.aci\.asc: No such file"
    ):
        env.fetcher().fetch(str(path))
    env.assert_empty()
    assert env.fetcher(insecure=InsecureOptions(image=True)).fetch(str(path)).name == ETCD
    assert any("skipping signature verification" in line for line in env.log)


def test_fetch_file_untrusted_or_tampered(env: Env) -> None:
    env.trust()
    path = _local_image(env, signer="other")
    with pytest.raises(SignatureError, match="not trusted"):
        env.fetcher().fetch(str(path))
    path = _local_image(env)
    path.write_bytes(image_bytes(ETCD, hello=b"changed\n"))
    with pytest.raises(SignatureError, match="bad signature"):
        env.fetcher().fetch(str(path))
    env.assert_empty()


def test_fetch_file_with_signature_option(env: Env) -> None:
    env.trust()
    path = _local_image(env)
    moved = path.with_name("detached.sig")
    path.with_name("etcd.aci.asc").rename(moved)
    assert env.fetcher().fetch(str(path), signature=str(moved)).name == ETCD


def test_fetch_missing_file(env: Env) -> None:
    with pytest.raises(ImageError, match="no such image file"):
        env.fetcher().fetch(str(env.tmp / "nothere.aci"))


def test_fetch_invalid_image_file(env: Env) -> None:
    path = env.tmp / "bad.aci"
    path.write_bytes(b"this is not an image")
    with pytest.raises(ImageError):
        env.fetcher(insecure=InsecureOptions(image=True)).fetch(str(path))
    env.assert_empty()


def test_fetch_hash(env: Env) -> None:
    env.trust()
    stored = env.fetcher().fetch(str(_local_image(env)))
    assert env.fetcher().fetch(stored.key[:20]).key == stored.key
    assert env.fetcher().fetch(stored.key).key == stored.key
    with pytest.raises(StoreError, match="no image with ID"):
        env.fetcher().fetch("sha512-" + "0" * 64)


def test_docker_needs_insecure_image(env: Env) -> None:
    with pytest.raises(SignatureError, match="docker images cannot be verified"):
        env.fetcher().fetch("docker://localhost/busybox")
    assert env.server.requests() == []


def test_progress_callback(env: Env) -> None:
    env.trust()
    aci = env.publish()
    seen: list[tuple[str, int, int | None]] = []

    def progress(url: str, done: int, total: int | None) -> None:
        seen.append((url, done, total))

    env.fetcher(progress=progress).fetch(f"{ETCD}:v2.0.0")
    url = env.server.url(_image_path())
    assert (url, len(aci), len(aci)) in seen


def test_second_endpoint_when_the_first_fails(env: Env) -> None:
    env.trust()
    aci = env.publish()
    good = f"{env.server.url('/images/')}{{name}}-{{version}}-{{os}}-{{arch}}.{{ext}}"
    env.server.page(
        "/etcd",
        [
            ("ac-discovery", f"{ETCD} {env.server.url('/mirror/')}{{name}}.{{ext}}"),
            ("ac-discovery", f"{ETCD} {good}"),
        ],
    )
    assert env.fetcher().fetch(f"{ETCD}:v2.0.0").key == _key(aci)
    assert env.server.requests()[1:] == [
        f"https:/mirror/{ETCD}.aci",
        f"https:{_image_path()}",
        f"https:{_image_path()}.asc",
    ]
    # Every endpoint failing: one error naming each.
    env.server.remove(_image_path())
    with pytest.raises(FetchError, match=r"cannot fetch .*mirror.*404.*; .*404"):
        env.fetcher(pull_policy="update").fetch(f"{ETCD}:v2.0.0")


def test_security_failure_stops_at_the_first_endpoint(env: Env) -> None:
    env.trust()
    env.publish(signer="other")
    first = f"{env.server.url('/images/')}{{name}}-{{version}}-{{os}}-{{arch}}.{{ext}}"
    env.server.page(
        "/etcd",
        [
            ("ac-discovery", f"{ETCD} {first}"),
            ("ac-discovery", f"{ETCD} https://h/{{name}}.{{ext}}"),
        ],
    )
    with pytest.raises(SignatureError, match="not trusted"):
        env.fetcher().fetch(f"{ETCD}:v2.0.0")
    assert not any("/h/" in r for r in env.server.requests())


def test_credentials_in_a_url(env: Env) -> None:
    """user:password in an image URL: sent as Basic auth, never shown or stored."""
    env.trust()
    env.publish()
    netloc = env.server.url("/").split("://", 1)[1].rstrip("/")
    stored = env.fetcher().fetch(f"https://alice:p%40ss@{netloc}{_image_path()}")
    assert stored.name == ETCD
    assert [r.headers.get("authorization") for r in env.server.log] == [
        "Basic YWxpY2U6cEBzcw==",  # alice:p@ss
        "Basic YWxpY2U6cEBzcw==",
    ]
    assert env.store.get_remote(env.server.url(_image_path())) is not None
    with pytest.raises(FetchError) as info:
        env.fetcher().fetch(f"https://alice:secret@{netloc}/missing.aci")
    assert "secret" not in str(info.value)
    assert str(info.value) == f"{env.server.url('/missing.aci')}: HTTP 404 not found"
