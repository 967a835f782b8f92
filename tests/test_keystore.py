"""appc.keystore: rkt's trusted-key layout (reference: rkt.md §5, appc-spec.md §6)."""

from __future__ import annotations

import os
import pathlib
import stat

import pytest

from appc.errors import SignatureError, ValidationError
from appc.keystore import Keystore, check_prefix
from tests.gpg_keys import GpgKeys

pytest_plugins = ["tests.gpg_keys"]


@pytest.fixture
def roots(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """(local, system) configuration roots."""
    return tmp_path / "etc-rkt", tmp_path / "usr-lib-rkt"


@pytest.fixture
def keystore(roots: tuple[pathlib.Path, pathlib.Path]) -> Keystore:
    return Keystore(str(roots[0]), str(roots[1]))


def _put(root: pathlib.Path, relative: str, data: bytes) -> pathlib.Path:
    path = root / "trustedkeys" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _fingerprints(keystore: Keystore, name: str) -> set[str]:
    return {k.fingerprint for k in keystore.keys_for(name)}


def test_add_prefix_key_layout(
    gpg_keys: GpgKeys, keystore: Keystore, roots: tuple[pathlib.Path, pathlib.Path]
) -> None:
    path, info = keystore.add_prefix_key("example.com/app", gpg_keys.signer.public)
    expected = roots[0] / "trustedkeys/prefix.d/example.com/app" / gpg_keys.signer.fingerprint
    assert pathlib.Path(path) == expected
    assert info.fingerprint == gpg_keys.signer.fingerprint
    assert expected.read_bytes() == gpg_keys.signer.public  # the key as given
    assert stat.S_IMODE(expected.stat().st_mode) == 0o644
    for directory in (expected.parent, expected.parent.parent, roots[0] / "trustedkeys/prefix.d"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o755
    assert [p.name for p in expected.parent.iterdir()] == [
        gpg_keys.signer.fingerprint
    ]  # no temp files
    # Adding it again replaces the file in place.
    assert keystore.add_prefix_key("example.com/app", gpg_keys.signer.public)[0] == path


def test_add_root_key_layout(
    gpg_keys: GpgKeys, keystore: Keystore, roots: tuple[pathlib.Path, pathlib.Path]
) -> None:
    path, _ = keystore.add_root_key(gpg_keys.other.public)
    assert pathlib.Path(path) == roots[0] / "trustedkeys/root.d" / gpg_keys.other.fingerprint
    assert not (roots[1] / "trustedkeys").exists()  # the system root is never written


def test_prefix_keys_apply_to_the_prefix_and_below(gpg_keys: GpgKeys, keystore: Keystore) -> None:
    keystore.add_prefix_key("example.com/app", gpg_keys.signer.public)
    keystore.add_prefix_key("example.com", gpg_keys.other.public)
    signer, other = gpg_keys.signer.fingerprint, gpg_keys.other.fingerprint
    assert _fingerprints(keystore, "example.com/app") == {signer, other}
    assert _fingerprints(keystore, "example.com/app/sub/deeper") == {signer, other}
    assert _fingerprints(keystore, "example.com/application") == {other}  # whole segments only
    assert _fingerprints(keystore, "example.com/ap") == {other}
    assert _fingerprints(keystore, "example.com") == {other}
    assert _fingerprints(keystore, "example.org/app") == set()
    assert _fingerprints(keystore, "coreos.com/etcd") == set()


def test_root_keys_apply_to_every_image(
    gpg_keys: GpgKeys, keystore: Keystore, roots: tuple[pathlib.Path, pathlib.Path]
) -> None:
    keystore.add_root_key(gpg_keys.signer.public)
    _put(roots[1], f"root.d/{gpg_keys.other.fingerprint}", gpg_keys.other.public)
    both = {gpg_keys.signer.fingerprint, gpg_keys.other.fingerprint}
    assert _fingerprints(keystore, "anything.org/at/all") == both
    assert _fingerprints(keystore, "x") == both


def test_system_keys_and_local_masking(
    gpg_keys: GpgKeys, keystore: Keystore, roots: tuple[pathlib.Path, pathlib.Path]
) -> None:
    fp = gpg_keys.signer.fingerprint
    _put(roots[1], f"prefix.d/example.com/{fp}", gpg_keys.signer.public)
    _put(roots[1], f"root.d/{gpg_keys.other.fingerprint}", gpg_keys.other.public)
    assert _fingerprints(keystore, "example.com/app") == {fp, gpg_keys.other.fingerprint}
    # An empty local file with the same path disables the distribution's key.
    _put(roots[0], f"prefix.d/example.com/{fp}", b"")
    _put(roots[0], f"root.d/{gpg_keys.other.fingerprint}", b"")
    assert _fingerprints(keystore, "example.com/app") == set()
    # ... and an empty *system* file disables nothing.
    _put(roots[1], f"root.d/{gpg_keys.signer.fingerprint}", b"")
    keystore.add_prefix_key("example.com/app", gpg_keys.signer.public)
    assert _fingerprints(keystore, "example.com/app") == {fp}


def test_trusted_key_records_its_file(gpg_keys: GpgKeys, keystore: Keystore) -> None:
    path, _ = keystore.add_prefix_key("example.com", gpg_keys.signer.public)
    (key,) = keystore.keys_for("example.com/app")
    assert (key.fingerprint, key.path, key.data) == (
        gpg_keys.signer.fingerprint,
        path,
        gpg_keys.signer.public,
    )
    assert gpg_keys.signer.public.decode() not in repr(key)  # key material stays out of reprs


def test_file_not_matching_its_name_is_an_error(
    gpg_keys: GpgKeys, keystore: Keystore, roots: tuple[pathlib.Path, pathlib.Path]
) -> None:
    _put(roots[0], f"prefix.d/example.com/{gpg_keys.signer.fingerprint}", gpg_keys.other.public)
    with pytest.raises(SignatureError, match="does not hold the key of its name"):
        keystore.keys_for("example.com/app")
    assert keystore.keys_for("example.org/app") == []  # other branches are not read


def test_garbage_key_file_is_an_error(
    keystore: Keystore, roots: tuple[pathlib.Path, pathlib.Path]
) -> None:
    _put(roots[0], "root.d/" + "ab" * 20, b"not a key")
    with pytest.raises(SignatureError):
        keystore.keys_for("example.com/app")


def test_other_files_are_ignored(
    gpg_keys: GpgKeys, keystore: Keystore, roots: tuple[pathlib.Path, pathlib.Path]
) -> None:
    _put(roots[0], "root.d/README", b"these are keys")
    _put(roots[0], "root.d/" + gpg_keys.signer.fingerprint.upper(), gpg_keys.signer.public)
    _put(roots[0], "root.d/" + gpg_keys.signer.fingerprint + ".tmp-1", gpg_keys.signer.public)
    (roots[0] / "trustedkeys/root.d" / ("cd" * 20)).mkdir()
    assert keystore.keys_for("example.com/app") == []


def test_add_refuses_bad_key_data(
    gpg_keys: GpgKeys, keystore: Keystore, roots: tuple[pathlib.Path, pathlib.Path]
) -> None:
    with pytest.raises(SignatureError, match="expected one public key, found 2"):
        keystore.add_prefix_key("example.com", gpg_keys.signer.public + gpg_keys.other.public)
    with pytest.raises(SignatureError, match="no OpenPGP public key"):
        keystore.add_root_key(b"junk")
    assert not (roots[0] / "trustedkeys").exists() or not any(
        (roots[0] / "trustedkeys").rglob("*[0-9a-f]")
    )


@pytest.mark.parametrize("prefix", ["example.com", "example.com/app", "a.b/c-d/e_f", "x"])
def test_check_prefix_good(prefix: str) -> None:
    assert check_prefix(prefix) == prefix


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("https://example.com", "must not contain a URL scheme"),
        ("example.com/../etc", "'..' path segment"),
        ("example.com/./app", "'..' path segment"),
        ("a//b", "empty, '.' or '..'"),
        ("..", "ACIdentifier"),
        ("example.com/", "ACIdentifier"),
        ("/etc", "ACIdentifier"),
        ("Example.com", "ACIdentifier"),
        ("", "ACIdentifier"),
    ],
)
def test_check_prefix_bad(prefix: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace(".", r"\.")):
        check_prefix(prefix)


def test_dotdot_prefixes_never_reach_the_disk(
    gpg_keys: GpgKeys, keystore: Keystore, tmp_path: pathlib.Path
) -> None:
    with pytest.raises(ValidationError):
        keystore.add_prefix_key("example.com/../../../escaped", gpg_keys.signer.public)
    with pytest.raises(ValidationError):
        keystore.keys_for("example.com/../x")
    assert not any(p.name == "escaped" for p in tmp_path.rglob("*"))
    assert sorted(os.listdir(tmp_path)) == []


def test_default_roots() -> None:
    store = Keystore()
    assert (store.local, store.system) == ("/etc/rkt/trustedkeys", "/usr/lib/rkt/trustedkeys")
