"""goaci/acigo and the ELF reader, with the real Go toolchain and no network.

Go runs offline (``GOPROXY=off`` or a ``file://`` proxy written by the test, ``GOSUMDB=off``,
empty ``GOFLAGS``, ``GOENV=off``) with a module cache and GOPATH private to the session
and the user's build cache shared (see :func:`tests.go_fixtures.shared_gocache`).
Images are unpacked and their binaries run with ``chroot`` (the tests run as root).
"""

from __future__ import annotations

import io
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request

import pytest

from appc.aci import extract_image, validate_archive
from appc.elf import ELFFile, LibraryResolver, is_elf, read_ld_so_cache
from appc.errors import BuildError, ELFError, ValidationError
from appc.goaci import (
    BuildInfo,
    GoACIOptions,
    build_go_aci,
    classify_package,
    go_exec_name,
    parse_asset,
    parse_build_info,
    parse_key_value,
    parse_mount,
    parse_port,
    version_label,
)
from tests import go_fixtures as gf

REPO = pathlib.Path(__file__).resolve().parents[1]
GO = shutil.which("go")
TRUE = os.path.realpath(shutil.which("true") or "/bin/true")  # a small dynamic program, usually

pytestmark = pytest.mark.skipif(GO is None, reason="no Go toolchain on PATH (make test installs golang-go)")
needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("chroot") is None,
                                reason="running binaries in a chroot needs root and chroot(8)")


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def go_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The Go environment shared by every test of the session."""
    base = tmp_path_factory.mktemp("go")
    gocache = gf.shared_gocache() or str(base / "gocache")
    return gf.go_test_env(gocache, str(base / "modcache"), str(base / "gopath"))


@pytest.fixture(scope="session")
def host_arch(go_env: dict[str, str]) -> tuple[str, str]:
    from appc.types.labels import to_appc_os_arch

    out = subprocess.run([GO, "env", "GOOS", "GOARCH", "GOARM"], env=go_env, capture_output=True,
                         text=True, check=True).stdout.split("\n")
    return to_appc_os_arch(out[0], out[1], out[2])


@pytest.fixture
def private_tmp(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """A TMPDIR of the test's own, to see that work directories are removed."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def build(go_env: dict[str, str], package: str | os.PathLike[str], cwd: pathlib.Path, **kw: object):
    return build_go_aci(GoACIOptions(package=os.fspath(package), env=go_env, cwd=str(cwd), **kw))  # type: ignore[arg-type]


def unpack(image: str, target: pathlib.Path) -> pathlib.Path:
    extract_image(image, target, rootfs_only=True)
    return target


def run_chroot(rootfs: pathlib.Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chroot", str(rootfs), *argv], capture_output=True, text=True, timeout=30,
                          check=False)


def run_cli(*args: str, cwd: pathlib.Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appc_tools.goaci", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, go_env: dict[str, str]):
    """The single-binary module built once with most manifest flags."""
    root = tmp_path_factory.mktemp("single")
    module = gf.write_single_module(root / "src")
    result = build(
        go_env, module, root,
        exec_args=["--from-exec"],
        labels={"channel": "stable"},
        environment={"GREETING": "hi"},
        ports=[parse_port("www:tcp:8080")],
        mount_points=[parse_mount("data:/var/lib/single")],
    )
    return root, module, result


@pytest.fixture(scope="module")
def cgo(tmp_path_factory: pytest.TempPathFactory, go_env: dict[str, str]):
    root = tmp_path_factory.mktemp("cgo")
    return root, build(go_env, gf.write_cgo_module(root / "src"), root, cgo=True)


@pytest.fixture(scope="module")
def cross(tmp_path_factory: pytest.TempPathFactory, go_env: dict[str, str]):
    """The tiny module built for linux/arm64 and linux/arm with GOARM=7, binaries kept."""
    root = tmp_path_factory.mktemp("cross")
    module = gf.write_tiny_module(root / "src")
    out = {}
    for goarch, goarm in (("arm64", None), ("arm", "7")):
        result = build(go_env, module, root, goos="linux", goarch=goarch, goarm=goarm,
                       output=f"tiny-{goarch}.aci")
        out[goarch] = (result, unpack(result.output, root / f"rootfs-{goarch}") / "tiny")
    return out


# --- small parsers ------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("www:tcp:5000", {"name": "www", "protocol": "tcp", "port": 5000, "count": 1, "socketActivated": False}),
    ("dns:udp:53:2", {"name": "dns", "protocol": "udp", "port": 53, "count": 2, "socketActivated": False}),
    ("www,protocol=tcp,port=80", {"name": "www", "protocol": "tcp", "port": 80, "count": 1, "socketActivated": False}),
])
def test_parse_port(text: str, expected: dict[str, object]) -> None:
    assert parse_port(text).to_dict() == expected


