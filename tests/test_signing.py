"""appc.signing and ``actool sign`` with real gpg keys (reference: appc-spec.md §6, rkt.md §5)."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tempfile

import pytest

from appc.errors import SignatureError
from appc.signing import SignerInfo, format_fingerprint, key_info, sign_file, verify_file
from tests.aci_fixtures import compress, good_tar, manifest_bytes
from tests.gpg_keys import PASSPHRASE, GpgKeys, gpg_sign

pytest_plugins = ["tests.gpg_keys"]


@pytest.fixture
def aci(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "hello.aci"
    path.write_bytes(compress(good_tar(manifest_bytes(name="example.com/hello")), "gzip"))
    return path


def _gpg_verify(keys: GpgKeys, signature: pathlib.Path, data: pathlib.Path) -> str:
    """Check a signature with gpg itself (independently of appc.signing); return gpg's report."""
    result = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(keys.home),
            "--batch",
            "--status-fd",
            "1",
            "--verify",
            str(signature),
            str(data),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_format_fingerprint() -> None:
    assert format_fingerprint("0123456789abcdef0123456789abcdef01234567") == (
        "0123 4567 89AB CDEF 0123  4567 89AB CDEF 0123 4567"
    )


def test_key_info(gpg_keys: GpgKeys) -> None:
    (info,) = key_info(gpg_keys.signer.public)
    assert info.fingerprint == gpg_keys.signer.fingerprint
    assert info.uids == ("Test Signer <signer@example.com>",)
    (protected,) = key_info(gpg_keys.protected.public)
    assert protected.fingerprint == gpg_keys.protected.fingerprint
    assert protected.subkeys == (gpg_keys.protected.signing_subkey,)


