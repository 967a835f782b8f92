"""``rkt trust``, ``rkt fetch`` and ``rkt image`` against the HTTPS test server
(reference: rkt.md §1 trust/fetch/image, §3, §5; the issue's "Done when").

Most commands run in-process (``main(argv)``); the walkthrough, the fingerprint review
on a terminal (a pty), concurrent fetches and ``--debug`` run ``rkt`` as a user would.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import pty
import re
import select
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator

import attrs
import pytest
from appc_tools.rkt import main as rkt_main

from appc.aci.validate import validate_archive
from appc.store import ImageStore
from tests.discovery_server import DiscoveryServer, env_without_proxies, image_bytes, publish
from tests.gpg_keys import GpgKeys, sign_bytes

pytest_plugins = ["tests.discovery_server", "tests.gpg_keys"]

ETCD = "localhost/etcd"
SHORT_ID = re.compile(r"sha512-[0-9a-f]{32}")
FULL_ID = re.compile(r"sha512-[0-9a-f]{64}")


@attrs.frozen
class Result:
    code: int
    out: str
    err: str


@attrs.define
class Rkt:
    """rkt with its directories in a temporary place, pointed at the test server."""

    tmp: pathlib.Path
    server: DiscoveryServer
    keys: GpgKeys
    capsys: pytest.CaptureFixture[str]

    @property
    def data_dir(self) -> pathlib.Path:
        return self.tmp / "rkt"

    @property
    def local_config(self) -> pathlib.Path:
        return self.tmp / "etc-rkt"

    def flags(self, *, port: bool = True) -> list[str]:
        flags = [
            "--dir",
            str(self.data_dir),
            "--local-config",
            str(self.local_config),
            "--system-config",
            str(self.tmp / "usr-lib-rkt"),
            "--ca-file",
            str(self.server.ca_file),
        ]
        if port:
            flags += ["--discovery-port", str(self.server.https_port)]
        return flags

    def __call__(self, *args: str, port: bool = True) -> Result:
        """Run rkt in-process (global flags after the command word(s), as rkt allows)."""
        self.capsys.readouterr()
        at = 2 if args[:1] == ("image",) else 1
        code = rkt_main([*args[:at], *self.flags(port=port), *args[at:]])
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def process(self, *args: str, port: bool = True, **popen: object) -> subprocess.Popen[str]:
        """Start rkt as a separate process (global flags first, as users type them)."""
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            [sys.executable, "-m", "appc_tools.rkt", *self.flags(port=port), *args],
            text=True,
            env=env_without_proxies(),
            **popen,
        )

    def run(self, *args: str, port: bool = True, input: str | None = None) -> Result:
        """Run rkt as a separate process and wait for it."""
        process = self.process(
            *args,
            port=port,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = process.communicate(input, timeout=120)
        return Result(process.returncode, out, err)

    def images(self) -> list[str]:
        with ImageStore(self.data_dir) as store:
            assert store.check() == []
            return [str(i.name) for i in store.list()]

    def publish(self, name: str = ETCD, *, signer: str | None = "signer", **kw: object) -> bytes:
        aci = image_bytes(name, kw.pop("labels", None), hello=kw.pop("hello", b"hello\n"))  # type: ignore[arg-type]
        signature = (
            None if signer is None else sign_bytes(self.keys, getattr(self.keys, signer), aci)
        )
        publish(self.server, name, aci, signature, **kw)  # type: ignore[arg-type]
        return aci

    def key_path(self, prefix: str, key: str = "signer") -> pathlib.Path:
        return (
            self.local_config
            / "trustedkeys/prefix.d"
            / prefix
            / getattr(self.keys, key).fingerprint
        )


@pytest.fixture
def rkt(
    tmp_path: pathlib.Path,
    discovery_server: DiscoveryServer,
    gpg_keys: GpgKeys,
    capsys: pytest.CaptureFixture[str],
) -> Rkt:
    return Rkt(tmp_path, discovery_server, gpg_keys, capsys)


def _key_url(server: DiscoveryServer) -> str:
    return server.url("/keys/etcd.gpg")


def _key_of(aci: bytes) -> str:
    import gzip

    return "sha512-" + hashlib.sha512(gzip.decompress(aci)).hexdigest()[:64]


# --- the walkthrough ----------------------------------------------------------------------


def test_walkthrough_on_port_443(rkt: Rkt) -> None:
    """The issue's "Done when", typed as a user would: no port option at all."""
    if not rkt.server.on_443:
        pytest.skip("ports 443/80 are busy: test_walkthrough_with_discovery_port covers the flow")
    aci = rkt.publish(pubkey=rkt.keys.signer.public)
    trusted = rkt.run("trust", "--prefix", ETCD, "--skip-fingerprint-review", port=False)
    key_file = rkt.key_path(ETCD)
    assert trusted.out.splitlines() == [
        f'Trusting "https://localhost/keys/etcd.gpg" for prefix "{ETCD}" without fingerprint review.',
        f'Added key for prefix "{ETCD}" at "{key_file}"',
    ], trusted.err
    fetched = rkt.run("fetch", f"{ETCD}:v2.0.0", port=False)
    assert fetched.code == 0, fetched.err
    assert fetched.out == _key_of(aci)[:39] + "\n"
    assert fetched.err == "signature verified:\n  Test Signer <signer@example.com>\n"
    listed = rkt.run("image", "list", port=False)
    assert f"{ETCD}:v2.0.0" in listed.out