@pytest.mark.parametrize("text", ["www", "www:tcp", "www:tcp:http", ":tcp:80", "www:tcp:0", "www:tcp:70000", "WWW:tcp:80"])
def test_error_parse_port(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_port(text)


def test_parse_mount_and_key_value() -> None:
    assert parse_mount("data:/var/lib/x").to_dict() == {"name": "data", "path": "/var/lib/x"}
    assert parse_mount("data:/d:ro").read_only
    for bad in ("data", "data:relative", "data:/d:rw", ":/d"):
        with pytest.raises(ValidationError):
            parse_mount(bad)
    assert parse_key_value("A=b=c") == ("A", "b=c")
    with pytest.raises(ValidationError, match="want KEY=VALUE"):
        parse_key_value("novalue", "label")


def test_parse_asset() -> None:
    assert parse_asset("/etc/x:<PROJPATH>/x") == ("/etc/x", "<PROJPATH>/x")
    for bad in ("/only-one", "/a:/b:/c", ":/b"):
        with pytest.raises(ValidationError, match="bad asset"):
            parse_asset(bad)


@pytest.mark.parametrize(("path", "name"), [
    ("example.com/hello", "hello"),
    ("example.com/tool/cmd/tool", "tool"),
    ("example.com/tool/v2", "tool"),
    ("example.com/tool/v1", "v1"),
    ("example.com/tool/v0", "v0"),
    ("v2", "v2"),
])
def test_go_exec_name(path: str, name: str) -> None:
    assert go_exec_name(path) == name


def test_build_info_and_version_label() -> None:
    text = (
        "bin/x: go1.19.8\n\tpath\texample.com/x/cmd/x\n\tmod\texample.com/x\t(devel)\t\n"
        "\tbuild\t-trimpath=true\n\tbuild\tvcs=git\n\tbuild\tvcs.revision=0123456789abcdef0123\n"
        "\tbuild\tvcs.time=2024-01-02T15:04:05Z\n\tbuild\tvcs.modified=false\n"
    )
    info = parse_build_info(text)
    assert (info.go_version, info.path, info.module) == ("go1.19.8", "example.com/x/cmd/x", "example.com/x")
    assert version_label(info) == "v0.0.0-20240102150405-0123456789ab"
    assert version_label(BuildInfo(module_version="(devel)")) is None
    assert version_label(BuildInfo(module_version="v1.2.3", settings={"vcs.revision": "ab"})) == "v1.2.3"


def test_classify_package(tmp_path: pathlib.Path) -> None:
    (tmp_path / "mod").mkdir()
    assert classify_package("example.com/x@v1.0.0", str(tmp_path)).kind == "install"
    assert classify_package("example.com/x/...@latest", str(tmp_path)).kind == "install"
    spec = classify_package("./mod/...", str(tmp_path))
    assert (spec.kind, spec.directory, spec.pattern) == ("dir", str(tmp_path / "mod"), "./...")
    assert classify_package("mod", str(tmp_path)).kind == "dir"  # an existing directory wins
    assert classify_package(".", str(tmp_path)).directory == str(tmp_path)
    assert classify_package("example.com/x", str(tmp_path)).kind == "import"


def test_error_options() -> None:
    with pytest.raises(ValidationError, match="not allowed"):
        GoACIOptions(package=".", build_flags=["-o", "x"])
    with pytest.raises(ValidationError, match="cannot both be given"):
        GoACIOptions(package=".", tmp_dir="/a", reuse_tmp_dir="/b")
    with pytest.raises(ValidationError):
        GoACIOptions(package=".", name="Not Valid")
    with pytest.raises(ValidationError):
        GoACIOptions(package=".", labels={"name": "x"})


# --- building ------------------------------------------------------------------------------


def test_single_binary_module(single, host_arch: tuple[str, str], tmp_path: pathlib.Path) -> None:
    root, _module, result = single
    # The binary (and the file) keep Go's name for it; the image name is lower-cased.
    assert result.output == str(root / "Single.aci")
    assert (result.binary, result.import_path, result.dynamic) == ("Single", "example.com/Single", False)
    manifest = result.manifest.to_dict()
    assert manifest["name"] == "example.com/single"
    labels = {label["name"]: label["value"] for label in manifest["labels"]}
    assert labels == {"os": host_arch[0], "arch": host_arch[1], "channel": "stable"}  # no VCS, no version
    assert manifest["app"] == {
        "exec": ["/Single", "--from-exec"],
        "user": "0",
        "group": "0",
        "environment": [{"name": "GREETING", "value": "hi"}],
        "mountPoints": [{"name": "data", "path": "/var/lib/single"}],
        "ports": [{"name": "www", "protocol": "tcp", "port": 8080, "count": 1, "socketActivated": False}],
    }
    report = validate_archive(result.output)
    assert report.image_id == result.image_id
    with tarfile.open(result.output) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["rootfs", "rootfs/Single", "manifest"]
    assert all((m.uid, m.gid, m.mtime) == (0, 0, 0) for m in members)
    assert members[1].mode == 0o755
    assert not ELFFile.from_path(unpack(result.output, tmp_path / "r") / "Single").is_dynamic


@needs_root
def test_single_binary_runs(single, tmp_path: pathlib.Path) -> None:
    _root, _module, result = single
    rootfs = unpack(result.output, tmp_path / "rootfs")
    assert run_chroot(rootfs, *result.manifest.app.exec).stdout == "single says hello --from-exec\n"


def test_same_image_id_twice(single, go_env: dict[str, str], tmp_path: pathlib.Path) -> None:
    _root, module, first = single
    again = build(go_env, module, tmp_path, exec_args=["--from-exec"], labels={"channel": "stable"},
                  environment={"GREETING": "hi"}, ports=[parse_port("www:tcp:8080")],
                  mount_points=[parse_mount("data:/var/lib/single")])
    assert again.image_id == first.image_id
    assert pathlib.Path(again.output).read_bytes() == pathlib.Path(first.output).read_bytes()


def test_two_binaries_need_use_binary(go_env: dict[str, str], tmp_path: pathlib.Path, private_tmp: pathlib.Path) -> None:
    module = gf.write_two_binary_module(tmp_path / "multi")
    with pytest.raises(BuildError, match=r"several binaries \(alpha, beta\): choose one with -use-binary"):
        build(go_env, module, tmp_path)
    with pytest.raises(BuildError, match=r"no binary named 'gamma' \(built or buildable: alpha, beta\)"):
        build(go_env, module, tmp_path, use_binary="gamma")
    result = build(go_env, module, tmp_path, use_binary="beta")
    assert (result.binary, str(result.manifest.name)) == ("beta", "example.com/multi/cmd/beta")
    assert result.output == str(tmp_path / "beta.aci")
    # A package path inside the module needs no choice; DIR/... behaves like DIR.
    assert build(go_env, module / "cmd" / "alpha", tmp_path).binary == "alpha"
    with pytest.raises(BuildError, match="several binaries"):
        build(go_env, f"{module}/...", tmp_path)
    assert list(private_tmp.iterdir()) == []


@needs_root
def test_replace_dependency(go_env: dict[str, str], tmp_path: pathlib.Path) -> None:
    app = gf.write_replace_modules(tmp_path / "src")
    result = build(go_env, app, tmp_path)
    assert str(result.manifest.name) == "example.com/app"
    rootfs = unpack(result.output, tmp_path / "rootfs")
    assert run_chroot(rootfs, "/app").stdout == "hello from a replaced module\n"


def test_import_path_inside_current_module(go_env: dict[str, str], tmp_path: pathlib.Path) -> None:
    module = gf.write_two_binary_module(tmp_path / "multi")
    result = build(go_env, "example.com/multi/cmd/alpha", module, output=str(tmp_path / "a.aci"))
    assert (result.binary, result.output) == ("alpha", str(tmp_path / "a.aci"))


def test_install_at_version_from_file_proxy(go_env: dict[str, str], tmp_path: pathlib.Path) -> None:
    proxy = gf.write_file_proxy(tmp_path / "proxy", "example.com/tool", "v1.0.0", {
        "cmd/tool/main.go": 'package main\n\nfunc main() { println("tool v1") }\n',
        "share/tool.conf": "from the module\n",
    })
    env = dict(go_env, GOPROXY=proxy)
    result = build(env, "example.com/tool/cmd/tool@v1.0.0", tmp_path,
                   assets=["/etc/tool.conf:<PROJPATH>/share/tool.conf"])
    manifest = result.manifest
    assert (str(manifest.name), manifest.labels.get("version")) == ("example.com/tool/cmd/tool", "v1.0.0")
    assert result.binary == "tool"
    rootfs = unpack(result.output, tmp_path / "rootfs")
    assert (rootfs / "etc/tool.conf").read_text() == "from the module\n"
    # Offline and not in the module cache: Go's own error, named.
    with pytest.raises(BuildError, match=r"go install example\.com/tool/cmd/tool@v1\.0\.1 failed") as err:
        build(go_env, "example.com/tool/cmd/tool@v1.0.1", tmp_path)
    assert "module lookup disabled by GOPROXY=off" in err.value.output


def test_install_cross_compiled(go_env: dict[str, str], tmp_path: pathlib.Path) -> None:
    proxy = gf.write_file_proxy(tmp_path / "proxy", "example.com/xtool", "v0.3.0", {
        "main.go": 'package main\n\nfunc main() { println("xtool") }\n',
    })
    result = build(dict(go_env, GOPROXY=proxy), "example.com/xtool@v0.3.0", tmp_path, goarch="arm64")
    assert result.manifest.labels.get("arch") == "aarch64"
    binary = unpack(result.output, tmp_path / "rootfs") / "xtool"
    assert ELFFile.from_path(binary).machine_name == "aarch64"


@needs_root
def test_cgo_program_brings_its_libraries(cgo, tmp_path: pathlib.Path) -> None:
    _root, result = cgo
    assert result.dynamic
    rootfs = unpack(result.output, tmp_path / "rootfs")
    elf = ELFFile.from_path(rootfs / "cgohello")
    assert elf.interpreter and elf.interpreter.startswith("/lib")
    assert "libc.so.6" in elf.needed
    # The loader and libc sit at their host paths, symlink chains included.
    assert os.path.exists(rootfs / elf.interpreter.lstrip("/"))  # resolved inside the image
    assert elf.interpreter in result.libraries
    libc = [lib for lib in result.libraries if os.path.basename(lib) == "libc.so.6"]
    assert libc and (rootfs / libc[0].lstrip("/")).exists()
    assert any(os.path.basename(lib).startswith("libnss_") for lib in result.libraries)
    for path in ("lib", "lib64"):
        host = pathlib.Path("/", path)
        if host.is_symlink():
            assert os.readlink(rootfs / path) == os.readlink(host)
    assert run_chroot(rootfs, "/cgohello").stdout == "hello from cgo\n"


@pytest.mark.parametrize(("goarch", "arch", "machine", "elf_class"), [
    ("arm64", "aarch64", "aarch64", 64),
    ("arm", "armv7l", "arm", 32),
])
def test_cross_compilation(cross, goarch: str, arch: str, machine: str, elf_class: int) -> None:
    result, binary = cross[goarch]
    assert (result.manifest.labels.get("os"), result.manifest.labels.get("arch")) == ("linux", arch)
    elf = ELFFile.from_path(binary)
    assert (elf.machine_name, elf.elf_class * 32, elf.is_dynamic) == (machine, elf_class, False)


def test_assets(single, go_env: dict[str, str], tmp_path: pathlib.Path) -> None:
    _root, module, _result = single
    data = tmp_path / "data"
    (data / "tree" / "sub").mkdir(parents=True)
    (data / "tree" / "sub" / "file.txt").write_text("in a tree\n")
    (data / "tree" / "run.sh").write_text("#!/bin/sh\n")
    (data / "tree" / "run.sh").chmod(0o750)
    (data / "tree" / "link").symlink_to("sub/file.txt")
    (data / "real.txt").write_text("real\n")
    (data / "alias.txt").symlink_to("real.txt")
    (tmp_path / "via").symlink_to(data)  # the local side's parent is a symlink: resolved
    gopath = pathlib.Path(go_env["GOPATH"])
    (gopath / "share").mkdir(parents=True, exist_ok=True)
    (gopath / "share" / "g.txt").write_text("from GOPATH\n")
    result = build(go_env, module, tmp_path, output="assets.aci", assets=[
        "/etc/app.conf:<PROJPATH>/conf/app.conf",
        "/opt/tree:" + str(data / "tree"),
        "/opt/alias.txt:" + str(tmp_path / "via" / "alias.txt"),
        "/opt/real.txt:" + str(data / "real.txt"),
        "/usr/share/g.txt:<GOPATH>/share/g.txt",
        "/bin/tool:" + TRUE,
    ], compression="none")
    rootfs = unpack(result.output, tmp_path / "rootfs")
    assert (rootfs / "etc/app.conf").read_text() == "answer=42\n"
    assert (rootfs / "opt/tree/sub/file.txt").read_text() == "in a tree\n"
    assert os.readlink(rootfs / "opt/tree/link") == "sub/file.txt"
    assert (rootfs / "opt/tree/run.sh").stat().st_mode & 0o777 == 0o750
    assert os.readlink(rootfs / "opt/alias.txt") == "real.txt"  # a symlinked file stays a link
    assert (rootfs / "usr/share/g.txt").read_text() == "from GOPATH\n"
    # A dynamic ELF asset brings its libraries, as the binary would.
    tool = ELFFile.from_path(TRUE)
    assert result.dynamic is False  # that is about the Go binary
    if tool.is_dynamic:
        assert tool.interpreter in result.libraries
        assert run_chroot(rootfs, "/bin/tool").returncode == 0


@pytest.mark.parametrize(("asset", "message"), [
    ("/etc/missing.conf:/nonexistent/missing.conf", r"/nonexistent/missing.conf: No such file or directory"),
    ("/../escape:/etc/hostname", r"'/../escape' escapes the image's root"),
    ("/a/../../escape:/etc/hostname", r"escapes the image's root"),
    ("relative:/etc/hostname", r"both paths must be absolute"),
    ("/dev/null:/dev/null", r"/dev/null is a device, FIFO or socket"),
])
@pytest.mark.usefixtures("private_tmp")
def test_error_bad_asset(single, go_env: dict[str, str], tmp_path: pathlib.Path, asset: str, message: str) -> None:
    _root, module, _result = single
    with pytest.raises(BuildError, match=message):
        build(go_env, module, tmp_path, assets=[asset])
    assert not list(tmp_path.glob("*.aci")) and not list(tmp_path.glob(".*.aci*"))
    assert list(pathlib.Path(tempfile.gettempdir()).iterdir()) == []  # the work directory is gone


def test_keep_and_reuse_tmp_dir(single, go_env: dict[str, str], tmp_path: pathlib.Path) -> None:
    _root, module, _result = single
    work = tmp_path / "existing-work"
    work.mkdir()
    (work / "mine.txt").write_text("not goaci's\n")
    build(go_env, module, tmp_path, tmp_dir=str(work), output="a.aci")
    assert sorted(p.name for p in work.iterdir()) == ["mine.txt"]  # emptied of goaci's entries only
    kept = build(go_env, module, tmp_path, tmp_dir=str(tmp_path / "new" / "work"), keep_tmp_dir=True,
                 output="b.aci")
    assert kept.tmp_dir == str(tmp_path / "new" / "work")
    assert (tmp_path / "new/work/bin/Single").is_file()
    again = build(go_env, module, tmp_path, reuse_tmp_dir=kept.tmp_dir, exec_args=["again"], output="c.aci")
    assert again.manifest.app.exec == ("/Single", "again")
    assert sorted(p.name for p in (tmp_path / "new/work").iterdir()) == []
    with pytest.raises(BuildError, match="holds no earlier build"):
        build(go_env, module, tmp_path, reuse_tmp_dir=str(work))


@pytest.mark.parametrize(("kind", "message"), [
    ("no-go", "Go binary not found: '/nonexistent/go'"),
    ("not-main", "package example.com/justlib is not a main package (it is package justlib)"),
    ("compile-error", "go build example.com/broken failed: ./main.go:4:2: undefined: undefinedThing"),
])
def test_error_bad_input(go_env: dict[str, str], tmp_path: pathlib.Path, private_tmp: pathlib.Path,
                         kind: str, message: str) -> None:
    if kind == "not-main":
        package, extra = gf.write_library_module(tmp_path / "src"), {}
    elif kind == "compile-error":
        package, extra = gf.write_broken_module(tmp_path / "src"), {}
    else:
        package, extra = gf.write_single_module(tmp_path / "src"), {"go_binary": "/nonexistent/go"}
    with pytest.raises(BuildError) as err:
        build(go_env, package, tmp_path, **extra)
    assert str(err.value) == message
    if kind == "compile-error":
        assert "undefined: undefinedThing" in err.value.output
    assert not list(tmp_path.glob("*.aci"))
    assert list(private_tmp.iterdir()) == []


def test_error_no_go_on_path(go_env: dict[str, str], tmp_path: pathlib.Path) -> None:
    with pytest.raises(BuildError, match="Go toolchain not found: no 'go' on PATH"):
        build(dict(go_env, PATH=str(tmp_path)), tmp_path, tmp_path)


def test_error_target_without_appc_arch(go_env: dict[str, str], tmp_path: pathlib.Path) -> None:
    module = gf.write_tiny_module(tmp_path / "src")
    with pytest.raises(ValidationError, match="target windows/amd64 has no App Container os/arch label"):
        build(go_env, module, tmp_path, goos="windows", goarch="amd64")


# --- the command line ----------------------------------------------------------------------


def test_cli_flags_anywhere(go_env: dict[str, str], tmp_path: pathlib.Path) -> None:
    module = gf.write_single_module(tmp_path / "src")
    proc = run_cli("go", "-exec", "one", str(module), "--exec=two", "-name", "example.com/renamed",
                   "--label", "version=9.9.9", "-port", "www:tcp:80", "-o", "out.aci",
                   cwd=tmp_path, env=go_env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "Wrote out.aci\n", "")
    manifest = validate_archive(tmp_path / "out.aci").manifest
    assert str(manifest.name) == "example.com/renamed"
    assert manifest.labels.get("version") == "9.9.9"
    assert manifest.app.exec == ("/Single", "one", "two")


@pytest.mark.parametrize(("args", "message"), [
    (["a", "b"], "expected exactly one package to build, got 2"),
    ([], "expected exactly one package to build, got 0"),
    (["--port", "bad", "x"], "bad port 'bad'"),
    (["--name", "Bad Name", "x"], "ACIdentifier"),
    (["--label", "novalue", "x"], "bad label 'novalue' (want KEY=VALUE)"),
    (["-tmp-dir", "/a", "-reuse-tmp-dir", "/b", "x"], "cannot be used together"),
    (["cmake", "x"], "cmake builder"),
    (["--no-such-flag", "x"], "unrecognized arguments"),
])
def test_cli_usage_errors(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    from appc_tools.goaci import main

    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "usage: goaci [go] [flags] PACKAGE" in err


def test_cli_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    from appc_tools.goaci import main

    with pytest.raises(SystemExit) as done:
        main(["-h"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--use-binary NAME" in out and "NAME:PROTOCOL:PORT" in out and "path@version" in out
    assert main(["-version"]) == 0
    assert capsys.readouterr().out.startswith("goaci version ")


def test_cli_compile_error_shows_go_output(go_env: dict[str, str], tmp_path: pathlib.Path) -> None:
    module = gf.write_broken_module(tmp_path / "src")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = run_cli(str(module), cwd=tmp_path, env=dict(go_env, TMPDIR=str(tmp)))
    assert proc.returncode == 1
    assert proc.stderr.startswith("# example.com/broken\n./main.go:4:2: undefined: undefinedThing\n")
    assert proc.stderr.endswith("goaci: go build example.com/broken failed: ./main.go:4:2: undefined: undefinedThing\n")
    assert list(tmp.iterdir()) == [] and not list(tmp_path.glob("*.aci"))


def test_cli_keep_tmp_dir_is_named(go_env: dict[str, str], tmp_path: pathlib.Path) -> None:
    module = gf.write_library_module(tmp_path / "src")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = run_cli("-keep-tmp-dir", str(module), cwd=tmp_path, env=dict(go_env, TMPDIR=str(tmp)))
    assert proc.returncode == 1
    kept = list(tmp.iterdir())
    assert len(kept) == 1 and f"kept the work directory {kept[0]}" in proc.stderr


def _port_free(port: int) -> bool:
    for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


@needs_root
def test_acigo_hello_serves(go_env: dict[str, str], tmp_path: pathlib.Path) -> None:
    """The issue's "done when": acigo ./examples/hello validates and serves on :5000."""
    shutil.copytree(REPO / "examples" / "hello", tmp_path / "examples" / "hello")
    proc = run_cli("./examples/hello", "-port", "www:tcp:5000", cwd=tmp_path, env=go_env)
    assert (proc.returncode, proc.stdout) == (0, "Wrote hello.aci\n"), proc.stderr
    check = subprocess.run([sys.executable, "-m", "appc_tools.actool", "validate", "hello.aci"],
                           cwd=tmp_path, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    manifest = validate_archive(tmp_path / "hello.aci").manifest
    assert (str(manifest.name), manifest.app.exec) == ("example.com/hello", ("/hello",))
    if not _port_free(5000):
        pytest.skip("port 5000 is in use (the hello app listens on :5000, fixed)")
    rootfs = unpack(str(tmp_path / "hello.aci"), tmp_path / "rootfs")
    log = (tmp_path / "hello.log").open("wb")
    server = subprocess.Popen(["chroot", str(rootfs), "/hello"], stdout=log, stderr=subprocess.STDOUT)
    try:
        answer = b""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen("http://127.0.0.1:5000/", timeout=2) as response:
                    answer = response.read()
                break
            except OSError:
                time.sleep(0.05)
        assert server.poll() is None, (tmp_path / "hello.log").read_text()  # so the answer came from it
        assert answer == b"Hello from App Container\n"
    finally:
        server.kill()
        server.wait(timeout=10)
        log.close()


# --- the ELF reader -----------------------------------------------------------------------------


def _corrupt(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + bytes([value]) + data[offset + 1 :]


def test_elf_reader_on_built_binaries(single, cgo, cross, tmp_path: pathlib.Path) -> None:
    _root, _module, static = single
    static_bin = unpack(static.output, tmp_path / "static") / "Single"
    cgo_bin = unpack(cgo[1].output, tmp_path / "cgo") / "cgohello"
    assert is_elf(static_bin) and not is_elf(tmp_path / "static")
    elf = ELFFile.from_path(static_bin)
    assert (elf.machine_name, elf.elf_class.name, elf.encoding.name, elf.type) == ("x86_64", "C64", "LSB", 2) or (
        elf.machine_name != "x86_64")  # on another host arch, just readable
    assert (elf.interpreter, elf.needed, elf.is_dynamic) == (None, (), False)
    dyn = ELFFile.from_path(cgo_bin)
    assert dyn.is_dynamic and dyn.interpreter is not None and "libc.so.6" in dyn.needed
    assert dyn.compatible_with(elf) and not dyn.compatible_with(ELFFile.from_path(cross["arm64"][1]))
    arm = ELFFile.from_path(cross["arm"][1])
    assert (arm.machine_name, arm.elf_class.name) == ("arm", "C32")


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: b"\x7fELG" + d[4:], r"not an ELF file \(bad magic b'\\x7fELG'\)"),
    (lambda d: _corrupt(d, 4, 3), "unknown ELF class 3"),
    (lambda d: _corrupt(d, 5, 0), "unknown ELF data encoding 0"),
    (lambda d: d[:10], r"truncated file \(reading ELF identification\)"),
    (lambda d: d[:40], r"truncated file \(reading ELF header\)"),
    (lambda d: d[:100], r"truncated file \(reading program headers\)"),
    (lambda d: b"", r"truncated file"),
])
def test_elf_reader_rejects_corrupted_copies(cgo, change, message: str, tmp_path: pathlib.Path) -> None:
    good = (unpack(cgo[1].output, tmp_path / "cgo") / "cgohello").read_bytes()
    bad = tmp_path / "bad"
    bad.write_bytes(change(good))
    with pytest.raises(ELFError, match=message) as err:
        ELFFile.from_path(bad)
    assert err.value.source == str(bad)
    with pytest.raises(ValueError):  # ELFError is a ValueError too
        ELFFile(io.BytesIO(change(good)))


def test_elf_reader_truncated_inside_interpreter(cgo, tmp_path: pathlib.Path) -> None:
    good = (unpack(cgo[1].output, tmp_path / "cgo") / "cgohello").read_bytes()
    interp = next(h for h in ELFFile(io.BytesIO(good)).program_headers if h.type == 3)
    with pytest.raises(ELFError, match="PT_INTERP"):
        ELFFile(io.BytesIO(good[: interp.offset + 4]))
    with pytest.raises(ELFError, match="cannot read: No such file"):
        ELFFile.from_path(tmp_path / "missing")


def test_ld_so_cache_matches_ldconfig(tmp_path: pathlib.Path) -> None:
    if not os.path.exists("/etc/ld.so.cache") or shutil.which("ldconfig") is None:
        pytest.skip("no glibc loader cache here")
    ours = {(name, path) for name, path in read_ld_so_cache()}
    listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    theirs = set()
    for line in listing.splitlines()[1:]:
        name, arrow, path = line.strip().partition(" => ")
        if not arrow:
            continue  # "Cache generated by: ldconfig"
        theirs.add((name.split(" (")[0], path))
    assert ours == theirs
    (tmp_path / "bad.cache").write_bytes(b"not a cache at all")
    with pytest.raises(ELFError, match="not a glibc loader cache"):
        read_ld_so_cache(tmp_path / "bad.cache")


def test_library_resolver_checks_the_architecture(cgo, cross, tmp_path: pathlib.Path) -> None:
    dynamic = ELFFile.from_path(unpack(cgo[1].output, tmp_path / "cgo") / "cgohello")
    resolver = LibraryResolver()
    found = resolver.find("libc.so.6", dynamic)
    assert found is not None and ELFFile.from_path(found).compatible_with(dynamic)
    arm64 = ELFFile.from_path(cross["arm64"][1])
    found_arm = resolver.find("libc.so.6", arm64)
    assert found_arm is None or ELFFile.from_path(found_arm).machine_name == "aarch64"
    assert resolver.find("libdoesnotexist.so.1", dynamic) is None
