"""Detached OpenPGP signatures over image files (spec: signatures; rkt's verification).

Everything runs in a private, throwaway GnuPG home created for the call and removed
afterwards (its agent is stopped too): the user's own keyring is never read or
changed, and only the keys passed in can make a signature valid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

import attrs

from appc.errors import SignatureError

__all__ = ["KeyInfo", "SignerInfo", "format_fingerprint", "key_info", "sign_file", "verify_file"]


def __dir__() -> list[str]:
    return __all__


@attrs.frozen
class KeyInfo:
    """A public key: its primary fingerprint (40 lower-case hex) and user IDs."""

    fingerprint: str
    uids: tuple[str, ...]
    subkeys: tuple[str, ...] = ()


@attrs.frozen
class SignerInfo:
    """Who made a valid signature: the signing key's primary fingerprint and user IDs."""

    fingerprint: str
    uids: tuple[str, ...]


def format_fingerprint(fingerprint: str) -> str:
    """rkt's review form: 10 groups of 4 upper-case hex digits, two spaces after the 5th.

    >>> format_fingerprint("0123456789abcdef0123456789abcdef01234567")
    '0123 4567 89AB CDEF 0123  4567 89AB CDEF 0123 4567'
    """
    upper = fingerprint.upper()
    groups = [upper[i : i + 4] for i in range(0, len(upper), 4)]
    return " ".join(groups[:5]) + "  " + " ".join(groups[5:])


@contextlib.contextmanager
def _private_gpg() -> Iterator[Any]:
    import gnupg  # noqa: PLC0415 - only signing paths need it

    if shutil.which("gpg") is None:
        raise SignatureError("gpg is not installed (Debian package gnupg)")
    home = tempfile.mkdtemp(prefix="appc-gpg-")
    try:
        # Never prompt (a passphrase comes from the caller or not at all), and protect
        # imported secret keys with the cheapest key derivation: this keyring is deleted
        # in a moment, and the agent's calibration of a strong one takes seconds.
        with open(os.path.join(home, "gpg.conf"), "w", encoding="ascii") as conf:
            conf.write("pinentry-mode loopback\n")
        with open(os.path.join(home, "gpg-agent.conf"), "w", encoding="ascii") as conf:
            conf.write("s2k-count 65536\nallow-loopback-pinentry\n")
        gpg = gnupg.GPG(gnupghome=home)
        gpg.encoding = "utf-8"
        yield gpg
    finally:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["gpgconf", "--homedir", home, "--kill", "all"],
                capture_output=True,
                timeout=10,
                check=False,
            )
        shutil.rmtree(home, ignore_errors=True)


def key_info(data: bytes) -> list[KeyInfo]:
    """Read the public key(s) in *data* (armored or binary) without importing them anywhere.

    :raises SignatureError: when *data* holds no OpenPGP key.
    """
    with _private_gpg() as gpg:
        result = gpg.import_keys(data)
        if not result.fingerprints:
            raise SignatureError("no OpenPGP public key found in the key data")
        keys = []
        for listed in gpg.list_keys():
            keys.append(
                KeyInfo(
                    listed["fingerprint"].lower(),
                    tuple(listed.get("uids") or ()),
                    tuple(
                        sub[2].lower()
                        for sub in listed.get("subkeys") or ()
                        if len(sub) > 2 and sub[2]
                    ),
                )
            )
        return keys


def verify_file(
    data_path: str | os.PathLike[str], signature: bytes, keys: Iterable[bytes]
) -> SignerInfo:
    """Check the detached *signature* (armored or binary) of the file at *data_path*.

    Only *keys* (public keys, armored or binary) are trusted.

    :raises SignatureError: no keys, a malformed signature, a bad signature, or one
        made by a key that is not among *keys* (the message says which key signed).
    """
    key_list = list(keys)
    if not key_list:
        raise SignatureError("no trusted keys for this image")
    with _private_gpg() as gpg:
        for key in key_list:
            if not gpg.import_keys(key).fingerprints:
                raise SignatureError("a trusted key could not be read")
        trusted = {k["fingerprint"].lower(): k for k in gpg.list_keys()}
        fd, sig_path = tempfile.mkstemp(prefix="appc-sig-", dir=gpg.gnupghome)
        with os.fdopen(fd, "wb") as f:
            f.write(signature)
        with open(sig_path, "rb") as sig:
            verified = gpg.verify_file(sig, data_filename=os.fspath(data_path))
        primary = (
            getattr(verified, "pubkey_fingerprint", None) or verified.fingerprint or ""
        ).lower()
        if verified.valid and primary in trusted:
            return SignerInfo(primary, tuple(trusted[primary].get("uids") or ()))
        key_id = getattr(verified, "key_id", None)
        if verified.status == "signature bad":
            raise SignatureError("bad signature: the image does not match its signature")
        if verified.status == "no public key":
            raise SignatureError(
                f"the image is signed by a key that is not trusted (key ID {key_id})"
            )
        raise SignatureError(
            f"signature verification failed: {verified.status or 'not a valid signature'}"
        )


def sign_file(
    data_path: str | os.PathLike[str],
    secret_key: bytes,
    *,
    passphrase: str | None = None,
    key_id: str | None = None,
) -> bytes:
    """Make an ASCII-armored detached signature of the file at *data_path*.

    :param secret_key: the signing key (armored or binary secret key export).
    :param key_id: which key of *secret_key* to use, if it holds several.
    :raises SignatureError: no secret key, a wrong passphrase, or gpg failing.
    """
    with _private_gpg() as gpg:
        imported = (
            gpg.import_keys(secret_key, passphrase=passphrase)
            if passphrase
            else gpg.import_keys(secret_key)
        )
        secret = gpg.list_keys(secret=True)
        if not imported.fingerprints or not secret:
            raise SignatureError("no OpenPGP secret key found in the key data")
        chosen = key_id or secret[0]["fingerprint"]
        with open(data_path, "rb") as data:
            result = gpg.sign_file(
                data, keyid=chosen, detach=True, binary=False, passphrase=passphrase
            )
        if not result.data:
            raise SignatureError(f"signing failed: {_sign_failure(result, passphrase)}")
        signature: bytes = result.data
        return signature


def _sign_failure(result: Any, passphrase: str | None) -> str:
    """Why gpg did not sign, in a few words (never the passphrase: gpg does not echo it)."""
    lines = [
        line[len("gpg: ") :]
        for line in (result.stderr or "").splitlines()
        if line.startswith("gpg: ")
    ]
    detail = lines[-1] if lines else (result.status or "gpg failed")
    detail = detail.removeprefix("signing failed: ")
    if passphrase is None and ("batchmode" in detail or "No passphrase" in detail):
        return "the secret key needs a passphrase"
    return "bad passphrase" if detail == "Bad passphrase" else detail
