"""``rkt fetch``: bring images into the store, verified; print their IDs."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from appc_tools._cli import EXIT_OK, is_terminal
from appc_tools.rkt._common import fetch_options, keystore, store

__all__ = ["DownloadLine", "configure", "run", "short_id"]


def short_id(key: str) -> str:
    """rkt's short image ID: ``sha512-`` and 32 hex digits."""
    return key[: len("sha512-") + 32]


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


class DownloadLine:
    """Progress of a download as one redrawn line on a terminal (at most every 0.2 s):
    ``Downloading ACI: 1.5 MiB / 3.0 MiB``; a line ends when its download is complete."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._last = 0.0

    def __call__(self, url: str, done: int, total: int | None) -> None:
        finished = total is not None and done >= total
        now = time.monotonic()
        if not finished and now - self._last < 0.2:
            return
        self._last = now
        what = "signature" if url.endswith(".asc") else "ACI"
        size = _size(done) + (f" / {_size(total)}" if total is not None else "")
        self._stream.write(f"\rDownloading {what}: {size}\x1b[K" + ("\n" if finished else ""))
        self._stream.flush()


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
    options = fetch_options(args, policy)
    if is_terminal(sys.stderr):
        import attrs  # noqa: PLC0415 - start-up stays light

        options = attrs.evolve(options, progress=DownloadLine(sys.stderr))
    with store(args) as images_store:
        fetcher = Fetcher(images_store, keystore(args), options)
        for image in args.images:
            stored = fetcher.fetch(image, signature=args.signature)
            sys.stdout.write(f"{stored.key if args.full else short_id(stored.key)}\n")
            sys.stdout.flush()
    return EXIT_OK