def test_walkthrough_with_discovery_port(rkt: Rkt) -> None:
    aci = rkt.publish(pubkey=rkt.keys.signer.public)
    trusted = rkt.run("trust", "--prefix", ETCD, "--skip-fingerprint-review")
    assert trusted.code == 0, trusted.err
    assert trusted.out.splitlines() == [
        f'Trusting "{_key_url(rkt.server)}" for prefix "{ETCD}" without fingerprint review.',
        f'Added key for prefix "{ETCD}" at "{rkt.key_path(ETCD)}"',
    ]
    assert rkt.key_path(ETCD).read_bytes() == rkt.keys.signer.public
    fetched = rkt.run("fetch", f"{ETCD}:v2.0.0")
    assert (fetched.code, fetched.err) == (
        0,
        "signature verified:\n  Test Signer <signer@example.com>\n",
    )
    assert SHORT_ID.fullmatch(fetched.out.strip())
    assert fetched.out.strip() == _key_of(aci)[: len("sha512-") + 32]
    assert rkt.images() == [ETCD]
    assert f"{ETCD}:v2.0.0" in rkt("image", "list").out


def test_fetch_full_id(rkt: Rkt) -> None:
    rkt.publish(pubkey=rkt.keys.signer.public)
    result = rkt("--trust-keys-from-https", "fetch", "--full", f"{ETCD}:v2.0.0")
    assert result.code == 0, result.err
    assert FULL_ID.fullmatch(result.out.strip())
    assert result.err.splitlines()[0] == (
        f'Trusting "{_key_url(rkt.server)}" for prefix "{ETCD}" without fingerprint review.'
    )


# --- trust --------------------------------------------------------------------------------


def test_trust_key_file_and_url(rkt: Rkt) -> None:
    key_file = rkt.keys.signer.write_public(rkt.tmp / "signer.gpg")
    rkt.server.file("/other.gpg", rkt.keys.other.public)
    url = rkt.server.url("/other.gpg")
    result = rkt(
        "trust", "--prefix=example.com/app", "--skip-fingerprint-review", str(key_file), url
    )
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        f'Trusting "{key_file}" for prefix "example.com/app" without fingerprint review.',
        f'Added key for prefix "example.com/app" at "{rkt.key_path("example.com/app")}"',
        f'Trusting "{url}" for prefix "example.com/app" without fingerprint review.',
        f'Added key for prefix "example.com/app" at "{rkt.key_path("example.com/app", "other")}"',
    ]


