"""Deterministic Docker/OCI test images, built by code (no servers, nothing downloaded).

The model:

* :class:`Layer` — one layer: its uncompressed tar (``diff_id``) and its blob, compressed with
  gzip, zstd or not at all (``digest``).  Small layers live in memory; big ones live in files.
* :class:`TestImage` — an image config plus its layers, with helpers for the config blob and the
  Docker schema2, OCI and signed schema1 manifests, and ``files``: the final file tree the layers
  leave once applied in order with OCI whiteout rules — written out by hand as data, so tests can
  assert "exactly these files".
* :class:`MultiArchImage` — per-platform images plus a Docker manifest list / OCI image index.

Builders: :func:`busybox_image`, :func:`whiteout_image`, :func:`full_config_image`,
:func:`empty_config_image`, :func:`multiarch_images`, :func:`big_image`.

Writers: :func:`write_docker_save`, :func:`write_oci_layout`, :func:`write_oci_archive`.

Everything is reproducible: the same call gives the same bytes (fixed mtimes, gzip without a time
stamp, a fixed signing key derived from a seed).

>>> image = empty_config_image()
>>> image.layers[0].digest == "sha256:" + hashlib.sha256(image.layers[0].blob_bytes()).hexdigest()
True
>>> json.loads(image.config_blob())["rootfs"]["diff_ids"] == [image.layers[0].diff_id]
True
>>> sorted(image.files)
['hello.txt']
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import io
import json
import math
import os
import pathlib
import platform
import random
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import IO, Any, Literal, Protocol, cast

import attrs
import zstandard

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_LAYER_GZIP",
    "DOCKER_LAYER_TAR",
    "DOCKER_MANIFEST_LIST",
    "DOCKER_SCHEMA1",
    "DOCKER_SCHEMA1_SIGNED",
    "DOCKER_SCHEMA2",
    "FIXED_MTIME",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_TAR",
    "OCI_LAYER_ZSTD",
    "OCI_MANIFEST",
    "REF_NAME_ANNOTATION",
    "Compression",
    "FileSpec",
    "Layer",
    "ListFormat",
    "ManifestFormat",
    "MultiArchImage",
    "RsaKey",
    "TarEntry",
    "TestImage",
    "big_image",
    "busybox_image",
    "empty_config_image",
    "full_config_image",
    "host_platform",
    "iter_tar_names",
    "make_layer",
    "make_tar",
    "multiarch_images",
    "schema1_payload",
    "sha256_digest",
    "whiteout_image",
    "write_docker_save",
    "write_oci_archive",
    "write_oci_layout",
]

# --------------------------------------------------------------------------- media types

DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_SCHEMA2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"

Compression = Literal["gzip", "zstd", "none"]
ManifestFormat = Literal["schema2", "oci", "schema1"]
"""``schema2``: Docker image manifest v2 schema 2; ``oci``: OCI image manifest; ``schema1``:
signed Docker schema 1 (``…v1+prettyjws``)."""
ListFormat = Literal["schema2", "oci"]
"""``schema2``: Docker manifest list (children are schema2); ``oci``: OCI image index."""

FIXED_MTIME = 1_600_000_000
"""mtime of every tar entry the builders write (2020-09-13T12:26:40Z)."""
CREATED = "2020-09-13T12:26:40Z"
_GZIP_LEVEL = 6
_ZSTD_LEVEL = 3
_CHUNK = 1 << 20


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``.

    >>> sha256_digest(b"")
    'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
    """
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical_json(value: Any) -> bytes:
    """Compact JSON with sorted keys: the stable form used for config blobs."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _pretty_json(value: Any) -> bytes:
    """Indented JSON in insertion order: the form used for manifests (as registries show them)."""
    return json.dumps(value, indent=3).encode()


def host_platform() -> tuple[str, str]:
    """(os, architecture) of this machine in Go's spelling, e.g. ``("linux", "amd64")``."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}
    return "linux", arch.get(machine, machine)


# --------------------------------------------------------------------------- expected trees


@attrs.frozen
class FileSpec:
    """One path of an expected final tree (what a correct layer squash leaves).

    ``kind`` is ``file``, ``dir``, ``symlink`` or ``hardlink``.  A ``hardlink`` shares its inode
    with the path ``target`` (another key of the same tree) and has that file's ``data`` and mode.
    A ``symlink``'s ``target`` is the link text as written.  For very big files ``data`` is None
    and only ``size``/``sha256`` are known.
    """

    kind: Literal["file", "dir", "symlink", "hardlink"]
    mode: int = 0o644
    data: bytes | None = b""
    target: str = ""
    uid: int = 0
    gid: int = 0
    size: int = attrs.field(default=attrs.Factory(
        lambda self: len(self.data) if self.data is not None else 0, takes_self=True))
    sha256: str = attrs.field(default=attrs.Factory(
        lambda self: hashlib.sha256(self.data).hexdigest() if self.data is not None else "",
        takes_self=True))


