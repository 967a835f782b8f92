"""Changing the manifest inside an image archive (``actool patch-manifest``).

The archive is copied entry by entry, with the same checks as validation, and the
``manifest`` entry's contents replaced (its header is kept apart from the size).  The
output goes through a temporary file, so a failure leaves nothing behind.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import attrs

from appc.aci._compress import Compression
from appc.aci.read import MAX_MANIFEST_SIZE, ImageReader, read_manifest_bytes
from appc.aci.validate import EntryChecker
from appc.aci.write import DEFAULT_LEVEL, ImageWriter, atomic_output
from appc.errors import ImageError, ValidationError
from appc.schema.image import App, ImageManifest
from appc.types.exec import exec_from_string
from appc.types.hash import Hash
from appc.types.isolators import Isolator, Isolators, isolator_from_string
from appc.types.mountpoints import mount_point_from_string
from appc.types.ports import port_from_string

__all__ = ["ManifestPatch", "apply_patch", "patch_image"]


def __dir__() -> list[str]:
    return __all__


_CAPABILITY_ISOLATORS = ("os/linux/capabilities-retain-set", "os/linux/capabilities-remove-set")
_SECCOMP_ISOLATORS = ("os/linux/seccomp-remove-set", "os/linux/seccomp-retain-set")


@attrs.frozen(kw_only=True)
class ManifestPatch:
    """The changes ``patch-manifest`` can make, in the reference's command-line forms.

    :param manifest: replace the manifest with these bytes, unvalidated (excludes the
        field options below that need an app).
    :param exec: a command line split on single spaces.
    :param capability: capability names for a retain set; *revoke_capability* for a
        remove set.  Either replaces every capability isolator (not both at once).
    :param mounts: ``name,path=/p,readOnly=true`` items, appended.
    :param ports: ``name,protocol=tcp,port=80,...`` items, appended.
    :param isolators: ``resource/cpu,limit=1`` style items, appended.
    :param seccomp_mode: ``remove`` or ``retain``, optionally ``,errno=EPERM``; with
        *seccomp_set* it replaces any seccomp isolator.
    """

    manifest: bytes | None = None
    name: str | None = None
    exec: str | None = None
    user: str | None = None
    group: str | None = None
    supplementary_gids: Sequence[int] | None = None
    capability: Sequence[str] = ()
    revoke_capability: Sequence[str] = ()
    mounts: Sequence[str] = ()
    ports: Sequence[str] = ()
    isolators: Sequence[str] = ()
    seccomp_mode: str | None = None
    seccomp_set: Sequence[str] = ()

    def needs_app(self) -> bool:
        """True when the patch changes fields of the ``app`` section."""
        return any(
            (
                self.exec is not None,
                self.user is not None,
                self.group is not None,
                self.supplementary_gids is not None,
                self.capability,
                self.revoke_capability,
                self.mounts,
                self.ports,
                self.isolators,
                self.seccomp_mode is not None,
                self.seccomp_set,
            )
        )


def _seccomp_isolator(mode: str, names: Sequence[str]) -> Isolator:
    kind, _, rest = mode.partition(",")
    if kind not in ("remove", "retain"):
        raise ValidationError(f"bad seccomp mode {mode!r} (remove or retain)", value=mode)
    value: dict[str, object] = {"set": list(names)}
    if rest:
        key, _, errno = rest.partition("=")
        if key != "errno":
            raise ValidationError(f"bad seccomp mode option {rest!r} (errno=...)", value=mode)
        value["errno"] = errno
    return Isolator(f"os/linux/seccomp-{kind}-set", value)


def apply_patch(manifest: ImageManifest, patch: ManifestPatch) -> ImageManifest:
    """Return *manifest* with *patch* applied (without ``patch.manifest``).

    :raises ValidationError: bad option values, conflicting options, or options that
        need an app on a manifest without one (and no ``exec``).
    """
    if patch.capability and patch.revoke_capability:
        raise ValidationError("conflicting capabilities isolators provided")
    if patch.seccomp_set and patch.seccomp_mode is None:
        raise ValidationError("--seccomp-set needs --seccomp-mode")
    if patch.seccomp_mode is not None and not patch.seccomp_set:
        raise ValidationError("--seccomp-mode needs --seccomp-set")
    changes: dict[str, object] = {}
    if patch.name is not None:
        changes["name"] = patch.name
    if patch.needs_app():
        app = manifest.app
        if app is None:
            if patch.exec is None:
                raise ValidationError("the manifest has no app: give --exec to create one")
            if patch.user is None or patch.group is None:
                raise ValidationError("the manifest has no app: a new app needs --user and --group")
        fields: dict[str, object] = {} if app is None else attrs.asdict(app, recurse=False)
        if patch.exec is not None:
            fields["exec"] = exec_from_string(patch.exec)
        for key in ("user", "group"):
            if getattr(patch, key) is not None:
                fields[key] = getattr(patch, key)
        if patch.supplementary_gids is not None:
            fields["supplementary_gids"] = tuple(patch.supplementary_gids)
        isolators = Isolators(app.isolators if app is not None else ())
        if patch.capability or patch.revoke_capability:
            kind, names = (
                ("os/linux/capabilities-retain-set", patch.capability)
                if patch.capability
                else ("os/linux/capabilities-remove-set", patch.revoke_capability)
            )
            isolators = Isolators(
                (*isolators.without(*_CAPABILITY_ISOLATORS), Isolator(kind, {"set": list(names)}))
            )
        if patch.seccomp_mode is not None:
            seccomp = _seccomp_isolator(patch.seccomp_mode, patch.seccomp_set)
            isolators = Isolators((*isolators.without(*_SECCOMP_ISOLATORS), seccomp))
        isolators = Isolators((*isolators, *(isolator_from_string(i) for i in patch.isolators)))
        fields["isolators"] = isolators
        fields["mount_points"] = (
            *fields.get("mount_points", ()),  # type: ignore[misc]
            *(mount_point_from_string(m) for m in patch.mounts),
        )
        fields["ports"] = (*fields.get("ports", ()), *(port_from_string(p) for p in patch.ports))  # type: ignore[misc]
        changes["app"] = App(**fields)  # type: ignore[arg-type]
    return attrs.evolve(manifest, **changes)  # type: ignore[arg-type]


def patch_image(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    patch: ManifestPatch | None = None,
    *,
    overwrite: bool = False,
    compression: str = Compression.GZIP,
    level: int = DEFAULT_LEVEL,
    max_size: int | None = None,
) -> Hash:
    """Write *source* with its manifest patched to *output* (``None``: replace *source*).

    :param max_size: the most uncompressed bytes read (default:
        :func:`~appc.aci._compress.max_image_size`).

    :returns: the new image ID.
    :raises ImageError: unreadable or invalid input, bad output name, existing output.
    :raises ValidationError: bad patch options.
    """
    patch = patch or ManifestPatch()
    source_path = os.fspath(source)
    target = source_path if output is None else os.fspath(output)
    if not target.endswith(".aci"):
        raise ImageError("extension must be .aci", source=target)
    if patch.manifest is not None:
        if patch.needs_app() or patch.name is not None:
            raise ValidationError("--manifest cannot be combined with options that change fields")
        new_manifest = patch.manifest
    else:
        raw = read_manifest_bytes(source_path, max_size=max_size)
        try:
            current = ImageManifest.from_json(raw)
        except ValidationError as err:
            raise ImageError(
                f"image manifest validation failed: {err}", source=source_path
            ) from None
        new_manifest = apply_patch(current, patch).to_json().encode("utf-8")
    if len(new_manifest) > MAX_MANIFEST_SIZE:
        raise ImageError(f"manifest larger than {MAX_MANIFEST_SIZE} bytes", source=source_path)
    with (
        atomic_output(target, overwrite=overwrite or output is None) as out,
        ImageReader(source_path, max_size=max_size) as image,
    ):
        writer = ImageWriter(out, compression=compression, level=level)
        try:
            checker = EntryChecker(source_path)
            for info, name in image.entries():
                checker.check(info, name)
                if name == "manifest":
                    image.read_entry(info, limit=MAX_MANIFEST_SIZE)
                    writer.add_bytes(info, new_manifest)
                elif info.isreg():
                    member = image.member(info)
                    writer.add(info, member)
                else:
                    writer.add(info)
            image.finish()
            checker.finish()
            return writer.close()
        except BaseException:
            writer.abort()
            raise