def test_key_info_binary_and_several(gpg_keys: GpgKeys) -> None:
    binary = subprocess.run(
        ["gpg", "--dearmor"],
        input=gpg_keys.other.public,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert [k.fingerprint for k in key_info(binary)] == [gpg_keys.other.fingerprint]
    both = key_info(gpg_keys.signer.public + gpg_keys.other.public)
    assert {k.fingerprint for k in both} == {
        gpg_keys.signer.fingerprint,
        gpg_keys.other.fingerprint,
    }


@pytest.mark.parametrize(
    "data", [b"", b"not a key", b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxx\n"]
)
def test_key_info_garbage(data: bytes) -> None:
    with pytest.raises(SignatureError, match="no OpenPGP public key"):
        key_info(data)


def test_verify_good_signature(gpg_keys: GpgKeys, aci: pathlib.Path) -> None:
    signature = gpg_sign(gpg_keys, gpg_keys.signer, aci).read_bytes()
    signer = verify_file(aci, signature, [gpg_keys.signer.public])
    assert signer == SignerInfo(gpg_keys.signer.fingerprint, ("Test Signer <signer@example.com>",))
    # Other trusted keys beside the signer's do not matter.
    assert verify_file(aci, signature, [gpg_keys.other.public, gpg_keys.signer.public]) == signer


def test_verify_binary_signature(gpg_keys: GpgKeys, aci: pathlib.Path) -> None:
    armored = gpg_sign(gpg_keys, gpg_keys.signer, aci).read_bytes()
    binary = subprocess.run(
        ["gpg", "--dearmor"], input=armored, capture_output=True, check=True, timeout=60
    ).stdout
    assert (
        verify_file(aci, binary, [gpg_keys.signer.public]).fingerprint
        == gpg_keys.signer.fingerprint
    )


def test_verify_subkey_signature_names_the_primary_key(
    gpg_keys: GpgKeys, aci: pathlib.Path
) -> None:
    signature = gpg_sign(gpg_keys, gpg_keys.protected, aci).read_bytes()
    signer = verify_file(aci, signature, [gpg_keys.protected.public])
    assert signer.fingerprint == gpg_keys.protected.fingerprint


def test_tampered_file(gpg_keys: GpgKeys, aci: pathlib.Path) -> None:
    signature = gpg_sign(gpg_keys, gpg_keys.signer, aci).read_bytes()
    data = bytearray(aci.read_bytes())
    data[len(data) // 2] ^= 0x01
    aci.write_bytes(bytes(data))
    with pytest.raises(
        SignatureError, match=r"^bad signature: the image does not match its signature$"
    ):
        verify_file(aci, signature, [gpg_keys.signer.public])


def test_untrusted_signer(gpg_keys: GpgKeys, aci: pathlib.Path) -> None:
    signature = gpg_sign(gpg_keys, gpg_keys.other, aci).read_bytes()
    key_id = gpg_keys.other.fingerprint[-16:].upper()
    with pytest.raises(
        SignatureError, match=f"signed by a key that is not trusted \\(key ID {key_id}\\)"
    ):
        verify_file(aci, signature, [gpg_keys.signer.public])


def test_no_trusted_keys(gpg_keys: GpgKeys, aci: pathlib.Path) -> None:
    signature = gpg_sign(gpg_keys, gpg_keys.signer, aci).read_bytes()
    with pytest.raises(SignatureError, match="no trusted keys"):
        verify_file(aci, signature, [])


@pytest.mark.parametrize(
    "signature",
    [b"", b"garbage", b"-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n"],
)
def test_malformed_signature(gpg_keys: GpgKeys, aci: pathlib.Path, signature: bytes) -> None:
    with pytest.raises(SignatureError, match="signature verification failed"):
        verify_file(aci, signature, [gpg_keys.signer.public])


def test_unreadable_trusted_key(gpg_keys: GpgKeys, aci: pathlib.Path) -> None:
    signature = gpg_sign(gpg_keys, gpg_keys.signer, aci).read_bytes()
    with pytest.raises(SignatureError, match="a trusted key could not be read"):
        verify_file(aci, signature, [gpg_keys.signer.public, b"junk"])


def test_sign_and_verify(gpg_keys: GpgKeys, aci: pathlib.Path) -> None:
    signature = sign_file(aci, gpg_keys.signer.secret)
    assert signature.startswith(b"-----BEGIN PGP SIGNATURE-----")
    asc = aci.with_name("hello.aci.asc")
    asc.write_bytes(signature)
    assert f"VALIDSIG {gpg_keys.signer.fingerprint.upper()}" in _gpg_verify(gpg_keys, asc, aci)
    assert (
        verify_file(aci, signature, [gpg_keys.signer.public]).fingerprint
        == gpg_keys.signer.fingerprint
    )


def test_sign_with_passphrase(gpg_keys: GpgKeys, aci: pathlib.Path) -> None:
    signature = sign_file(aci, gpg_keys.protected.secret, passphrase=PASSPHRASE)
    signer = verify_file(aci, signature, [gpg_keys.protected.public])
    assert signer.fingerprint == gpg_keys.protected.fingerprint


def test_sign_wrong_or_missing_passphrase(gpg_keys: GpgKeys, aci: pathlib.Path) -> None:
    with pytest.raises(SignatureError, match=r"^signing failed: bad passphrase$"):
        sign_file(aci, gpg_keys.protected.secret, passphrase="wrong")
    with pytest.raises(
        SignatureError, match=r"^signing failed: the secret key needs a passphrase$"
    ):
        sign_file(aci, gpg_keys.protected.secret)


def test_sign_needs_a_secret_key(gpg_keys: GpgKeys, aci: pathlib.Path) -> None:
    for data in (gpg_keys.signer.public, b"nothing"):
        with pytest.raises(SignatureError, match="no OpenPGP secret key"):
            sign_file(aci, data)


def test_sign_chooses_key_id(gpg_keys: GpgKeys, aci: pathlib.Path) -> None:
    both = gpg_keys.signer.secret + gpg_keys.other.secret
    signature = sign_file(aci, both, key_id=gpg_keys.other.fingerprint)
    assert (
        verify_file(aci, signature, [gpg_keys.other.public]).fingerprint
        == gpg_keys.other.fingerprint
    )


def test_private_home_only(
    gpg_keys: GpgKeys, aci: pathlib.Path, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user's keyring is never read or written, and the throwaway homes are removed."""
    user_home = tmp_path / "user-gnupg"
    user_home.mkdir(mode=0o700)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("GNUPGHOME", str(user_home))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    # A key in the user's keyring does not make a signature valid.
    subprocess.run(
        ["gpg", "--batch", "--import"],
        input=gpg_keys.other.public,
        capture_output=True,
        check=True,
        timeout=60,
    )
    before = sorted(p.name for p in user_home.iterdir())
    signature = sign_file(aci, gpg_keys.other.secret)
    with pytest.raises(SignatureError, match="not trusted"):
        verify_file(aci, signature, [gpg_keys.signer.public])
    key_info(gpg_keys.signer.public)
    assert sorted(p.name for p in user_home.iterdir()) == before
    assert list(scratch.iterdir()) == []


# --- actool sign ------------------------------------------------------------------------


def _actool(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appc_tools.actool", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def test_actool_sign(gpg_keys: GpgKeys, aci: pathlib.Path, tmp_path: pathlib.Path) -> None:
    key = gpg_keys.signer.write_secret(tmp_path / "secret.asc")
    result = _actool("sign", "--key", str(key), "hello.aci", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    asc = tmp_path / "hello.aci.asc"
    assert f"VALIDSIG {gpg_keys.signer.fingerprint.upper()}" in _gpg_verify(gpg_keys, asc, aci)
    assert (
        verify_file(aci, asc.read_bytes(), [gpg_keys.signer.public]).fingerprint
        == gpg_keys.signer.fingerprint
    )
    # An existing signature is kept unless --overwrite.
    again = _actool("sign", "-key", str(key), "hello.aci", cwd=tmp_path)
    assert again.returncode == 1
    assert "hello.aci.asc" in again.stderr and "exists" in again.stderr
    assert (
        _actool("sign", "--overwrite", "--key", str(key), "hello.aci", cwd=tmp_path).returncode == 0
    )


def test_actool_sign_passphrase_and_output(
    gpg_keys: GpgKeys, aci: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    key = gpg_keys.protected.write_secret(tmp_path / "protected.asc")
    (tmp_path / "pass").write_text(PASSPHRASE + "\n")
    result = _actool(
        "sign",
        "--key",
        str(key),
        "--passphrase-file",
        "pass",
        "--output",
        "sig.asc",
        "hello.aci",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    signer = verify_file(aci, (tmp_path / "sig.asc").read_bytes(), [gpg_keys.protected.public])
    assert signer.fingerprint == gpg_keys.protected.fingerprint
    (tmp_path / "bad").write_text("wrong\n")
    refused = _actool(
        "sign", "--key", str(key), "--passphrase-file", "bad", "hello.aci", cwd=tmp_path
    )
    assert refused.returncode == 1
    assert refused.stderr == "actool sign: signing failed: bad passphrase\n"
    assert not (tmp_path / "hello.aci.asc").exists()
    assert PASSPHRASE not in refused.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--key", "missing.asc", "hello.aci"], "missing.asc: No such file or directory"),
        (["--key", "public.asc", "hello.aci"], "no OpenPGP secret key"),
        (["--key", "secret.asc", "nothere.aci"], "nothere.aci: no such file"),
    ],
)
def test_actool_sign_errors(
    gpg_keys: GpgKeys, aci: pathlib.Path, tmp_path: pathlib.Path, args: list[str], message: str
) -> None:
    gpg_keys.signer.write_secret(tmp_path / "secret.asc")
    gpg_keys.signer.write_public(tmp_path / "public.asc")
    result = _actool("sign", *args, cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(p.name.endswith(".aci.asc") for p in tmp_path.iterdir())


def test_actool_sign_needs_key(tmp_path: pathlib.Path, aci: pathlib.Path) -> None:
    result = _actool("sign", "hello.aci", cwd=tmp_path)
    assert result.returncode == 2
    assert "--key" in result.stderr


def test_actool_sign_debug_never_prints_key_material(
    gpg_keys: GpgKeys, aci: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    key = gpg_keys.protected.write_secret(tmp_path / "protected.asc")
    (tmp_path / "bad").write_text("hunter2-not-it\n")
    result = _actool(
        "--debug", "sign", "--key", str(key), "--passphrase-file", "bad", "hello.aci", cwd=tmp_path
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    output = result.stdout + result.stderr
    assert "PRIVATE KEY BLOCK" not in output
    assert "hunter2" not in output