def _f(data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> FileSpec:
    return FileSpec("file", mode, data, uid=uid, gid=gid)


def _d(mode: int = 0o755) -> FileSpec:
    return FileSpec("dir", mode, b"")


def _sym(target: str) -> FileSpec:
    return FileSpec("symlink", 0o777, b"", target)


def _hard(target: str, data: bytes, mode: int = 0o644) -> FileSpec:
    return FileSpec("hardlink", mode, data, target)


# --------------------------------------------------------------------------- tar building


@attrs.frozen
class TarEntry:
    """One member of a layer tar, exactly as it is written (``name`` is not normalised, so
    ``"."``, ``"./"`` and ``"./a"`` are all possible).  ``target`` is the link name of a
    ``symlink`` or ``hardlink``."""

    name: str
    kind: Literal["file", "dir", "symlink", "hardlink"] = "file"
    data: bytes = b""
    target: str = ""
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    mtime: int = FIXED_MTIME

    def tarinfo(self) -> tarfile.TarInfo:
        """The header for this entry (size set for files)."""
        info = _RawNameTarInfo(self.name)
        info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE,
                     "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE}[self.kind]
        default_mode = {"file": 0o644, "dir": 0o755, "symlink": 0o777, "hardlink": 0o644}
        info.mode = self.mode if self.mode is not None else default_mode[self.kind]
        info.uid, info.gid, info.mtime = self.uid, self.gid, self.mtime
        info.uname = info.gname = ""
        info.linkname = self.target
        info.size = len(self.data) if self.kind == "file" else 0
        return info


class _RawNameTarInfo(tarfile.TarInfo):
    """A TarInfo that writes its name verbatim (tarfile appends ``/`` to directory names, which
    would turn a ``.`` entry into ``./``)."""

    def get_info(self) -> Any:
        info = dict(super().get_info())
        info["name"] = self.name
        return info


def _e(name: str, data: bytes | str = b"", mode: int | None = None, **kw: Any) -> TarEntry:
    """Shorthand for a regular file entry (str data is UTF-8 encoded)."""
    return TarEntry(name, "file", data.encode() if isinstance(data, str) else data, mode=mode, **kw)


def _dir(name: str, mode: int | None = None) -> TarEntry:
    return TarEntry(name, "dir", mode=mode)


def _symlink(name: str, target: str) -> TarEntry:
    return TarEntry(name, "symlink", target=target)


def _link(name: str, target: str) -> TarEntry:
    return TarEntry(name, "hardlink", target=target)


def make_tar(entries: Iterable[TarEntry]) -> bytes:
    """An uncompressed tar (PAX format, with the two end-of-archive blocks) holding ``entries``
    in the given order.

    >>> data = make_tar([TarEntry("."), TarEntry("./a", data=b"x")])
    >>> [m.name for m in tarfile.open(fileobj=io.BytesIO(data))]
    ['.', './a']
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            tar.addfile(entry.tarinfo(), io.BytesIO(entry.data) if entry.kind == "file" else None)
    return buf.getvalue()


def _compress_bytes(data: bytes, compression: Compression) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=_GZIP_LEVEL, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(data)
    if compression == "none":
        return data
    raise ValueError(f"unknown compression {compression!r}")


# --------------------------------------------------------------------------- layers

_LAYER_TYPES: dict[tuple[Compression, str], str] = {
    ("gzip", "schema2"): DOCKER_LAYER_GZIP,
    ("none", "schema2"): DOCKER_LAYER_TAR,
    ("zstd", "schema2"): OCI_LAYER_ZSTD,  # Docker has no zstd type of its own; moby uses OCI's
    ("gzip", "oci"): OCI_LAYER_GZIP,
    ("none", "oci"): OCI_LAYER_TAR,
    ("zstd", "oci"): OCI_LAYER_ZSTD,
}


@attrs.frozen
class Layer:
    """One image layer.

    ``digest``/``size`` describe the blob (what a registry stores); ``diff_id``/``tar_size`` the
    uncompressed tar (what the config's ``rootfs.diff_ids`` lists).  The blob is either in memory
    (``blob``) or in a file (``blob_path``); the tar is in memory (``tar``), or obtained by
    decompressing the blob.  Use :meth:`open_blob`/:meth:`open_tar` to stream either.
    """

    compression: Compression
    digest: str
    size: int
    diff_id: str
    tar_size: int
    blob: bytes | None = attrs.field(default=None, repr=False)
    blob_path: pathlib.Path | None = None
    tar: bytes | None = attrs.field(default=None, repr=False)

    @classmethod
    def from_tar(cls, tar: bytes, compression: Compression = "gzip") -> Layer:
        """A layer from an in-memory tar."""
        blob = _compress_bytes(tar, compression)
        return cls(compression, sha256_digest(blob), len(blob), sha256_digest(tar), len(tar),
                   blob=blob, tar=tar)

    @classmethod
    def from_tar_file(cls, tar_path: os.PathLike[str] | str, blob_dir: os.PathLike[str] | str,
                      compression: Compression = "gzip") -> Layer:
        """A layer from a tar on disk, streamed: the blob is written to
        ``blob_dir/<hex>`` without reading the tar into memory."""
        with open(tar_path, "rb") as src:
            return _stream_layer(lambda sink: shutil.copyfileobj(src, sink, _CHUNK),
                                 pathlib.Path(blob_dir), compression)

    def media_type(self, fmt: ManifestFormat | ListFormat = "oci") -> str:
        """The layer media type in a ``schema2`` or ``oci`` manifest."""
        return _LAYER_TYPES[self.compression, "oci" if fmt == "oci" else "schema2"]

    def descriptor(self, fmt: ManifestFormat = "oci") -> dict[str, Any]:
        """The manifest ``layers`` entry for this layer."""
        return {"mediaType": self.media_type(fmt), "size": self.size, "digest": self.digest}

    def open_blob(self) -> IO[bytes]:
        """A binary stream of the blob (the caller closes it)."""
        if self.blob is not None:
            return io.BytesIO(self.blob)
        assert self.blob_path is not None
        return open(self.blob_path, "rb")

    def blob_bytes(self) -> bytes:
        """The whole blob (avoid for big layers)."""
        with self.open_blob() as stream:
            return stream.read()

    def open_tar(self) -> IO[bytes]:
        """A binary stream of the uncompressed tar (decompressing the blob if need be; the
        caller closes it)."""
        if self.tar is not None:
            return io.BytesIO(self.tar)
        source: Any = self.blob_path if self.blob_path is not None else io.BytesIO(self.blob or b"")
        if self.compression == "gzip":
            return cast(IO[bytes], gzip.open(source, "rb"))
        if self.compression == "zstd":
            return cast(IO[bytes], zstandard.open(source, "rb"))
        return self.open_blob()

    def tar_bytes(self) -> bytes:
        """The whole uncompressed tar (avoid for big layers)."""
        with self.open_tar() as stream:
            return stream.read()

    def recompressed(self, compression: Compression) -> Layer:
        """The same tar with another compression (in-memory layers only)."""
        return Layer.from_tar(self.tar_bytes(), compression)


class _HashingWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to an optional sink."""

    def __init__(self, sink: Any = None) -> None:
        self.hash = hashlib.sha256()
        self.size = 0
        self._sink = sink

    def writable(self) -> bool:
        return True

    def tell(self) -> int:  # tarfile asks once, at open
        return self.size

    def write(self, b: Any) -> int:
        view = memoryview(b)
        self.hash.update(view)
        self.size += len(view)
        if self._sink is not None:
            self._sink.write(view)
        return len(view)

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class _TarSink(Protocol):
    def __call__(self, sink: IO[bytes], /) -> None: ...


def _stream_layer(produce: _TarSink, blob_dir: pathlib.Path, compression: Compression,
                  level: int = _GZIP_LEVEL) -> Layer:
    """Run ``produce(sink)`` (which writes an uncompressed tar to ``sink``) and stream it through
    the compressor into ``blob_dir/<hex>``: one pass, flat memory."""
    blob_dir.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(dir=blob_dir, prefix=".layer-", delete=False)
    try:
        with tmp:
            blob_hash = _HashingWriter(tmp)
            sink: Any = blob_hash
            if compression == "gzip":
                sink = gzip.GzipFile(filename="", mode="wb", fileobj=cast(IO[bytes], blob_hash),
                                     compresslevel=level, mtime=0)
            elif compression == "zstd":
                sink = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).stream_writer(
                    cast(IO[bytes], blob_hash), closefd=False)
            tar_hash = _HashingWriter(sink)
            produce(cast(IO[bytes], tar_hash))
            if sink is not blob_hash:
                sink.close()  # writes the gzip trailer / ends the zstd frame
        final = blob_dir / blob_hash.hash.hexdigest()
        os.replace(tmp.name, final)
    except BaseException:
        os.unlink(tmp.name)
        raise
    return Layer(compression, blob_hash.digest, blob_hash.size, tar_hash.digest, tar_hash.size,
                 blob_path=final)


def make_layer(entries: Iterable[TarEntry], compression: Compression = "gzip") -> Layer:
    """An in-memory layer holding ``entries`` in order."""
    return Layer.from_tar(make_tar(entries), compression)


# --------------------------------------------------------------------------- schema1 signing


@attrs.frozen
class RsaKey:
    """A small RSA implementation, enough to sign (PKCS#1 v1.5, SHA-256) schema1 manifests and
    JWTs, with a *deterministic* key derived from a seed.  Never use it outside tests."""

    n: int
    e: int
    d: int
    p: int
    q: int

    @classmethod
    @functools.cache
    def generate(cls, bits: int = 2048, seed: int = 0) -> RsaKey:
        """The key for ``seed`` (cached: about half a second in pure Python)."""
        rng = random.Random(seed)
        e = 65537
        while True:
            p, q = _prime(bits // 2, rng), _prime(bits // 2, rng)
            if p != q and math.gcd(e, (p - 1) * (q - 1)) == 1:
                break
        p, q = max(p, q), min(p, q)
        return cls(p * q, e, pow(e, -1, (p - 1) * (q - 1)), p, q)

    @property
    def size(self) -> int:
        """Modulus length in bytes."""
        return (self.n.bit_length() + 7) // 8

    def sign(self, data: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 signature of ``data`` with SHA-256 (JWS ``RS256``)."""
        digest_info = bytes.fromhex("3031300d060960864801650304020105000420")
        t = digest_info + hashlib.sha256(data).digest()
        em = b"\x00\x01" + b"\xff" * (self.size - len(t) - 3) + b"\x00" + t
        m = int.from_bytes(em, "big")
        # CRT: four times faster than pow(m, d, n)
        m1 = pow(m, self.d % (self.p - 1), self.p)
        m2 = pow(m, self.d % (self.q - 1), self.q)
        h = (pow(self.q, -1, self.p) * (m1 - m2)) % self.p
        return (m2 + h * self.q).to_bytes(self.size, "big")

    def verify(self, data: bytes, signature: bytes) -> bool:
        """Check a signature made by :meth:`sign` (for self-tests)."""
        em = pow(int.from_bytes(signature, "big"), self.e, self.n).to_bytes(self.size, "big")
        return em.endswith(hashlib.sha256(data).digest()) and em.startswith(b"\x00\x01\xff")

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK (what libtrust puts in a schema1 signature header)."""
        return {"kty": "RSA", "n": b64url(_int_bytes(self.n)), "e": b64url(_int_bytes(self.e))}

    def private_pem(self) -> bytes:
        """PKCS#1 ``RSA PRIVATE KEY`` PEM (for ``openssl req -key`` to make a certificate)."""
        fields = [0, self.n, self.e, self.d, self.p, self.q, self.d % (self.p - 1),
                  self.d % (self.q - 1), pow(self.q, -1, self.p)]
        der = _der(0x30, b"".join(_der_int(v) for v in fields))
        body = base64.encodebytes(der).decode().replace("\n", "")
        lines = [body[i:i + 64] for i in range(0, len(body), 64)]
        return ("-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(lines)
                + "\n-----END RSA PRIVATE KEY-----\n").encode()


_SMALL_PRIMES = [p for p in range(3, 2000) if all(p % k for k in range(2, math.isqrt(p) + 1))]
_SMALL_PRODUCT = math.prod(_SMALL_PRIMES)


def _prime(bits: int, rng: random.Random) -> int:
    while True:
        candidate = rng.getrandbits(bits) | (3 << (bits - 2)) | 1
        if math.gcd(candidate, _SMALL_PRODUCT) == 1 and _miller_rabin(candidate, rng):
            return candidate


def _miller_rabin(n: int, rng: random.Random, rounds: int = 24) -> bool:
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        x = pow(rng.randrange(2, n - 2), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _int_bytes(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | len(_int_bytes(n))]) + _int_bytes(n)
    return bytes([tag]) + length + content


def _der_int(value: int) -> bytes:
    raw = _int_bytes(value)
    return _der(0x02, b"\x00" + raw if raw[0] & 0x80 else raw)


def b64url(data: bytes) -> str:
    """Unpadded base64url (JOSE)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_schema1(payload: bytes, key: RsaKey, time: str = CREATED) -> bytes:
    """Sign a schema1 manifest the way libtrust's ``JSONSignature.PrettySignature`` does: the
    signature covers ``protected.payload`` where ``payload`` is the unsigned JSON and the
    protected header records how to cut the signed document back to it (``formatLength``,
    ``formatTail``)."""
    close = len(payload.rstrip())
    assert payload[close - 1:close] == b"}", "payload must be a JSON object"
    format_length = len(payload[:close - 1].rstrip())
    tail = payload[format_length:]
    protected = b64url(json.dumps({"formatLength": format_length, "formatTail": b64url(tail),
                                   "time": time}, separators=(",", ":")).encode())
    signature = key.sign(f"{protected}.{b64url(payload)}".encode())
    signatures = [{"header": {"jwk": key.public_jwk(), "alg": "RS256"},
                   "signature": b64url(signature), "protected": protected}]
    indent = "   "
    sig_json = json.dumps(signatures, indent=3).replace("\n", "\n" + indent)
    return payload[:format_length] + f',\n{indent}"signatures": {sig_json}'.encode() + tail


def schema1_payload(signed: bytes) -> bytes:
    """The unsigned JSON a signed schema1 manifest covers, cut back with the first signature's
    protected header.  Its sha256 is the registry digest (``Docker-Content-Digest``) of the
    manifest: registries re-sign schema1 on every GET, so the signed bytes change but this
    does not.

    >>> signed = busybox_image().schema1_manifest("a/b", "v1")
    >>> b"signatures" in schema1_payload(signed), json.loads(schema1_payload(signed))["tag"]
    (False, 'v1')
    """
    protected = json.loads(signed)["signatures"][0]["protected"]
    header = json.loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4)))
    tail = header["formatTail"]
    return signed[:header["formatLength"]] + base64.urlsafe_b64decode(tail + "=" * (-len(tail) % 4))


# --------------------------------------------------------------------------- images


@attrs.frozen
class TestImage:
    """An image: config + layers (base first) + the expected final tree ``files``.

    ``name``/``tag`` are a suggested repository and tag (used by writers and as schema1's
    ``name``/``tag`` when none is given).  ``files`` maps relative paths (no leading ``/``, no
    trailing ``/``) to :class:`FileSpec`; the root itself is not listed.
    """

    __test__ = False  # not a pytest test class

    config: dict[str, Any]
    layers: tuple[Layer, ...]
    files: Mapping[str, FileSpec] = attrs.field(factory=dict, repr=False)
    name: str = "library/test"
    tag: str = "latest"

    # -- config
    def config_blob(self) -> bytes:
        """The image config as stored in a registry (canonical JSON)."""
        return _canonical_json(self.config)

    @property
    def config_digest(self) -> str:
        return sha256_digest(self.config_blob())

    @property
    def platform(self) -> dict[str, str]:
        """``{"os", "architecture"[, "variant"]}`` from the config."""
        keys = ("os", "architecture", "variant")
        return {k: self.config[k] for k in keys if k in self.config}

    # -- manifests
    def manifest(self, fmt: ManifestFormat = "schema2", *, name: str | None = None,
                 tag: str | None = None) -> bytes:
        """The manifest bytes in ``fmt`` (``name``/``tag`` matter for schema1 only)."""
        if fmt == "schema2":
            return self.schema2_manifest()
        if fmt == "oci":
            return self.oci_manifest()
        if fmt == "schema1":
            return self.schema1_manifest(name or self.name, tag or self.tag)
        raise ValueError(f"unknown manifest format {fmt!r}")

    @staticmethod
    def media_type(fmt: ManifestFormat) -> str:
        """The manifest media type (the ``Content-Type`` to PUT it with)."""
        return {"schema2": DOCKER_SCHEMA2, "oci": OCI_MANIFEST,
                "schema1": DOCKER_SCHEMA1_SIGNED}[fmt]

    def manifest_digest(self, fmt: ManifestFormat = "schema2", **kw: str) -> str:
        return sha256_digest(self.manifest(fmt, **kw))

    def schema2_manifest(self) -> bytes:
        """Docker image manifest v2, schema 2."""
        blob = self.config_blob()
        return _pretty_json({
            "schemaVersion": 2,
            "mediaType": DOCKER_SCHEMA2,
            "config": {"mediaType": DOCKER_CONFIG, "size": len(blob),
                       "digest": sha256_digest(blob)},
            "layers": [layer.descriptor("schema2") for layer in self.layers],
        })

    def oci_manifest(self) -> bytes:
        """OCI image manifest (with ``mediaType``, as current tools write it)."""
        blob = self.config_blob()
        return _pretty_json({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "size": len(blob), "digest": sha256_digest(blob)},
            "layers": [layer.descriptor("oci") for layer in self.layers],
        })

    def schema1_manifest(self, name: str | None = None, tag: str | None = None,
                         key: RsaKey | None = None) -> bytes:
        """Signed Docker schema 1 manifest (``fsLayers``/``history`` top layer first), signed
        with a libtrust-style JWS so that registry 2.x accepts it."""
        history = [{"v1Compatibility": json.dumps(v1, separators=(",", ":"))}
                   for _, v1 in reversed(self.v1_layers())]
        payload = _pretty_json({
            "schemaVersion": 1,
            "name": name or self.name,
            "tag": tag or self.tag,
            "architecture": self.config.get("architecture", "amd64"),
            "fsLayers": [{"blobSum": layer.digest} for layer in reversed(self.layers)],
            "history": history,
        })
        return sign_schema1(payload, key or RsaKey.generate())

    def v1_layers(self) -> list[tuple[str, dict[str, Any]]]:
        """``(v1 id, v1 JSON)`` per layer, base first: what ``docker save`` writes as
        ``<id>/json`` and schema1 as ``v1Compatibility``.  Only the top layer carries the
        config, os and architecture (as Docker does); each layer names its ``parent``."""
        out: list[tuple[str, dict[str, Any]]] = []
        parent = ""
        history = [h for h in self.config.get("history", []) if not h.get("empty_layer")]
        for i, layer in enumerate(self.layers):
            top = i == len(self.layers) - 1
            layer_id = hashlib.sha256(
                f"{parent}\n{layer.diff_id}\n{self.config_digest if top else ''}".encode()
            ).hexdigest()
            if top:
                v1 = {k: v for k, v in self.config.items() if k not in ("rootfs", "history")}
            else:
                created_by = history[i].get("created_by", "") if i < len(history) else ""
                v1 = {"created": self.config.get("created", CREATED),
                      "container_config": {"Cmd": [created_by] if created_by else None}}
            v1 = {"id": layer_id, **({"parent": parent} if parent else {}), **v1}
            out.append((layer_id, v1))
            parent = layer_id
        return out

    # -- blobs
    def blobs(self, fmt: ManifestFormat = "schema2") -> list[tuple[str, int, _Opener]]:
        """``(digest, size, open)`` for every blob a registry needs before the manifest:
        the config (not for schema1), then the layers."""
        out: list[tuple[str, int, _Opener]] = []
        if fmt != "schema1":
            blob = self.config_blob()
            out.append((sha256_digest(blob), len(blob), functools.partial(io.BytesIO, blob)))
        seen = set()
        for layer in self.layers:
            if layer.digest not in seen:
                seen.add(layer.digest)
                out.append((layer.digest, layer.size, layer.open_blob))
        return out

    def with_compression(self, compression: Compression) -> TestImage:
        """The same image with every layer recompressed (diff_ids and config unchanged)."""
        return attrs.evolve(self, layers=tuple(layer.recompressed(compression)
                                               for layer in self.layers))

    def with_config(self, **changes: Any) -> TestImage:
        """The same layers with top-level config keys replaced (``config=...`` for the run
        config)."""
        return attrs.evolve(self, config={**self.config, **changes})


class _Opener(Protocol):
    def __call__(self) -> IO[bytes]: ...


@attrs.frozen
class MultiArchImage:
    """Per-platform images of one repository, with a Docker manifest list and an OCI index."""

    images: tuple[TestImage, ...]
    name: str = "library/multiarch"
    tag: str = "latest"

    def child_format(self, fmt: ListFormat) -> ManifestFormat:
        """Manifest format of the children of a list in ``fmt``."""
        return "oci" if fmt == "oci" else "schema2"

    def manifest(self, fmt: ListFormat = "schema2") -> bytes:
        """The Docker manifest list (``schema2``) or OCI image index (``oci``)."""
        child = self.child_format(fmt)
        entries = []
        for image in self.images:
            body = image.manifest(child)
            entries.append({"mediaType": TestImage.media_type(child), "size": len(body),
                            "digest": sha256_digest(body), "platform": image.platform})
        media_type = OCI_INDEX if fmt == "oci" else DOCKER_MANIFEST_LIST
        return _pretty_json({"schemaVersion": 2, "mediaType": media_type, "manifests": entries})

    @staticmethod
    def media_type(fmt: ListFormat) -> str:
        return OCI_INDEX if fmt == "oci" else DOCKER_MANIFEST_LIST

    def manifest_digest(self, fmt: ListFormat = "schema2") -> str:
        return sha256_digest(self.manifest(fmt))

    def for_arch(self, architecture: str) -> TestImage:
        """The image for ``architecture`` (``amd64``, ``arm64``)."""
        return next(i for i in self.images if i.config["architecture"] == architecture)


def _image(name: str, run_config: dict[str, Any] | None, layers: Sequence[Layer],
           files: Mapping[str, FileSpec], *, architecture: str | None = None,
           variant: str | None = None, tag: str = "latest",
           extra: Mapping[str, Any] | None = None) -> TestImage:
    """Assemble a config (rootfs and one history entry per layer) and a TestImage."""
    os_name, host_arch = host_platform()
    config: dict[str, Any] = {"architecture": architecture or host_arch, "os": os_name}
    if variant:
        config["variant"] = variant
    config["created"] = CREATED
    config.update(extra or {})
    if run_config is not None:
        config["config"] = run_config
    config["rootfs"] = {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]}
    config["history"] = [{"created": CREATED, "created_by": f"appc-test layer {i}"}
                         for i in range(len(layers))]
    return TestImage(config, tuple(layers), dict(sorted(files.items())), name, tag)


# --------------------------------------------------------------------------- builders

BUSYBOX_PATH = pathlib.Path("/bin/busybox")
BUSYBOX_APPLETS = ("sh", "ls", "cat", "echo", "true")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@functools.cache
def _busybox_layer(compression: Compression) -> tuple[Layer, dict[str, FileSpec]]:
    binary = BUSYBOX_PATH.read_bytes()
    entries = [_dir("bin/"), _e("bin/busybox", binary, 0o755)]
    entries += [_symlink(f"bin/{applet}", "busybox") for applet in BUSYBOX_APPLETS]
    files = {"bin": _d(), "bin/busybox": _f(binary, 0o755)}
    files.update({f"bin/{applet}": _sym("busybox") for applet in BUSYBOX_APPLETS})
    return make_layer(entries, compression), files


def busybox_image(compression: Compression = "gzip") -> TestImage:
    """One layer: the static ``/bin/busybox`` of this machine plus applet symlinks
    ``sh ls cat echo true`` (→ ``busybox``); config ``Cmd ["sh"]`` and a PATH."""
    layer, files = _busybox_layer(compression)
    return _image("library/busybox", {"Env": [f"PATH={DEFAULT_PATH}"], "Cmd": ["sh"]},
                  [layer], files)


def whiteout_image(compression: Compression | Sequence[Compression] = "gzip") -> TestImage:
    """Four layers exercising whiteouts, hard links and odd entry names.

    * layer 0 (plain names): files, symlinks (relative and absolute), a hard link to a file of
      the same layer (``app/linkA`` → ``app/target.txt``), a hard link whose target is whited
      out later (``app/linkB`` → ``app/wh-target.txt``), directories to be deleted.
    * layer 1 (a ``.`` entry first): file whiteouts (``app/.wh.remove-me.txt``,
      ``app/.wh.wh-target.txt``), a directory whiteout (``var/.wh.gone``), an overwrite.
    * layer 2 (``./``-prefixed names, a ``./`` entry first): an opaque directory
      ``var/olddir/.wh..wh..opq`` with a same-layer file before the marker (``new1``) and one
      after it (``new2``): lower contents vanish, both new files stay, and the directory's mode
      changes to 0700; ``var/gone`` re-created with only ``fresh``; a hard link to a file of a
      lower layer (``./app/xlink`` → ``./app/lower.txt``).
    * layer 3: a whiteout of a symlink (``bin/.wh.tool-link``), a file that was whited out
      re-added (``app/remove-me.txt``), a new relative symlink.

    ``compression`` is one value for all layers or one per layer.  ``files`` is the image's own
    tree (a converter adds its own entries, e.g. docker2aci's ``/dev`` stdio links).  Upstream
    docker2aci gets three cases wrong (reference notes §5): the opaque directory (``keep1``,
    ``keep2`` and ``sub/`` come back), the ``.`` entry (it loops forever) and the cross-layer
    hard link ``app/xlink`` (dropped by the squash).
    """
    comps = [compression] * 4 if isinstance(compression, str) else list(compression)
    if len(comps) != 4:
        raise ValueError("whiteout_image has 4 layers: give 4 compressions")
    layer0 = [
        _dir("etc/"), _e("etc/hostname", "base\n"),
        _e("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        _dir("bin/"), _e("bin/tool", "#!/bin/sh\necho tool\n", 0o755),
        _symlink("bin/tool-link", "tool"), _symlink("bin/abs-link", "/etc/hostname"),
        _dir("var/"), _dir("var/olddir/"), _e("var/olddir/keep1", "old 1\n"),
        _e("var/olddir/keep2", "old 2\n"), _dir("var/olddir/sub/"),
        _e("var/olddir/sub/deep", "deep\n"),
        _dir("var/gone/"), _e("var/gone/a", "a\n"), _dir("var/gone/sub/"),
        _e("var/gone/sub/b", "b\n"),
        _dir("app/"), _e("app/target.txt", "hard link target\n"),
        _link("app/linkA", "app/target.txt"),
        _e("app/wh-target.txt", "whited-out link target\n"),
        _link("app/linkB", "app/wh-target.txt"),
        _e("app/remove-me.txt", "remove me\n"), _e("app/lower.txt", "lower layer file\n", 0o600),
    ]
    layer1 = [
        _dir("."), _dir("app/"), _e("app/.wh.remove-me.txt"), _e("app/.wh.wh-target.txt"),
        _e("app/new.txt", "added in layer 1\n", uid=1000, gid=1000),
        _dir("etc/"), _e("etc/hostname", "layer1\n"),
        _dir("var/"), _e("var/.wh.gone"),
    ]
    layer2 = [
        _dir("./"), _dir("./var/"), _dir("./var/olddir/", 0o700),
        _e("./var/olddir/new1", "new 1\n"), _e("./var/olddir/.wh..wh..opq"),
        _e("./var/olddir/new2", "new 2\n"),
        _dir("./var/gone/"), _e("./var/gone/fresh", "fresh\n"),
        _dir("./app/"), _link("./app/xlink", "./app/lower.txt"),
    ]
    layer3 = [
        _dir("bin/"), _e("bin/.wh.tool-link"),
        _dir("app/"), _e("app/remove-me.txt", "back again\n"), _symlink("app/current", "new.txt"),
    ]
    layers = [make_layer(entries, comp)
              for entries, comp in zip([layer0, layer1, layer2, layer3], comps, strict=True)]
    files = {
        "app": _d(),
        "app/current": _sym("new.txt"),
        "app/linkA": _hard("app/target.txt", b"hard link target\n"),
        "app/linkB": _f(b"whited-out link target\n"),
        "app/lower.txt": _f(b"lower layer file\n", 0o600),
        "app/new.txt": _f(b"added in layer 1\n", uid=1000, gid=1000),
        "app/remove-me.txt": _f(b"back again\n"),
        "app/target.txt": _f(b"hard link target\n"),
        "app/xlink": _hard("app/lower.txt", b"lower layer file\n", 0o600),
        "bin": _d(),
        "bin/abs-link": _sym("/etc/hostname"),
        "bin/tool": _f(b"#!/bin/sh\necho tool\n", 0o755),
        "etc": _d(),
        "etc/hostname": _f(b"layer1\n"),
        "etc/passwd": _f(b"root:x:0:0:root:/root:/bin/sh\n"),
        "var": _d(),
        "var/gone": _d(),
        "var/gone/fresh": _f(b"fresh\n"),
        "var/olddir": _d(0o700),
        "var/olddir/new1": _f(b"new 1\n"),
        "var/olddir/new2": _f(b"new 2\n"),
    }
    return _image("library/whiteouts", {"Env": [f"PATH={DEFAULT_PATH}"], "Cmd": ["/bin/tool"]},
                  layers, files)


HELLO_SH = b"#!/bin/sh\necho \"hello from $FOO\"\n"
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnginx:x:101:\n"
FULL_CONFIG: dict[str, Any] = {
    "Env": [f"PATH={DEFAULT_PATH}", "FOO=bar", "EMPTY="],
    "Entrypoint": ["/bin/sh", "-c"],
    "Cmd": ["/app/hello.sh"],
    "WorkingDir": "/app",
    "ExposedPorts": {"8080/tcp": {}, "53/udp": {}, "9000": {}},
    "Volumes": {"/data": {}, "/var/cache/app": {}},
    "Labels": {"org.example.version": "1.0", "org.example.vendor": "appc tests"},
}


def full_config_image(user: str = "1000:1000", compression: Compression = "gzip") -> TestImage:
    """The busybox layer plus an app layer, with every config field docker2aci maps:
    Env (``EMPTY=`` has an empty value), Entrypoint ``["/bin/sh", "-c"]``, Cmd
    ``["/app/hello.sh"]``, ``User`` (``"1000:1000"``, or a name like ``"nginx"``, which
    ``/etc/passwd`` and ``/etc/group`` of the image define as 101:101), WorkingDir ``/app``,
    ExposedPorts ``8080/tcp 53/udp 9000``, Volumes ``/data /var/cache/app``, Labels, author and
    created.  The run config is :data:`FULL_CONFIG` plus ``User``."""
    base, files = _busybox_layer(compression)
    app = make_layer([
        _dir("app/"), _e("app/hello.sh", HELLO_SH, 0o755),
        _dir("etc/"), _e("etc/passwd", PASSWD), _e("etc/group", GROUP),
    ], compression)
    files = {**files, "app": _d(), "app/hello.sh": _f(HELLO_SH, 0o755), "etc": _d(),
             "etc/passwd": _f(PASSWD), "etc/group": _f(GROUP)}
    return _image("library/fullconfig", {**FULL_CONFIG, "User": user}, [base, app], files,
                  extra={"author": "appc tests <tests@example.com>"})


def empty_config_image(with_config_key: bool = True, compression: Compression = "gzip",
                       ) -> TestImage:
    """One tiny layer (``hello.txt``) and a run config of ``{}`` — no Entrypoint, Cmd, User,
    Env — or, with ``with_config_key=False``, no ``config`` key at all."""
    data = b"hello\n"
    layer = make_layer([_e("hello.txt", data)], compression)
    return _image("library/emptyconfig", {} if with_config_key else None, [layer],
                  {"hello.txt": _f(data)})


def multiarch_images(compression: Compression = "gzip") -> MultiArchImage:
    """``linux/amd64`` and ``linux/arm64/v8`` images of one repository: a shared base layer
    (``etc/os-release``) and a per-platform layer whose ``etc/arch`` says ``amd64\\n`` or
    ``arm64\\n``; config ``Cmd ["cat", "/etc/arch"]``."""
    os_release = b"NAME=appc-test\n"
    base = make_layer([_dir("etc/"), _e("etc/os-release", os_release)], compression)
    images = []
    for arch, variant in (("amd64", None), ("arm64", "v8")):
        marker = f"{arch}\n".encode()
        top = make_layer([_dir("etc/"), _e("etc/arch", marker)], compression)
        files = {"etc": _d(), "etc/os-release": _f(os_release), "etc/arch": _f(marker)}
        images.append(_image("library/multiarch", {"Cmd": ["cat", "/etc/arch"]}, [base, top],
                             files, architecture=arch, variant=variant))
    return MultiArchImage(tuple(images))


class _PseudoRandomContent:
    """A readable, deterministic stream of ``size`` bytes: each 64 KiB chunk is half random
    bytes, half text, so it compresses about 2:1 like real binaries."""

    def __init__(self, rng: random.Random, size: int) -> None:
        self._rng, self._left, self._chunk = rng, size, 0
        self._buf = b""
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        want = self._left if n < 0 else min(n, self._left)
        while len(self._buf) < want:
            half = 32768
            text = f"chunk {self._chunk:08d} of appc test data\n".encode()
            self._buf += self._rng.randbytes(half) + (text * (half // len(text) + 1))[:half]
            self._chunk += 1
        out, self._buf = self._buf[:want], self._buf[want:]
        self._left -= len(out)
        self.hash.update(out)
        return out


def big_image(total_mb: int, directory: os.PathLike[str] | str, layers: int = 5, *,
              seed: int = 0, compression: Compression = "gzip", level: int = 1) -> TestImage:
    """A benchmark image of about ``total_mb`` MiB (uncompressed), spread over ``layers``
    layers of files 256 KiB to 8 MiB under ``data/layerN/``, with deterministic pseudo-random
    content.  Blobs are streamed to files in ``directory`` (memory stays flat); gzip uses
    ``level`` (1 by default: fast).  ``files`` gives size and sha256 per file (``data=None``)."""
    rng = random.Random(seed)
    directory = pathlib.Path(directory)
    per_layer = total_mb * (1 << 20) // max(1, layers)
    files: dict[str, FileSpec] = {"data": _d()}
    out_layers = []
    for n in range(layers):
        sizes = _file_sizes(rng, per_layer)
        layer_files: dict[str, FileSpec] = {f"data/layer{n}": _d()}

        def produce(sink: IO[bytes], n: int = n, sizes: list[int] = sizes,
                    layer_files: dict[str, FileSpec] = layer_files) -> None:
            with tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT) as tar:
                tar.addfile(_dir("data/").tarinfo())
                tar.addfile(_dir(f"data/layer{n}/").tarinfo())
                for i, size in enumerate(sizes):
                    name = f"data/layer{n}/file{i:04d}.bin"
                    content = _PseudoRandomContent(random.Random(f"{seed}/{n}/{i}"), size)
                    info = _e(name).tarinfo()
                    info.size = size
                    tar.addfile(info, cast(IO[bytes], content))
                    layer_files[name] = FileSpec("file", 0o644, None, size=size,
                                                 sha256=content.hash.hexdigest())

        out_layers.append(_stream_layer(produce, directory, compression, level))
        files.update(layer_files)
    return _image("library/big", {"Cmd": ["/bin/true"]}, out_layers, files)


def _file_sizes(rng: random.Random, total: int) -> list[int]:
    sizes = []
    while total > 0:
        size = min(total, rng.randrange(256 << 10, 8 << 20))
        sizes.append(size)
        total -= size
    return sizes


# --------------------------------------------------------------------------- writers

ImageArg = TestImage | MultiArchImage
Refs = ImageArg | Mapping[str, ImageArg] | Sequence[TestImage]


def _split_ref(ref: str) -> tuple[str, str]:
    """``repo:tag`` → (repo, tag); a port colon is not a tag (``host:5000/x`` → latest)."""
    repo, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, "latest"
    return repo, tag


def _save_refs(images: TestImage | Mapping[str, TestImage] | Sequence[TestImage],
               ) -> list[tuple[str, TestImage]]:
    if isinstance(images, TestImage):
        return [(f"{images.name}:{images.tag}", images)]
    if isinstance(images, Mapping):
        return list(images.items())
    return [(f"{image.name}:{image.tag}", image) for image in images]


class _TarWriter:
    """Deterministic tar output: root-owned entries with a fixed mtime."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.names: set[str] = set()

    def dir(self, name: str) -> None:
        if name not in self.names:
            self.names.add(name)
            self.tar.addfile(TarEntry(name, "dir", mtime=FIXED_MTIME).tarinfo())

    def data(self, name: str, data: bytes) -> None:
        self.names.add(name)
        self.tar.addfile(_e(name, data).tarinfo(), io.BytesIO(data))

    def stream(self, name: str, size: int, opener: _Opener) -> None:
        self.names.add(name)
        info = _e(name).tarinfo()
        info.size = size
        with opener() as src:
            self.tar.addfile(info, src)

    def symlink(self, name: str, target: str) -> None:
        self.names.add(name)
        self.tar.addfile(_symlink(name, target).tarinfo())


def write_docker_save(images: TestImage | Mapping[str, TestImage] | Sequence[TestImage],
                      path: os.PathLike[str] | str,
                      layout: Literal["manifest.json", "repositories", "both"] = "both",
                      symlink_layers: bool = False) -> pathlib.Path:
    """Write a ``docker save`` tar (uncompressed) of ``images``.

    ``images`` is one image (saved as ``name:tag``), a list of them, or a mapping
    ``"repo:tag" → image`` (several tags may share an image).  Every layer is a
    ``<v1id>/`` directory with ``VERSION``, ``json`` (see :meth:`TestImage.v1_layers`) and
    ``layer.tar``; the config is ``<config hex>.json``.  ``layout`` chooses the index files:
    ``manifest.json`` (Docker ≥1.10's ``[{Config, RepoTags, Layers}]``), ``repositories``
    (the classic ``{repo: {tag: top v1 id}}``) or ``both`` (what ``docker save`` writes).
    With ``symlink_layers`` the layer tars are stored as ``<diff_id hex>.tar`` at the top and
    each ``<v1id>/layer.tar`` is a symlink ``../<diff_id hex>.tar`` (skopeo's style);
    ``manifest.json`` then lists the top-level files, as skopeo does.
    """
    path = pathlib.Path(path)
    refs = _save_refs(images)
    manifest: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    by_config: dict[str, dict[str, Any]] = {}
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        out = _TarWriter(tar)
        for ref, image in refs:
            repo, tag = _split_ref(ref)
            v1 = image.v1_layers()
            repositories.setdefault(repo, {})[tag] = v1[-1][0]
            if image.config_digest in by_config:
                by_config[image.config_digest]["RepoTags"].append(ref)
                continue
            layer_names = [_write_save_layer(out, layer, layer_id, v1json, symlink_layers)
                           for layer, (layer_id, v1json) in zip(image.layers, v1, strict=True)]
            config_name = image.config_digest.removeprefix("sha256:") + ".json"
            out.data(config_name, image.config_blob())
            entry = {"Config": config_name, "RepoTags": [ref], "Layers": layer_names}
            by_config[image.config_digest] = entry
            manifest.append(entry)
        if layout in ("manifest.json", "both"):
            out.data("manifest.json", json.dumps(manifest).encode())
        if layout in ("repositories", "both"):
            out.data("repositories", json.dumps(repositories).encode())
    return path


def _write_save_layer(out: _TarWriter, layer: Layer, layer_id: str, v1json: dict[str, Any],
                      symlink: bool) -> str:
    """Write one layer's ``<id>/`` directory; returns the name ``manifest.json`` lists."""
    out.dir(f"{layer_id}/")
    out.data(f"{layer_id}/VERSION", b"1.0")
    out.data(f"{layer_id}/json", json.dumps(v1json).encode())
    if symlink:
        top_name = layer.diff_id.removeprefix("sha256:") + ".tar"
        if top_name not in out.names:
            out.stream(top_name, layer.tar_size, layer.open_tar)
        out.symlink(f"{layer_id}/layer.tar", f"../{top_name}")
        return top_name
    out.stream(f"{layer_id}/layer.tar", layer.tar_size, layer.open_tar)
    return f"{layer_id}/layer.tar"


def _layout_refs(images: Refs, tag: str) -> list[tuple[str, ImageArg]]:
    if isinstance(images, TestImage | MultiArchImage):
        return [(tag, images)]
    if isinstance(images, Mapping):
        return list(images.items())
    return [(tag if i == 0 else f"{tag}-{i}", image) for i, image in enumerate(images)]


def _write_blob(blobs: pathlib.Path, digest: str, opener: _Opener) -> None:
    target = blobs / digest.removeprefix("sha256:")
    if target.exists():
        return
    tmp = target.with_name(f".{target.name}.tmp")
    with opener() as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, _CHUNK)
    os.replace(tmp, target)


def _oci_image_blobs(blobs: pathlib.Path, image: TestImage) -> dict[str, Any]:
    """Write an image's blobs and OCI manifest; return the manifest descriptor."""
    for digest, _, opener in image.blobs("oci"):
        _write_blob(blobs, digest, opener)
    body = image.oci_manifest()
    _write_blob(blobs, sha256_digest(body), functools.partial(io.BytesIO, body))
    return {"mediaType": OCI_MANIFEST, "digest": sha256_digest(body), "size": len(body)}


def write_oci_layout(images: Refs, directory: os.PathLike[str] | str,
                     tag: str = "latest") -> pathlib.Path:
    """Write (or add to) an OCI image layout directory: ``oci-layout``, ``index.json`` (each
    entry annotated with ``org.opencontainers.image.ref.name``) and ``blobs/sha256/``.

    ``images`` is one image or multi-arch image (tagged ``tag``), a mapping ``tag → image``, or
    a list (tagged ``tag``, ``tag-1``, ...).  A multi-arch image becomes an OCI index blob whose
    descriptor goes into ``index.json``.  Entries already in ``index.json`` with the same ref
    name are replaced; others are kept, so one layout can hold several tags.
    """
    root = pathlib.Path(directory)
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index_path = root / "index.json"
    index: dict[str, Any] = (json.loads(index_path.read_text()) if index_path.exists()
                             else {"schemaVersion": 2, "manifests": []})
    for ref, image in _layout_refs(images, tag):
        if isinstance(image, MultiArchImage):
            for child in image.images:
                _oci_image_blobs(blobs, child)
            body = image.manifest("oci")
            _write_blob(blobs, sha256_digest(body), functools.partial(io.BytesIO, body))
            desc = {"mediaType": OCI_INDEX, "digest": sha256_digest(body), "size": len(body)}
        else:
            desc = _oci_image_blobs(blobs, image)
            desc["platform"] = image.platform
        desc["annotations"] = {REF_NAME_ANNOTATION: ref}
        index["manifests"] = [m for m in index["manifests"]
                              if m.get("annotations", {}).get(REF_NAME_ANNOTATION) != ref]
        index["manifests"].append(desc)
    index_path.write_text(json.dumps(index, indent=2))
    return root


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = FIXED_MTIME
    return info


def write_oci_archive(images: Refs, path: os.PathLike[str] | str,
                      tag: str = "latest") -> pathlib.Path:
    """The OCI layout of :func:`write_oci_layout` as an uncompressed tar (skopeo's
    ``oci-archive:``): entries ``oci-layout``, ``index.json``, ``blobs/sha256/<hex>`` at the
    top level, root-owned, fixed mtime, sorted."""
    path = pathlib.Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".oci-archive-") as tmp:
        root = write_oci_layout(images, tmp, tag)
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
            for name in ("oci-layout", "index.json", "blobs"):
                tar.add(root / name, arcname=name, filter=_normalise)
    return path


def iter_tar_names(data: bytes | IO[bytes]) -> Iterator[str]:
    """Member names of a tar (bytes or stream), as written."""
    with tarfile.open(fileobj=io.BytesIO(data) if isinstance(data, bytes) else data) as tar:
        for member in tar:
            yield member.name