def test_trust_root(rkt: Rkt) -> None:
    key_file = rkt.keys.other.write_public(rkt.tmp / "root.gpg")
    result = rkt("trust", "--root", "--skip-fingerprint-review", str(key_file))
    assert result.code == 0, result.err
    path = rkt.local_config / "trustedkeys/root.d" / rkt.keys.other.fingerprint
    assert result.out.splitlines() == [
        f'Trusting "{key_file}" for all images without fingerprint review.',
        f'Added root key at "{path}"',
    ]
    assert path.read_bytes() == rkt.keys.other.public


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["key.gpg"], "refusing implicit unbounded trust"),
        ([], "give --prefix=NAME or --root"),
        (["--root"], "--root needs a key file or URL"),
        (
            ["--root", "--prefix", "example.com", "key.gpg"],
            "--root and --prefix cannot be used together",
        ),
    ],
)
def test_trust_refusals(rkt: Rkt, args: list[str], message: str) -> None:
    rkt.keys.signer.write_public(rkt.tmp / "key.gpg")
    os.chdir(rkt.tmp)
    result = rkt("trust", "--skip-fingerprint-review", *args)
    assert result.code == 2
    assert message in result.err
    assert result.out == ""
    assert not rkt.local_config.exists()


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("https://localhost/etcd", "--prefix must not contain a URL scheme"),
        ("localhost/../etc", "'..' path segment"),
        ("Localhost", "ACIdentifier"),
    ],
)
def test_trust_bad_prefix(rkt: Rkt, prefix: str, message: str) -> None:
    result = rkt("trust", "--prefix", prefix, "--skip-fingerprint-review", "key.gpg")
    assert result.code == 254
    assert message in result.err
    assert not rkt.local_config.exists()


def test_trust_failures_store_nothing(rkt: Rkt) -> None:
    # No key discoverable for the prefix.
    rkt.server.page("/etcd", [("ac-discovery", f"{ETCD} https://h/{{name}}.{{ext}}")])
    result = rkt("trust", "--prefix", ETCD, "--skip-fingerprint-review")
    assert result.code == 254
    assert "discovery failed" in result.err
    # A key URL answering 404, a file that is no key, a missing file.
    (rkt.tmp / "junk.gpg").write_bytes(b"junk")
    for location, message in (
        (rkt.server.url("/missing.gpg"), "HTTP 404 not found"),
        (str(rkt.tmp / "junk.gpg"), "no OpenPGP public key"),
        (str(rkt.tmp / "absent.gpg"), "No such file"),
    ):
        result = rkt("trust", "--prefix", ETCD, "--skip-fingerprint-review", location)
        assert result.code == 254
        assert message in result.err
    assert not rkt.local_config.exists()


def test_trust_http_key_needs_insecure_allow_http(rkt: Rkt) -> None:
    rkt.server.file("/k.gpg", rkt.keys.signer.public, scheme="http")
    url = rkt.server.url("/k.gpg", scheme="http")
    refused = rkt("trust", "--prefix", ETCD, "--skip-fingerprint-review", url)
    assert refused.code == 254
    assert "plain HTTP is not allowed" in refused.err
    allowed = rkt(
        "trust", "--prefix", ETCD, "--skip-fingerprint-review", "--insecure-allow-http", url
    )
    assert allowed.code == 0, allowed.err
    assert rkt.key_path(ETCD).exists()


def test_trust_discovery_over_http_needs_insecure_allow_http(rkt: Rkt) -> None:
    rkt.server.page(
        "/etcd",
        [("ac-discovery-pubkeys", f"{ETCD} {rkt.server.url('/k.gpg', scheme='http')}")],
        scheme="http",
    )
    rkt.server.file("/k.gpg", rkt.keys.signer.public, scheme="http")
    port = ["--discovery-port", str(rkt.server.http_port)]
    assert rkt("trust", *port, "--prefix", ETCD, "--skip-fingerprint-review").code == 254
    allowed = rkt(
        "trust", *port, "--prefix", ETCD, "--skip-fingerprint-review", "--insecure-allow-http"
    )
    assert allowed.code == 0, allowed.err


def test_trust_without_tty_refuses_review(rkt: Rkt) -> None:
    rkt.publish(pubkey=rkt.keys.signer.public)
    result = rkt.run("trust", "--prefix", ETCD)
    assert result.code == 254
    assert "unable to ask user to review fingerprint due to lack of tty" in result.err
    assert not rkt.local_config.exists()


