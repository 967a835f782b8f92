"""The pod manifest (spec: Pod Manifest Schema): apps, volumes, isolators, exposed ports."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from appc.errors import InvalidManifest, ValidationError
from appc.schema import _document
from appc.schema.image import SPEC_VERSION, App, optional_app
from appc.types._struct import (
    Struct,
    duplicate_errors,
    expect_bool,
    expect_str,
    json_field,
    list_of,
)
from appc.types.acidentifier import ACIdentifier
from appc.types.ackind import ACKind
from appc.types.acname import ACName
from appc.types.annotations import Annotations
from appc.types.hash import Hash
from appc.types.isolators import Isolators, pod_isolators
from appc.types.labels import Labels
from appc.types.ports import ExposedPort, exposed_ports
from appc.types.semver import SemVer, semver
from appc.types.volumes import Volume, volumes

__all__ = ["Mount", "PodManifest", "RuntimeApp", "RuntimeImage"]


def __dir__() -> list[str]:
    return __all__


def _optional_acidentifier(value: object) -> ACIdentifier | None:
    return None if value is None else ACIdentifier(value)


def _optional_acname(value: object) -> ACName | None:
    return None if value is None else ACName(value)


def _optional_hash(value: object) -> Hash | None:
    return None if value is None else Hash(value)


@attrs.frozen(kw_only=True)
class RuntimeImage(Struct):
    """The image an app of a pod runs: its ID (in a runtime manifest), name and labels.

    Decision (reference over spec text): a missing ``id`` is accepted, so that pod
    *templates* (apps by name and labels only) read; :attr:`PodManifest.is_reified`
    tells whether every app is pinned.
    """

    name: ACIdentifier | None = attrs.field(
        default=None, converter=_optional_acidentifier, metadata=json_field("name")
    )
    id: Hash | None = attrs.field(
        default=None, converter=_optional_hash, metadata=json_field("id", omit="none")
    )
    labels: Labels = attrs.field(factory=Labels, converter=Labels, metadata=json_field("labels"))


def _runtime_image(value: object) -> RuntimeImage:
    return value if isinstance(value, RuntimeImage) else RuntimeImage.from_dict(value)


def _str(value: object) -> str:
    return expect_str(value)


def _optional_volume(value: object) -> Volume | None:
    if value is None or isinstance(value, Volume):
        return value
    return Volume.from_dict(value)


@attrs.frozen(kw_only=True)
class Mount(Struct):
    """Where a pod volume (or the app's own ``appVolume``) is mounted in one app."""

    volume: ACName | None = attrs.field(
        default=None, converter=_optional_acname, metadata=json_field("volume", omit="none")
    )
    path: str = attrs.field(default="", converter=_str, metadata=json_field("path", omit="never"))
    app_volume: Volume | None = attrs.field(
        default=None, converter=_optional_volume, metadata=json_field("appVolume")
    )


def _mount(item: object) -> Mount:
    return item if isinstance(item, Mount) else Mount.from_dict(item)


def _mounts(value: Iterable[Any] | None) -> tuple[Mount, ...]:
    return list_of(value, _mount)


def _bool(value: object) -> bool:
    return expect_bool(value)


@attrs.frozen(kw_only=True)
class RuntimeApp(Struct):
    """One app of a pod: its name in the pod, its image, optional overrides and mounts."""

    name: ACName | None = attrs.field(
        default=None, converter=_optional_acname, metadata=json_field("name", omit="none")
    )
    image: RuntimeImage = attrs.field(
        factory=RuntimeImage, converter=_runtime_image, metadata=json_field("image", omit="never")
    )
    app: App | None = attrs.field(default=None, converter=optional_app, metadata=json_field("app"))
    read_only_rootfs: bool = attrs.field(
        default=False, converter=_bool, metadata=json_field("readOnlyRootFS")
    )
    mounts: tuple[Mount, ...] = attrs.field(
        default=(), converter=_mounts, metadata=json_field("mounts")
    )
    annotations: Annotations = attrs.field(
        factory=Annotations, converter=Annotations, metadata=json_field("annotations")
    )


def _runtime_app(item: object) -> RuntimeApp:
    return item if isinstance(item, RuntimeApp) else RuntimeApp.from_dict(item)


def _apps(value: Iterable[Any] | None) -> tuple[RuntimeApp, ...]:
    # Apps without a name count as named "", as in the reference: two of them clash.
    apps = list_of(value, _runtime_app)
    errors = duplicate_errors(
        apps,
        lambda a: str(a.name) if a.name else None,
        lambda name: f"duplicate apps of name {name!r}",
    )
    if errors:
        raise InvalidManifest(errors)
    return apps


def _ackind_pod(value: object) -> ACKind:
    if value != ACKind.POD_MANIFEST:
        raise ValidationError('missing or bad ACKind (must be "PodManifest")', value=value)
    return ACKind.POD_MANIFEST


def _string_map(value: Any) -> dict[str, str]:
    from appc.schema.image import _string_map as read  # noqa: PLC0415 - one reader for both

    return read(value)


@attrs.frozen(kw_only=True)
class PodManifest(Struct):
    """A pod: apps that share namespaces and volumes.

    The reference validates little at pod level: ``acKind``, unique app and volume
    names, each volume's own rules, each *known* isolator's value (unknown isolator
    names are allowed in a pod), annotations and ports.  ``acVersion`` is not required.
    The first seven fields are always written, ``null`` when empty, as Go does.
    """

    ac_version: SemVer = attrs.field(
        default=SPEC_VERSION, converter=semver, metadata=json_field("acVersion", omit="never")
    )
    ac_kind: ACKind = attrs.field(
        default=ACKind.POD_MANIFEST,
        converter=_ackind_pod,
        metadata=json_field(
            "acKind",
            omit="never",
            missing='missing or bad ACKind (must be "PodManifest")',
            required=True,
        ),
    )
    apps: tuple[RuntimeApp, ...] = attrs.field(
        default=(), converter=_apps, metadata=json_field("apps", omit="null")
    )
    volumes: tuple[Volume, ...] = attrs.field(
        default=(), converter=volumes, metadata=json_field("volumes", omit="null")
    )
    isolators: Isolators = attrs.field(
        factory=Isolators, converter=pod_isolators, metadata=json_field("isolators", omit="null")
    )
    annotations: Annotations = attrs.field(
        factory=Annotations, converter=Annotations, metadata=json_field("annotations", omit="null")
    )
    ports: tuple[ExposedPort, ...] = attrs.field(
        default=(), converter=exposed_ports, metadata=json_field("ports", omit="null")
    )
    user_annotations: dict[str, str] = attrs.field(
        factory=dict, converter=_string_map, metadata=json_field("userAnnotations")
    )
    user_labels: dict[str, str] = attrs.field(
        factory=dict, converter=_string_map, metadata=json_field("userLabels")
    )

    @classmethod
    def from_dict(cls, data: object, *, structural: bool = True) -> PodManifest:
        """Read a pod manifest from parsed JSON (rules as :meth:`ImageManifest.from_dict`)."""
        return _document.read_document(cls, data, "pod-manifest.schema.json", structural=structural)

    @classmethod
    def from_json(cls, data: bytes | str, *, structural: bool = True) -> PodManifest:
        """Read a pod manifest from JSON text."""
        return cls.from_dict(_document.loads(data, what="pod manifest"), structural=structural)

    def to_json(self, *, indent: int | None = None) -> str:
        """The pod manifest as JSON text (compact, or indented)."""
        return _document.dumps(self.to_dict(), indent=indent)

    @property
    def is_reified(self) -> bool:
        """True when every app names its image by ID (a runtime manifest, not a template)."""
        return all(app.image.id is not None for app in self.apps)

    def app(self, name: str) -> RuntimeApp | None:
        """Return the app called *name*, or ``None``."""
        for app in self.apps:
            if app.name == name:
                return app
        return None
