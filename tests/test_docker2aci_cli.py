"""The ``docker2aci`` command line: the original's flags, output and exit codes (notes §1).

Most runs call ``main()`` in this process (fast); the issue's "done when" run, a terminal
run and the credential checks run the console tool in a subprocess as a user would.
"""

from __future__ import annotations

import base64
import functools
import os
import pathlib
import pty
import subprocess
import sys
import tempfile

import pytest
from appc_tools.docker2aci import main

from appc.aci.extract import extract_image
from appc.aci.filetype import FileType, detect_path
from tests import docker_images as di
from tests.registry_fixtures import Registry, TokenServer, push, push_list
from tests.test_docker_common import check_files, dir_listing, read_aci, run_docker2aci


@functools.cache
def busybox() -> di.TestImage:
    return di.busybox_image()


@functools.cache
def full() -> di.TestImage:
    return di.full_config_image()


@functools.cache
def _pushed(registry: Registry, repo: str, image_name: str) -> str:
    image = {"busybox": busybox, "full": full, "empty": di.empty_config_image}[image_name]()
    push(registry, repo, "latest", image)
    return f"{registry.host}/{repo}:latest"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``main(argv)`` in this process: (status, stdout, stderr)."""
    try:
        status = main(list(argv))
    except SystemExit as exit_:  # --help
        status = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def cwd(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """A fresh current directory, and a TMPDIR of its own to see temporary files left."""
    work = tmp_path / "cwd"
    work.mkdir()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    return work


def _no_leftovers(cwd: pathlib.Path) -> None:
    assert dir_listing(cwd) == []
    assert dir_listing(cwd.parent / "tmp") == []


# --------------------------------------------------------------------------- done when


def test_done_when(registry_factory: object, tmp_path: pathlib.Path) -> None:
    """The issue's acceptance run: a fresh registry, the busybox image, the real console
    tools; the rootfs runs ``/bin/sh -c 'echo hi'`` in a chroot."""
    fresh: Registry = registry_factory()  # type: ignore[operator]
    image = busybox()
    digest = push(fresh, "library/busybox", "latest", image)
    work = tmp_path / "work"
    work.mkdir()
    proc = run_docker2aci("-insecure-allow-http", f"{fresh.host}/library/busybox:latest", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "\nGenerated ACI(s):\nlibrary-busybox-latest.aci\n"
    assert os.listdir(work) == ["library-busybox-latest.aci"]
    aci = work / "library-busybox-latest.aci"
    validate = subprocess.run(
        [sys.executable, "-m", "appc_tools.actool", "-debug", "validate", aci.name],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    assert validate.returncode == 0, validate.stderr
    assert validate.stdout == "library-busybox-latest.aci: valid app container image\n"
    content = read_aci(aci)
    check_files(content, image.files)
    host = fresh.host.replace(":", "_")
    manifest = content.manifest
    assert manifest["name"] == f"{host}/library/busybox"
    assert manifest["labels"] == [
        {
            "name": "arch",
            "value": "amd64"
            if di.host_platform()[1] == "amd64"
            else manifest["labels"][0]["value"],
        },
        {"name": "os", "value": "linux"},
        {"name": "version", "value": "latest"},
    ]
    assert manifest["app"] == {
        "exec": ["sh"],
        "user": "0",
        "group": "0",
        "environment": [{"name": "PATH", "value": di.DEFAULT_PATH}],
    }
    notes = {a["name"]: a["value"] for a in manifest["annotations"]}
    assert notes["appc.io/docker/manifesthash"] == digest
    assert notes["appc.io/docker/originalname"] == f"{fresh.host}/library/busybox:latest"
    rootfs = tmp_path / "rootfs"
    extract_image(aci, rootfs, rootfs_only=True)
    hi = subprocess.run(
        ["chroot", str(rootfs), "/bin/sh", "-c", "echo hi"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert (hi.returncode, hi.stdout) == (0, "hi\n"), hi.stderr


# --------------------------------------------------------------------------- flags and output


def test_output_dir_and_flag_spellings(
    registry: Registry, cwd: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = _pushed(registry, "cli/spellings", "busybox")
    for argv, where in [
        (["-insecure-allow-http", ref], "library"),
        (["--insecure-allow-http", f"docker://{ref}", "-o", "a"], "a"),
        ([f"docker://{ref}", "--insecure-allow-http", "--output-dir=b"], "b"),
        ([ref, "-insecure-allow-http", "-output-dir", "c/d"], "c/d"),
    ]:
        status, out, err = run(capsys, *argv)
        assert status == 0, err
        name = "cli-spellings-latest.aci"
        expected = name if where == "library" else f"{where}/{name}"
        assert out == f"\nGenerated ACI(s):\n{expected}\n"
        assert (cwd / expected).is_file()
        assert err == ""


def test_converted_volumes_and_ports(
    registry: Registry, cwd: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = _pushed(registry, "cli/full", "full")
    status, out, _ = run(capsys, "-insecure-allow-http", ref)
    assert status == 0
    assert out == (
        "\nConverted volumes:\n"
        '\tname: "volume-data", path: "/data", readOnly: false\n'
        '\tname: "volume-var-cache-app", path: "/var/cache/app", readOnly: false\n'
        "\nConverted ports:\n"
        '\tname: "53-udp", protocol: "udp", port: 53, count: 1, socketActivated: false\n'
        '\tname: "8080-tcp", protocol: "tcp", port: 8080, count: 1, socketActivated: false\n'
        '\tname: "9000", protocol: "tcp", port: 9000, count: 1, socketActivated: false\n'
        "\nGenerated ACI(s):\n"
        "cli-full-latest.aci\n"
    )


def test_nosquash_and_compression_none(
    registry: Registry, cwd: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = _pushed(registry, "cli/full", "full")
    status, out, _ = run(capsys, "-nosquash", "-compression=none", "-insecure-allow-http", ref)
    assert status == 0
    lines = out.split("Generated ACI(s):\n")[1].splitlines()
    assert len(lines) == 2
    digests = [la.digest for la in full().layers]
    assert lines == [
        f"{registry.host}/cli/full-{digests[0].replace(':', '-')}-latest-linux-amd64.aci",
        f"{registry.host}/cli/full-{digests[1]}-latest-linux-amd64.aci",
    ]
    for line in lines:
        assert detect_path(cwd / line) == FileType.TAR
    status, _, _ = run(capsys, "-compression", "none", "-insecure-allow-http", ref)
    assert detect_path(cwd / "cli-full-latest.aci") == FileType.TAR


def test_platform_flags(
    registry: Registry, cwd: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    push_list(registry, "cli/multi", "latest", di.multiarch_images(), "oci")
    ref = f"{registry.host}/cli/multi:latest"
    for argv, marker in [
        ([], b"amd64\n"),
        (["--arch", "arm64"], b"arm64\n"),
        (["-arch=arm64", "-variant=v8"], b"arm64\n"),
    ]:
        status, _, err = run(
            capsys, "-insecure-allow-http", ref, "-o", marker.decode().strip(), *argv
        )
        assert status == 0, err
        assert (
            read_aci(cwd / marker.decode().strip() / "cli-multi-latest.aci").files["etc/arch"].data
            == marker
        )
    status, out, err = run(capsys, "-insecure-allow-http", ref, "-o", "none", "--os", "windows")
    assert (status, out) == (1, "")
    assert "no image for windows/amd64" in err and "(available: linux/amd64, linux/arm64/v8)" in err
    assert not (cwd / "none").exists()


def test_unknown_compression(
    registry: Registry, cwd: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = _pushed(registry, "cli/spellings", "busybox")
    assert run(capsys, "-compression=xz", "-insecure-allow-http", ref) == (
        1,
        "",
        "Error: unknown compression method: xz\n",
    )
    _no_leftovers(cwd)


def test_image_flag_with_a_registry(cwd: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "-image", "busybox", "docker://busybox") == (
        1,
        "",
        "Error: flag --image works only with files.\n",
    )


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "-version")
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("docker2aci version ") and lines[1] == "appc version 0.8.11"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["a", "b"],
        ["-nosuchflag", "x"],
        ["-o"],
        ["--creds", "u:p", "--username", "u", "docker://x"],
        ["--username", "u", "docker://x"],
    ],
    ids=[
        "nothing",
        "two-images",
        "unknown-flag",
        "missing-value",
        "creds-and-username",
        "username-alone",
    ],
)
def test_usage_errors(
    cwd: pathlib.Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert out == ""
    assert err.startswith("docker2aci")
    assert "usage: docker2aci" in err
    _no_leftovers(cwd)


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("-h", "--help"):
        status, out, _ = run(capsys, flag)
        assert status == 0
        assert "-insecure-allow-http" in out and "-nosquash" in out


def test_debug_lines(
    registry: Registry, cwd: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = _pushed(registry, "cli/full", "full")
    status, out, err = run(capsys, "-debug", "-insecure-allow-http", ref)
    assert status == 0
    lines = err.splitlines()
    assert lines[0] == "Getting image info..."
    assert "Writing squashed ACI..." in lines
    assert lines[-1] == "ACI squashed!"
    assert sum(line.startswith("Reading layer ") for line in lines) == 2
    assert out.endswith("Generated ACI(s):\ncli-full-latest.aci\n")
    # quiet without -debug (stderr is not a terminal here)
    status, _, err = run(capsys, "-insecure-allow-http", ref)
    assert (status, err) == (0, "")


def test_progress_on_a_terminal(registry: Registry, tmp_path: pathlib.Path) -> None:
    ref = _pushed(registry, "cli/full", "full")
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "appc_tools.docker2aci", "-insecure-allow-http", ref],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=follower,
            stdin=subprocess.DEVNULL,
            check=False,
            timeout=120,
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 0
    assert b"Downloading 2/2 blobs" in b"".join(chunks)


def test_files(
    tmp_path: pathlib.Path, cwd: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = di.write_docker_save(
        {"library/busybox:latest": busybox(), "example.com/x/full:1": full()}, tmp_path / "two.tar"
    )
    status, _, err = run(capsys, str(saved))
    assert status == 1
    assert err.startswith(f"Error: {saved}: several images found, use option --image with one of: ")
    _no_leftovers(cwd)
    status, out, err = run(capsys, str(saved), "-image=x/full:1")
    assert (status, err) == (0, "")
    assert out.endswith("Generated ACI(s):\nx-full-1.aci\n")
    check_files(read_aci(cwd / "x-full-1.aci"), full().files)
    status, _, err = run(capsys, str(tmp_path / "missing.tar"))
    assert (status, err) == (1, f"Error: {tmp_path / 'missing.tar'}: no such file or directory\n")
    # a missing archive is not taken for an image on Docker Hub, even though it would parse
    assert run(capsys, "missing.tar") == (1, "", "Error: missing.tar: no such file or directory\n")
    assert run(capsys, "-image", "x", "docker://missing.tar")[2] == (
        "Error: flag --image works only with files.\n"
    )


# --------------------------------------------------------------------------- failures


def _corrupt_archive(tmp_path: pathlib.Path) -> pathlib.Path:
    good = di.write_docker_save(busybox(), tmp_path / "good.tar")
    bad = tmp_path / "bad.tar"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return bad


def test_failures_leave_nothing(
    registry: Registry,
    tls_registry: Registry,
    tmp_path: pathlib.Path,
    cwd: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ref = _pushed(registry, "cli/spellings", "busybox")
    tls_ref = _pushed(tls_registry, "cli/tls", "empty")
    cases = [
        ([f"{registry.host}/cli/spellings:nope", "-insecure-allow-http"], "HTTP 404 not found"),
        ([f"{registry.host}/cli/nothing:latest", "-insecure-allow-http"], "HTTP 404 not found"),
        ([ref], "use --insecure-allow-http"),
        ([tls_ref], "CERTIFICATE_VERIFY_FAILED"),
        ([tls_ref, "--ca-file", str(tls_registry.ca_file)], "authentication required"),
        (
            [tls_ref, "--ca-file", str(tls_registry.ca_file), "--creds", "appc:wrong"],
            "refused the credentials",
        ),
        ([str(_corrupt_archive(tmp_path)), "-nosquash"], "bad.tar"),
        (
            [ref, "-insecure-allow-http", "--tmp-dir", "/proc/nope"],
            "cannot create a temporary directory",
        ),
    ]
    for argv, message in cases:
        for extra in ([], ["-nosquash"], ["-o", "out"]):
            status, out, err = run(capsys, *argv, *extra)
            assert status == 1, (argv, err)
            assert out == ""
            assert err.startswith("Error: ") and message in err, err
            assert err.count("\n") == 1, err  # one line
            _no_leftovers(cwd)


def test_bad_output_directories(
    tmp_path: pathlib.Path, cwd: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = di.write_oci_layout(di.empty_config_image(), tmp_path / "layout", "v1")
    (cwd / "afile").write_text("x")
    for out, message in [
        ("afile", "afile: cannot create directory: a file is in the way"),
        ("afile/sub", "afile: cannot create directory: a file is in the way"),
        ("/proc/nope/out", "/proc/nope: cannot create directory: No such file or directory"),
    ]:
        for extra in ([], ["-nosquash"]):
            status, stdout, err = run(capsys, str(layout), "-o", out, *extra)
            assert (status, stdout) == (1, "")
            assert err == f"Error: {message}\n"
    assert dir_listing(cwd) == ["afile"]


def test_a_failed_conversion_removes_the_directories_it_made(
    tmp_path: pathlib.Path, cwd: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = di.empty_config_image().with_config(config={"ExposedPorts": {"99999/tcp": {}}})
    layout = di.write_oci_layout(image, tmp_path / "layout", "v1")
    for extra in ([], ["-nosquash"]):
        status, _, err = run(capsys, str(layout), "-o", "new/deeper", *extra)
        assert status == 1 and "out of range" in err
        _no_leftovers(cwd)


def test_credentials_never_shown(
    tls_registry: Registry,
    token_registry: Registry,
    token_server: TokenServer,
    tmp_path: pathlib.Path,
) -> None:
    """With -debug, right or wrong passwords, from flags or config.json: never printed."""
    tls_ref = _pushed(tls_registry, "cli/secret", "empty")
    token_ref = _pushed(token_registry, "cli/secret", "empty")
    secret = tls_registry.password or ""
    ca = ["--ca-file", str(tls_registry.ca_file)]
    home = tmp_path / "home"
    tls_registry.write_docker_config(home)
    runs = [
        ([tls_ref, *ca, "--creds", f"appc:{secret}"], 0),
        ([tls_ref, *ca, "--username", "appc", "--password", "Wr0ng-Secret"], 1),
        ([tls_ref, *ca], 0),  # from HOME/.docker/config.json
        ([token_ref, "-insecure-allow-http", "--creds", "appc:Wr0ng-Secret"], 1),
    ]
    with token_server.settings(require_basic=True):
        for argv, expected in runs:
            work = tmp_path / f"w{len(list(tmp_path.iterdir()))}"
            work.mkdir()
            proc = run_docker2aci("-debug", *argv, cwd=work, env={"HOME": str(home)})
            assert proc.returncode == expected, proc.stderr
            output = proc.stdout + proc.stderr
            for word in (secret, "Wr0ng-Secret"):
                assert word not in output
            for pair in (f"appc:{secret}", "appc:Wr0ng-Secret"):
                assert base64.b64encode(pair.encode()).decode() not in output
