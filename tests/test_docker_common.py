"""Helpers shared by the docker2aci test modules (``test_docker_*.py``); no tests of its own.

* :func:`read_aci` reads an ACI with :mod:`tarfile` (an independent reader) into a tree:
  path under ``rootfs/`` → :class:`Entry` (kind, mode, owner, data, link target);
* :func:`check_files` compares that tree with a test image's expected ``files`` plus the
  ``/dev`` stdio links docker2aci adds, hard links compared as groups of paths;
* :func:`convert_remote` / :func:`convert_archive` run the library the way the CLI does;
* :func:`run_docker2aci` runs the console tool in a subprocess;
* :func:`unique_image` makes an image whose layer no other test shares (for tests that
  damage a registry's storage).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import subprocess
import sys
import tarfile
from collections.abc import Mapping
from typing import Any

import attrs

from appc.docker.archive import open_archive_image
from appc.docker.convert import ConvertOptions, ConvertResult, convert_image
from appc.docker.image import Platform
from appc.docker.reference import parse_reference
from appc.docker.registry import RegistryOptions
from appc.docker.remote import open_remote_image
from tests import docker_images as di
from tests.registry_fixtures import Registry, push

__all__ = [
    "STDIO_FILES",
    "Entry",
    "aci_manifest",
    "check_files",
    "convert_archive",
    "convert_remote",
    "dir_listing",
    "read_aci",
    "run_docker2aci",
    "unique_image",
]

#: What docker2aci adds to every image that lacks these paths.
STDIO_FILES: dict[str, di.FileSpec] = {
    "dev": di.FileSpec("dir", 0o755),
    "dev/stdin": di.FileSpec("symlink", 0o777, b"", "/proc/self/fd/0"),
    "dev/stdout": di.FileSpec("symlink", 0o777, b"", "/dev/console"),
    "dev/stderr": di.FileSpec("symlink", 0o777, b"", "/dev/console"),
    "dev/fd": di.FileSpec("symlink", 0o777, b"", "/proc/self/fd"),
}


@attrs.frozen
class Entry:
    """One ``rootfs/`` entry of an ACI.  ``target``: a symlink's text, or the path (under
    rootfs) a hard link points at; a hard link's ``data`` is its target's."""

    kind: str
    mode: int
    uid: int
    gid: int
    data: bytes = b""
    target: str = ""
    position: int = 0


@attrs.frozen
class Aci:
    """An ACI as read back: its manifest (JSON), its rootfs entries and its member names in order."""

    manifest: dict[str, Any]
    files: dict[str, Entry]
    names: list[str]


def read_aci(path: os.PathLike[str] | str) -> Aci:
    """Read an ACI (any compression tarfile knows) completely."""
    files: dict[str, Entry] = {}
    names: list[str] = []
    manifest: dict[str, Any] = {}
    with tarfile.open(path, "r:*") as tar:
        for position, member in enumerate(tar):
            names.append(member.name)
            if member.name == "manifest":
                manifest = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
                continue
            if not member.name.startswith("rootfs/"):
                continue
            rel = member.name[len("rootfs/") :]
            assert rel not in files, f"duplicate entry {member.name!r}"
            if member.isreg():
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                entry = Entry("file", member.mode, member.uid, member.gid, data, "", position)
            elif member.islnk():
                assert member.linkname.startswith("rootfs/"), member.linkname
                target = member.linkname[len("rootfs/") :]
                data = files[target].data if target in files else b""
                entry = Entry(
                    "hardlink", member.mode, member.uid, member.gid, data, target, position
                )
            elif member.issym():
                entry = Entry(
                    "symlink", member.mode, member.uid, member.gid, b"", member.linkname, position
                )
            elif member.isdir():
                entry = Entry("dir", member.mode, member.uid, member.gid, b"", "", position)
            else:
                entry = Entry(f"type-{member.type!r}", member.mode, member.uid, member.gid)
            files[rel] = entry
    return Aci(manifest, files, names)


def aci_manifest(path: os.PathLike[str] | str) -> dict[str, Any]:
    """Just the manifest of an ACI."""
    return read_aci(path).manifest


def _groups(links: Mapping[str, str]) -> set[frozenset[str]]:
    """Hard-link groups (each path with the paths linked to it)."""
    groups: dict[str, set[str]] = {}
    for path, target in links.items():
        group = groups.get(target, {target}) | groups.get(path, {path})
        for member in group:
            groups[member] = group
    return {frozenset(g) for g in groups.values()}


def check_files(
    aci: Aci, files: Mapping[str, di.FileSpec], *, stdio: bool = True, owners: bool = True
) -> None:
    """Assert the ACI's rootfs holds exactly *files* (plus the stdio links): kinds, modes,
    owners, contents, symlink targets, hard-link groups; a hard link follows its target."""
    expected = {**files, **STDIO_FILES} if stdio else dict(files)
    assert sorted(aci.files) == sorted(expected)
    for path, spec in expected.items():
        entry = aci.files[path]
        if entry.kind == "hardlink":  # a link's own header mode means nothing: the inode's counts
            linked = aci.files[entry.target]
            entry = attrs.evolve(entry, mode=linked.mode, uid=linked.uid, gid=linked.gid)
        kind = "file" if entry.kind == "hardlink" else entry.kind
        want = "file" if spec.kind == "hardlink" else spec.kind
        assert (kind, entry.mode) == (want, spec.mode), path
        if owners:
            assert (entry.uid, entry.gid) == (spec.uid, spec.gid), path
        if want == "file":
            if spec.data is not None:
                assert entry.data == spec.data, path
            else:
                assert (len(entry.data), hashlib.sha256(entry.data).hexdigest()) == (
                    spec.size,
                    spec.sha256,
                ), path
        if want == "symlink":
            assert entry.target == spec.target, path
        if entry.kind == "hardlink":
            assert aci.files[entry.target].position < entry.position, f"{path} before its target"
    actual = {p: e.target for p, e in aci.files.items() if e.kind == "hardlink"}
    wanted = {p: s.target for p, s in expected.items() if s.kind == "hardlink"}
    assert _groups(actual) == _groups(wanted)


def convert_remote(
    ref: str,
    out: os.PathLike[str] | str,
    *,
    options: RegistryOptions | None = None,
    platform: Platform | None = None,
    squash: bool = True,
    compression: str = "gzip",
    workdir: str | None = None,
) -> ConvertResult:
    """Fetch *ref* (``docker://host/repo:tag``) and convert it into *out*."""
    opts = options or RegistryOptions(insecure_allow_http=True)
    with open_remote_image(
        parse_reference(ref), options=opts, platform=platform, workdir=workdir
    ) as image:
        return convert_image(
            image, os.fspath(out), ConvertOptions(squash=squash, compression=compression)
        )


def convert_archive(
    path: os.PathLike[str] | str,
    out: os.PathLike[str] | str,
    *,
    image: str | None = None,
    platform: Platform | None = None,
    squash: bool = True,
) -> ConvertResult:
    """Convert a docker-save file, OCI layout or oci-archive into *out*."""
    with open_archive_image(path, image=image, platform=platform) as source:
        return convert_image(source, os.fspath(out), ConvertOptions(squash=squash))


def run_docker2aci(
    *args: str,
    cwd: os.PathLike[str] | str,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``docker2aci ARGS`` as a user would (a subprocess; ``env`` adds to the environment)."""
    return subprocess.run(
        [sys.executable, "-m", "appc_tools.docker2aci", *args],
        check=False,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def dir_listing(directory: os.PathLike[str] | str) -> list[str]:
    """Every file and directory under *directory* (relative paths, sorted), hidden ones too."""
    root = pathlib.Path(directory)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def unique_image(text: str, *, name: str = "library/unique") -> di.TestImage:
    """A one-layer image whose layer (a file ``unique.txt`` holding *text*) no other test
    pushes, so a test may damage its blobs in a shared registry."""
    data = text.encode()
    layer = di.make_layer([di.TarEntry("unique.txt", data=data)])
    return di._image(
        name, {"Cmd": ["/bin/true"]}, [layer], {"unique.txt": di.FileSpec("file", 0o644, data)}
    )


def tar_names(data: bytes) -> list[str]:
    """Member names of an in-memory tar."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()


def push_ref(
    registry: Registry, repo: str, tag: str, image: di.TestImage, fmt: Any = "schema2"
) -> str:
    """Push *image* as ``repo:tag`` and return ``docker://host/repo:tag``."""
    push(registry, repo, tag, image, fmt)
    return registry.ref(repo, tag)