def _on_a_pty(rkt: Rkt, args: list[str], answers: list[str]) -> tuple[int, str, str]:
    """Run rkt with stdin and stderr on a pty (stdout piped); answer each trust prompt.
    Returns the status, stdout and what the terminal showed."""
    master, slave = pty.openpty()
    process = rkt.process(*args, stdin=slave, stderr=slave, stdout=subprocess.PIPE)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    pending = list(answers)
    prompt = b"Are you sure you want to trust this key (yes/no)? "
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
                while pending and seen.count(prompt) > len(answers) - len(pending):
                    os.write(master, pending.pop(0).encode() + b"\n")
            elif process.poll() is not None:
                break
        out = process.stdout.read() if process.stdout else ""
        process.wait(timeout=30)
    finally:
        os.close(master)
        if process.stdout:
            process.stdout.close()
    return process.returncode, out, seen.decode(errors="replace").replace("\r\n", "\n")


def _fingerprint_line(keys: GpgKeys) -> str:
    fp = keys.signer.fingerprint.upper()
    groups = [fp[i : i + 4] for i in range(0, 40, 4)]
    return "GPG key fingerprint is: " + " ".join(groups[:5]) + "  " + " ".join(groups[5:])


def test_trust_review_yes(rkt: Rkt) -> None:
    rkt.publish(pubkey=rkt.keys.signer.public)
    code, out, terminal = _on_a_pty(rkt, ["trust", "--prefix", ETCD], ["maybe", "yes"])
    assert code == 0, terminal
    assert f'Prefix: "{ETCD}"' in terminal
    assert f'Key: "{_key_url(rkt.server)}"' in terminal
    assert _fingerprint_line(rkt.keys) in terminal
    assert "\tTest Signer <signer@example.com>" in terminal
    assert "Please enter 'yes' or 'no'" in terminal
    assert out.splitlines() == [
        f'Trusting "{_key_url(rkt.server)}" for prefix "{ETCD}" after fingerprint review.',
        f'Added key for prefix "{ETCD}" at "{rkt.key_path(ETCD)}"',
    ]
    assert rkt.key_path(ETCD).exists()


def test_trust_review_no(rkt: Rkt) -> None:
    rkt.publish(pubkey=rkt.keys.signer.public)
    code, out, terminal = _on_a_pty(rkt, ["trust", "--prefix", ETCD], ["no"])
    assert code == 0, terminal
    assert _fingerprint_line(rkt.keys) in terminal
    assert out == f'not trusting "{_key_url(rkt.server)}"\n'
    assert not rkt.key_path(ETCD).exists()


# --- fetch -------------------------------------------------------------------------------


def test_fetch_progress_on_a_terminal(rkt: Rkt) -> None:
    """Progress lines on stderr when it is a terminal; none when it is piped (the other tests)."""
    rkt(
        "trust",
        "--root",
        "--skip-fingerprint-review",
        str(rkt.keys.signer.write_public(rkt.tmp / "k")),
    )
    aci = rkt.publish()
    code, out, terminal = _on_a_pty(rkt, ["fetch", f"{ETCD}:v2.0.0"], [])
    assert code == 0, terminal
    assert out == _key_of(aci)[:39] + "\n"
    assert f"\rDownloading ACI: {len(aci)} B / {len(aci)} B\x1b[K\n" in terminal
    assert "Downloading signature: " in terminal
    assert "signature verified:" in terminal


