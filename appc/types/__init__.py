"""The value types of the App Container spec, one module each.

Constructors are parsers: ``ACIdentifier("Bad")`` raises
:class:`appc.errors.ValidationError`.  Structs read JSON with ``from_dict()`` and write
it with ``to_dict()``; lists with list-level rules (labels, annotations, environment,
isolators) are validated tuple types.
"""

from __future__ import annotations

from appc.types.acidentifier import ACIdentifier, sanitize_acidentifier
from appc.types.ackind import ACKind
from appc.types.acname import ACName, sanitize_acname
from appc.types.annotations import Annotation, Annotations
from appc.types.date import parse_rfc3339
from appc.types.dependencies import Dependency
from appc.types.environment import Environment, EnvironmentVariable
from appc.types.exec import EventHandler, exec_from_string
from appc.types.hash import Hash
from appc.types.isolators import (
    DEFAULT_CAPABILITIES,
    KNOWN_ISOLATORS,
    AppArmorProfile,
    CapabilitySet,
    Isolator,
    Isolators,
    ResourceValue,
    SeccompSet,
    SELinuxContext,
    isolator_from_string,
)
from appc.types.labels import VALID_OS_ARCH, Label, Labels, to_appc_os_arch, to_go_os_arch
from appc.types.mountpoints import MountPoint, mount_point_from_string
from appc.types.ports import ExposedPort, Port, port_from_string
from appc.types.resource import Quantity
from appc.types.semver import SemVer
from appc.types.url import check_http_url
from appc.types.uuid import UUID, new_uuid
from appc.types.volumes import Volume, volume_from_string

__all__ = [
    "DEFAULT_CAPABILITIES",
    "KNOWN_ISOLATORS",
    "VALID_OS_ARCH",
    "ACIdentifier",
    "ACKind",
    "ACName",
    "AppArmorProfile",
    "Annotation",
    "Annotations",
    "CapabilitySet",
    "Dependency",
    "Environment",
    "EnvironmentVariable",
    "EventHandler",
    "ExposedPort",
    "Hash",
    "Isolator",
    "Isolators",
    "Label",
    "Labels",
    "MountPoint",
    "Port",
    "Quantity",
    "ResourceValue",
    "SELinuxContext",
    "SeccompSet",
    "SemVer",
    "UUID",
    "Volume",
    "check_http_url",
    "exec_from_string",
    "isolator_from_string",
    "mount_point_from_string",
    "new_uuid",
    "parse_rfc3339",
    "port_from_string",
    "sanitize_acidentifier",
    "sanitize_acname",
    "to_appc_os_arch",
    "to_go_os_arch",
    "volume_from_string",
]


def __dir__() -> list[str]:
    return __all__
