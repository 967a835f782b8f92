"""Trusted public keys, in rkt's on-disk layout.

Two roots: the local (administrator) configuration, ``/etc/rkt`` by default, and the
system (distribution) one, ``/usr/lib/rkt``.  Under each, ``trustedkeys/root.d/<fp>``
holds keys trusted for every image and ``trustedkeys/prefix.d/<prefix>/<fp>`` keys
trusted for the images whose name starts with that prefix (whole path segments).
Files are named by the lower-case hex fingerprint of the key they hold, which is
checked; an empty file in the local root masks the system key of that fingerprint.
"""

from __future__ import annotations

import os
import re

import attrs

from appc._fs import makedirs
from appc.errors import SignatureError, ValidationError
from appc.signing import KeyInfo, key_info
from appc.types.acidentifier import ACIdentifier

__all__ = [
    "DEFAULT_LOCAL_CONFIG",
    "DEFAULT_SYSTEM_CONFIG",
    "Keystore",
    "TrustedKey",
    "check_prefix",
]


def __dir__() -> list[str]:
    return __all__


DEFAULT_LOCAL_CONFIG = "/etc/rkt"
DEFAULT_SYSTEM_CONFIG = "/usr/lib/rkt"
_FINGERPRINT = re.compile(r"[0-9a-f]{40}")


@attrs.frozen
class TrustedKey:
    """A key from the keystore: fingerprint, armored data, and the file it came from."""

    fingerprint: str
    data: bytes = attrs.field(repr=False)
    path: str


def check_prefix(prefix: str) -> ACIdentifier:
    """A trust prefix: an ACIdentifier without ``.``/``..`` segments (it becomes a directory path).

    :raises ValidationError: ``--prefix must not contain a URL scheme`` and friends.
    """
    if "://" in prefix:
        raise ValidationError("--prefix must not contain a URL scheme", value=prefix)
    name = ACIdentifier(prefix)
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise ValidationError(
            f"bad prefix {prefix!r}: empty, '.' or '..' path segment", value=prefix
        )
    return name


class Keystore:
    """rkt's trusted-key store.

    :param local_config: the administrator's configuration root (written by ``trust``).
    :param system_config: the distribution's configuration root (read only).
    """

    def __init__(
        self, local_config: str = DEFAULT_LOCAL_CONFIG, system_config: str = DEFAULT_SYSTEM_CONFIG
    ) -> None:
        self.local = os.path.join(local_config, "trustedkeys")
        self.system = os.path.join(system_config, "trustedkeys")

    def _store(self, directory: str, data: bytes) -> tuple[str, KeyInfo]:
        keys = key_info(data)
        if len(keys) != 1:
            raise SignatureError(f"expected one public key, found {len(keys)}")
        info = keys[0]
        makedirs(directory, 0o755)  # every level 0755, whatever the umask
        path = os.path.join(directory, info.fingerprint)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        return path, info

    def add_prefix_key(self, prefix: str, data: bytes) -> tuple[str, KeyInfo]:
        """Trust the key in *data* for images under *prefix*; return where it was stored."""
        name = check_prefix(prefix)
        return self._store(os.path.join(self.local, "prefix.d", *name.split("/")), data)

    def add_root_key(self, data: bytes) -> tuple[str, KeyInfo]:
        """Trust the key in *data* for every image; return where it was stored."""
        return self._store(os.path.join(self.local, "root.d"), data)

    def _directories(self, name: str) -> list[str]:
        dirs = [os.path.join(root, "root.d") for root in (self.system, self.local)]
        parts = check_prefix(name).split("/")
        for depth in range(1, len(parts) + 1):
            for root in (self.system, self.local):
                dirs.append(os.path.join(root, "prefix.d", *parts[:depth]))
        return dirs

    def keys_for(self, name: str) -> list[TrustedKey]:
        """Every key trusted for the image *name*: root keys and keys of each prefix of it.

        :raises SignatureError: a key file whose content does not have its name's fingerprint.
        """
        found: dict[str, TrustedKey] = {}
        for directory in self._directories(name):
            try:
                entries = sorted(os.listdir(directory))
            except OSError:
                continue
            for entry in entries:
                path = os.path.join(directory, entry)
                if not _FINGERPRINT.fullmatch(entry) or not os.path.isfile(path):
                    continue
                with open(path, "rb") as f:
                    data = f.read()
                if not data:
                    if directory.startswith(self.local):
                        found.pop(entry, None)  # an empty local file disables that key
                    continue
                fingerprints = {k.fingerprint for k in key_info(data)}
                if entry not in fingerprints:
                    raise SignatureError(f"key file {path} does not hold the key of its name")
                found[entry] = TrustedKey(entry, data, path)
        return list(found.values())
