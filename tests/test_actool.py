"""The ``actool`` command line: the walkthrough, output lines, flags, exit codes; and the
package boundaries (format modules without HTTP, the wheel's data files).

Most cases run ``actool`` in-process (``main(argv)``, fast); the walkthrough, the
traceback and a few others run it as a user would, in a subprocess.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import zipfile
from typing import Any

import pytest
from appc_tools import actool

from appc.aci import build_image, compute_image_id, read_manifest_bytes
from tests import aci_fixtures as fx

REPO = pathlib.Path(__file__).resolve().parents[1]


def run(capsys: pytest.CaptureFixture[str], *args: str | os.PathLike[str]) -> tuple[int, str, str]:
    """Run actool in-process: (exit status, stdout, stderr)."""
    code = actool.main([os.fspath(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def image(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "image.aci"
    path.write_bytes(fx.compress(fx.good_tar(), "gzip"))
    return path


@pytest.fixture
def layout(tmp_path: pathlib.Path) -> pathlib.Path:
    return fx.make_layout(tmp_path / "layout")


def manifest_of(path: pathlib.Path) -> dict[str, Any]:
    return json.loads(read_manifest_bytes(path))  # type: ignore[no-any-return]


# --- the walkthrough -----------------------------------------------------------------


def test_walkthrough(run_tool: Any, tmp_path: pathlib.Path) -> None:
    hello = tmp_path / "hello"
    (hello / "rootfs/bin").mkdir(parents=True)
    binary = shutil.which("busybox") or sys.executable
    shutil.copy(binary, hello / "rootfs/bin/hello-web")
    shutil.copy(REPO / "examples/hello/manifest", hello / "manifest")

    done = run_tool("actool", "build", "hello", "hello.aci")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")

    done = run_tool("actool", "-debug", "validate", "hello/manifest", "hello", "hello.aci")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "hello/manifest: valid ImageManifest\n"
        "hello: valid image layout\n"
        "hello.aci: valid app container image\n"
    )
    assert done.stderr == ""
    # Without -debug a valid file is silent.
    done = run_tool("actool", "validate", "hello/manifest", "hello", "hello.aci")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")

    listed = subprocess.run(["tar", "tzf", tmp_path / "hello.aci"], check=True,
                            capture_output=True, text=True).stdout.split()
    assert listed == ["rootfs", "rootfs/bin", "rootfs/bin/hello-web", "manifest"]

    done = run_tool("actool", "cat-manifest", "hello.aci")
    assert done.returncode == 0
    assert json.loads(done.stdout)["name"] == "example.com/hello"
    assert json.loads(done.stdout)["app"]["exec"] == ["/bin/hello-web"]

    done = run_tool("actool", "patch-manifest", "--exec", "/bin/hello-web --debug", "hello.aci",
                    "hello-debug.aci")
    assert (done.returncode, done.stderr) == (0, "")
    exec_ = manifest_of(tmp_path / "hello-debug.aci")["app"]["exec"]
    assert exec_ == ["/bin/hello-web", "--debug"]


def test_build_debug_prints_the_image_id(run_tool: Any, layout: pathlib.Path,
                                          tmp_path: pathlib.Path) -> None:
    done = run_tool("actool", "build", "--debug", "--compression-level=1", str(layout), "out.aci")
    assert done.returncode == 0
    assert done.stderr == f"out.aci: {compute_image_id(tmp_path / 'out.aci')}\n"


# --- validate ------------------------------------------------------------------------


def _corrupt_files(directory: pathlib.Path) -> list[tuple[pathlib.Path, fx.Corrupt]]:
    out = []
    for case in fx.CORRUPT:
        if case.max_size is not None or case.id == "text":
            # A bomb only under a small limit (actool uses the default one); a text file
            # is taken for a manifest (see test_validate_type).
            continue
        path = directory / f"{case.id}.aci"
        path.write_bytes(case.make())
        out.append((path, case))
    return out


def test_validate_every_corrupt_archive_in_one_run(run_tool: Any, tmp_path: pathlib.Path) -> None:
    files = _corrupt_files(tmp_path)
    done = run_tool("actool", "validate", *(p.name for p, _ in files))
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == len(files)
    for line, (path, case) in zip(lines, files, strict=True):
        assert line.startswith(f"{path.name}: "), line
        if case.id not in ("bad-magic", "empty-file"):
            assert case.message in line.removeprefix(f"{path.name}: "), line
    # Auto-detection: garbage is "unknown", a text file is a manifest.
    assert lines[0] == "bad-magic.aci: unable to detect filetype (try --type)"
    assert lines[1] == "empty-file.aci: unable to detect filetype (try --type)"


@pytest.mark.parametrize("case", [c for c in fx.CORRUPT if c.max_size is None],
                         ids=lambda c: c.id)
def test_validate_one_corrupt_archive(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path,
                                      case: fx.Corrupt) -> None:
    path = tmp_path / f"{case.id}.aci"
    path.write_bytes(case.make())
    code, out, err = run(capsys, "validate", "--type=appimage", path)
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert err.startswith(f"{path}: ")
    assert case.message in err.removeprefix(f"{path}: ")


def test_validate_mixed_and_debug(capsys: pytest.CaptureFixture[str], image: pathlib.Path,
                                  layout: pathlib.Path, tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.aci"
    bad.write_bytes(b"\x1f\x8b" + b"\x00" * 40)
    code, out, err = run(capsys, "-debug", "validate", image, bad, layout)
    assert code == 1
    assert out == f"{image}: valid app container image\n{layout}: valid image layout\n"
    assert err.startswith(f"{bad}: corrupt gzip stream: ")
    assert err.count("\n") == 1


def test_validate_pod_manifest(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    pod = tmp_path / "pod.json"
    pod.write_bytes(fx.manifest_bytes(fx.POD_MANIFEST))
    assert run(capsys, "validate", "--debug", pod) == (0, f"{pod}: valid PodManifest\n", "")


def test_validate_json(capsys: pytest.CaptureFixture[str], image: pathlib.Path,
                       layout: pathlib.Path, tmp_path: pathlib.Path) -> None:
    bad_manifest = tmp_path / "bad.json"
    bad_manifest.write_bytes(fx.manifest_bytes(name="Bad Name", acVersion="x"))
    missing = tmp_path / "missing.aci"
    code, out, err = run(capsys, "validate", "--json", image, layout / "manifest", layout,
                         bad_manifest, missing)
    assert (code, err) == (1, "")
    reports = json.loads(out)
    assert [r["valid"] for r in reports] == [True, True, True, False, False]
    assert reports[0] == {
        "path": str(image), "type": "appimage", "valid": True,
        "message": "valid app container image", "name": "example.com/test",
        "imageID": fx.image_id(fx.good_tar()), "compression": "gzip",
    }
    assert reports[1]["type"] == "manifest" and reports[1]["kind"] == "ImageManifest"
    assert reports[2]["type"] == "layout" and reports[2]["name"] == "example.com/test"
    assert reports[3]["error"].startswith(f"{bad_manifest}: ")
    assert {e["field"] for e in reports[3]["errors"]} == {"name", "acVersion"}
    assert reports[4]["error"] == f"{missing}: No such file or directory"
    # All valid: exit 0.
    code, out, _ = run(capsys, "validate", "-json", image)
    assert code == 0 and json.loads(out)[0]["valid"] is True


@pytest.mark.parametrize(
    ("kind", "target", "message"),
    [
        ("layout", "image", "not a directory"),
        ("appimage", "layout", "Is a directory"),
        ("appimage", "manifest", "unknown image filetype"),
        ("manifest", "image", "invalid JSON in manifest"),
        ("manifest", "layout", "Is a directory"),
    ],
)
def test_validate_type(capsys: pytest.CaptureFixture[str], image: pathlib.Path,
                       layout: pathlib.Path, *, kind: str, target: str, message: str) -> None:
    path = {"image": image, "layout": layout, "manifest": layout / "manifest"}[target]
    code, _, err = run(capsys, "validate", f"--type={kind}", path)
    assert code == 1
    assert err.startswith(f"{path}: ") and message in err.removeprefix(f"{path}: ")
    # The right type (one dash, value as the next argument) passes.
    right = {"image": "appimage", "layout": "layout", "manifest": "manifest"}[target]
    assert run(capsys, "validate", "-type", right, path)[0] == 0


# --- build ---------------------------------------------------------------------------


def test_build_flags_anywhere(capsys: pytest.CaptureFixture[str], layout: pathlib.Path,
                              tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out.aci"
    assert run(capsys, "build", "--compression-level", "1", layout, out) == (0, "", "")
    code, _, err = run(capsys, "build", layout, out)
    assert (code, err) == (1, f"actool build: {out}: target file exists (try --overwrite)\n")
    # One dash, two dashes, before or after the positional arguments, =value or value.
    assert run(capsys, "build", "-overwrite", "-no-compression", layout, out)[0] == 0
    assert out.read_bytes()[257:262] == b"ustar"
    assert run(capsys, "build", layout, out, "--overwrite", "--mtime=7")[0] == 0
    assert out.read_bytes()[:2] == b"\x1f\x8b"
    assert {m.mtime for m in fx.read_tar(out.read_bytes())} == {7}
    assert run(capsys, "build", layout, out, "-overwrite", "-mtime", "8", "-owner-root")[0] == 0
    infos = fx.read_tar(out.read_bytes())
    assert {m.mtime for m in infos} == {8}
    assert {(m.uid, m.gid, m.uname, m.gname) for m in infos} == {(0, 0, "root", "root")}


def test_build_reproducible_with_source_date_epoch(run_tool: Any, layout: pathlib.Path,
                                                   tmp_path: pathlib.Path) -> None:
    env = {"SOURCE_DATE_EPOCH": "1234567890"}
    for name in ("a.aci", "b.aci"):
        assert run_tool("actool", "build", str(layout), name, env=env).returncode == 0
    assert (tmp_path / "a.aci").read_bytes() == (tmp_path / "b.aci").read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build", "{layout}", "{tmp}/out.tar"], "actool build: {tmp}/out.tar: extension must "
                                                  "be .aci (given .tar)"),
        (["build", "{tmp}/nowhere", "{tmp}/out.aci"], "actool build: {tmp}/nowhere: No such file "
                                                       "or directory"),
        (["build", "{tmp}/bad", "{tmp}/out.aci"], "actool build: {tmp}/bad: unrecognized file "
                                                   "path in layout: 'extra'"),
    ],
)
def test_build_failures(capsys: pytest.CaptureFixture[str], layout: pathlib.Path,
                        tmp_path: pathlib.Path, args: list[str], message: str) -> None:
    fx.make_bad_layout(tmp_path / "bad", "extra-file")
    before = sorted(os.listdir(tmp_path))
    filled = [a.format(layout=layout, tmp=tmp_path) for a in args]
    code, out, err = run(capsys, *filled)
    assert (code, out) == (1, "")
    assert err == message.format(tmp=tmp_path) + "\n"
    assert sorted(os.listdir(tmp_path)) == before


# --- cat-manifest --------------------------------------------------------------------


def test_cat_manifest(capsys: pytest.CaptureFixture[str], image: pathlib.Path) -> None:
    code, out, err = run(capsys, "cat-manifest", image)
    assert (code, err) == (0, "")
    # The bytes as stored (here indented JSON), plus a newline.
    assert out == fx.manifest_bytes().decode() + "\n"
    code, out, err = run(capsys, "cat-manifest", "-pretty-print", image)
    assert (code, err) == (0, "")
    assert out.startswith('{\n    "acKind": "ImageManifest",\n    "acVersion": "0.8.11",\n')
    assert json.loads(out)["name"] == "example.com/test"


def test_cat_manifest_of_a_built_image(capsys: pytest.CaptureFixture[str], layout: pathlib.Path,
                                       tmp_path: pathlib.Path) -> None:
    build_image(layout, tmp_path / "out.aci", level=1)
    code, out, _ = run(capsys, "cat-manifest", tmp_path / "out.aci")
    assert code == 0
    assert out.count("\n") == 1 and out.startswith('{"acKind":"ImageManifest",')


def test_cat_manifest_invalid(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    path = tmp_path / "pod.aci"
    raw = fx.manifest_bytes(fx.POD_MANIFEST)
    path.write_bytes(fx.tar_bytes(fx.good_entries(raw)))
    code, out, err = run(capsys, "cat-manifest", path)
    # Printed first, then checked, like the reference.
    assert code == 1
    assert out == raw.decode() + "\n"
    assert err.startswith(f"actool cat-manifest: {path}: image manifest validation failed: ")
    assert "acKind" in err
    assert err.count("\n") == 1
    code, out, err = run(capsys, "cat-manifest", "--pretty-print", path)
    assert (code, out) == (1, "")
    assert err.startswith(f"actool cat-manifest: {path}: image manifest validation failed: ")


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"\x00garbage", "unknown image filetype"),
     (fx.tar_bytes([fx.directory("rootfs")]), "missing manifest"),
     (fx.compress(fx.good_tar(), "gzip")[:50], "truncated gzip stream")],
)
def test_cat_manifest_errors(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path,
                             data: bytes, message: str) -> None:
    path = tmp_path / "x.aci"
    path.write_bytes(data)
    assert run(capsys, "cat-manifest", path) == (1, "", f"actool cat-manifest: {path}: {message}\n")


# --- patch-manifest ------------------------------------------------------------------


def patch(capsys: pytest.CaptureFixture[str], source: pathlib.Path, *flags: str) -> dict[str, Any]:
    output = source.parent / "patched.aci"
    code, out, err = run(capsys, "patch-manifest", "--overwrite", *flags, source, output)
    assert (code, out, err) == (0, "", "")
    return manifest_of(output)


def test_patch_every_flag(capsys: pytest.CaptureFixture[str], image: pathlib.Path) -> None:
    assert patch(capsys, image, "--name=example.com/renamed")["name"] == "example.com/renamed"
    assert patch(capsys, image, "-exec", "/app  --debug")["app"]["exec"] == ["/app", "", "--debug"]
    app = patch(capsys, image, "--user", "1000", "--group=2000", "--supplementary-groups=5,6")["app"]
    assert (app["user"], app["group"], app["supplementaryGIDs"]) == ("1000", "2000", [5, 6])
    isolators = patch(capsys, image, "--capability=CAP_NET_ADMIN,CAP_SYS_TIME")["app"]["isolators"]
    assert isolators == [{"name": "os/linux/capabilities-retain-set",
                          "value": {"set": ["CAP_NET_ADMIN", "CAP_SYS_TIME"]}}]
    isolators = patch(capsys, image, "-revoke-capability", "CAP_KILL")["app"]["isolators"]
    assert isolators == [{"name": "os/linux/capabilities-remove-set",
                          "value": {"set": ["CAP_KILL"]}}]
    app = patch(capsys, image, "--mounts=a,path=/a:b,path=/b,readOnly=true")["app"]
    assert app["mountPoints"] == [{"name": "a", "path": "/a"},
                                  {"name": "b", "path": "/b", "readOnly": True}]
    app = patch(capsys, image, "--ports=dns,protocol=udp,port=53,count=2,socketActivated=true")["app"]
    assert app["ports"][1] == {"name": "dns", "protocol": "udp", "port": 53, "count": 2,
                               "socketActivated": True}
    app = patch(capsys, image, "--isolators=resource/cpu,request=50m,limit=100m:"
                "resource/memory,limit=1G:os/linux/no-new-privileges,true:"
                "os/linux/oom-score-adj,-100")["app"]
    assert [i["name"] for i in app["isolators"]] == [
        "resource/cpu", "resource/memory", "os/linux/no-new-privileges", "os/linux/oom-score-adj"]
    app = patch(capsys, image, "--seccomp-mode=remove,errno=EPERM", "--seccomp-set=reboot,mount")
    assert app["app"]["isolators"] == [{"name": "os/linux/seccomp-remove-set",
                                        "value": {"set": ["reboot", "mount"], "errno": "EPERM"}}]


def test_patch_manifest_file(capsys: pytest.CaptureFixture[str], image: pathlib.Path,
                             tmp_path: pathlib.Path) -> None:
    replacement = tmp_path / "new.json"
    replacement.write_bytes(b'{"anything": "goes"}')
    output = tmp_path / "out.aci"
    assert run(capsys, "patch-manifest", f"--manifest={replacement}", image, output)[0] == 0
    assert read_manifest_bytes(output) == b'{"anything": "goes"}'
    code, _, err = run(capsys, "patch-manifest", "--manifest", str(replacement), "--name=a.com/b",
                       image, tmp_path / "other.aci")
    assert code == 1
    assert err == "actool patch-manifest: --manifest cannot be combined with options that " \
                  "change fields\n"


def test_patch_replace_and_no_compression(run_tool: Any, image: pathlib.Path,
                                          tmp_path: pathlib.Path) -> None:
    done = run_tool("actool", "patch-manifest", "--user=42", "--replace", "--no-compression",
                    str(image))
    assert (done.returncode, done.stderr) == (0, "")
    assert image.read_bytes()[257:262] == b"ustar"
    assert manifest_of(image)["app"]["user"] == "42"
    assert sorted(os.listdir(tmp_path)) == ["image.aci"]


@pytest.mark.parametrize(
    ("flags", "status", "message"),
    [
        (["--capability=CAP_A", "--revoke-capability=CAP_B"], 1,
         "conflicting capabilities isolators provided"),
        (["--isolators=os/linux/selinux-context,x"], 1,
         "isolator os/linux/selinux-context is not supported for patching"),
        (["--seccomp-set=reboot"], 1, "--seccomp-set needs --seccomp-mode"),
        (["--name=Bad"], 1, "ACIdentifier must contain only lower case"),
        (["--supplementary-groups=a,b"], 2, "bad group ID list 'a,b'"),
        (["--replace", "--overwrite"], 2, "--replace and --overwrite cannot be used together"),
        (["--manifest=/nonexistent.json"], 1, "/nonexistent.json: No such file or directory"),
    ],
)
def test_patch_errors(capsys: pytest.CaptureFixture[str], image: pathlib.Path,
                      tmp_path: pathlib.Path, *, flags: list[str], status: int,
                      message: str) -> None:
    output = [] if "--replace" in flags else [tmp_path / "out.aci"]
    before = image.read_bytes()
    code, out, err = run(capsys, "patch-manifest", *flags, image, *output)
    assert (code, out) == (status, "")
    assert err.startswith("actool patch-manifest: ") and message in err
    assert image.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["image.aci"]


def test_patch_needs_an_app(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    source = tmp_path / "noapp.aci"
    source.write_bytes(fx.tar_bytes(fx.good_entries(fx.manifest_bytes(fx.NO_APP_MANIFEST))))
    code, _, err = run(capsys, "patch-manifest", "--user=1", source, tmp_path / "out.aci")
    assert code == 1
    assert err == "actool patch-manifest: the manifest has no app: give --exec to create one\n"
    code, _, _ = run(capsys, "patch-manifest", "--exec=/bin/sh", "--user=1", "--group=1", source,
                     tmp_path / "out.aci")
    assert code == 0
    assert manifest_of(tmp_path / "out.aci")["app"]["exec"] == ["/bin/sh"]


def test_patch_output_rules(capsys: pytest.CaptureFixture[str], image: pathlib.Path,
                            tmp_path: pathlib.Path) -> None:
    code, _, err = run(capsys, "patch-manifest", "--user=1", image, tmp_path / "out.tar")
    assert (code, err) == (1, f"actool patch-manifest: {tmp_path / 'out.tar'}: extension must be "
                              ".aci\n")
    existing = tmp_path / "existing.aci"
    existing.write_bytes(b"keep")
    code, _, err = run(capsys, "patch-manifest", "--user=1", image, existing)
    assert code == 1 and "target file exists (try --overwrite)" in err
    assert existing.read_bytes() == b"keep"
    assert sorted(os.listdir(tmp_path)) == ["existing.aci", "image.aci"]


# --- general CLI behaviour -----------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "version")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "actool version 0.1.0"
    assert "0.8.11" in out


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["help"], ["--help"], ["-h"], ["-help"]):
        code, out, err = run(capsys, *args)
        assert (code, err) == (0, ""), args
        for heading in ("NAME:", "USAGE:", "VERSION:", "COMMANDS:", "GLOBAL OPTIONS:"):
            assert f"\n{heading}\n" in f"\n{out}", (args, heading)
        for command in ("build", "cat-manifest", "patch-manifest", "validate", "version"):
            assert f"\n   {command} " in out


def test_help_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "help", "build")
    assert (code, err) == (0, "")
    assert out.startswith("usage: actool build ")
    for flag in ("--overwrite", "--no-compression", "--owner-root", "--mtime", "DIRECTORY"):
        assert flag in out
    assert run(capsys, "help", "nope") == (2, "", 'actool: unknown subcommand: "nope"\n')


def test_unknown_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "x") == (2, "", 'actool: unknown subcommand: "x"\n'
                                       "Run 'actool help' for usage.\n")


def test_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)
    assert (code, out) == (2, "")
    assert "USAGE:" in err


@pytest.mark.parametrize(
    "args",
    [
        ["build", "only-one"],
        ["build", "a", "b.aci", "extra"],
        ["build", "--compression-level=0", "a", "b.aci"],
        ["build", "--mtime=soon", "a", "b.aci"],
        ["build", "--bogus", "a", "b.aci"],
        ["validate"],
        ["validate", "--type=bogus", "x"],
        ["cat-manifest"],
        ["patch-manifest", "in.aci"],
        ["patch-manifest", "--replace", "in.aci", "out.aci"],
        ["--bogus", "version"],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    code, out, err = run(capsys, *args)
    assert (code, out) == (2, "")
    first, *rest = err.splitlines()
    assert first.startswith("actool")
    assert rest and rest[-1].startswith("Run 'actool help")


def test_subcommand_help_flag(run_tool: Any) -> None:
    done = run_tool("actool", "build", "-h")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: actool build ")


def test_debug_shows_a_traceback(run_tool: Any, tmp_path: pathlib.Path) -> None:
    quiet = run_tool("actool", "cat-manifest", "missing.aci")
    assert (quiet.returncode, quiet.stdout) == (1, "")
    assert quiet.stderr == "actool cat-manifest: missing.aci: No such file or directory\n"
    for args, env in ((["--debug", "cat-manifest", "missing.aci"], None),
                      (["cat-manifest", "-debug", "missing.aci"], None),
                      (["cat-manifest", "missing.aci"], {"APPC_DEBUG": "1"})):
        loud = run_tool("actool", *args, env=env)
        assert loud.returncode == 1
        assert loud.stderr.startswith("Traceback (most recent call last):\n")
        assert "appc.errors.ImageError: missing.aci: No such file or directory" in loud.stderr
        assert loud.stderr.endswith(quiet.stderr)


# --- the package ---------------------------------------------------------------------


def test_format_modules_do_not_import_http(tmp_path: pathlib.Path) -> None:
    image = tmp_path / "image.aci"
    image.write_bytes(fx.compress(fx.good_tar(), "zstd"))
    code = (
        "import sys\n"
        "import appc.types, appc.schema, appc.aci\n"
        "from appc.aci import validate_archive\n"
        f"validate_archive({str(image)!r})\n"
        "print(sorted(m for m in ('requests', 'urllib3', 'http.client') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=REPO)
    assert done.stdout == "[]\n"


def test_import_appc_is_light() -> None:
    code = (
        "import sys, appc, appc.errors\n"
        "print(sorted(m for m in ('jsonschema', 'requests', 'appc.schema', 'appc.aci')"
        " if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=REPO)
    assert done.stdout == "[]\n"


def test_wheel_contents(tmp_path: pathlib.Path) -> None:
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("no setuptools in the venv: the wheel cannot be built offline")
    if int(version.split(".")[0]) < 77:
        pytest.skip(f"setuptools {version} in the venv is older than the >=77 pyproject.toml "
                    "requires (PEP 639 license string); the wheel cannot be built offline")
    # Build from a copy, so that build/ and *.egg-info do not land in the work tree.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("appc", "tools", "schemas"):
        shutil.copytree(REPO / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                    "--no-build-isolation", "--no-index", "-q", "-w", str(wheels)], check=True)
    (wheel,) = wheels.glob("appc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    schemas = {f"appc/schemas/{p.name}" for p in (REPO / "schemas").glob("*.json")}
    assert schemas and schemas <= names
    assert "appc/py.typed" in names
    assert "appc_tools/actool.py" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "actool = appc_tools.actool:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_tarfile_module_reads_our_output(layout: pathlib.Path,
                                                   tmp_path: pathlib.Path) -> None:
    # Not a reimplementation check: the standard library and GNU tar agree on our archives.
    out = tmp_path / "out.aci"
    build_image(layout, out, level=1)
    with tarfile.open(out) as tar:
        assert tar.getnames()[-1] == "manifest"
    subprocess.run(["tar", "-xzf", out, "-C", tmp_path], check=True)
    assert (tmp_path / "rootfs/bin/hello").read_bytes() == (layout / "rootfs/bin/hello").read_bytes()
