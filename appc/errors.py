"""The one exception hierarchy of the appc library.

Every error the library raises on purpose derives from :class:`AppcError`, so a
command-line tool (or a script) can catch that one class and print a one-line
message.  Errors about bad input values are :class:`ValidationError` (also a
:class:`ValueError`); they carry the dotted field path of the bad value
(``app.ports[2].port``) and the value itself.  A document with several bad fields
raises one :class:`InvalidManifest` holding all of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = [
    "AppcError",
    "BuildError",
    "DiscoveryError",
    "ELFError",
    "FetchError",
    "ImageError",
    "InvalidManifest",
    "Path",
    "PodError",
    "SignatureError",
    "StoreError",
    "ValidationError",
    "format_path",
]


def __dir__() -> list[str]:
    return __all__


#: A field path: object keys and list indices, outermost first.
Path = tuple[str | int, ...]

_NO_VALUE = object()


def format_path(path: Path) -> str:
    """Return *path* in dotted form: ``("app", "ports", 2, "port")`` → ``app.ports[2].port``."""
    out = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif out:
            out.append(f".{part}")
        else:
            out.append(part)
    return "".join(out)


class AppcError(Exception):
    """Root of every error raised by the appc library on purpose."""


class ValidationError(AppcError, ValueError):
    """A value breaks a rule of the spec.

    :param message: what is wrong, quoting the bad input with ``!r``.
    :param path: where the value sits in its document (empty for a bare value).
    :param value: the offending value, when there is one to show.
    """

    def __init__(self, message: str, *, path: Path = (), value: object = _NO_VALUE) -> None:
        super().__init__(message)
        self.message = message
        self.path: Path = tuple(path)
        self.value = value

    @property
    def field(self) -> str:
        """The dotted path of the bad field (``""`` for a bare value)."""
        return format_path(self.path)

    @property
    def errors(self) -> tuple[ValidationError, ...]:
        """The individual errors: this one alone, or every member of a group."""
        return (self,)

    def prefixed(self, *prefix: str | int) -> ValidationError:
        """Return the same error placed under *prefix* in an enclosing document."""
        return ValidationError(self.message, path=prefix + self.path, value=self.value)

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.path else self.message

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_validation_error, (type(self), self.message, self.path, self.value))


def _rebuild_validation_error(
    cls: type[ValidationError], message: str, path: Path, value: object
) -> ValidationError:
    return cls(message, path=path, value=value)


class InvalidManifest(ValidationError):
    """A document (image or pod manifest, or a part of one) has one or more bad fields.

    ``errors`` lists each problem with its own field path; ``str()`` joins them so that
    a single line tells the whole story.
    """

    def __init__(self, errors: Iterable[ValidationError], *, kind: str = "") -> None:
        flat: list[ValidationError] = []
        for error in errors:
            flat.extend(error.errors)
        if not flat:
            raise ValueError("InvalidManifest needs at least one error")
        self._errors = tuple(flat)
        self.kind = kind
        super().__init__("; ".join(str(e) for e in flat))

    @property
    def errors(self) -> tuple[ValidationError, ...]:
        return self._errors

    def prefixed(self, *prefix: str | int) -> InvalidManifest:
        return InvalidManifest((e.prefixed(*prefix) for e in self._errors), kind=self.kind)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        return (InvalidManifest, (self._errors,), {"kind": self.kind})


class ImageError(AppcError):
    """An image archive or layout is unreadable or breaks the ACI format.

    :param message: the problem.
    :param source: the file or directory it was found in, shown before the message.
    """

    def __init__(self, message: str, *, source: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.source = source

    def __str__(self) -> str:
        return f"{self.source}: {self.message}" if self.source else self.message


class FetchError(AppcError):
    """A transfer failed: carries the URL and, when there was a response, its status."""

    def __init__(self, message: str, *, url: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        self.status = status

    def __str__(self) -> str:
        return f"{self.url}: {self.message}" if self.url else self.message


class DiscoveryError(FetchError):
    """Meta discovery found no usable endpoint; ``attempts`` lists each prefix tried and why it failed."""

    def __init__(
        self, message: str, *, url: str = "", attempts: Sequence[tuple[str, str]] = ()
    ) -> None:
        super().__init__(message, url=url)
        self.attempts = tuple(attempts)


class SignatureError(AppcError):
    """A signature is missing, malformed, or not made by a trusted key."""


class StoreError(AppcError):
    """The image store cannot find, add or remove an image."""


class PodError(AppcError):
    """A pod cannot be prepared, run, entered, stopped or collected."""


class ELFError(AppcError, ValueError):
    """A file is not a readable ELF object: bad magic, unknown class or encoding, truncated.

    :param message: the problem.
    :param source: the file it was found in, shown before the message.
    """

    def __init__(self, message: str, *, source: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.source = source

    def __str__(self) -> str:
        return f"{self.source}: {self.message}" if self.source else self.message


class BuildError(AppcError):
    """A program could not be built into an image (``goaci``): no toolchain, a compile
    error, an ambiguous or missing binary, a bad asset.

    :param message: the cause, one line.
    :param output: what the build tool printed (stdout and stderr), for the user to read;
        ``""`` when no tool ran.
    """

    def __init__(self, message: str, *, output: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.output = output

    def __str__(self) -> str:
        return self.message
