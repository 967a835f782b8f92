"""Docker image references, parsed as docker2aci (and the docker/distribution grammar) does.

``busybox`` is ``registry-1.docker.io/library/busybox:latest``; a first component with
a ``.`` or ``:``, or ``localhost``, is a registry; a digest drops any tag; names must be
lower case.  See ``reference/docker2aci.md`` §2 for the table this module is tested on.
"""

from __future__ import annotations

import re

import attrs

from appc.errors import ValidationError

__all__ = ["DEFAULT_REGISTRY", "DockerReference", "parse_reference"]


def __dir__() -> list[str]:
    return __all__


#: Where Docker Hub images are fetched from.
DEFAULT_REGISTRY = "registry-1.docker.io"
_HUB_NAMES = ("docker.io", "index.docker.io", "registry-1.docker.io")

_ALNUM = r"[a-z0-9]+"
# The grammar's separator is ``[._]|__|[-]*``; its empty alternative adds nothing to
# the language but makes a backtracking engine try every split of a run of letters
# (``parse_reference("a" * 30 + "!")`` took minutes): here a separator is never empty.
_SEPARATOR = r"(?:[._]|__|-+)"
_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*)(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?"
)
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_NAME_MAX = 255


@attrs.frozen
class DockerReference:
    """A parsed image reference.

    :ivar registry: the registry host (``registry-1.docker.io`` for Docker Hub).
    :ivar repository: the repository path (``library/busybox``).
    :ivar tag: the tag (``latest`` by default; empty when a digest is given).
    :ivar digest: ``sha256:...`` when the reference pins one.
    :ivar original: the reference as typed (without ``docker://``).
    :ivar explicit_registry: whether the user named the registry.
    """

    registry: str
    repository: str
    tag: str = ""
    digest: str = ""
    original: str = ""
    explicit_registry: bool = True

    @property
    def ref(self) -> str:
        """What to ask the registry for: the digest if pinned, else the tag."""
        return self.digest or self.tag

    @property
    def is_docker_hub(self) -> bool:
        """True for Docker Hub."""
        return self.registry == DEFAULT_REGISTRY

    def credential_keys(self) -> tuple[str, ...]:
        """The keys a ``~/.docker/config.json`` may file this registry's credentials under."""
        if self.is_docker_hub:
            return ("https://index.docker.io/v1/", *_HUB_NAMES)
        return (self.registry, f"https://{self.registry}", f"http://{self.registry}")

    def output_name(self) -> str:
        """docker2aci's squashed file name: ``library-busybox-latest.aci`` (``library-busybox.aci`` by digest)."""
        base = self.repository.replace("/", "-")
        return f"{base}-{self.tag}.aci" if self.tag else f"{base}.aci"

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> DockerReference:
    """Parse ``[docker://][REGISTRY/]NAME[:TAG][@DIGEST]``.

    >>> parse_reference("busybox")
    DockerReference(registry='registry-1.docker.io', repository='library/busybox', tag='latest', digest='', original='busybox', explicit_registry=False)
    >>> parse_reference("127.0.0.1:5000/library/busybox:1.0").registry
    '127.0.0.1:5000'

    :raises ValidationError: ``invalid reference format`` or ``repository name must be lowercase``.
    """
    original = text[len("docker://") :] if text.startswith("docker://") else text
    match = _REFERENCE.fullmatch(original)
    if match is None:
        if _REFERENCE.fullmatch(original.lower()):
            raise ValidationError(
                f"repository name must be lowercase: {original!r}", value=original
            )
        raise ValidationError(f"invalid reference format: {original!r}", value=original)
    name, tag, digest = match.group("name"), match.group("tag") or "", match.group("digest") or ""
    if len(name) > _NAME_MAX:
        raise ValidationError(
            f"repository name must not be more than {_NAME_MAX} characters: {original!r}",
            value=original,
        )
    if digest:
        algorithm, _, hexdigest = digest.partition(":")
        expected = _DIGEST_LENGTHS.get(algorithm)
        if expected is None or len(hexdigest) != expected:
            raise ValidationError(f"invalid reference format: {original!r}", value=original)
        tag = ""
    elif not tag:
        tag = "latest"
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, repository, explicit = first, rest, True
    else:
        registry, repository, explicit = "docker.io", name, False
    if registry in _HUB_NAMES:
        registry = DEFAULT_REGISTRY
        if "/" not in repository:
            repository = f"library/{repository}"
    return DockerReference(registry, repository, tag, digest, original, explicit)
