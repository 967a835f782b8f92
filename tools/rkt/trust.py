"""``rkt trust``: trust a public key for an image name prefix, or for every image."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from appc_tools._cli import EXIT_OK, UsageError
from appc_tools.rkt._common import insecure_options, keystore

__all__ = ["configure", "run"]


def configure(p: argparse.ArgumentParser) -> None:
    """Flags of ``rkt trust``."""
    p.add_argument("--prefix", help="trust the key for images whose name starts with this prefix")
    p.add_argument(
        "--root", action="store_true", help="trust the key for every image (needs a key location)"
    )
    p.add_argument(
        "--skip-fingerprint-review",
        action="store_true",
        help="do not ask to review the fingerprint",
    )
    p.add_argument(
        "--insecure-allow-http",
        action="store_true",
        help="allow plain HTTP for discovery and key download",
    )
    p.add_argument("keys", nargs="*", metavar="PUBKEY-LOCATION", help="key files or http(s) URLs")


def _read_key(location: str, args: argparse.Namespace) -> bytes:
    from appc.errors import SignatureError  # noqa: PLC0415
    from appc.fetch import get_small  # noqa: PLC0415
    from appc.transport import Transport, TransportOptions  # noqa: PLC0415

    if location.startswith(("http://", "https://")):
        insecure = insecure_options(args)
        transport = Transport(
            TransportOptions(
                insecure_allow_http=args.insecure_allow_http or insecure.http,
                insecure_skip_verify=insecure.tls,
                ca_file=args.ca_file,
            )
        )
        try:
            return get_small(transport, location)  # a password in the URL is never printed
        finally:
            transport.close()
    path = location[len("file://") :] if location.startswith("file://") else location
    try:
        with open(path, "rb") as f:
            return f.read(1024 * 1024)
    except OSError as err:
        raise SignatureError(f"cannot read key {path}: {err.strerror or err}") from None


def _review(location: str, prefix: str, info: Any) -> bool:
    from appc.errors import SignatureError  # noqa: PLC0415
    from appc.signing import format_fingerprint  # noqa: PLC0415

    if not (os.isatty(0) and os.isatty(2)):
        raise SignatureError(
            "unable to ask user to review fingerprint due to lack of tty; use "
            "--skip-fingerprint-review, or fetch with --trust-keys-from-https"
        )
    sys.stderr.write(f'Prefix: "{prefix}"\nKey: "{location}"\n')
    sys.stderr.write(f"GPG key fingerprint is: {format_fingerprint(info.fingerprint)}\n")
    for uid in info.uids:
        sys.stderr.write(f"\t{uid}\n")
    while True:
        sys.stderr.write("Are you sure you want to trust this key (yes/no)? ")
        sys.stderr.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer in ("yes", "y"):
            return True
        if answer in ("no", "n", ""):
            return False
        sys.stderr.write("Please enter 'yes' or 'no'\n")


def run(args: argparse.Namespace) -> int:
    """Trust keys: given ones, or those discovered for ``--prefix``."""
    from appc.discovery import AppRequest, DiscoveryOptions, discover  # noqa: PLC0415
    from appc.fetch import split_credentials  # noqa: PLC0415
    from appc.keystore import check_prefix  # noqa: PLC0415
    from appc.signing import key_info  # noqa: PLC0415

    if args.root and args.prefix:
        raise UsageError("rkt trust: --root and --prefix cannot be used together")
    if args.root and not args.keys:
        raise UsageError("rkt trust: --root needs a key file or URL (no discovery for root keys)")
    if not args.root and not args.prefix:
        if args.keys:
            raise UsageError(
                "rkt trust: refusing implicit unbounded trust: give --prefix=NAME, or --root to trust the key for every image"
            )
        raise UsageError("rkt trust: give --prefix=NAME or --root")
    prefix = str(check_prefix(args.prefix)) if args.prefix else ""
    locations = list(args.keys)
    if not locations:
        insecure = insecure_options(args)
        options = DiscoveryOptions(
            insecure_http=args.insecure_allow_http or insecure.http,
            insecure_tls=insecure.tls,
            port=args.discovery_port,
            ca_file=args.ca_file,
        )
        result = discover(AppRequest(check_prefix(prefix)), options, endpoints=False)
        locations = list(result.public_keys)
    store = keystore(args)
    for given in locations:
        data = _read_key(given, args)
        keys = key_info(data)
        reviewed = False
        location = split_credentials(given)[0]  # shown without any password in it
        if not args.skip_fingerprint_review:
            if not all(_review(location, prefix or "*", info) for info in keys):
                sys.stdout.write(f'not trusting "{location}"\n')
                continue
            reviewed = True
        how = "after" if reviewed else "without"
        if args.root:
            path, _ = store.add_root_key(data)
            sys.stdout.write(f'Trusting "{location}" for all images {how} fingerprint review.\n')
            sys.stdout.write(f'Added root key at "{path}"\n')
        else:
            path, _ = store.add_prefix_key(prefix, data)
            sys.stdout.write(
                f'Trusting "{location}" for prefix "{prefix}" {how} fingerprint review.\n'
            )
            sys.stdout.write(f'Added key for prefix "{prefix}" at "{path}"\n')
    return EXIT_OK