def test_fetch_tampered_image_refused(rkt: Rkt) -> None:
    rkt.publish()
    rkt(
        "trust",
        "--prefix",
        ETCD,
        "--skip-fingerprint-review",
        str(rkt.keys.signer.write_public(rkt.tmp / "k")),
    )
    rkt.server.file(
        f"/images/{ETCD}-v2.0.0-linux-amd64.aci", image_bytes(ETCD, hello=b"tampered\n")
    )
    result = rkt("fetch", f"{ETCD}:v2.0.0")
    assert result.code == 254
    assert result.out == ""
    assert result.err == "rkt fetch: bad signature: the image does not match its signature\n"
    assert rkt.images() == []


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no-key", "no keys trusted for 'localhost/etcd'"),
        ("untrusted", "signed by a key that is not trusted"),
        ("no-signature", ".aci.asc: HTTP 404 not found"),
        ("404", "-linux-amd64.aci: HTTP 404 not found"),
        ("name", "image name 'localhost/other' does not match the requested 'localhost/etcd'"),
        ("no-tags", "discovery failed"),
    ],
)
def test_fetch_bad_input(rkt: Rkt, case: str, message: str) -> None:
    """The issue's bad inputs: a clear one-line error, exit 254 (rkt's failure), nothing stored."""
    if case != "no-key":
        rkt(
            "trust",
            "--root",
            "--skip-fingerprint-review",
            str(rkt.keys.signer.write_public(rkt.tmp / "k")),
        )
    if case == "untrusted":
        rkt.publish(signer="other")
    elif case == "no-signature":
        rkt.publish(signer=None)
    elif case == "404":
        rkt.publish()
        rkt.server.remove(f"/images/{ETCD}-v2.0.0-linux-amd64.aci")
    elif case == "name":
        aci = image_bytes("localhost/other")
        publish(rkt.server, ETCD, aci, sign_bytes(rkt.keys, rkt.keys.signer, aci))
    elif case == "no-tags":
        rkt.server.page("/etcd", html_text="<html></html>")
    else:
        rkt.publish()
    result = rkt("fetch", f"{ETCD}:v2.0.0")
    assert result.code == 254
    assert result.out == ""
    assert message in result.err
    assert len(result.err.splitlines()) == 1
    assert rkt.images() == []


def test_fetch_insecure_image_warns(rkt: Rkt) -> None:
    rkt.publish(signer=None)
    result = rkt("--insecure-options=image", "fetch", f"{ETCD}:v2.0.0")
    assert result.code == 0, result.err
    assert "skipping signature verification" in result.err
    assert SHORT_ID.fullmatch(result.out.strip())


def test_fetch_unknown_insecure_option(rkt: Rkt) -> None:
    result = rkt("--insecure-options=everything", "fetch", f"{ETCD}:v2.0.0")
    assert result.code == 2
    assert "unknown insecure option 'everything'" in result.err


def test_fetch_several_and_pull_policies(rkt: Rkt) -> None:
    rkt(
        "trust",
        "--root",
        "--skip-fingerprint-review",
        str(rkt.keys.signer.write_public(rkt.tmp / "k")),
    )
    never = rkt("fetch", "--pull-policy=never", f"{ETCD}:v2.0.0")
    assert never.code == 254
    assert "not found in the store" in never.err
    rkt.publish(etag='"1"')
    local = rkt.tmp / "local.aci"
    local.write_bytes(image_bytes("localhost/local"))
    local.with_name("local.aci.asc").write_bytes(
        sign_bytes(rkt.keys, rkt.keys.signer, local.read_bytes())
    )
    result = rkt("fetch", f"{ETCD}:v2.0.0", str(local))
    assert result.code == 0, result.err
    assert [len(line) for line in result.out.splitlines()] == [39, 39]
    rkt.server.log.clear()
    again = rkt("fetch", "--store-only", f"{ETCD}:v2.0.0")
    assert again.out == result.out.splitlines()[0] + "\n"
    assert rkt.server.requests() == []
    updated = rkt("fetch", f"{ETCD}:v2.0.0")  # default: update, answered 304
    assert updated.out == again.out
    assert rkt.server.requests()[-1] == f"/images/{ETCD}-v2.0.0-linux-amd64.aci".join(
        ("https:", "")
    )
    by_id = rkt("fetch", result.out.splitlines()[1])
    assert by_id.out == result.out.splitlines()[1] + "\n"


