"""``docker2aci -nosquash``: one ACI per layer, tied together by dependencies and path whitelists.

The file names, manifest names, dependency layout and whitelists are the original's
(``reference/docker2aci.md`` §1, §4, §5), with deliberate fixes:

* a v1 layer's dependency carries its *parent's* labels (the original copied the child's);
* the os/arch in schema2/OCI file names are the image's (the original used the converting
  host's);
* an opaque directory (``.wh..wh..opq``) drops what the layers below put in it from the
  path whitelist (the original ignored the marker, so those files came back);
* the layer ACIs appear together or not at all: they are written as files without a
  name (``O_TMPFILE``) and named only once every layer converted (the original left the
  lower layers' files behind when a later layer failed; a kill leaves nothing);
* a hard link must point to a file of its own layer or one the layers below leave, as
  when squashing (the original wrote links to nothing); a layer whose entries break the
  image archive rules (a file under a symlink of the same layer), or a name that is not
  UTF-8 (a path whitelist is JSON text and cannot list it), is refused.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tarfile
from collections.abc import Callable
from typing import IO

from appc.aci.write import PendingOutput
from appc.docker.convert import (
    STDIO_LINKS,
    ConvertOptions,
    _check_dev,
    _CheckedWriter,
    _clean,
    _make_directories,
    _open_layer,
    _output_header,
    layer_entries,
)
from appc.docker.image import ImageLayer, SourceImage
from appc.docker.manifest import layer_image_name, manifest_for_image, os_arch_labels
from appc.errors import ImageError
from appc.schema.image import ImageManifest
from appc.types.dependencies import Dependency

__all__ = ["convert_layers"]


def __dir__() -> list[str]:
    return __all__


_OPAQUE = ".wh..wh..opq"


def _whiteout_target(path: str) -> str | None:
    base = posixpath.basename(path)
    if base == _OPAQUE:
        return None
    if base.startswith(".wh."):
        return posixpath.join(posixpath.dirname(path), base[4:])
    return None


def _write_layer(
    layer: ImageLayer,
    out: IO[bytes],
    manifest_for: Callable[[list[str], set[str], set[str]], ImageManifest],
    options: ConvertOptions,
    lower: frozenset[str] = frozenset(),
) -> ImageManifest:
    """Write one layer's ACI into *out*: rootfs, its entries, the stdio links, the manifest last.

    :param lower: what the layers below leave (``/``-prefixed paths): a hard link must
        point to one of those, or to a file of this layer.
    """
    where = f"layer {layer.digest}"
    writer = _CheckedWriter(out, where, compression=options.compression, level=options.level)
    try:
        root = tarfile.TarInfo("rootfs")
        root.type, root.mode = tarfile.DIRTYPE, 0o755
        writer.add(root)
        paths: list[str] = []
        whiteouts: set[str] = set()
        opaque: set[str] = set()
        seen: set[str] = set()
        files: set[str] = set()  # this layer's non-directories
        with _open_layer(layer, options.max_size) as reader:
            for _, info, path in layer_entries(reader, where):
                if path is None:
                    continue
                target = _whiteout_target(path)
                if target is not None:
                    whiteouts.add(target)
                    continue
                if posixpath.basename(path) == _OPAQUE:
                    opaque.add(posixpath.dirname(path))
                    continue
                _check_dev(path, info, where)
                if path in seen:
                    raise ImageError(f"duplicate file entry in layer: {path!r}", source=where)
                try:
                    path.encode("utf-8")
                except UnicodeEncodeError:
                    raise ImageError(
                        f"file name {path!r} is not UTF-8: a path whitelist cannot list it",
                        source=where,
                    ) from None
                seen.add(path)
                paths.append(path)
                if not info.isdir():
                    files.add(path)
                if info.islnk():
                    link = _clean(info.linkname, where) or ""
                    if link not in files and f"/{link}" not in lower:
                        raise ImageError(
                            f"hard link {path!r} to missing file {info.linkname!r}",
                            source=where,
                        )
                    writer.add(_output_header(info, path, linkname=f"rootfs/{link}"))
                elif info.isreg():
                    assert reader is not None
                    writer.add(_output_header(info, path), reader.member(info))
                else:
                    writer.add(_output_header(info, path))
            if reader is not None:
                reader.finish()
        for path, target in STDIO_LINKS:
            if path not in seen:
                link_info = tarfile.TarInfo(f"rootfs/{path}")
                link_info.type, link_info.linkname, link_info.mode = (
                    tarfile.SYMTYPE,
                    target,
                    0o777,
                )
                writer.add(link_info)
        manifest = manifest_for(paths, whiteouts, opaque)
        info = tarfile.TarInfo("manifest")
        info.mode = 0o644
        writer.add_bytes(info, manifest.to_json().encode("utf-8"))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return manifest


class _Whitelist:
    """The cumulative path whitelist: what this layer and those below leave visible."""

    def __init__(self) -> None:
        self.paths: set[str] = set()

    def add_layer(self, paths: list[str], whiteouts: set[str], opaque: set[str]) -> list[str]:
        """Apply one layer (its paths, whiteout targets and opaque directories); return its list.

        As the original, a whiteout also removes what the same layer added under it.
        """
        for directory in opaque:  # lower layers' contents only
            prefix = "/" + directory + "/" if directory else "/"
            self.paths = {p for p in self.paths if not p.startswith(prefix)}
        self.paths.update("/" + p for p in paths)
        for target in whiteouts:
            prefix = "/" + target
            self.paths = {p for p in self.paths if p != prefix and not p.startswith(prefix + "/")}
        result = sorted(self.paths)
        have = set(result)
        result += ["/" + path for path, _ in STDIO_LINKS if "/" + path not in have]
        return result


def _output_path(image: SourceImage, layer: ImageLayer, index: int, output_dir: str) -> str:
    """The original's file name for one layer ACI (nested directories for schema2/OCI)."""
    ref = image.reference
    assert ref is not None
    count = len(image.layers)
    suffix = f"-{ref.tag}" if ref.tag else ""
    if image.style == "v22":
        platform = image.platform
        digest = layer.digest if index == count - 1 else layer.digest.replace(":", "-")
        prefix = f"{ref.registry}/{ref.repository}" if ref.registry else ref.repository
        go_platform = f"-{platform.os or 'linux'}-{platform.architecture or 'amd64'}"
        return os.path.join(output_dir, f"{prefix}-{digest}{suffix}{go_platform}.aci")
    v1 = layer.v1 or {}
    extra = "".join(f"-{v1[k]}" for k in ("os", "architecture") if v1.get(k))
    return os.path.join(
        output_dir, f"{ref.repository.replace('/', '-')}{suffix}{extra}-{count - 1 - index}.aci"
    )


