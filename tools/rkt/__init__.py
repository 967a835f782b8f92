"""``rkt``: trust keys, fetch images, manage the image store, and run pods (App Container runtime).

The commands, flags, output lines and exit codes of rkt 1.30 (``reference/rkt.md``):
global flags (``--dir``, ``--insecure-options``, ...) before or after the command,
254 for a failed operation, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from appc_tools._cli import EXIT_OK, Command, Tool
from appc_tools.rkt import fetch, image, pods, trust
from appc_tools.rkt._common import EXIT_RKT_FAILURE, add_global_options

__all__ = ["main", "tool"]

_VERSION = "0.1.0"


def _run_version(args: argparse.Namespace) -> int:
    sys.stdout.write(
        f"rkt Version: {_VERSION}\nappc Version: 0.8.11\n"
        f"Python Version: {'.'.join(map(str, sys.version_info[:3]))}\nGo OS/Arch: linux/{_go_arch()}\n"
        "Features: -TPM +SELINUX-OFF\n"
    )
    return EXIT_OK


def _go_arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "i686": "386"}.get(machine, machine)


def _no_flags(p: argparse.ArgumentParser) -> None:
    """A command without flags."""


COMMANDS = [
    *pods.COMMANDS,
    Command(
        "fetch",
        "Fetch image(s) and store them in the local store",
        "[--pull-policy=P] [--signature=F] [--full] IMAGE...",
        fetch.configure,
        fetch.run,
    ),
    image.COMMAND,
    Command(
        "trust",
        "Trust a key for image verification",
        "[--prefix=PREFIX | --root] [--skip-fingerprint-review] [PUBKEY-LOCATION...]",
        trust.configure,
        trust.run,
    ),
    Command("version", "Print the version and exit", "", _no_flags, _run_version),
]


def tool() -> Tool:
    """The ``rkt`` command table."""
    return Tool(
        "rkt",
        "rkt, the application container runner",
        f"{_VERSION} (appc spec 0.8.11)",
        COMMANDS,
        global_options=add_global_options,
        failure_status=EXIT_RKT_FAILURE,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rkt`` console script."""
    return tool().main(argv)