def test_concurrent_fetches(rkt: Rkt) -> None:
    """Two processes fetching the same image at once leave one consistent entry."""
    rkt(
        "trust",
        "--prefix",
        ETCD,
        "--skip-fingerprint-review",
        str(rkt.keys.signer.write_public(rkt.tmp / "k")),
    )
    aci = rkt.publish(delay=0.3)
    processes = [
        rkt.process("fetch", f"{ETCD}:v2.0.0", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    results = [(*p.communicate(timeout=120), p.returncode) for p in processes]
    assert [r[2] for r in results] == [0, 0], results
    assert {r[0] for r in results} == {_key_of(aci)[:39] + "\n"}
    assert rkt.images() == [ETCD]
    with ImageStore(rkt.data_dir) as store:
        assert os.listdir(store.tmp_dir) == []
    assert rkt.server.requests().count(f"https:/images/{ETCD}-v2.0.0-linux-amd64.aci") == 2


def test_debug_never_prints_credentials_or_keys(rkt: Rkt) -> None:
    key_file = rkt.keys.signer.write_public(rkt.tmp / "k.gpg")
    netloc = rkt.server.url("/").split("://", 1)[1].rstrip("/")
    url = f"https://alice:s3cr3t-pw@{netloc}/private/missing.aci"
    fetched = rkt.run("--debug", "fetch", url)
    assert fetched.code == 254
    assert "Traceback" in fetched.err
    assert "s3cr3t" not in fetched.out + fetched.err
    trusted = rkt.run(
        "--debug",
        "trust",
        "--prefix",
        ETCD,
        "--skip-fingerprint-review",
        f"https://alice:s3cr3t-pw@{netloc}/missing.gpg",
    )
    assert trusted.code == 254
    assert "s3cr3t" not in trusted.out + trusted.err
    rkt.run("--debug", "trust", "--prefix", ETCD, "--skip-fingerprint-review", str(key_file))
    rkt.publish(signer="other")
    refused = rkt.run("--debug", "fetch", f"{ETCD}:v2.0.0")
    assert refused.code == 254
    assert "not trusted" in refused.err
    assert "BEGIN PGP" not in refused.out + refused.err


# --- image ------------------------------------------------------------------------------


@pytest.fixture
def stored(rkt: Rkt) -> list[str]:
    """Two images in the store (imported directly): their full keys, oldest first."""
    keys = []
    with ImageStore(rkt.data_dir) as store:
        for name, labels in (("example.com/one", {"version": "1.0"}), ("example.com/two", None)):
            aci = rkt.tmp / f"{name.split('/')[1]}.aci"
            aci.write_bytes(image_bytes(name, labels if labels is not None else {"os": "linux"}))
            keys.append(store.import_image(aci, latest=labels is None).key)
            time.sleep(0.01)
    return keys


def test_image_list(rkt: Rkt, stored: list[str]) -> None:
    result = rkt("image", "list")
    assert result.code == 0, result.err
    header, *rows = [
        [cell.strip() for cell in line.split("\t")] for line in result.out.splitlines()
    ]
    assert header == ["ID", "NAME", "IMPORT TIME", "LAST USED", "SIZE", "LATEST"]
    assert [r[0] for r in rows] == [k[: len("sha512-") + 12] for k in stored]
    assert [r[1] for r in rows] == ["example.com/one:1.0", "example.com/two"]
    assert [r[5] for r in rows] == ["false", "true"]
    assert all(r[2] in ("just now", "1 second ago") or r[2].endswith("seconds ago") for r in rows)
    assert all(re.fullmatch(r"\d+(B|KiB)", r[4]) for r in rows)


def test_image_list_full_and_no_legend(rkt: Rkt, stored: list[str]) -> None:
    result = rkt("image", "list", "--full", "--no-legend")
    rows = [[cell.strip() for cell in line.split("\t")] for line in result.out.splitlines()]
    assert [r[0] for r in rows] == stored
    with ImageStore(rkt.data_dir) as store:
        sizes = [str(store.get(k).size) for k in stored]
    assert [r[4] for r in rows] == sizes
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? [+-]\d{4} \w+", r[2]) for r in rows
    )
    fields = rkt("image", "list", "--no-legend", "--fields=name,id", "--order=desc")
    assert [line.split("\t")[0].strip() for line in fields.out.splitlines()] == [
        "example.com/two",
        "example.com/one:1.0",
    ]
    bad = rkt("image", "list", "--fields=name,colour")
    assert bad.code == 2
    assert "unknown field(s) colour" in bad.err


def test_image_list_json(rkt: Rkt, stored: list[str]) -> None:
    result = rkt("image", "list", "--format=json")
    assert len(result.out.splitlines()) == 1
    document = json.loads(result.out)
    assert [d["id"] for d in document] == stored
    assert [d["name"] for d in document] == ["example.com/one:1.0", "example.com/two"]
    assert set(document[0]) == {"id", "name", "import_time", "last_used_time", "size"}
    assert all(
        isinstance(d["import_time"], int) and d["import_time"] > 1_600_000_000 * 10**9
        for d in document
    )
    pretty = rkt("image", "list", "--format=json-pretty")
    assert json.loads(pretty.out) == document
    assert "\n\t{" in pretty.out


def test_image_list_empty(rkt: Rkt) -> None:
    assert rkt("image", "list", "--no-legend").out == ""
    assert json.loads(rkt("image", "list", "--format=json").out) == []


def test_image_rm(rkt: Rkt, stored: list[str]) -> None:
    result = rkt("image", "rm", stored[0][:15], "example.com/two")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [f'successfully removed aci for image: "{k}"' for k in stored]
    assert result.err == "2 image(s) successfully removed\n"
    assert rkt.images() == []
    missing = rkt("image", "rm", stored[0])
    assert missing.code == 254
    assert "no image with ID" in missing.err
    assert missing.err.endswith("0 image(s) successfully removed\n")


def test_image_gc(rkt: Rkt, stored: list[str]) -> None:
    kept = rkt("image", "gc")
    assert (kept.code, kept.out) == (0, "")
    assert len(rkt.images()) == 2
    result = rkt("image", "gc", "--grace-period=0s")
    assert result.code == 0, result.err
    assert sorted(result.out.splitlines()) == sorted(
        f'successfully removed aci for image: "{k}"' for k in stored
    )
    assert rkt.images() == []


def test_image_export(rkt: Rkt, stored: list[str]) -> None:
    target = rkt.tmp / "exported.aci"
    result = rkt("image", "export", "example.com/one:1.0", str(target))
    assert (result.code, result.out, result.err) == (0, "", "")
    validate_archive(target)
    assert "sha512-" + hashlib.sha512(target.read_bytes()).hexdigest()[:64] == stored[0]
    refused = rkt("image", "export", stored[1], str(target))
    assert refused.code == 254
    assert "exists" in refused.err
    assert rkt("image", "export", "--overwrite", stored[1], str(target)).code == 0
    assert "sha512-" + hashlib.sha512(target.read_bytes()).hexdigest()[:64] == stored[1]
    missing = rkt("image", "export", "example.com/none", str(rkt.tmp / "none.aci"))
    assert missing.code == 254
    assert not (rkt.tmp / "none.aci").exists()


def _tree(root: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_image_extract_and_render(rkt: Rkt, stored: list[str]) -> None:
    full = rkt.tmp / "full"
    assert rkt("image", "extract", stored[0], str(full)).code == 0
    assert (full / "manifest").is_file()
    assert (full / "rootfs/hello.txt").read_bytes() == b"hello\n"
    assert (full / "rootfs/etc/motd").is_symlink()
    only = rkt.tmp / "only"
    assert rkt("image", "extract", "--rootfs-only", stored[0], str(only)).code == 0
    assert _tree(only) == [
        p.removeprefix("rootfs/") for p in _tree(full) if p.startswith("rootfs/")
    ]
    again = rkt("image", "extract", stored[0], str(full))
    assert again.code == 254
    assert "exists" in again.err
    assert rkt("image", "extract", "--overwrite", "--rootfs-only", stored[1], str(full)).code == 0
    assert not (full / "manifest").exists()
    rendered = rkt.tmp / "rendered"
    result = rkt("image", "render", "example.com/two", str(rendered))
    assert result.code == 0, result.err
    assert (rendered / "rootfs/hello.txt").read_bytes() == b"hello\n"
    assert json.loads((rendered / "manifest").read_text())["name"] == "example.com/two"
    rootfs = rkt.tmp / "rendered-rootfs"
    assert rkt("image", "render", "--rootfs-only", stored[1], str(rootfs)).code == 0
    assert (rootfs / "hello.txt").exists() and not (rootfs / "manifest").exists()


def test_image_cat_manifest(rkt: Rkt, stored: list[str]) -> None:
    result = rkt("image", "cat-manifest", stored[0])
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert document["name"] == "example.com/one"
    assert result.out.startswith("{\n    ")
    with ImageStore(rkt.data_dir) as store:
        assert document == json.loads(store.manifest_bytes(stored[0]))
    compact = rkt("image", "cat-manifest", "--no-pretty-print", "example.com/two")
    assert len(compact.out.splitlines()) == 1
    assert json.loads(compact.out)["name"] == "example.com/two"
    missing = rkt("image", "cat-manifest", "sha512-00")
    assert missing.code == 254


def test_image_needs_subcommand(rkt: Rkt) -> None:
    result = rkt("image")
    assert result.code == 2
    assert "list, rm, gc, export, extract, render, cat-manifest" in result.err


def test_exported_image_is_a_tar(rkt: Rkt, stored: list[str]) -> None:
    target = rkt.tmp / "x.aci"
    rkt("image", "export", stored[1], str(target))
    with tarfile.open(target) as archive:
        assert "manifest" in archive.getnames()


@pytest.fixture(autouse=True)
def _keep_cwd() -> Iterator[None]:
    cwd = os.getcwd()
    yield
    os.chdir(cwd)


def test_image_extract_targets(rkt: Rkt, stored: list[str]) -> None:
    """Any existing target needs --overwrite (as rkt); it replaces a file or a symlink
    (never what the link points to); a failure leaves the old target as it was."""
    empty = rkt.tmp / "empty"
    empty.mkdir()
    assert "exists (try --overwrite)" in rkt("image", "extract", stored[0], str(empty)).err
    assert rkt("image", "extract", "--overwrite", stored[0], str(empty)).code == 0
    assert (empty / "manifest").is_file()
    a_file = rkt.tmp / "a-file"
    a_file.write_text("x")
    refused = rkt("image", "extract", stored[0], str(a_file))
    assert refused.code == 254
    assert a_file.read_text() == "x"
    replaced = rkt("image", "extract", "--overwrite", stored[0], str(a_file))
    assert replaced.code == 0, replaced.err
    assert (a_file / "manifest").is_file()
    precious = rkt.tmp / "precious"
    precious.mkdir()
    (precious / "keep").write_text("keep")
    link = rkt.tmp / "link"
    link.symlink_to(precious)
    linked = rkt("image", "render", "--overwrite", stored[0], str(link))
    assert linked.code == 0, linked.err
    assert not link.is_symlink() and (link / "manifest").is_file()
    assert (precious / "keep").read_text() == "keep"
    # A corrupt blob: the extraction fails and the existing target stays.
    with ImageStore(rkt.data_dir) as store:
        blob = pathlib.Path(store.blob_path(stored[1]))
    data = bytearray(blob.read_bytes())
    data[600] ^= 0xFF
    blob.write_bytes(bytes(data))
    failed = rkt("image", "extract", "--overwrite", stored[1], str(empty))
    assert failed.code == 254
    assert "corrupt" in failed.err
    assert (empty / "manifest").is_file()
    assert json.loads((empty / "manifest").read_text())["name"] == "example.com/one"


def test_download_line() -> None:
    import io

    from appc_tools.rkt.fetch import DownloadLine

    stream = io.StringIO()
    line = DownloadLine(stream)
    line("https://h/x.aci", 1536, 3 * 1024 * 1024)
    line("https://h/x.aci", 2048, 3 * 1024 * 1024)  # within 0.2 s: not drawn
    line("https://h/x.aci", 3 * 1024 * 1024, 3 * 1024 * 1024)  # complete: drawn, line ended
    line("https://h/x.aci.asc", 100, 100)
    assert stream.getvalue().split("\x1b[K") == [
        "\rDownloading ACI: 1.5 KiB / 3.0 MiB",
        "\rDownloading ACI: 3.0 MiB / 3.0 MiB",
        "\n\rDownloading signature: 100 B / 100 B",
        "\n",
    ]