def _manifest_maker(
    image: SourceImage,
    layer: ImageLayer,
    *,
    index: int,
    whitelist: _Whitelist,
    below: list[ImageManifest],
    labels: dict[str, str],
) -> Callable[[list[str], set[str], set[str]], ImageManifest]:
    """How to make one layer's manifest once its entries are known.

    :param below: the manifests of the layers under this one, base first.
    :param labels: the os/arch labels of a schema2/OCI lower layer.
    """
    name = layer_image_name(image, layer.layer_id)
    top = index == len(image.layers) - 1

    def make(paths: list[str], whiteouts: set[str], opaque: set[str]) -> ImageManifest:
        allowed = whitelist.add_layer(paths, whiteouts, opaque)
        if image.style == "v22":
            if not top:
                return ImageManifest(name=name, labels=labels, path_whitelist=allowed)
            deps = [Dependency(image_name=m.name, labels=m.labels) for m in below]
            base = manifest_for_image(image)
            return ImageManifest(
                name=name,
                labels=base.labels,
                app=base.app,
                annotations=base.annotations,
                dependencies=deps,
                path_whitelist=allowed,
            )
        own = manifest_for_image(
            image, layer=layer, name=name, extra_labels={"layer": layer.layer_id}
        )
        deps = []
        if layer.parent_id and below:
            parent = below[-1]
            deps = [Dependency(image_name=parent.name, labels=parent.labels)]
        return ImageManifest(
            name=own.name,
            labels=own.labels,
            app=own.app,
            annotations=own.annotations,
            dependencies=deps,
            path_whitelist=allowed,
        )

    return make


def convert_layers(
    image: SourceImage, output_dir: str, options: ConvertOptions, log: Callable[[str], None]
) -> tuple[list[str], ImageManifest]:
    """Write one ACI per layer of *image* into *output_dir*; return their paths (base first)
    and the top layer's manifest.  On failure nothing is left: no file, no new directory.

    :raises ImageError: also for an image without layers (there is nothing to write).
    """
    if not image.layers:
        raise ImageError("the image has no layers: -nosquash has nothing to write")
    whitelist = _Whitelist()
    manifests: list[ImageManifest] = []
    platform = image.platform
    labels = os_arch_labels(platform.os, platform.architecture, platform.variant)
    count = len(image.layers)
    staged: list[PendingOutput] = []  # written, named once every layer converted
    made: list[str] = []  # directories this call created
    try:
        for index, layer in enumerate(image.layers):
            log(f"Generating layer ACI {index + 1}/{count}...")
            output = _output_path(image, layer, index, output_dir)
            _make_directories(os.path.dirname(output), made)
            staged.append(PendingOutput(output, overwrite=True))
            manifests.append(
                _write_layer(
                    layer,
                    staged[-1].file,
                    _manifest_maker(
                        image,
                        layer,
                        index=index,
                        whitelist=whitelist,
                        below=manifests,
                        labels=labels,
                    ),
                    options,
                    frozenset(whitelist.paths),
                )
            )
        for pending in staged:  # the slow part first: then the names appear together
            pending.sync()
        for pending in staged:
            pending.publish()
    except OSError as err:
        _undo(staged, made)
        raise ImageError(f"cannot write output: {err.strerror or err}", source=output_dir) from None
    except BaseException:
        _undo(staged, made)
        raise
    finally:
        for pending in staged:
            pending.close()
    return [pending.target for pending in staged], manifests[-1]


def _undo(staged: list[PendingOutput], made: list[str]) -> None:
    """Remove what a failed conversion made: layer ACIs already named, new directories."""
    for pending in staged:
        pending.close()
        if pending.published:
            with contextlib.suppress(OSError):
                os.unlink(pending.target)
    for directory in reversed(made):
        with contextlib.suppress(OSError):
            os.rmdir(directory)
