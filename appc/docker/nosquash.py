"""``docker2aci -nosquash``: one ACI per layer, tied together by dependencies and path whitelists.

The file names, manifest names, dependency layout and whitelists are the original's
(``reference/docker2aci.md`` §1, §4, §5), with two deliberate fixes: a v1 layer's
dependency carries its *parent's* labels (the original copied the child's), and the
os/arch in schema2/OCI file names are the image's (the original used the converting
host's).
"""

from __future__ import annotations

import os
import posixpath
import tarfile
from collections.abc import Callable

from appc.aci.write import ImageWriter, atomic_output
from appc.docker.convert import (
    STDIO_LINKS,
    ConvertOptions,
    _clean,
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


def _whiteout_target(path: str) -> str | None:
    base = posixpath.basename(path)
    if base == ".wh..wh..opq":
        return None  # the original did not understand opaque markers in -nosquash output either
    if base.startswith(".wh."):
        return posixpath.join(posixpath.dirname(path), base[4:])
    return None


def _write_layer(
    layer: ImageLayer,
    output: str,
    manifest_for: Callable[[list[str], set[str]], ImageManifest],
    options: ConvertOptions,
) -> ImageManifest:
    """Write one layer's ACI: rootfs, its entries, the stdio links, the manifest last."""
    where = f"layer {layer.digest}"
    os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
    with atomic_output(output, overwrite=True) as out:
        writer = ImageWriter(out, compression=options.compression, level=options.level)
        try:
            root = tarfile.TarInfo("rootfs")
            root.type, root.mode = tarfile.DIRTYPE, 0o755
            writer.add(root)
            paths: list[str] = []
            whiteouts: set[str] = set()
            seen: set[str] = set()
            with _open_layer(layer) as reader:
                for _, info, path in layer_entries(reader, where):
                    if path is None:
                        continue
                    target = _whiteout_target(path)
                    if target is not None:
                        whiteouts.add(target)
                        continue
                    if posixpath.basename(path) == ".wh..wh..opq":
                        continue
                    if path in seen:
                        raise ImageError(f"duplicate file entry in layer: {path!r}", source=where)
                    seen.add(path)
                    paths.append(path)
                    if info.islnk():
                        link = _clean(info.linkname, where) or ""
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
            manifest = manifest_for(paths, whiteouts)
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

    def add_layer(self, paths: list[str], whiteouts: set[str]) -> list[str]:
        self.paths.update("/" + p for p in paths)
        for target in whiteouts:
            prefix = "/" + target
            self.paths = {p for p in self.paths if p != prefix and not p.startswith(prefix + "/")}
        result = sorted(self.paths)
        have = set(result)
        result += ["/" + path for path, _ in STDIO_LINKS if "/" + path not in have]
        return result


def convert_layers(
    image: SourceImage, output_dir: str, options: ConvertOptions, log: Callable[[str], None]
) -> tuple[list[str], ImageManifest]:
    """Write one ACI per layer of *image* into *output_dir*; return their paths (base first)
    and the top layer's manifest."""
    ref = image.reference
    assert ref is not None
    whitelist = _Whitelist()
    written: list[str] = []
    manifests: list[ImageManifest] = []
    platform = image.platform
    labels = os_arch_labels(platform.os, platform.architecture, platform.variant)
    count = len(image.layers)
    for index, layer in enumerate(image.layers):
        log(f"Generating layer ACI {index + 1}/{count}...")
        name = layer_image_name(image, layer.layer_id)
        top = index == count - 1
        if image.style == "v22":
            digest = layer.digest if top else layer.digest.replace(":", "-")
            prefix = f"{ref.registry}/{ref.repository}" if ref.registry else ref.repository
            suffix = f"-{ref.tag}" if ref.tag else ""
            go_platform = f"-{platform.os or 'linux'}-{platform.architecture or 'amd64'}"
            output = os.path.join(output_dir, f"{prefix}-{digest}{suffix}{go_platform}.aci")
        else:
            v1 = layer.v1 or {}
            extra = "".join(f"-{v1[k]}" for k in ("os", "architecture") if v1.get(k))
            suffix = f"-{ref.tag}" if ref.tag else ""
            output = os.path.join(
                output_dir,
                f"{ref.repository.replace('/', '-')}{suffix}{extra}-{count - 1 - index}.aci",
            )

        def manifest_for(
            paths: list[str],
            whiteouts: set[str],
            layer: ImageLayer = layer,
            name: str = name,
            top: bool = top,
        ) -> ImageManifest:
            allowed = whitelist.add_layer(paths, whiteouts)
            if image.style == "v22":
                if not top:
                    return ImageManifest(name=name, labels=labels, path_whitelist=allowed)
                deps = [Dependency(image_name=m.name, labels=m.labels) for m in manifests]
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
            if layer.parent_id and manifests:
                parent = manifests[-1]
                deps = [Dependency(image_name=parent.name, labels=parent.labels)]
            return ImageManifest(
                name=own.name,
                labels=own.labels,
                app=own.app,
                annotations=own.annotations,
                dependencies=deps,
                path_whitelist=allowed,
            )

        manifests.append(_write_layer(layer, output, manifest_for, options))
        written.append(output)
    return written, manifests[-1]
