"""Security defaults: each one tested as a user meets it, through the command lines.

* signatures: ``rkt fetch`` (and ``rkt run``) refuse an image without a valid signature
  by a trusted key unless ``--insecure-options=image``, which prints a warning;
* keys only for their prefix: a key trusted for ``example.com/app`` verifies
  ``example.com/app`` and ``example.com/app/sub``, never ``example.com/apple``;
* TLS verified by default everywhere — discovery, image and key downloads, the registry
  client (``docker2aci``, ``rkt fetch docker://``) and ``actool push`` — against servers
  with a self-signed certificate: an error without ``--ca-file`` or the insecure option;
* credentials never printed: ``actool push``, ``docker2aci`` and ``rkt fetch`` with
  ``--debug``, a password in flags, in ``~/.docker/config.json`` and in a URL, against
  working and failing servers: neither the password nor its base64 form appears;
* tight modes under ``umask 0``: the store (``cas/``), trusted keys and pod directories;
* a pod cannot write the host's ``/proc/sys`` or ``/sys``, make device nodes, read
  ``/proc/kcore`` or mount, and what it leaves (a directory tree 1200 levels deep) does
  not stop ``gc`` (root and a static busybox needed).
"""

from __future__ import annotations

import base64
import os
import pathlib
import re
import stat
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator, Mapping

import pytest

from appc.discovery import AppRequest, DiscoveryOptions, discover
from appc.errors import DiscoveryError, SignatureError
from appc.fetch import Fetcher, FetchOptions
from appc.keystore import Keystore
from appc.store import ImageStore
from appc.types import ACIdentifier
from tests import docker_images as di
from tests.aci_fixtures import compress, good_entries, tar_bytes
from tests.discovery_server import (
    DiscoveryServer,
    env_without_proxies,
    free_port,
    image_bytes,
    publish,
)
from tests.gpg_keys import GpgKeys, sign_bytes
from tests.registry_fixtures import Registry, push
from tests.runtime_images import (
    Rkt,
    build_aci,
    busybox_available,
    busybox_rootfs,
    cleanup,
    image_manifest,
)

pytest_plugins = ["tests.discovery_server", "tests.gpg_keys"]

ETCD = "localhost/etcd"
TOOLS = {
    "rkt": "appc_tools.rkt",
    "actool": "appc_tools.actool",
    "docker2aci": "appc_tools.docker2aci",
}


