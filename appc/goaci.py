"""Go programs to App Container Images (``goaci``, also installed as ``acigo``).

:func:`build_go_aci` builds one Go ``main`` package with the real Go toolchain and
packs the binary into an ACI: the binary at ``/<name>``, plus, when it is dynamically
linked, its loader and shared libraries, plus the user's assets.  It follows
``reference/goaci.md`` §6 (what a modern goaci must do) and keeps the original's flags.

What the *package* argument may be (:func:`classify_package` decides, in this order):

* ``PATH@VERSION`` — ``go install -trimpath PATH@VERSION`` into a temporary bin
  directory, in module mode, through the user's ``GOPROXY``/``GOFLAGS``/module cache
  (``GOPROXY=off`` and ``file://`` proxies work offline).  ``PATH/...@VERSION`` is
  allowed; several binaries then need ``use_binary``.
* a directory (an existing path, or one starting with ``/``, ``./`` or ``../``) — a
  local module or a package inside one.  When the directory is a ``main`` package,
  that package is built; otherwise every ``main`` package below it (``./...``) is a
  candidate.  ``DIR/...`` asks for the latter explicitly.
* an import path (or pattern) — built from the module the current directory is in;
  outside any module it means ``PATH@latest`` (the walkthrough's
  ``acigo github.com/coreos/etcd``).

Decisions, each different from the 2015 tool for a stated reason:

* **Module mode only** (``GO111MODULE=on`` is forced): GOPATH mode and ``go get`` for
  building are obsolete.  ``go_path`` sets ``GOPATH`` for the go command (its module
  cache lives there unless ``GOMODCACHE`` is set) and is what ``<GOPATH>`` means.
* **The user's whole environment is passed to Go** (``HOME``, ``GOPROXY``, ``GOFLAGS``,
  ``GOPATH``, ``GOMODCACHE``, ``GOCACHE``, ``GOSUMDB``, ``CC``, ``PATH`` ...), with
  ``CGO_ENABLED``, ``GO111MODULE`` and, when asked, ``GOOS``/``GOARCH``/``GOARM`` set
  on top.  The old minimal environment broke module mode (no ``HOME``, no cache).
* **Static by default**: ``CGO_ENABLED=0 -trimpath -ldflags=-s -w``.  ``-ldflags`` in
  ``build_flags`` replaces ours (then ``-s -w`` is up to the user).  With ``cgo=True``
  (or flags such as ``-buildmode=pie``) the binary may come out dynamic: its
  ``PT_INTERP`` loader, its ``DT_NEEDED`` libraries (found as glibc's loader would,
  see :class:`appc.elf.LibraryResolver`, never by running ``ldd``), each library's own
  dependencies, every symlink on the way (``/lib64`` → ``usr/lib64`` included) and,
  next to glibc's ``libc.so.*``, the ``libnss_*`` modules are copied into the image at
  the same absolute paths.  The same happens for an asset that is a dynamic ELF file.
* **Target labels**: ``os``/``arch`` come from the *target* ``GOOS``/``GOARCH``/``GOARM``
  through :func:`appc.types.labels.to_appc_os_arch` (``arm64`` → ``aarch64``,
  ``arm`` + ``GOARM=7`` → ``armv7l``), so cross builds are labelled right.  ``go
  install`` refuses to cross-install into ``GOBIN``, so a cross ``PATH@VERSION``
  install uses a temporary ``GOPATH`` (with the user's module cache kept by an
  explicit ``GOMODCACHE``).
* **Name**: the main package's import path (from the binary's build info), lower-cased
  and made a valid AC Identifier by :func:`appc.types.acidentifier.sanitize_acidentifier`;
  ``name`` overrides it and must be valid as given.
* **Version label**: the module version of a ``PATH@VERSION`` install (``v1.0.0``, as
  Go writes it); for a local build in a VCS checkout, a Go pseudo-version made from the
  stamped revision and time (``v0.0.0-20240102150405-abcdef123456``, ``+dirty`` when
  modified — what Go 1.24 itself writes); otherwise no version label.  VCS information
  is never required (the original failed without a ``.git`` directory).
* **Output**: ``<binary>.aci`` in the current directory unless ``output`` is given,
  replaced if it exists (as the original did), written atomically by
  :func:`appc.aci.build.build_image` — a failure never leaves a partial image.
* **Reproducible**: entries owned by root, every time set to ``mtime`` (default
  ``SOURCE_DATE_EPOCH``, else 0), directories created ``0755``, the binary ``0755``;
  Go builds with ``-trimpath`` are reproducible, so the same source and options give
  the same image ID.
* **Assets** ``ACIPATH:LOCALPATH``: ``<GOPATH>`` and ``<PROJPATH>`` (the directory of
  the module that holds the main package) are substituted first; then both sides must
  be absolute; symlinks are resolved in the *parent* of the local side only (a
  symlinked file stays a symlink); the in-image side may not climb out of the image
  with ``..``.  Directories, regular files and symlinks are copied (permission bits
  kept, targets of symlinks verbatim); devices, FIFOs and sockets are refused.
  Writing into the image never follows a symlink out of it.
* **Work directory**: a fresh temporary directory (removed at the end unless
  ``keep_tmp_dir``), or ``tmp_dir``, or ``reuse_tmp_dir`` (an earlier kept work
  directory: the build is skipped and only the image is made again).  A directory the
  user named that existed before is never removed, only emptied of goaci's own entries
  (``aci/``, ``bin/``, ``gopath/``, ``goaci.json``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from appc.aci.build import build_image, source_date_epoch
from appc.elf import ELFFile, LibraryResolver
from appc.errors import BuildError, ELFError, ValidationError
from appc.schema.image import App, ImageManifest
from appc.types.acidentifier import ACIdentifier, sanitize_acidentifier
from appc.types.environment import Environment
from appc.types.hash import Hash
from appc.types.labels import Labels, to_appc_os_arch
from appc.types.mountpoints import MountPoint, mount_point_from_string, mount_points
from appc.types.ports import Port, port_from_string, ports

__all__ = [
    "BuildInfo",
    "GoACIOptions",
    "GoACIResult",
    "PackageSpec",
    "build_go_aci",
    "classify_package",
    "go_exec_name",
    "parse_asset",
    "parse_build_info",
    "parse_key_value",
    "parse_mount",
    "parse_port",
    "version_label",
]


def __dir__() -> list[str]:
    return __all__


#: Linker flags used unless the user passes their own ``-ldflags``: drop symbol tables.
DEFAULT_LDFLAGS = "-s -w"

#: What goaci itself puts in a work directory (the only entries it ever removes).
_OWN_ENTRIES = ("aci", "bin", "gopath", "goaci.json")
_STATE_FILE = "goaci.json"
_MAX_SYMLINKS = 40
_LIBC = re.compile(r"libc\.so(\.|$)")


# --- small parsers (used by the CLI) -----------------------------------------------------


def parse_key_value(text: str, what: str = "value") -> tuple[str, str]:
    """Split ``KEY=VALUE`` at the first ``=``.

    >>> parse_key_value("version=1.0.0", "label")
    ('version', '1.0.0')

    :raises ValidationError: no ``=`` or an empty key.
    """
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValidationError(f"bad {what} {text!r} (want KEY=VALUE)", value=text)
    return key, value


def parse_port(text: str) -> Port:
    """Read ``NAME:PROTOCOL:PORT`` (``www:tcp:5000``), or ``NAME:PROTOCOL:PORT:COUNT`` for a
    range; actool's ``name,protocol=tcp,port=80`` form is accepted too.

    >>> parse_port("www:tcp:5000").to_dict()
    {'name': 'www', 'protocol': 'tcp', 'port': 5000, 'count': 1, 'socketActivated': False}

    :raises ValidationError: a malformed spec or a bad name, protocol or number.
    """
    if "=" in text or "," in text:
        return port_from_string(text)
    parts = text.split(":")
    if len(parts) not in (3, 4) or not all(parts[:3]):
        raise ValidationError(f"bad port {text!r} (want NAME:PROTOCOL:PORT[:COUNT])", value=text)
    numbers = parts[2:]
    if not all(n.isascii() and n.isdigit() for n in numbers):
        raise ValidationError(f"bad port {text!r}: port and count must be numbers", value=text)
    count = int(parts[3]) if len(parts) == 4 else 1
    return Port(name=parts[0], protocol=parts[1], port=int(parts[2]), count=count)


def parse_mount(text: str) -> MountPoint:
    """Read ``NAME:PATH`` or ``NAME:PATH:ro`` (read-only); actool's
    ``name,path=/p,readOnly=true`` form is accepted too.

    >>> parse_mount("data:/var/lib/app:ro").to_dict()
    {'name': 'data', 'path': '/var/lib/app', 'readOnly': True}

    :raises ValidationError: a malformed spec, a bad name or a relative path.
    """
    if "=" in text or "," in text:
        return mount_point_from_string(text)
    parts = text.split(":")
    read_only = len(parts) == 3 and parts[2] == "ro"
    if len(parts) == 3 and not read_only:
        raise ValidationError(f"bad mount point {text!r} (want NAME:PATH[:ro])", value=text)
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ValidationError(f"bad mount point {text!r} (want NAME:PATH[:ro])", value=text)
    if not parts[1].startswith("/"):
        raise ValidationError(f"mount point path must be absolute: {text!r}", value=text)
    return MountPoint(name=parts[0], path=parts[1], read_only=read_only)


def parse_asset(text: str) -> tuple[str, str]:
    """Split an asset ``ACIPATH:LOCALPATH`` into its two sides (not yet substituted).

    :raises ValidationError: not exactly two non-empty sides.
    """
    parts = text.split(os.pathsep)
    if len(parts) != 2 or not all(parts):
        raise ValidationError(
            f"bad asset {text!r} (want ACIPATH{os.pathsep}LOCALPATH, each absolute)", value=text
        )
    return parts[0], parts[1]


def go_exec_name(import_path: str) -> str:
    """The file name ``go build``/``go install`` give a main package's binary.

    The last path element, except that a major-version suffix of a module path is
    skipped (Go's rule in module mode):

    >>> go_exec_name("example.com/tool/cmd/tool")
    'tool'
    >>> go_exec_name("example.com/tool/v2")
    'tool'
    """
    head, _, elem = import_path.rstrip("/").rpartition("/")
    if head and re.fullmatch(r"v(?:[2-9]|[1-9][0-9]+)", elem):
        elem = head.rpartition("/")[2]
    return elem


# --- build information --------------------------------------------------------------------


@attrs.frozen
class BuildInfo:
    """What ``go version -m BINARY`` reports: the main package path, the main module and
    its version, and the build settings (``vcs.revision``, ``GOOS``, ``CGO_ENABLED`` ...)."""

    go_version: str = ""
    path: str = ""
    module: str = ""
    module_version: str = ""
    settings: Mapping[str, str] = attrs.field(factory=dict)


def parse_build_info(text: str) -> BuildInfo:
    """Parse the output of ``go version -m BINARY``.

    >>> info = parse_build_info("x: go1.19\\n\\tpath\\texample.com/t\\n\\tmod\\texample.com/t\\tv1.2.0\\th1:x=\\n")
    >>> info.path, info.module_version
    ('example.com/t', 'v1.2.0')
    """
    lines = text.splitlines()
    go_version = lines[0].rpartition(": ")[2].strip() if lines else ""
    path = module = module_version = ""
    settings: dict[str, str] = {}
    for line in lines[1:]:
        fields = line.strip("\t").split("\t")
        if fields[0] == "path" and len(fields) > 1:
            path = fields[1]
        elif fields[0] == "mod" and len(fields) > 2:
            module, module_version = fields[1], fields[2]
        elif fields[0] == "build" and len(fields) > 1:
            key, _, value = fields[1].partition("=")
            settings[key] = value
    return BuildInfo(go_version, path, module, module_version, settings)


def version_label(info: BuildInfo) -> str | None:
    """The ``version`` label for a binary: its module version, else a pseudo-version from
    the VCS stamp, else ``None``.

    >>> version_label(BuildInfo(module_version="v1.0.0"))
    'v1.0.0'
    >>> version_label(BuildInfo(module_version="(devel)", settings={
    ...     "vcs.revision": "0123456789abcdef", "vcs.time": "2024-01-02T15:04:05Z",
    ...     "vcs.modified": "true"}))
    'v0.0.0-20240102150405-0123456789ab+dirty'
    """
    if info.module_version and info.module_version != "(devel)":
        return info.module_version
    revision = info.settings.get("vcs.revision", "")
    if not revision:
        return None
    stamp = re.sub(r"[^0-9]", "", info.settings.get("vcs.time", ""))[:14]
    version = f"v0.0.0-{stamp}-{revision[:12]}" if len(stamp) == 14 else f"v0.0.0-{revision[:12]}"
    if info.settings.get("vcs.modified") == "true":
        version += "+dirty"
    return version


# --- options and result ---------------------------------------------------------------


def _str_tuple(value: Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        raise TypeError("expected a sequence of strings, not a string")
    return tuple(value)


def _optional_name(value: object) -> ACIdentifier | None:
    return None if value is None or value == "" else ACIdentifier(value)


def _optional_str(value: str | os.PathLike[str] | None) -> str | None:
    return None if value is None or value == "" else os.fspath(value)


@attrs.frozen(kw_only=True)
class GoACIOptions:
    """Everything :func:`build_go_aci` needs; values are checked when the object is made.

    :param package: what to build (see the module docstring).
    :param exec_args: arguments appended to the app's ``exec`` after ``/<binary>``.
    :param use_binary: which binary to package when several ``main`` packages match.
    :param assets: ``ACIPATH:LOCALPATH`` strings (``<GOPATH>``/``<PROJPATH>`` allowed).
    :param keep_tmp_dir: leave the work directory in place.
    :param tmp_dir: use this work directory (created with its parents if missing).
    :param reuse_tmp_dir: a kept work directory whose build to package again.
    :param go_binary: the go tool (default: ``go`` on ``PATH``).
    :param go_path: ``GOPATH`` for the go command and the ``<GOPATH>`` placeholder.
    :param output: the image file (default ``<binary>.aci`` in ``cwd``).
    :param name: the image name (default: from the import path).
    :param labels: extra labels; they override the computed ``version``/``os``/``arch``.
    :param goos: target ``GOOS`` (default: the Go environment's).
    :param goarch: target ``GOARCH``.
    :param goarm: target ``GOARM`` (ARM only).
    :param environment: the app's environment variables.
    :param ports: the app's ports.
    :param mount_points: the app's mount points.
    :param build_flags: extra flags for ``go build``/``go install`` (and ``go list``).
    :param cgo: build with ``CGO_ENABLED=1`` (the binary is then usually dynamic).
    :param overwrite: replace an existing output file (default, as the original).
    :param mtime: time of every entry (default ``SOURCE_DATE_EPOCH``, else 0).
    :param compression: ``"gzip"`` or ``"none"``.
    :param cwd: where relative paths (package, output) start (default: the process's).
    :param env: the environment the go command runs in (default ``os.environ``).
    """

    package: str
    exec_args: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    use_binary: str = ""
    assets: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    keep_tmp_dir: bool = False
    tmp_dir: str | None = attrs.field(default=None, converter=_optional_str)
    reuse_tmp_dir: str | None = attrs.field(default=None, converter=_optional_str)
    go_binary: str | None = attrs.field(default=None, converter=_optional_str)
    go_path: str | None = attrs.field(default=None, converter=_optional_str)
    output: str | None = attrs.field(default=None, converter=_optional_str)
    name: ACIdentifier | None = attrs.field(default=None, converter=_optional_name)
    labels: Labels = attrs.field(factory=Labels, converter=Labels)
    goos: str | None = attrs.field(default=None, converter=_optional_str)
    goarch: str | None = attrs.field(default=None, converter=_optional_str)
    goarm: str | None = attrs.field(default=None, converter=_optional_str)
    environment: Environment = attrs.field(factory=Environment, converter=Environment)
    ports: tuple[Port, ...] = attrs.field(default=(), converter=ports)
    mount_points: tuple[MountPoint, ...] = attrs.field(default=(), converter=mount_points)
    build_flags: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    cgo: bool = False
    overwrite: bool = True
    mtime: int | None = None
    compression: str = "gzip"
    cwd: str | None = attrs.field(default=None, converter=_optional_str)
    env: Mapping[str, str] | None = None

    def __attrs_post_init__(self) -> None:
        if not self.package:
            raise ValidationError("no package to build")
        if self.tmp_dir and self.reuse_tmp_dir and _abs(self.tmp_dir) != _abs(self.reuse_tmp_dir):
            raise ValidationError("tmp-dir and reuse-tmp-dir cannot both be given (unless equal)")
        for flag in self.build_flags:
            name = flag.lstrip("-").partition("=")[0]
            if flag.startswith("-") and name == "o":
                raise ValidationError(f"build flag {flag!r} is not allowed: goaci chooses the output")
        for asset in self.assets:
            parse_asset(asset)
        if self.compression not in ("gzip", "none"):
            raise ValidationError(f"unknown compression method: {self.compression!r}")


def _abs(path: str) -> str:
    return os.path.abspath(path)


@attrs.frozen
class GoACIResult:
    """What :func:`build_go_aci` wrote.

    ``libraries`` lists the host paths copied because the binary (or an asset) is
    dynamically linked; ``tmp_dir`` is the kept work directory, or ``None``.
    """

    output: str
    image_id: Hash
    manifest: ImageManifest
    binary: str
    import_path: str
    version: str | None
    dynamic: bool
    libraries: tuple[str, ...]
    tmp_dir: str | None


# --- the package argument -------------------------------------------------------------------


@attrs.frozen
class PackageSpec:
    """How a package argument is built: ``kind`` is ``"install"`` (``PATH@VERSION``),
    ``"dir"`` (a local directory, ``pattern`` ``"."`` or ``"./..."``) or ``"import"``
    (an import path resolved in the current directory's module, or ``@latest``)."""

    kind: str
    target: str
    directory: str = ""
    pattern: str = "."


def classify_package(package: str, cwd: str) -> PackageSpec:
    """Decide how *package* is to be built (see the module docstring); *cwd* anchors
    relative paths.

    >>> classify_package("example.com/tool/cmd/tool@v1.0.0", "/").kind
    'install'
    >>> classify_package("./examples/hello", "/src").directory
    '/src/examples/hello'
    """
    text = package
    recursive = text == "..." or text.endswith("/...")
    base = text[: -len("...")].rstrip("/") if recursive else text
    looks_local = base in (".", "..", "") or base.startswith(("/", "./", "../"))
    local = os.path.join(cwd, base or ".")
    if looks_local or (("@" not in text) and os.path.isdir(local)):
        return PackageSpec("dir", text, os.path.normpath(local), "./..." if recursive else ".")
    if "@" in text:
        return PackageSpec("install", text)
    return PackageSpec("import", text)


# --- running Go -----------------------------------------------------------------------------


def _summary(output: str) -> str:
    """The first line of Go's output worth quoting in a one-line error."""
    for line in output.splitlines():
        text = line.strip()
        if text and not text.startswith(("#", "go: downloading", "go: finding")):
            return text
    return "no output"


def _decode_json_stream(text: str) -> list[dict[str, Any]]:
    decoder = json.JSONDecoder()
    out: list[dict[str, Any]] = []
    index = 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return out
        value, index = decoder.raw_decode(text, index)
        out.append(value)


class _Go:
    """The go command with one environment; every failure becomes a :class:`BuildError`."""

    def __init__(self, binary: str, env: dict[str, str], log: Callable[[str], None]) -> None:
        self.binary = binary
        self.env = env
        self.log = log

    def run(self, args: Sequence[str], *, cwd: str, env: Mapping[str, str] | None = None,
            what: str = "") -> str:
        command = [self.binary, *args]
        use_env = dict(self.env if env is None else env)
        self.log(f"running: {shlex.join(command)}  (in {cwd})")
        try:
            proc = subprocess.run(
                command, cwd=cwd, env=use_env, capture_output=True, text=True, check=False,
                errors="replace",
            )
        except OSError as err:
            raise BuildError(f"cannot run {self.binary!r}: {err.strerror or err}") from None
        if proc.returncode != 0:
            output = proc.stderr + proc.stdout
            label = what or f"go {args[0]}"
            raise BuildError(f"{label} failed: {_summary(output)}", output=output)
        for line in proc.stderr.splitlines():
            self.log(f"go: {line}" if not line.startswith("go: ") else line)
        return proc.stdout


def _find_go(go_binary: str | None, env: Mapping[str, str]) -> str:
    path = env.get("PATH", os.defpath)
    if go_binary:
        found = shutil.which(go_binary, path=path) if os.sep not in go_binary else (
            go_binary if os.path.isfile(go_binary) and os.access(go_binary, os.X_OK) else None
        )
        if found is None:
            raise BuildError(f"Go binary not found: {go_binary!r}")
        return os.path.abspath(found) if os.sep in go_binary else found
    found = shutil.which("go", path=path)
    if found is None:
        raise BuildError(
            "Go toolchain not found: no 'go' on PATH (install Go, e.g. Debian's golang-go, "
            "or pass -go-binary)"
        )
    return found


# --- the work directory ---------------------------------------------------------------------


class _WorkDir:
    """The work directory and what to remove from it at the end."""

    def __init__(self, path: str, created: bool) -> None:
        self.path = path
        self.created = created

    @classmethod
    def open(cls, tmp_dir: str | None, reuse_tmp_dir: str | None) -> _WorkDir:
        if reuse_tmp_dir:
            path = _abs(reuse_tmp_dir)
            if not os.path.isdir(path):
                raise BuildError(f"reuse-tmp-dir {reuse_tmp_dir!r} is not an existing directory")
            if not os.path.isdir(os.path.join(path, "bin")):
                raise BuildError(f"reuse-tmp-dir {reuse_tmp_dir!r} holds no earlier build (no bin/)")
            work = cls(path, created=False)
            shutil.rmtree(os.path.join(path, "aci"), ignore_errors=True)
            return work
        if tmp_dir:
            path = _abs(tmp_dir)
            created = not os.path.exists(path)
            try:
                os.makedirs(path, exist_ok=True)
            except OSError as err:
                raise BuildError(f"cannot create tmp-dir {tmp_dir!r}: {err.strerror or err}") from None
            work = cls(path, created)
            work.clean()
            return work
        return cls(tempfile.mkdtemp(prefix="goaci-"), created=True)

    def clean(self) -> None:
        for entry in _OWN_ENTRIES:
            target = os.path.join(self.path, entry)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target, ignore_errors=True)
            elif os.path.lexists(target):
                os.unlink(target)

    def remove(self) -> None:
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            self.clean()

    def sub(self, name: str) -> str:
        return os.path.join(self.path, name)


# --- writing the rootfs -----------------------------------------------------------------------


def _components(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


class _Rootfs:
    """Writes into the image's rootfs without ever following a symlink out of it."""

    def __init__(self, root: str) -> None:
        self.root = root

    def host(self, image_parts: Sequence[str]) -> str:
        return os.path.join(self.root, *image_parts)

    @staticmethod
    def _display(parts: Sequence[str]) -> str:
        return "/" + "/".join(parts)

    def ensure_dir(self, parts: Sequence[str], mode: int = 0o755) -> None:
        """Make the directory *parts* (whose parents are real directories already)."""
        path = self.host(parts)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.mkdir(path)
            os.chmod(path, mode)
            return
        if not stat.S_ISDIR(st.st_mode):
            raise BuildError(f"{self._display(parts)} already exists in the image and is not a directory")

    def resolve_dir(self, image_dir: str) -> list[str]:
        """The real in-image directory for *image_dir*: symlinks already in the image are
        followed as inside a chroot (absolute targets start at the image root, ``..`` stops
        there); missing directories are created."""
        pending = deque(_components(image_dir))
        current: list[str] = []
        hops = 0
        while pending:
            part = pending.popleft()
            if part == "..":
                if current:
                    current.pop()
                continue
            path = self.host([*current, part])
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                self.ensure_dir([*current, part])
                current.append(part)
                continue
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > _MAX_SYMLINKS:
                    raise BuildError(f"too many levels of symlinks in the image at {image_dir!r}")
                target = os.readlink(path)
                if target.startswith("/"):
                    current = []
                pending.extendleft(reversed(_components(target)))
            elif stat.S_ISDIR(st.st_mode):
                current.append(part)
            else:
                raise BuildError(f"{self._display([*current, part])} is not a directory in the image")
        return current

    def place_symlink(self, parts: Sequence[str], target: str) -> None:
        path = self.host(parts)
        if os.path.lexists(path):
            if os.path.islink(path) and os.readlink(path) == target:
                return
            raise BuildError(f"{self._display(parts)} already exists in the image")
        os.symlink(target, path)

    def place_file(self, parts: Sequence[str], source: str, mode: int) -> None:
        path = self.host(parts)
        if os.path.lexists(path):
            if os.path.isfile(path) and not os.path.islink(path) and _same_content(path, source):
                return
            raise BuildError(f"{self._display(parts)} already exists in the image")
        shutil.copyfile(source, path, follow_symlinks=False)
        os.chmod(path, mode)

    def mirror(self, host_path: str) -> str:
        """Copy the host file *host_path* to the same absolute path in the image, recreating
        every symlink met on the way (directory links such as ``/lib`` → ``usr/lib`` too);
        return the real host path of the file."""
        pending = deque(_components(host_path))
        current: list[str] = []
        hops = 0
        while pending:
            part = pending.popleft()
            if part == "..":
                if current:
                    current.pop()
                continue
            source = "/" + "/".join([*current, part])
            try:
                st = os.lstat(source)
            except OSError as err:
                raise BuildError(f"cannot copy {host_path!r}: {source}: {err.strerror or err}") from None
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > _MAX_SYMLINKS:
                    raise BuildError(f"cannot copy {host_path!r}: too many levels of symlinks")
                target = os.readlink(source)
                self.place_symlink([*current, part], target)
                if target.startswith("/"):
                    current = []
                pending.extendleft(reversed(_components(target)))
            elif stat.S_ISDIR(st.st_mode):
                if not pending:
                    raise BuildError(f"cannot copy {host_path!r}: it is a directory")
                self.ensure_dir([*current, part], stat.S_IMODE(st.st_mode))
                current.append(part)
            elif stat.S_ISREG(st.st_mode):
                if pending:
                    raise BuildError(f"cannot copy {host_path!r}: {source} is not a directory")
                self.place_file([*current, part], source, stat.S_IMODE(st.st_mode))
                current.append(part)
            else:
                raise BuildError(f"cannot copy {host_path!r}: {source} is not a regular file")
        return "/" + "/".join(current)

    def copy_tree(self, parts: list[str], source: str) -> None:
        """Copy *source* (file, symlink or directory, not followed) to *parts*; a directory
        onto an existing directory is merged."""
        st = os.lstat(source)
        path = self.host(parts)
        if stat.S_ISLNK(st.st_mode):
            self.place_symlink(parts, os.readlink(source))
        elif stat.S_ISREG(st.st_mode):
            self.place_file(parts, source, stat.S_IMODE(st.st_mode))
        elif stat.S_ISDIR(st.st_mode):
            if os.path.lexists(path) and not (os.path.isdir(path) and not os.path.islink(path)):
                raise BuildError(f"{self._display(parts)} already exists in the image")
            if parts:
                self.ensure_dir(parts, stat.S_IMODE(st.st_mode))
            for child in sorted(os.listdir(source)):
                self.copy_tree([*parts, child], os.path.join(source, child))
        else:
            raise BuildError(f"{source}: cannot copy a device, FIFO or socket into an image")


def _same_content(a: str, b: str) -> bool:
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            chunk = fa.read(1 << 20)
            if chunk != fb.read(1 << 20):
                return False
            if not chunk:
                return True


class _Libraries:
    """Copies what dynamic ELF files need, as glibc's loader would find it."""

    def __init__(self, rootfs: _Rootfs, log: Callable[[str], None]) -> None:
        self.rootfs = rootfs
        self.log = log
        self.resolver = LibraryResolver()
        self.done: set[str] = set()
        self.copied: dict[str, str] = {}  # host path -> its real path

    def _copy(self, host_path: str) -> str:
        if host_path not in self.copied:
            self.copied[host_path] = self.rootfs.mirror(host_path)
            self.log(f"copied library {host_path}")
        return self.copied[host_path]

    def add_dependencies_of(self, path: str, display: str) -> bool:
        """Copy the loader and libraries *path* needs; True when it is dynamic."""
        try:
            elf = ELFFile.from_path(path)
        except ELFError:
            return False
        if not elf.is_dynamic:
            return False
        queue: deque[tuple[ELFFile, str]] = deque([(elf, display)])
        while queue:
            obj, obj_name = queue.popleft()
            wanted: list[str] = []
            if obj.interpreter:
                wanted.append(obj.interpreter)
            for name in obj.needed:
                found = self.resolver.find(name, obj)
                if found is None:
                    raise BuildError(
                        f"{obj_name} needs {name!r} ({obj.machine_name}), which is not "
                        "installed here (searched its RPATH/RUNPATH, /etc/ld.so.cache and "
                        "the standard library directories)"
                    )
                wanted.append(found)
            for lib in list(wanted):
                if _LIBC.match(os.path.basename(lib)):
                    wanted += self._nss_modules(lib, obj)
            for lib in wanted:
                real = self._copy(lib)
                if real in self.done:
                    continue
                self.done.add(real)
                try:
                    queue.append((ELFFile.from_path(real), lib))
                except ELFError as err:
                    raise BuildError(f"{lib}: {err.message}") from None
        return True

    @staticmethod
    def _nss_modules(libc: str, requester: ELFFile) -> list[str]:
        # NSS modules are dlopen()ed by glibc, so no header names them.
        directory = os.path.dirname(libc)
        found = []
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            return []
        for name in names:
            path = os.path.join(directory, name)
            if not name.startswith("libnss_") or not os.path.isfile(path):
                continue
            try:
                if ELFFile.from_path(path).compatible_with(requester):
                    found.append(path)
            except ELFError:
                continue
        return found


# --- the builder ------------------------------------------------------------------------------


def build_go_aci(options: GoACIOptions, *, log: Callable[[str], None] | None = None) -> GoACIResult:
    """Build the Go program *options.package* into an ACI and return what was written.

    :param log: called with one line per step (commands run, libraries copied ...).
    :raises BuildError: no Go toolchain, nothing or too much to build, a compile error
        (``output`` holds Go's messages), a missing or escaping asset, a library that
        cannot be found.
    :raises ValidationError: an option that makes no valid manifest (name, labels,
        a target with no appc os/arch).
    :raises ImageError: the image cannot be written.
    """
    return _Builder(options, log or (lambda _line: None)).run()


class _Builder:
    def __init__(self, options: GoACIOptions, log: Callable[[str], None]) -> None:
        self.o = options
        self.log = log
        self.cwd = _abs(options.cwd or os.getcwd())
        env = dict(os.environ if options.env is None else options.env)
        env["GO111MODULE"] = "on"
        env["CGO_ENABLED"] = "1" if options.cgo else "0"
        for key, value in (("GOOS", options.goos), ("GOARCH", options.goarch), ("GOARM", options.goarm)):
            if value:
                env[key] = value
        if options.go_path:
            env["GOPATH"] = _abs(options.go_path)
        env.pop("GOBIN", None)
        self.env = env
        self._placeholders: dict[str, str] = {}
        self.module_dir = ""
        self.import_path = ""
        self.go: _Go | None = None
        self.go_cwd = self.cwd
        self.goenv: dict[str, str] = {}
        self.build_info: BuildInfo | None = None

    # -- top level --

    def run(self) -> GoACIResult:
        o = self.o
        go = _Go(_find_go(o.go_binary, self.env), self.env, self.log)
        assets = [parse_asset(a) for a in o.assets]
        work = _WorkDir.open(o.tmp_dir, o.reuse_tmp_dir)
        self.log(f"work directory: {work.path}")
        try:
            return self._run(go, work, assets)
        finally:
            if o.keep_tmp_dir:
                self.log(f"keeping work directory {work.path}")
            else:
                work.remove()

    def _run(self, go: _Go, work: _WorkDir, assets: list[tuple[str, str]]) -> GoACIResult:
        o = self.o
        spec = classify_package(o.package, self.cwd)
        if spec.kind == "dir" and not os.path.isdir(spec.directory):
            raise BuildError(f"package directory {spec.directory!r} does not exist")
        go_cwd = spec.directory if spec.kind == "dir" else (self.cwd if spec.kind == "import" else work.path)
        self.go = go
        goenv = json.loads(go.run(
            ["env", "-json", "GOOS", "GOARCH", "GOARM", "GOHOSTOS", "GOHOSTARCH", "GOPATH",
             "GOMODCACHE", "GOMOD", "GOVERSION"],
            cwd=go_cwd, what="go env",
        ))
        if spec.kind == "import" and goenv.get("GOMOD", "") in ("", os.devnull):
            spec = PackageSpec("install", f"{spec.target}@latest")
            go_cwd = work.path
        self.goenv = {str(k): str(v) for k, v in goenv.items()}
        self.go_cwd = go_cwd
        os_, arch = self._target_labels(goenv)
        bin_dir = work.sub("bin")
        if o.reuse_tmp_dir:
            self._load_state(work)
        else:
            os.mkdir(bin_dir)
            try:
                if spec.kind == "install":
                    self._install(go, spec, goenv, work)
                else:
                    self._build(go, spec, go_cwd, bin_dir)
            except BuildError as err:
                cross = (goenv.get("GOOS"), goenv.get("GOARCH")) != (goenv.get("GOHOSTOS"), goenv.get("GOHOSTARCH"))
                if o.cgo and cross and err.output:
                    raise BuildError(
                        f"{err.message} (cgo for another target needs a C cross compiler: set CC)",
                        output=err.output,
                    ) from None
                raise
            self._save_state(work)
        binary = self._select_binary(bin_dir)
        binary_path = os.path.join(bin_dir, binary)
        info = parse_build_info(go.run(["version", "-m", binary_path], cwd=work.path, what="go version -m"))
        self.import_path = info.path or self.import_path
        self.build_info = info
        version = version_label(info)

        aci_dir = work.sub("aci")
        rootfs_dir = os.path.join(aci_dir, "rootfs")
        os.mkdir(aci_dir)
        os.mkdir(rootfs_dir)
        os.chmod(aci_dir, 0o755)
        os.chmod(rootfs_dir, 0o755)
        rootfs = _Rootfs(rootfs_dir)
        libraries = _Libraries(rootfs, self.log)
        rootfs.place_file([binary], binary_path, 0o755)
        dynamic = libraries.add_dependencies_of(binary_path, f"/{binary}")
        if dynamic:
            self.log(f"/{binary} is dynamically linked: copied its loader and libraries")
        for aci_path, local_path in assets:
            self._copy_asset(rootfs, libraries, aci_path, local_path)

        manifest = self._manifest(binary, version, os_, arch)
        with open(os.path.join(aci_dir, "manifest"), "w", encoding="utf-8") as f:
            f.write(manifest.to_json())
        output = os.path.join(self.cwd, o.output or f"{binary}.aci")
        mtime = o.mtime if o.mtime is not None else (source_date_epoch() or 0)
        result = build_image(
            aci_dir, output, overwrite=o.overwrite, compression=o.compression,
            owner_root=True, mtime=mtime,
        )
        self.log(f"wrote {output}: {result.image_id}")
        return GoACIResult(
            output=output,
            image_id=result.image_id,
            manifest=manifest,
            binary=binary,
            import_path=self.import_path,
            version=version,
            dynamic=dynamic,
            libraries=tuple(libraries.copied),
            tmp_dir=work.path if o.keep_tmp_dir else None,
        )

    # -- target and manifest --

    def _target_labels(self, goenv: Mapping[str, str]) -> tuple[str, str]:
        goos, goarch, goarm = goenv.get("GOOS", ""), goenv.get("GOARCH", ""), goenv.get("GOARM", "")
        try:
            return to_appc_os_arch(goos, goarch, goarm)
        except ValidationError as err:
            raise ValidationError(
                f"target {goos}/{goarch} has no App Container os/arch label: {err.message}",
                value=f"{goos}/{goarch}",
            ) from None

    def _manifest(self, binary: str, version: str | None, os_: str, arch: str) -> ImageManifest:
        o = self.o
        if o.name is not None:
            name = o.name
        else:
            source = self.import_path or binary
            try:
                name = sanitize_acidentifier(source)
            except ValidationError:
                raise BuildError(f"cannot make an image name from {source!r}; pass --name") from None
        labels = Labels([("version", version)] if version else []).with_label("os", os_).with_label("arch", arch)
        for label in o.labels:
            labels = labels.with_label(str(label.name), label.value)
        app = App(
            exec=[f"/{binary}", *o.exec_args],
            user="0",
            group="0",
            environment=o.environment,
            ports=o.ports,
            mount_points=o.mount_points,
        )
        return ImageManifest(name=name, labels=labels, app=app)

    # -- building --

    def _go_flags(self) -> list[str]:
        flags = ["-trimpath"]
        if not any(f.lstrip("-").startswith("ldflags") for f in self.o.build_flags):
            flags.append(f"-ldflags={DEFAULT_LDFLAGS}")
        return [*flags, *self.o.build_flags]

    def _list(self, go: _Go, patterns: Sequence[str], cwd: str) -> list[dict[str, Any]]:
        text = go.run(["list", "-e", "-json", *self.o.build_flags, *patterns], cwd=cwd, what="go list")
        try:
            return _decode_json_stream(text)
        except ValueError as err:
            raise BuildError(f"cannot read the output of go list: {err}", output=text) from None

    def _main_packages(self, go: _Go, spec: PackageSpec, cwd: str) -> list[dict[str, Any]]:
        if spec.kind == "dir" and spec.pattern == ".":
            first = self._list(go, ["."], cwd)
            top = first[0] if first else {}
            if top.get("Name") == "main":
                return [top]
            mains = [p for p in self._list(go, ["./..."], cwd) if p.get("Name") == "main"]
            if mains:
                return mains
            if top.get("Name"):
                raise BuildError(
                    f"package {top.get('ImportPath')} is not a main package (it is package {top['Name']})"
                )
            problem = (top.get("Error") or {}).get("Err", "")
            raise BuildError(f"no main package in {spec.directory}" + (f": {problem}" if problem else ""))
        pattern = spec.pattern if spec.kind == "dir" else spec.target
        packages = self._list(go, [pattern], cwd)
        mains = [p for p in packages if p.get("Name") == "main"]
        if mains:
            return mains
        if len(packages) == 1:
            only = packages[0]
            problem = (only.get("Error") or {}).get("Err", "")
            if only.get("Name"):
                raise BuildError(
                    f"package {only.get('ImportPath')} is not a main package (it is package {only['Name']})"
                )
            if problem:
                raise BuildError(f"cannot build {spec.target}: {problem}")
        raise BuildError(f"no main package matches {spec.target}")

    def _build(self, go: _Go, spec: PackageSpec, cwd: str, bin_dir: str) -> None:
        mains = self._main_packages(go, spec, cwd)
        by_name: dict[str, list[dict[str, Any]]] = {}
        for package in mains:
            by_name.setdefault(go_exec_name(package["ImportPath"]), []).append(package)
        names = sorted(by_name)
        chosen = self._choose(names)
        if len(by_name[chosen]) > 1:
            paths = ", ".join(p["ImportPath"] for p in by_name[chosen])
            raise BuildError(f"several main packages make a binary named {chosen!r}: {paths}")
        package = by_name[chosen][0]
        self.import_path = package["ImportPath"]
        self.module_dir = (package.get("Module") or {}).get("Dir", "") or package.get("Dir", "")
        go.run(
            ["build", *self._go_flags(), "-o", os.path.join(bin_dir, chosen), package["ImportPath"]],
            cwd=cwd, what=f"go build {package['ImportPath']}",
        )

    def _install(self, go: _Go, spec: PackageSpec, goenv: Mapping[str, str], work: _WorkDir) -> None:
        bin_dir = work.sub("bin")
        env = dict(self.env)
        cross = (goenv.get("GOOS"), goenv.get("GOARCH")) != (goenv.get("GOHOSTOS"), goenv.get("GOHOSTARCH"))
        if cross:
            # go install refuses GOBIN for cross builds: use a scratch GOPATH, keep the cache.
            gopath = work.sub("gopath")
            os.mkdir(gopath)
            env["GOMODCACHE"] = goenv.get("GOMODCACHE", "")
            env["GOPATH"] = gopath
        else:
            env["GOBIN"] = bin_dir
        go.run(["install", *self._go_flags(), spec.target], cwd=work.path, env=env,
               what=f"go install {spec.target}")
        if cross:
            built = os.path.join(work.sub("gopath"), "bin", f"{goenv.get('GOOS')}_{goenv.get('GOARCH')}")
            for name in sorted(os.listdir(built)) if os.path.isdir(built) else []:
                shutil.move(os.path.join(built, name), os.path.join(bin_dir, name))

    def _choose(self, names: Sequence[str]) -> str:
        wanted = self.o.use_binary
        listing = ", ".join(names)
        if not names:
            raise BuildError("the build produced no binary")
        if wanted:
            if wanted not in names:
                raise BuildError(f"no binary named {wanted!r} (built or buildable: {listing})")
            return wanted
        if len(names) > 1:
            raise BuildError(f"several binaries ({listing}): choose one with -use-binary")
        return names[0]

    def _select_binary(self, bin_dir: str) -> str:
        names = sorted(n for n in os.listdir(bin_dir) if os.path.isfile(os.path.join(bin_dir, n)))
        return self._choose(names)

    def _save_state(self, work: _WorkDir) -> None:
        state = {"package": self.o.package, "import_path": self.import_path, "module_dir": self.module_dir}
        with open(work.sub(_STATE_FILE), "w", encoding="utf-8") as f:
            json.dump(state, f)

    def _load_state(self, work: _WorkDir) -> None:
        try:
            with open(work.sub(_STATE_FILE), encoding="utf-8") as f:
                state = json.load(f)
        except (OSError, ValueError):
            return
        self.import_path = str(state.get("import_path", ""))
        self.module_dir = str(state.get("module_dir", ""))

    # -- assets --

    def _placeholder(self, key: str) -> str:
        if key in self._placeholders:
            return self._placeholders[key]
        if key == "<GOPATH>":
            value = self.goenv.get("GOPATH", "").split(os.pathsep)[0]
            if not value:
                raise BuildError("<GOPATH> is unknown: the go command reports no GOPATH")
        else:
            value = self.module_dir
            info = self.build_info
            if not value and info is not None and info.module and info.module_version not in ("", "(devel)"):
                assert self.go is not None
                text = self.go.run(
                    ["mod", "download", "-json", f"{info.module}@{info.module_version}"],
                    cwd=self.go_cwd, what="go mod download",
                )
                value = str(json.loads(text).get("Dir", ""))
                self.module_dir = value
            if not value:
                raise BuildError("<PROJPATH> is unknown for this build (no module directory)")
        self._placeholders[key] = value
        return value

    def _substitute(self, text: str) -> str:
        for key in ("<GOPATH>", "<PROJPATH>"):
            if key in text:
                text = text.replace(key, self._placeholder(key))
        return text

    def _copy_asset(self, rootfs: _Rootfs, libraries: _Libraries, aci_raw: str,
                    local_raw: str) -> None:
        spec = f"{aci_raw}{os.pathsep}{local_raw}"
        aci_path, local_path = self._substitute(aci_raw), self._substitute(local_raw)
        if not aci_path.startswith("/") or not local_path.startswith("/"):
            raise BuildError(f"asset {spec!r}: both paths must be absolute")
        parts: list[str] = []
        for part in _components(aci_path):
            if part == "..":
                if not parts:
                    raise BuildError(f"asset {spec!r}: {aci_path!r} escapes the image's root")
                parts.pop()
            else:
                parts.append(part)
        local_path = os.path.normpath(local_path)
        parent, base = os.path.split(local_path)
        local = os.path.join(os.path.realpath(parent), base) if base else os.path.realpath(parent)
        try:
            st = os.lstat(local)
        except OSError as err:
            raise BuildError(f"asset {spec!r}: {local_path}: {err.strerror or err}") from None
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            raise BuildError(f"asset {spec!r}: {local_path} is a device, FIFO or socket; refusing to copy it")
        if parts:
            directory = rootfs.resolve_dir("/".join(parts[:-1]))
            target = [*directory, parts[-1]]
        else:
            target = []
        self.log(f"asset {'/' + '/'.join(parts)} <- {local}")
        rootfs.copy_tree(target, local)
        if os.path.isfile(local):
            libraries.add_dependencies_of(os.path.realpath(local), local_path)

