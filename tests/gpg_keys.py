"""Real OpenPGP keys for the signing, keystore, trust and fetch tests, made by ``gpg`` itself.

The keys live in a throwaway ``GNUPGHOME`` (never the user's keyring) created once per
test session; its agent is stopped at the end.  Three keys:

* ``signer``: an unprotected ed25519 key that signs with its primary key;
* ``protected``: a passphrase-protected key whose primary key only certifies and whose
  signing is done by a subkey (so a signature names the subkey, not the primary);
* ``other``: an unrelated unprotected key (an untrusted signer).

:func:`gpg_sign` makes a detached armored signature with ``gpg`` directly, so the
verification tests do not depend on :func:`appc.signing.sign_file`.

Test modules load it with ``pytest_plugins`` (one session-wide instance) and import its
helpers too, so pytest must not rewrite it: PYTEST_DONT_REWRITE.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
from collections.abc import Iterator

import attrs
import pytest

__all__ = ["PASSPHRASE", "GpgKeys", "TestKey", "gpg_keys", "gpg_sign", "sign_bytes"]

#: The passphrase of the ``protected`` key.
PASSPHRASE = "correct horse battery staple"


@attrs.frozen
class TestKey:
    """One key: its primary fingerprint (40 lower-case hex), user ID, armored exports."""

    fingerprint: str
    uid: str
    public: bytes = attrs.field(repr=False)
    secret: bytes = attrs.field(repr=False)
    passphrase: str | None = None
    signing_subkey: str | None = None

    def write_public(self, path: os.PathLike[str] | str) -> pathlib.Path:
        """Write the armored public key to *path*; return it."""
        target = pathlib.Path(path)
        target.write_bytes(self.public)
        return target

    def write_secret(self, path: os.PathLike[str] | str) -> pathlib.Path:
        """Write the armored secret key to *path* (mode 0600); return it."""
        target = pathlib.Path(path)
        target.write_bytes(self.secret)
        target.chmod(0o600)
        return target


@attrs.frozen
class GpgKeys:
    """The session's keys and the GnuPG home that holds them (for :func:`gpg_sign`)."""

    home: pathlib.Path
    signer: TestKey
    protected: TestKey
    other: TestKey


def _gpg(home: pathlib.Path, *args: str, passphrase: str = "", data: bytes | None = None) -> bytes:
    argv = [
        "gpg",
        "--homedir",
        str(home),
        "--batch",
        "--yes",
        "--no-tty",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        passphrase,
        *args,
    ]
    result = subprocess.run(argv, input=data, capture_output=True, timeout=60, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout


def _fingerprints(home: pathlib.Path, uid: str) -> list[str]:
    """The primary fingerprint, then the subkeys' ones, of the key with *uid*."""
    listing = _gpg(home, "--with-colons", "--list-keys", uid).decode()
    return [line.split(":")[9].lower() for line in listing.splitlines() if line.startswith("fpr:")]


def _make_key(
    home: pathlib.Path, uid: str, *, passphrase: str = "", subkey: bool = False
) -> TestKey:
    usage = "cert" if subkey else "sign"
    _gpg(home, "--quick-gen-key", uid, "ed25519", usage, "never", passphrase=passphrase)
    primary = _fingerprints(home, uid)[0]
    signing = None
    if subkey:
        _gpg(home, "--quick-add-key", primary, "ed25519", "sign", "never", passphrase=passphrase)
        signing = _fingerprints(home, uid)[1]
    public = _gpg(home, "--armor", "--export", primary)
    secret = _gpg(home, "--armor", "--export-secret-keys", primary, passphrase=passphrase)
    return TestKey(primary, uid, public, secret, passphrase or None, signing)


def gpg_sign(
    keys: GpgKeys,
    key: TestKey,
    path: os.PathLike[str] | str,
    output: os.PathLike[str] | str | None = None,
) -> pathlib.Path:
    """Sign the file at *path* with *key* (detached, armored) using gpg; return the .asc path."""
    target = pathlib.Path(output if output is not None else f"{os.fspath(path)}.asc")
    target.write_bytes(sign_bytes(keys, key, pathlib.Path(path).read_bytes()))
    return target


def sign_bytes(keys: GpgKeys, key: TestKey, data: bytes) -> bytes:
    """A detached armored signature of *data* by *key*, made by gpg."""
    user = f"{key.signing_subkey or key.fingerprint}!"
    return _gpg(
        keys.home,
        "--armor",
        "--detach-sign",
        "--local-user",
        user,
        "--output",
        "-",
        passphrase=key.passphrase or "",
        data=data,
    )


@pytest.fixture(scope="session")
def gpg_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GpgKeys]:
    """Three real keys in a throwaway GnuPG home (see the module documentation)."""
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    # The agent calibrates passphrase hashing to ~100 ms of a fast machine, which takes
    # seconds here; the minimum is plenty for a throwaway test keyring.
    (home / "gpg-agent.conf").write_text("s2k-count 65536\n")
    try:
        keys = GpgKeys(
            home,
            signer=_make_key(home, "Test Signer <signer@example.com>"),
            protected=_make_key(
                home, "Protected Signer <protected@example.com>", passphrase=PASSPHRASE, subkey=True
            ),
            other=_make_key(home, "Someone Else <other@example.com>"),
        )
        yield keys
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "all"],
            capture_output=True,
            timeout=30,
            check=False,
        )
