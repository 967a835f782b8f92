"""The image manifest (spec: Image Manifest Schema) and the ``app`` section it shares with pods."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from appc.errors import ValidationError
from appc.schema import _document
from appc.types._struct import Struct, expect_int, expect_object, expect_str, json_field, list_of
from appc.types.acidentifier import ACIdentifier
from appc.types.ackind import ACKind
from appc.types.annotations import Annotations
from appc.types.dependencies import Dependency, dependencies
from appc.types.environment import Environment
from appc.types.exec import EventHandler, event_handlers, parse_exec
from appc.types.isolators import Isolators, app_isolators
from appc.types.labels import Labels
from appc.types.mountpoints import MountPoint, mount_points
from appc.types.ports import Port, ports
from appc.types.semver import SemVer, semver

__all__ = ["SPEC_VERSION", "App", "Dependency", "EventHandler", "ImageManifest"]


def __dir__() -> list[str]:
    return __all__


#: The spec version this library implements, written as ``acVersion`` by default.
SPEC_VERSION = SemVer.parse("0.8.11")


def _user(value: object) -> str:
    text = expect_str(value)
    if text == "":
        raise ValidationError("user is required")
    return text


def _group(value: object) -> str:
    text = expect_str(value)
    if text == "":
        raise ValidationError("group is required")
    return text


def _gids(value: Iterable[int] | None) -> tuple[int, ...]:
    # Negative values are accepted, as by the reference (a Go int).
    return list_of(value, expect_int)


def _working_directory(value: object) -> str:
    text = expect_str(value)
    if text and not text.startswith("/"):
        raise ValidationError("workingDirectory must be an absolute path", value=text)
    return text


def _string_map(value: Mapping[str, str] | None) -> dict[str, str]:
    if value is None:
        return {}
    obj = expect_object(value)
    out = {}
    for key, item in obj.items():
        try:
            out[key] = expect_str(item)
        except ValidationError as err:
            raise err.prefixed(key) from None
    return out


@attrs.frozen(kw_only=True)
class App(Struct):
    """How to run an image: command, user, environment, isolators, mount points, ports.

    ``user`` and ``group`` are required whenever an app is given; each may be a name,
    a number or an absolute path inside the image (that file's owner is used).
    ``exec`` need not be absolute (it is looked up on ``PATH``); an empty ``exec`` is
    left out of the JSON.  Fields are written in the reference's (Go struct) order:
    ``mountPoints`` and ``ports`` come before ``isolators``.

    >>> App(exec=["/bin/hello"], user="0", group="0").to_dict()
    {'exec': ['/bin/hello'], 'user': '0', 'group': '0'}
    """

    exec: tuple[str, ...] = attrs.field(
        default=(), converter=parse_exec, metadata=json_field("exec")
    )
    event_handlers: tuple[EventHandler, ...] = attrs.field(
        default=(), converter=event_handlers, metadata=json_field("eventHandlers")
    )
    user: str = attrs.field(
        converter=_user, metadata=json_field("user", missing="user is required")
    )
    group: str = attrs.field(
        converter=_group, metadata=json_field("group", missing="group is required")
    )
    supplementary_gids: tuple[int, ...] = attrs.field(
        default=(), converter=_gids, metadata=json_field("supplementaryGIDs")
    )
    working_directory: str = attrs.field(
        default="", converter=_working_directory, metadata=json_field("workingDirectory")
    )
    environment: Environment = attrs.field(
        factory=Environment, converter=Environment, metadata=json_field("environment")
    )
    mount_points: tuple[MountPoint, ...] = attrs.field(
        default=(), converter=mount_points, metadata=json_field("mountPoints")
    )
    ports: tuple[Port, ...] = attrs.field(default=(), converter=ports, metadata=json_field("ports"))
    isolators: Isolators = attrs.field(
        factory=Isolators, converter=app_isolators, metadata=json_field("isolators")
    )
    user_annotations: dict[str, str] = attrs.field(
        factory=dict, converter=_string_map, metadata=json_field("userAnnotations")
    )
    user_labels: dict[str, str] = attrs.field(
        factory=dict, converter=_string_map, metadata=json_field("userLabels")
    )

    def event_handler(self, name: str) -> EventHandler | None:
        """Return the ``pre-start`` or ``post-stop`` handler, if the app has one."""
        for handler in self.event_handlers:
            if handler.name == name:
                return handler
        return None


def optional_app(value: object) -> App | None:
    """Converter: an :class:`App` from a dict, or ``None``."""
    if value is None or isinstance(value, App):
        return value
    return App.from_dict(value)


def _ackind_image(value: object) -> ACKind:
    if value != ACKind.IMAGE_MANIFEST:
        raise ValidationError('missing or bad ACKind (must be "ImageManifest")', value=value)
    return ACKind.IMAGE_MANIFEST


def _path_whitelist(value: Iterable[str] | None) -> tuple[str, ...]:
    # Not checked, as in the reference: relative paths and "" are accepted.
    return list_of(value, expect_str)


@attrs.frozen(kw_only=True)
class ImageManifest(Struct):
    """The manifest of an App Container Image.

    Build one in code (values are converted and checked)::

        >>> m = ImageManifest(name="example.com/hello", labels={"version": "1.0.0"},
        ...                   app=App(exec=["/bin/hello"], user="0", group="0"))
        >>> m.to_json()
        '{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/hello","labels":[{"name":"version","value":"1.0.0"}],"app":{"exec":["/bin/hello"],"user":"0","group":"0"}}'

    or read one with :meth:`from_json` / :meth:`from_dict`, which report every problem
    at once in an :class:`appc.errors.InvalidManifest`.
    """

    ac_kind: ACKind = attrs.field(
        default=ACKind.IMAGE_MANIFEST,
        converter=_ackind_image,
        metadata=json_field(
            "acKind",
            omit="never",
            missing='missing or bad ACKind (must be "ImageManifest")',
            required=True,
        ),
    )
    ac_version: SemVer = attrs.field(
        default=SPEC_VERSION,
        converter=semver,
        metadata=json_field(
            "acVersion", omit="never", missing="acVersion must be set", required=True
        ),
    )
    name: ACIdentifier = attrs.field(
        converter=ACIdentifier, metadata=json_field("name", omit="never")
    )
    labels: Labels = attrs.field(factory=Labels, converter=Labels, metadata=json_field("labels"))
    app: App | None = attrs.field(default=None, converter=optional_app, metadata=json_field("app"))
    annotations: Annotations = attrs.field(
        factory=Annotations, converter=Annotations, metadata=json_field("annotations")
    )
    dependencies: tuple[Dependency, ...] = attrs.field(
        default=(), converter=dependencies, metadata=json_field("dependencies")
    )
    path_whitelist: tuple[str, ...] = attrs.field(
        default=(), converter=_path_whitelist, metadata=json_field("pathWhitelist")
    )

    @classmethod
    def from_dict(cls, data: object, *, structural: bool = True) -> ImageManifest:
        """Read a manifest from parsed JSON with the reference decoder's rules.

        Keys match case-insensitively, ``null`` means absent, unknown keys are ignored.

        :param structural: also run the JSON Schema pass (see :mod:`appc.schema`);
            ``False`` skips importing ``jsonschema`` for trusted input.
        :raises appc.errors.InvalidManifest: listing every problem with its field path.
        """
        return _document.read_document(
            cls, data, "image-manifest.schema.json", structural=structural
        )

    @classmethod
    def from_json(cls, data: bytes | str, *, structural: bool = True) -> ImageManifest:
        """Read a manifest from JSON text (see :meth:`from_dict`)."""
        return cls.from_dict(_document.loads(data), structural=structural)

    def to_json(self, *, indent: int | None = None) -> str:
        """The manifest as JSON text: compact like the reference's ``json.Marshal``, or indented."""
        return _document.dumps(self.to_dict(), indent=indent)

    @property
    def os(self) -> str | None:
        """The ``os`` label, if any."""
        return self.labels.get("os")

    @property
    def arch(self) -> str | None:
        """The ``arch`` label, if any."""
        return self.labels.get("arch")

    @property
    def version(self) -> str | None:
        """The ``version`` label, if any."""
        return self.labels.get("version")
