"""Image labels and the os/arch table (spec: Labels; image manifest ``labels``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from appc.errors import InvalidManifest, ValidationError
from appc.types._struct import Struct, expect_str, json_field, list_of
from appc.types.acidentifier import ACIdentifier

__all__ = [
    "VALID_OS_ARCH",
    "Label",
    "Labels",
    "to_appc_os_arch",
    "to_go_os_arch",
]


def __dir__() -> list[str]:
    return __all__


#: The os → arch pairs the reference code accepts (newer and longer than the spec prose).
VALID_OS_ARCH: Mapping[str, tuple[str, ...]] = {
    "darwin": ("x86_64", "i386"),
    "freebsd": ("amd64", "i386", "arm"),
    "linux": (
        "amd64",
        "i386",
        "aarch64",
        "aarch64_be",
        "armv6l",
        "armv7l",
        "armv7b",
        "ppc64",
        "ppc64le",
        "s390x",
    ),
}

_GO_TO_APPC: Mapping[tuple[str, str], str] = {
    ("linux", "386"): "i386",
    ("linux", "arm64"): "aarch64",
    ("darwin", "amd64"): "x86_64",
    ("freebsd", "386"): "i386",
    ("darwin", "386"): "i386",
}


#: Valid appc arches that Go cannot target (big-endian ARM).
_NO_GO_ARCH = frozenset({"armv7b", "aarch64_be"})


def to_appc_os_arch(goos: str, goarch: str, goarm: str = "") -> tuple[str, str]:
    """Map Go's GOOS/GOARCH (and GOARM flavour) to the appc os and arch label values.

    >>> to_appc_os_arch("linux", "arm64")
    ('linux', 'aarch64')
    >>> to_appc_os_arch("linux", "arm", "7")
    ('linux', 'armv7l')

    :raises ValidationError: when the result is not in :data:`VALID_OS_ARCH`.
    """
    if goarch == "arm" and goos == "linux":
        arch = "armv7l" if goarm == "7" else "armv6l"
    elif goarch == "arm" and goos == "freebsd":
        arch = "arm"
    else:
        arch = _GO_TO_APPC.get((goos, goarch), goarch)
    _check_os_arch(goos, arch)
    return goos, arch


def to_go_os_arch(os_: str, arch: str) -> tuple[str, str, str]:
    """Map appc os/arch label values to Go's (GOOS, GOARCH, GOARM); GOARM is ``""`` if unused.

    >>> to_go_os_arch("linux", "aarch64")
    ('linux', 'arm64', '')

    The big-endian arches ``armv7b`` and ``aarch64_be`` are valid labels but Go has no
    port for them (the reference's table leaves them out too).

    :raises ValidationError: when the pair is not in :data:`VALID_OS_ARCH`, or has no
        Go equivalent.
    """
    _check_os_arch(os_, arch)
    if arch in _NO_GO_ARCH:
        raise ValidationError(f"no Go equivalent for {os_}/{arch}", value=arch)
    if arch in ("armv6l", "armv7l"):
        return os_, "arm", arch[4]
    if os_ == "freebsd" and arch == "arm":
        return os_, "arm", "6"
    for (goos, goarch), appc_arch in _GO_TO_APPC.items():
        if goos == os_ and appc_arch == arch:
            return goos, goarch, ""
    return os_, arch, ""


def _os_arch_error(os_: str, arch: str | None) -> tuple[str, ValidationError] | None:
    """Say which of os/arch is wrong, and why; None when the pair is valid."""
    if os_ not in VALID_OS_ARCH:
        choices = " ".join(sorted(VALID_OS_ARCH))
        return "os", ValidationError(f"bad os {os_!r} (must be one of: [{choices}])", value=os_)
    if arch is not None and arch not in VALID_OS_ARCH[os_]:
        choices = " ".join(VALID_OS_ARCH[os_])
        return "arch", ValidationError(
            f"bad arch {arch!r} for {os_} (must be one of: [{choices}])", value=arch
        )
    return None


def _check_os_arch(os_: str, arch: str | None) -> None:
    problem = _os_arch_error(os_, arch)
    if problem is not None:
        raise problem[1]


def _label_value(value: object) -> str:
    return expect_str(value)


@attrs.frozen
class Label(Struct):
    """One ``{name, value}`` label; a missing value reads as ``""``.

    Decision: a label without a name is refused (the reference lets an empty name
    through, which no lookup could ever match).
    """

    name: ACIdentifier = attrs.field(
        converter=ACIdentifier, metadata=json_field("name", omit="never")
    )
    value: str = attrs.field(
        default="", converter=_label_value, metadata=json_field("value", omit="never")
    )


def _label(item: object) -> Label:
    if isinstance(item, Label):
        return item
    if isinstance(item, tuple) and len(item) == 2:
        return Label(*item)
    return Label.from_dict(item)


class Labels(tuple[Label, ...]):
    """The validated list of an image's labels.

    Rules, in the reference's order: the name ``name`` is reserved, names are unique,
    ``os`` must be a known OS and ``arch`` (when ``os`` is given) a known arch for it.
    An ``arch`` without ``os`` is not checked, as in the reference.

    Accepts a list of :class:`Label`, ``{name, value}`` objects or ``(name, value)``
    pairs, or a mapping (sorted by name, like ``LabelsFromMap``)::

        >>> Labels({"version": "1.0.0", "os": "linux"}).get("os")
        'linux'
    """

    __slots__ = ()

    def __new__(cls, items: Iterable[Any] | Mapping[str, str] | None = ()) -> Labels:
        if isinstance(items, Labels):
            return items
        if isinstance(items, Mapping):
            items = [Label(k, v) for k, v in sorted(items.items())]
        labels = list_of(items, _label)
        seen: dict[str, int] = {}
        errors = []
        for index, label in enumerate(labels):
            if label.name == "name":
                errors.append(
                    ValidationError(
                        'invalid label name: "name"', path=(index, "name"), value="name"
                    )
                )
            elif label.name in seen:
                errors.append(
                    ValidationError(
                        f"duplicate labels of name {str(label.name)!r}",
                        path=(index, "name"),
                        value=str(label.name),
                    )
                )
            seen[label.name] = index
        if "os" in seen:
            arch_index = seen.get("arch")
            arch = None if arch_index is None else labels[arch_index].value
            problem = _os_arch_error(labels[seen["os"]].value, arch)
            if problem is not None:
                which, err = problem
                errors.append(err.prefixed(seen[which], "value"))
        if errors:
            raise InvalidManifest(errors)
        return tuple.__new__(cls, labels)

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the value of the label *name*, or *default*."""
        for label in self:
            if label.name == name:
                return label.value
        return default

    def as_dict(self) -> dict[str, str]:
        """Return the labels as a ``{name: value}`` dict, in list order."""
        return {str(label.name): label.value for label in self}

    def with_label(self, name: str, value: str) -> Labels:
        """Return a copy with the label *name* set to *value* (replaced in place or appended)."""
        items = [Label(name, value) if label.name == name else label for label in self]
        if name not in self.as_dict():
            items.append(Label(name, value))
        return Labels(items)

    def json_value(self) -> list[dict[str, Any]]:
        """The JSON array of ``{name, value}`` objects."""
        return [label.to_dict() for label in self]

    def __repr__(self) -> str:
        return f"Labels({self.as_dict()!r})"
