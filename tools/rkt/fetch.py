"""``rkt fetch``: bring images into the store, verified; print their IDs."""

from __future__ import annotations

import argparse
import sys

from appc_tools._cli import EXIT_OK
from appc_tools.rkt._common import fetch_options, keystore, store

__all__ = ["configure", "run", "short_id"]


def short_id(key: str) -> str:
    """rkt's short image ID: ``sha512-`` and 32 hex digits."""
    return key[: len("sha512-") + 32]


def configure(p: argparse.ArgumentParser) -> None:
    """Flags of ``rkt fetch``."""
    p.add_argument(
        "--pull-policy",
        default="update",
        choices=("never", "new", "update"),
        help="never: store only; new: store, else fetch; update: check the remote (default)",
    )
    p.add_argument("--store-only", action="store_true", help="deprecated: --pull-policy=never")
    p.add_argument("--no-store", action="store_true", help="deprecated: --pull-policy=update")
    p.add_argument(
        "--signature", metavar="FILE", help="detached signature of the image (default: IMAGE.asc)"
    )
    p.add_argument("--full", action="store_true", help="print the full image ID")
    p.add_argument("images", nargs="+", metavar="IMAGE")


def run(args: argparse.Namespace) -> int:
    """Fetch each image and print its ID."""
    from appc.fetch import Fetcher  # noqa: PLC0415

    policy = "never" if args.store_only else "update" if args.no_store else args.pull_policy
    fetcher = Fetcher(store(args), keystore(args), fetch_options(args, policy))
    for image in args.images:
        stored = fetcher.fetch(image, signature=args.signature)
        sys.stdout.write(f"{stored.key if args.full else short_id(stored.key)}\n")
        sys.stdout.flush()
    return EXIT_OK