def run(
    tool: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    umask: int | None = None,
    cwd: pathlib.Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """A tool as a user runs it (no proxies or CA bundles from the environment)."""
    return subprocess.run(
        [sys.executable, "-m", TOOLS[tool], *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env={**env_without_proxies(), **(env or {})},
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def one_line(
    done: subprocess.CompletedProcess[str], status: int, *fragments: str, allow: str = "^$"
) -> str:
    """The failure's single error line (lines matching *allow*, warnings, aside)."""
    lines = [line for line in done.stderr.splitlines() if not re.search(allow, line)]
    assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
    assert len(lines) == 1, done.stderr
    for fragment in fragments:
        assert re.search(fragment, lines[0]), (fragment, lines[0])
    return lines[0]


class Dirs:
    """rkt's directories for one test."""

    def __init__(self, tmp: pathlib.Path) -> None:
        self.tmp = tmp
        self.data = tmp / "data"
        self.local = tmp / "etc-rkt"
        self.system = tmp / "usr-lib-rkt"

    def flags(self) -> list[str]:
        return [
            f"--dir={self.data}",
            f"--local-config={self.local}",
            f"--system-config={self.system}",
        ]

    def images(self) -> list[str]:
        with ImageStore(self.data) as store:
            assert store.check() == []
            return [str(image.name) for image in store.list()]


@pytest.fixture
def dirs(tmp_path: pathlib.Path) -> Dirs:
    return Dirs(tmp_path)


def aci_named(path: pathlib.Path, name: str) -> pathlib.Path:
    path.write_bytes(image_bytes(name))
    return path


# --- signatures ------------------------------------------------------------------------------

SKIPPED = r"^image: skipping signature verification for "


def test_rkt_fetch_and_run_require_a_signature(dirs: Dirs, gpg_keys: GpgKeys) -> None:
    aci = aci_named(dirs.tmp / "app.aci", "example.com/app")
    # no signature at all
    one_line(
        run("rkt", *dirs.flags(), "fetch", str(aci)),
        254,
        r"cannot read the signature .*app\.aci\.asc",
    )
    # a signature, but no key trusted for the name
    (dirs.tmp / "app.aci.asc").write_bytes(sign_bytes(gpg_keys, gpg_keys.signer, aci.read_bytes()))
    one_line(
        run("rkt", *dirs.flags(), "fetch", str(aci)), 254, r"no keys trusted for 'example\.com/app'"
    )
    # a key trusted, but another one signed
    (dirs.tmp / "other.gpg").write_bytes(gpg_keys.other.public)
    trusted = run(
        "rkt",
        *dirs.flags(),
        "trust",
        "--skip-fingerprint-review",
        "--prefix=example.com/app",
        str(dirs.tmp / "other.gpg"),
    )
    assert trusted.returncode == 0, trusted.stderr
    one_line(run("rkt", *dirs.flags(), "fetch", str(aci)), 254, r"not trusted|signature")
    # a signature that does not match the image (one byte changed)
    data = bytearray(aci.read_bytes())
    data[-40] ^= 1
    tampered = dirs.tmp / "tampered.aci"
    tampered.write_bytes(bytes(data))
    (dirs.tmp / "tampered.aci.asc").write_bytes(
        sign_bytes(gpg_keys, gpg_keys.other, aci.read_bytes())
    )
    one_line(
        run("rkt", *dirs.flags(), "fetch", str(tampered)), 254, r"bad signature|corrupt|truncated"
    )
    # rkt run fetches the same way: nothing runs (its pod goes to exited-garbage for gc)
    one_line(
        run("rkt", *dirs.flags(), "run", str(tampered)), 254, r"bad signature|corrupt|truncated"
    )
    assert [p.parent.name for p in dirs.data.glob("pods/*/*")] == ["exited-garbage"]
    assert run("rkt", *dirs.flags(), "gc", "--grace-period=0s").returncode == 0
    assert list(dirs.data.glob("pods/*/*")) == []
    assert dirs.images() == []
    # docker images cannot be verified: refused unless told
    one_line(
        run("rkt", *dirs.flags(), "fetch", "docker://127.0.0.1:1/x:y"),
        254,
        r"docker images cannot be verified: use --insecure-options=image",
    )
    # --insecure-options=image: fetched, with a warning
    done = run("rkt", *dirs.flags(), "--insecure-options=image", "fetch", str(dirs.tmp / "app.aci"))
    assert done.returncode == 0, done.stderr
    assert re.search(SKIPPED + re.escape(str(aci)), done.stderr)
    assert dirs.images() == ["example.com/app"]


@pytest.mark.parametrize(
    ("name", "trusted"),
    [
        ("example.com/app", True),
        ("example.com/app/sub", True),
        ("example.com/apple", False),
        ("example.com/ap", False),
        ("example.com", False),
        ("other.example/example.com/app", False),
    ],
)
def test_a_key_verifies_only_names_under_its_prefix(
    tmp_path: pathlib.Path, gpg_keys: GpgKeys, name: str, trusted: bool
) -> None:
    keystore = Keystore(str(tmp_path / "etc-rkt"), str(tmp_path / "usr-lib-rkt"))
    keystore.add_prefix_key("example.com/app", gpg_keys.signer.public)
    aci = aci_named(tmp_path / "image.aci", name)
    (tmp_path / "image.aci.asc").write_bytes(
        sign_bytes(gpg_keys, gpg_keys.signer, aci.read_bytes())
    )
    with ImageStore(tmp_path / "data") as store:
        fetcher = Fetcher(store, keystore, FetchOptions())
        if trusted:
            assert str(fetcher.fetch(str(aci)).name) == name
        else:
            with pytest.raises(SignatureError, match=f"no keys trusted for {name!r}"):
                fetcher.fetch(str(aci))
            assert store.list() == []
        assert store.check() == []


def test_a_prefix_cannot_leave_the_keystore(tmp_path: pathlib.Path, gpg_keys: GpgKeys) -> None:
    (tmp_path / "key.gpg").write_bytes(gpg_keys.signer.public)
    dirs = Dirs(tmp_path)
    for prefix in ("../../x", "example.com/../../x", "/abs", "https://example.com/app"):
        done = run(
            "rkt",
            *dirs.flags(),
            "trust",
            "--skip-fingerprint-review",
            f"--prefix={prefix}",
            str(tmp_path / "key.gpg"),
        )
        assert done.returncode != 0, prefix
    assert not (tmp_path / "x").exists() and not dirs.local.exists()


# --- TLS ---------------------------------------------------------------------------------------


def test_discovery_and_downloads_verify_tls(
    dirs: Dirs, discovery_server: DiscoveryServer, gpg_keys: GpgKeys
) -> None:
    server = discovery_server
    aci = image_bytes(ETCD)
    url = publish(
        server, ETCD, aci, sign_bytes(gpg_keys, gpg_keys.signer, aci), pubkey=gpg_keys.signer.public
    )
    request = AppRequest(ACIdentifier(ETCD), {"version": "v2.0.0", "os": "linux", "arch": "amd64"})
    with pytest.raises(DiscoveryError, match=r"certificate verify failed|TLS"):
        discover(request, DiscoveryOptions(port=server.https_port))
    assert discover(
        request, DiscoveryOptions(port=server.https_port, ca_file=str(server.ca_file))
    ).endpoints
    assert discover(request, DiscoveryOptions(port=server.https_port, insecure_tls=True)).endpoints
    port = f"--discovery-port={server.https_port}"
    ca = f"--ca-file={server.ca_file}"
    # an image URL and a name, a key URL: refused without the CA, fetched with it
    one_line(
        run("rkt", *dirs.flags(), "--insecure-options=image", "fetch", url),
        254,
        "TLS error",
        allow=SKIPPED,
    )
    one_line(
        run("rkt", *dirs.flags(), port, "fetch", f"{ETCD}:v2.0.0"),
        254,
        r"certificate verify failed|TLS error",
    )
    key_url = server.url("/keys/etcd.gpg")
    one_line(
        run(
            "rkt", *dirs.flags(), "trust", "--skip-fingerprint-review", f"--prefix={ETCD}", key_url
        ),
        254,
        "TLS error",
    )
    # a CA bundle variable set to nothing does not turn verification off
    one_line(
        run(
            "rkt",
            *dirs.flags(),
            "--insecure-options=image",
            "fetch",
            url,
            env={"CURL_CA_BUNDLE": "", "REQUESTS_CA_BUNDLE": ""},
        ),
        254,
        "TLS error",
        allow=SKIPPED,
    )
    assert dirs.images() == []
    trusted = run(
        "rkt", *dirs.flags(), ca, "trust", "--skip-fingerprint-review", f"--prefix={ETCD}", key_url
    )
    assert trusted.returncode == 0, trusted.stderr
    fetched = run("rkt", *dirs.flags(), ca, port, "fetch", f"{ETCD}:v2.0.0")
    assert fetched.returncode == 0, fetched.stderr
    insecure = run("rkt", *dirs.flags(), "--insecure-options=image,tls", "fetch", url)
    assert insecure.returncode == 0, insecure.stderr
    assert dirs.images() == [ETCD]


def test_a_page_in_an_unknown_charset_is_read(discovery_server: DiscoveryServer) -> None:
    server = discovery_server
    route = server.page("/etcd", [("ac-discovery", f"{ETCD} https://x/{{name}}.{{ext}}")])
    route.content_type = "text/html; charset=no-such-charset"
    request = AppRequest(ACIdentifier(ETCD), {})
    found = discover(
        request,
        DiscoveryOptions(port=server.https_port, ca_file=str(server.ca_file)),
        public_keys=False,
    )
    assert [e.aci for e in found.endpoints] == [f"https://x/{ETCD}.aci"]


@pytest.fixture(scope="module")
def pushed(tls_registry: Registry) -> str:
    """A small image in the TLS registry (basic auth); its reference."""
    push(tls_registry, "sec/hello", "v1", di.empty_config_image())
    return tls_registry.ref("sec/hello", "v1")


def small_aci(path: pathlib.Path) -> pathlib.Path:
    path.write_bytes(compress(tar_bytes(good_entries()), "gzip"))
    return path


def test_registry_clients_verify_tls(
    tls_registry: Registry, pushed: str, tmp_path: pathlib.Path
) -> None:
    reg = tls_registry
    creds = f"--creds={reg.username}:{reg.password}"
    out = tmp_path / "out"
    out.mkdir()
    one_line(run("docker2aci", creds, pushed, cwd=out), 1, "TLS error")
    one_line(
        run("actool", "push", creds, str(small_aci(tmp_path / "x.aci")), reg.ref("sec/pushed")),
        1,
        "TLS error",
    )
    home = tmp_path / "home"
    reg.write_docker_config(home)
    one_line(
        run(
            "rkt",
            f"--dir={tmp_path / 'data'}",
            "--insecure-options=image",
            "fetch",
            pushed,
            env={"HOME": str(home)},
        ),
        254,
        "TLS error",
    )
    assert os.listdir(out) == []
    for flag in (f"--ca-file={reg.ca_file}", "--insecure-skip-verify"):
        done = run("docker2aci", creds, flag, pushed, cwd=out)
        assert done.returncode == 0, done.stderr
    # with the CA, rkt gets as far as the registry's authentication (rkt reads no
    # ~/.docker/config.json: its credentials would come from auth.d, not implemented)
    one_line(
        run(
            "rkt",
            f"--dir={tmp_path / 'data'}",
            "--insecure-options=image",
            f"--ca-file={reg.ca_file}",
            "fetch",
            pushed,
        ),
        254,
        "authentication required",
    )


# --- credentials --------------------------------------------------------------------------------

WRONG = "Wr0ng-pa55word-9f3k"
URL_SECRET = "Url-s3cret-Qz+/:@x"


def _forms(user: str, password: str) -> set[str]:
    """The password as it could leak: plain, URL-quoted, base64 of user:password and alone."""
    return {
        password,
        urllib.parse.quote(password, safe=""),
        base64.b64encode(f"{user}:{password}".encode()).decode(),
        base64.b64encode(password.encode()).decode(),
    }


def _config(home: pathlib.Path, host: str, user: str, password: str) -> dict[str, str]:
    config = home / ".docker"
    config.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (config / "config.json").write_text(f'{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}')
    return {"HOME": str(home)}


def test_credentials_are_never_printed(
    tls_registry: Registry, pushed: str, discovery_server: DiscoveryServer, tmp_path: pathlib.Path
) -> None:
    reg = tls_registry
    assert reg.username and reg.password
    secrets = (
        _forms(reg.username, reg.password) | _forms(reg.username, WRONG) | _forms("me", URL_SECRET)
    )
    ca = f"--ca-file={reg.ca_file}"
    good, bad = f"--creds={reg.username}:{reg.password}", f"--creds={reg.username}:{WRONG}"
    dead = f"docker://127.0.0.1:{free_port()}/sec/hello:v1"
    aci = str(small_aci(tmp_path / "x.aci"))
    good_home = _config(tmp_path / "good", reg.host, reg.username, reg.password)
    bad_home = _config(tmp_path / "bad", reg.host, reg.username, WRONG)
    out = tmp_path / "out"
    out.mkdir()
    server = discovery_server
    published = publish(server, ETCD, image_bytes(ETCD), None)
    with_secret = published.replace(
        "https://", f"https://me:{urllib.parse.quote(URL_SECRET, safe='')}@"
    )
    missing = with_secret.replace(".aci", "-missing.aci")
    data = tmp_path / "data"
    rkt = ["--debug", f"--dir={data}", "--insecure-options=image"]
    runs: list[tuple[str, subprocess.CompletedProcess[str], bool]] = [
        ("docker2aci flags", run("docker2aci", "--debug", ca, good, pushed, cwd=out), True),
        ("docker2aci wrong flags", run("docker2aci", "--debug", ca, bad, pushed, cwd=out), False),
        ("docker2aci flags no CA", run("docker2aci", "--debug", good, pushed, cwd=out), False),
        ("docker2aci flags dead", run("docker2aci", "--debug", good, dead, cwd=out), False),
        (
            "docker2aci config",
            run("docker2aci", "--debug", ca, pushed, cwd=out, env=good_home),
            True,
        ),
        (
            "docker2aci wrong config",
            run("docker2aci", "--debug", ca, pushed, cwd=out, env=bad_home),
            False,
        ),
        (
            "push flags",
            run(
                "actool",
                "--debug",
                "push",
                ca,
                f"--username={reg.username}",
                f"--password={reg.password}",
                aci,
                reg.ref("sec/pushed"),
            ),
            True,
        ),
        (
            "push wrong flags",
            run("actool", "--debug", "push", ca, bad, aci, reg.ref("sec/pushed")),
            False,
        ),
        (
            "push config",
            run("actool", "--debug", "push", ca, aci, reg.ref("sec/pushed"), env=good_home),
            True,
        ),
        (
            "push wrong config",
            run("actool", "--debug", "push", ca, aci, reg.ref("sec/pushed"), env=bad_home),
            False,
        ),
        ("push dead", run("actool", "--debug", "push", good, aci, dead), False),
        ("rkt docker config", run("rkt", *rkt, ca, "fetch", pushed, env=good_home), False),
        ("rkt url", run("rkt", *rkt, f"--ca-file={server.ca_file}", "fetch", with_secret), True),
        ("rkt url 404", run("rkt", *rkt, f"--ca-file={server.ca_file}", "fetch", missing), False),
        ("rkt url no CA", run("rkt", *rkt, "fetch", missing), False),
        (
            "rkt url dead",
            run(
                "rkt",
                *rkt,
                "fetch",
                f"https://me:{URL_SECRET.replace('/', '%2F')}@127.0.0.1:{free_port()}/x.aci",
            ),
            False,
        ),
    ]
    for what, done, works in runs:
        assert (done.returncode == 0) == works, (what, done.stderr)
        text = done.stdout + done.stderr
        leaked = [secret for secret in secrets if secret in text]
        assert leaked == [], f"{what}: {leaked} in {text!r}"
    # The registry saw the credentials (so they were really used), and the image URL's
    # password went to the server as Basic auth, never into the store.
    assert any(r.headers.get("authorization", "").startswith("Basic ") for r in server.log)
    with ImageStore(data) as store:
        remote = store.get_remote(published)
        assert remote is not None and remote.aci_url == published


# --- modes ------------------------------------------------------------------------------------


def _modes(root: pathlib.Path) -> Iterator[tuple[pathlib.Path, int]]:
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = pathlib.Path(directory, name)
            yield path, os.lstat(path).st_mode


def test_store_key_and_pod_modes_under_umask_0(dirs: Dirs, gpg_keys: GpgKeys) -> None:
    (dirs.tmp / "key.gpg").write_bytes(gpg_keys.signer.public)
    aci = aci_named(dirs.tmp / "app.aci", "example.com/app")
    data = dirs.tmp / "var" / "lib" / "rkt"  # parents created by the store too
    flags = [f"--dir={data}", f"--local-config={dirs.local}", f"--system-config={dirs.system}"]
    for args in (
        [
            "trust",
            "--skip-fingerprint-review",
            "--prefix=example.com/app/deep",
            str(dirs.tmp / "key.gpg"),
        ],
        ["trust", "--skip-fingerprint-review", "--root", str(dirs.tmp / "key.gpg")],
        ["--insecure-options=image", "fetch", str(aci)],
        ["--insecure-options=image", "prepare", str(aci)],
    ):
        done = run("rkt", *flags, *args, umask=0)
        assert done.returncode == 0, (args, done.stderr)
    # the store: nothing for others, temporary files for root alone
    cas = data / "cas"
    for path in (dirs.tmp / "var", dirs.tmp / "var" / "lib", data, cas):
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o750, path
    assert stat.S_IMODE(os.lstat(cas / "tmp").st_mode) == 0o700
    checked = 0
    for path, mode in _modes(cas):
        parts = path.relative_to(cas).parts
        if parts[0] == "tree" and len(parts) > 2 and parts[2] == "rootfs":
            continue  # the image's own files, behind the tree's 0750 directory
        assert mode & 0o007 == 0, f"{path}: {oct(mode)}"
        checked += 1
    assert checked > 10
    # trusted keys: files 0644, directories 0755 up to the configuration root
    keys = list(dirs.local.rglob("*"))
    assert len([k for k in keys if k.is_file()]) == 2
    for path in [dirs.local, *keys]:
        expected = 0o755 if path.is_dir() else 0o644
        assert stat.S_IMODE(os.lstat(path).st_mode) == expected, path
    # pods: 0750 directories, nothing writable by others
    pods = data / "pods"
    assert stat.S_IMODE(os.lstat(pods).st_mode) == 0o750
    (pod,) = list((pods / "prepared").iterdir())
    assert stat.S_IMODE(os.lstat(pod).st_mode) == 0o750
    for path, mode in _modes(pods):
        assert mode & 0o002 == 0 or stat.S_ISLNK(mode), f"{path}: {oct(mode)}"
    run("rkt", *flags, "gc", "--grace-period=0s", "--expire-prepared=0s")


# --- what a pod may touch ---------------------------------------------------------------------

PROC_SYS = pathlib.Path("/proc/sys/kernel/printk_ratelimit_burst")
SYS_FILE = pathlib.Path("/sys/module/printk/parameters/time")
ALLOWED_DEV = {
    "null",
    "zero",
    "full",
    "random",
    "urandom",
    "tty",
    "console",
    "pts",
    "ptmx",
    "shm",
    "fd",
    "stdin",
    "stdout",
    "stderr",
}

PROBE = r"""
echo 7 > /proc/sys/kernel/printk_ratelimit_burst; echo "proc-sys=$?"
echo N > /sys/module/printk/parameters/time; echo "sys=$?"
touch /sys/probe; echo "sys-touch=$?"
echo h > /proc/sysrq-trigger; echo "sysrq=$?"
mknod /dev/xblk b 7 0; echo "mknod-dev=$?"
mknod /xblk b 7 0; echo "mknod-root=$?"
mknod -m 666 /vol/xblk b 7 0; echo "mknod-vol=$?"
mknod /vol/xchr c 1 1; echo "mknod-vol-chr=$?"
mkfifo /tmp/fifo; echo "mkfifo=$?"
echo "kcore=$(head -c 16 /proc/kcore 2>/dev/null | wc -c)"
mount -t tmpfs none /mnt; echo "mount=$?"
echo "dev=$(ls /dev | tr '\n' ' ')"
cd /tmp && i=0 && while [ $i -lt 1200 ]; do mkdir d && cd d || break; i=$((i+1)); done
echo "depth=$i"
echo "done"
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="pods need root")
@pytest.mark.skipif(not busybox_available(), reason="needs a static busybox (busybox-static)")
def test_a_pod_cannot_touch_the_host(tmp_path: pathlib.Path) -> None:
    layout = tmp_path / "layout"
    layout.mkdir()
    busybox_rootfs(layout / "rootfs")
    (layout / "rootfs" / "mnt").mkdir()
    manifest = image_manifest(
        "example.com/probe",
        {
            "exec": ["/bin/sh", "-c", PROBE],
            "user": "0",
            "group": "0",
            "mountPoints": [{"name": "vol", "path": "/vol"}],
        },
    )
    image = build_aci(layout, manifest, tmp_path / "probe.aci")
    volume = tmp_path / "vol"
    volume.mkdir()
    host = {path: path.read_text() for path in (PROC_SYS, SYS_FILE) if path.exists()}
    rkt = Rkt(tmp_path / "data", tmp_path)
    try:
        done = rkt("run", f"--volume=vol,kind=host,source={volume}", str(image), timeout=120)
        assert "done" in done.stdout, (done.stdout, done.stderr)
        results = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
        for check in (
            "proc-sys",
            "sys",
            "sys-touch",
            "sysrq",
            "mknod-dev",
            "mknod-root",
            "mknod-vol",
            "mknod-vol-chr",
            "mount",
        ):
            assert results[check] != "0", (check, done.stdout)
        assert results["mkfifo"] == "0"  # fifos are not devices
        assert results["kcore"] == "0"
        assert set(results["dev"].split()) <= ALLOWED_DEV, results["dev"]
        assert results["depth"] == "1200"  # a tree gc must still remove (cleanup checks it)
        for path, before in host.items():
            assert path.read_text() == before, path
        assert sorted(os.listdir(volume)) == []
    finally:
        for path, before in host.items():
            if path.read_text() != before:
                path.write_text(before)
        cleanup(rkt)
