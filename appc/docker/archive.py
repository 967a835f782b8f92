"""Images from files: ``docker save`` archives, OCI image layouts and ``oci-archive`` tarballs.

Fixed deliberately, compared with the original:

* layers stored as symlinks (skopeo's ``docker-archive``) are followed inside the
  archive instead of being read as empty files;
* ``manifest.json`` archives (no ``repositories`` file) and OCI 1.0 layouts
  (``index.json``, as a directory or a tar) are read;
* compressed archives (``docker save | gzip``) are accepted;
* every blob of an OCI layout is checked against its digest, and must be a regular file
  inside the layout (a symlink to ``/dev/zero`` made the conversion endless);
* an OCI layout's ref names may be bare tags (``v1``: the image is named after the
  layout, ``busybox-v1.aci``) or whole references (``docker.io/library/busybox:1``, as
  skopeo writes them: named after the reference); ``-image`` matches a bare tag only as
  typed, so ``-image v1`` never picks ``latest``;
* an ``index.json`` that lists one image's platforms itself is read as an index (the
  platform is chosen); several differently named images still need ``-image``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import re
import shutil
import stat
import tarfile
from collections.abc import Iterator, Mapping
from typing import IO, Any

from appc.aci._compress import decompressing_reader
from appc.aci.filetype import FileType, detect_file_type
from appc.aci.read import BoundedTarInfo
from appc.docker.image import (
    ImageLayer,
    Platform,
    SourceImage,
    check_digest,
    is_index,
    layers_from_manifest,
    select_platform,
    v1_layer,
    work_directory,
)
from appc.docker.reference import DockerReference, parse_reference
from appc.docker.registry import MediaType
from appc.errors import ImageError, ValidationError

__all__ = ["open_archive_image"]


def __dir__() -> list[str]:
    return __all__


_SMALL = 16 * 1024 * 1024  # manifests, configs, indexes
_TAG = re.compile(r"[\w][\w.-]{0,127}")  # a bare tag, as a ref name of an OCI layout
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"


class _Tree:
    """Read-only access to the files of a directory or of a (plain) tar archive."""

    def __init__(self, source: str, tar: tarfile.TarFile | None) -> None:
        self.source = source
        self._tar = tar
        self._members: dict[str, tarfile.TarInfo] = {}
        if tar is not None:
            for member in tar.getmembers():
                self._members[posixpath.normpath(member.name.lstrip("/"))] = member

    def _member(self, name: str) -> tarfile.TarInfo | None:
        assert self._tar is not None
        for _ in range(16):  # follow links inside the archive, never out of it
            member = self._members.get(posixpath.normpath(name))
            if member is None or not (member.issym() or member.islnk()):
                return member
            base = posixpath.dirname(name) if member.issym() else ""
            name = posixpath.normpath(
                posixpath.join(
                    base, member.linkname.lstrip("/") if member.islnk() else member.linkname
                )
            )
            if name.startswith("../"):
                return None
        raise ImageError(f"too many levels of links at {name!r}", source=self.source)

    def exists(self, name: str) -> bool:
        """True if *name* is a file in the tree."""
        if self._tar is None:
            return os.path.isfile(self._path(name))
        member = self._member(name)
        return member is not None and member.isreg()

    def _path(self, name: str) -> str:
        path = os.path.normpath(os.path.join(self.source, name))
        if not path.startswith(os.path.normpath(self.source) + os.sep):
            raise ImageError(f"path {name!r} escapes the layout", source=self.source)
        return path

    def open(self, name: str) -> IO[bytes]:
        """Open the file *name*: in a directory, a regular file that is inside it (a
        symlink out of the layout, to ``/dev/zero`` or a fifo, say, would never end)."""
        if self._tar is None:
            path = self._path(name)
            real, root = os.path.realpath(path), os.path.realpath(self.source)
            if not real.startswith(root + os.sep):
                raise ImageError(f"{name!r} leads out of the layout", source=self.source)
            try:
                fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as err:
                raise ImageError(
                    f"cannot read {name}: {err.strerror or err}", source=self.source
                ) from None
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise ImageError(f"{name!r} is not a regular file", source=self.source)
            return os.fdopen(fd, "rb")
        member = self._member(name)
        if member is None or not member.isreg():
            raise ImageError(f"{name!r} not found in the archive", source=self.source)
        stream = self._tar.extractfile(member)
        assert stream is not None
        return stream

    def read(self, name: str) -> bytes:
        """Read a small file (configs, manifests)."""
        with self.open(name) as f:
            data = f.read(_SMALL + 1)
        if len(data) > _SMALL:
            raise ImageError(f"{name!r} is too large", source=self.source)
        return data

    def json(self, name: str) -> Any:
        """Read a JSON file."""
        try:
            return json.loads(self.read(name))
        except ValueError:
            raise ImageError(f"{name!r} is not valid JSON", source=self.source) from None


class _VerifiedBlob:
    """Read a blob and check its digest when the end is reached."""

    def __init__(self, raw: IO[bytes], digest: str, source: str) -> None:
        self._raw = raw
        self._digest = digest
        self._source = source
        self._hash = hashlib.new(digest.partition(":")[0])

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if data:
            self._hash.update(data)
        elif f"{self._digest.partition(':')[0]}:{self._hash.hexdigest()}" != self._digest:
            raise ImageError(f"blob {self._digest} does not match its digest", source=self._source)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> _VerifiedBlob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _blob_path(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return f"blobs/{algorithm}/{hexdigest}"


def _wanted(image: str | None) -> DockerReference | None:
    """``--image`` parsed as a reference; a bare tag that is no valid name (``V1``: OCI
    ref names may have capitals) is kept as typed, to match ref names exactly."""
    if image is None:
        return None
    try:
        return parse_reference(image)
    except ValidationError:
        if not _TAG.fullmatch(image):
            raise
        return DockerReference("", "", "", original=image, explicit_registry=False)


def _name_matches(candidate: str, wanted: DockerReference) -> bool:
    """Does the repo:tag *candidate* (as stored in an archive) name the image *wanted*?"""
    try:
        ref = parse_reference(candidate)
    except ValidationError:
        return False
    return ref.repository == wanted.repository and ref.tag == wanted.tag


def _repository_of(name: str) -> str:
    try:
        return parse_reference(name).repository
    except ValidationError:
        return name


def _archive_reference(repository: str, tag: str, given: DockerReference | None) -> DockerReference:
    if given is not None:
        return given
    # Without --image there is no registry: the original then names the image by its repository alone.
    return DockerReference(
        registry="", repository=repository, tag=tag, original="", explicit_registry=False
    )


def _classic(tree: _Tree, wanted: DockerReference | None) -> SourceImage:
    repositories = tree.json("repositories")
    if not isinstance(repositories, Mapping) or not repositories:
        raise ImageError("no images found", source=tree.source)
    normalized = {_repository_of(str(name)): tags for name, tags in repositories.items()}
    if wanted is None:
        if len(normalized) > 1:
            raise ImageError(
                "several images found, use option --image with one of: "
                + ", ".join(sorted(normalized)),
                source=tree.source,
            )
        repository, tags = next(iter(normalized.items()))
        tag = "latest"
    else:
        repository, tag = wanted.repository, wanted.tag or "latest"
        if repository not in normalized:
            raise ImageError(
                f"image {wanted.original!r} not found (have: {', '.join(sorted(normalized))})",
                source=tree.source,
            )
        tags = normalized[repository]
    if not isinstance(tags, Mapping):
        raise ImageError("malformed repositories file", source=tree.source)
    if tag not in tags:
        if len(tags) == 1 and wanted is None:
            tag = next(iter(tags))
        else:
            raise ImageError(f"tag {tag!r} not found", source=tree.source)
    image_id = str(tags[tag])
    chain = []
    seen = set()
    while image_id:
        if image_id in seen:
            raise ImageError(f"loop in the layer chain at {image_id}", source=tree.source)
        seen.add(image_id)
        if "/" in image_id or image_id in (".", ".."):
            raise ImageError(f"invalid layer id {image_id!r}", source=tree.source)
        v1 = tree.json(f"{image_id}/json")
        if not isinstance(v1, Mapping):
            raise ImageError(f"malformed {image_id}/json", source=tree.source)
        chain.append((image_id, v1))
        image_id = str(v1.get("parent") or "")
    chain.reverse()
    layers = tuple(
        v1_layer(
            f"sha256:{layer_id}", dict(v1, id=layer_id), _opener(tree, f"{layer_id}/layer.tar")
        )
        for layer_id, v1 in chain
    )
    return SourceImage(
        chain[-1][1], layers, "v1", chain[-1][0], _archive_reference(repository, tag, wanted)
    )


def _opener(tree: _Tree, name: str, digest: str | None = None) -> Any:
    def opener() -> IO[bytes]:
        raw = tree.open(name)
        return _VerifiedBlob(raw, digest, tree.source) if digest else raw  # type: ignore[return-value]

    return opener


def _docker_manifest(tree: _Tree, wanted: DockerReference | None) -> SourceImage:
    entries = tree.json("manifest.json")
    if not isinstance(entries, list) or not entries:
        raise ImageError("no images found", source=tree.source)
    chosen = None
    names: list[str] = []
    for entry in entries:
        tags = entry.get("RepoTags") or [] if isinstance(entry, Mapping) else []
        names.extend(str(t) for t in tags)
        if wanted is not None and any(_name_matches(str(t), wanted) for t in tags):
            chosen = entry
    if wanted is None:
        if len(entries) > 1:
            raise ImageError(
                "several images found, use option --image with one of: " + ", ".join(names),
                source=tree.source,
            )
        chosen = entries[0]
    if not isinstance(chosen, Mapping):
        wanted_text = wanted.original if wanted is not None else ""
        raise ImageError(
            f"image {wanted_text!r} not found (have: {', '.join(names) or 'none'})",
            source=tree.source,
        )
    config_name = str(chosen.get("Config", ""))
    config_bytes = tree.read(config_name)
    try:
        config = json.loads(config_bytes)
    except ValueError:
        raise ImageError(f"{config_name!r} is not valid JSON", source=tree.source) from None
    layer_names = chosen.get("Layers") or []
    if not isinstance(config, Mapping) or not isinstance(layer_names, list):
        raise ImageError("malformed manifest.json", source=tree.source)
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, Mapping) else None
    diff_ids = diff_ids if isinstance(diff_ids, list) else []
    layers = []
    for index, name in enumerate(layer_names):
        layer_id = str(diff_ids[index]) if index < len(diff_ids) else f"layer{index}"
        layers.append(
            ImageLayer(
                digest=layer_id,
                media_type=MediaType.OCI_LAYER,
                opener=_opener(tree, str(name)),
                layer_id=layer_id,
            )
        )
    tags = chosen.get("RepoTags") or []
    first = parse_reference(str(tags[0])) if tags else None
    repository = first.repository if first else "image"
    tag = first.tag if first else "latest"
    config_hash = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    return SourceImage(
        config, tuple(layers), "v22", config_hash, _archive_reference(repository, tag, wanted)
    )


def _ref_name(descriptor: Mapping[str, Any]) -> str:
    annotations = descriptor.get("annotations")
    if not isinstance(annotations, Mapping):
        return ""
    return str(annotations.get(REF_NAME_ANNOTATION, ""))


def _ref_matches(ref_name: str, wanted: DockerReference) -> bool:
    """Does an index entry's ref name name the image asked for with ``--image``?

    A bare tag (``v1``) matches only as typed; a whole reference
    (``docker.io/library/busybox:1``) also matches one of the same repository and tag.
    """
    if not ref_name:
        return False
    if ref_name == wanted.original:
        return True
    if _TAG.fullmatch(ref_name):
        return False
    try:
        ref = parse_reference(ref_name)
    except ValidationError:
        return False
    return ref.repository == wanted.repository and ref.tag == wanted.tag


def _layout_reference(
    ref_name: str, default_name: str, wanted: DockerReference | None
) -> DockerReference:
    """The name of an image of an OCI layout: the layout's own name (a file name up to its
    first ``.``, as the original) with the ref name as tag, or the ref name itself when it
    is a whole reference."""
    if ref_name and not _TAG.fullmatch(ref_name):
        with contextlib.suppress(ValidationError):
            ref = parse_reference(ref_name)
            return wanted or _archive_reference(ref.repository, ref.tag or "latest", None)
    return _archive_reference(default_name, ref_name or "latest", None)


def _oci_layout(
    tree: _Tree, wanted: DockerReference | None, platform: Platform, default_name: str
) -> SourceImage:
    index = tree.json("index.json")
    if not isinstance(index, Mapping):
        raise ImageError("malformed index.json", source=tree.source)
    descriptors = [d for d in index.get("manifests") or [] if isinstance(d, Mapping)]
    if wanted is not None:
        have = ", ".join(sorted({_ref_name(d) for d in descriptors} - {""})) or "none"
        descriptors = [d for d in descriptors if _ref_matches(_ref_name(d), wanted)]
        if not descriptors:
            raise ImageError(
                f"image {wanted.original!r} not found in the layout (have: {have})",
                source=tree.source,
            )
    if not descriptors:
        raise ImageError("no images found", source=tree.source)
    names = {_ref_name(d) for d in descriptors}
    if len(descriptors) == 1:
        descriptor: Mapping[str, Any] = descriptors[0]
    elif len(names) == 1 and all(isinstance(d.get("platform"), Mapping) for d in descriptors):
        # index.json lists the platforms of one image itself: choose as in an index
        descriptor = select_platform({"manifests": descriptors}, platform, tree.source)
    else:
        listed = [_ref_name(d) or str(d.get("digest")) for d in descriptors]
        raise ImageError(
            "several images found, use option --image with one of: " + ", ".join(listed),
            source=tree.source,
        )
    reference = _layout_reference(_ref_name(descriptor), default_name, wanted)
    for _ in range(4):
        digest = check_digest(descriptor.get("digest"), tree.source)
        data = _verified_json(tree, digest)
        if (
            not is_index(str(descriptor.get("mediaType") or data.get("mediaType", "")))
            and "manifests" not in data
        ):
            break
        descriptor = select_platform(data, platform, tree.source)
    else:
        raise ImageError("index nested too deeply", source=tree.source)
    config_descriptor, layer_descriptors = layers_from_manifest(data, tree.source)
    config = _verified_json(tree, str(config_descriptor["digest"]))
    layers = tuple(
        ImageLayer(
            digest=str(d["digest"]),
            media_type=str(d.get("mediaType", MediaType.OCI_LAYER)),
            opener=_opener(tree, _blob_path(str(d["digest"])), str(d["digest"])),
            layer_id=str(d["digest"]),
        )
        for d in layer_descriptors
    )
    return SourceImage(config, layers, "v22", str(config_descriptor["digest"]), reference)


def _verified_json(tree: _Tree, digest: str) -> dict[str, Any]:
    data = tree.read(_blob_path(digest))
    algorithm = digest.partition(":")[0]
    if f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}" != digest:
        raise ImageError(f"blob {digest} does not match its digest", source=tree.source)
    try:
        value = json.loads(data)
    except ValueError:
        raise ImageError(f"blob {digest} is not valid JSON", source=tree.source) from None
    if not isinstance(value, dict):
        raise ImageError(f"blob {digest} is not a JSON object", source=tree.source)
    return value


@contextlib.contextmanager
def open_archive_image(
    path: str | os.PathLike[str],
    *,
    image: str | None = None,
    platform: Platform | None = None,
    workdir: str | None = None,
) -> Iterator[SourceImage]:
    """Open an image stored in a file or directory.

    :param path: a ``docker save`` tar (plain or compressed), an OCI layout directory,
        or an ``oci-archive`` tar.
    :param image: ``NAME[:TAG]`` choosing among several images (``-image``).
    :raises ImageError: unreadable or malformed archive, image not found, several
        images without ``image``.
    """
    source = os.fspath(path)
    wanted = _wanted(image)
    platform = platform or Platform()
    default_name = os.path.basename(source.rstrip("/")).split(".")[0] or "image"
    if os.path.isdir(source):
        tree = _Tree(source, None)
        if not tree.exists("index.json"):
            raise ImageError("not an OCI image layout (no index.json)", source=source)
        yield _oci_layout(tree, wanted, platform, default_name)
        return
    with contextlib.ExitStack() as stack:
        plain = _plain_tar(source, workdir, stack)
        try:
            tar = stack.enter_context(tarfile.open(plain, "r:", tarinfo=BoundedTarInfo))
        except ImageError as err:
            raise ImageError(err.message, source=source) from None
        except (tarfile.TarError, OSError, ValueError) as err:  # ValueError: bad PAX numbers
            raise ImageError(f"not a readable tar archive: {err}", source=source) from None
        try:
            tree = _Tree(source, tar)
        except ImageError as err:
            raise ImageError(err.message, source=source) from None
        except (tarfile.TarError, EOFError, ValueError, OverflowError) as err:
            raise ImageError(f"corrupt archive: {err}", source=source) from None
        if tree.exists("index.json"):
            yield _oci_layout(tree, wanted, platform, default_name)
        elif tree.exists("repositories"):
            yield _classic(tree, wanted)
        elif tree.exists("manifest.json"):
            yield _docker_manifest(tree, wanted)
        else:
            raise ImageError(
                "Could not find image: not a docker save archive or an OCI layout", source=source
            )


def _plain_tar(source: str, workdir: str | None, stack: contextlib.ExitStack) -> str:
    """*source* itself if it is a plain tar; else a decompressed copy in a temporary directory."""
    try:
        with open(source, "rb") as f:
            kind = detect_file_type(f.read(512))
    except OSError as err:
        raise ImageError(err.strerror or str(err), source=source) from None
    if kind in (FileType.TAR, FileType.TEXT, FileType.UNKNOWN):
        return source
    tmp = stack.enter_context(work_directory(workdir))
    plain = os.path.join(tmp, "archive.tar")
    try:
        with open(source, "rb") as raw, open(plain, "wb") as out:
            shutil.copyfileobj(decompressing_reader(raw, kind), out, 1024 * 1024)
    except ImageError as err:
        raise ImageError(err.message, source=source) from None
    except OSError as err:
        raise ImageError(f"cannot decompress: {err.strerror or err}", source=source) from None
    return plain
