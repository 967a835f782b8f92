"""What the rkt commands share: global options, the data directory, the store, output helpers."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from appc_tools._cli import UsageError

if TYPE_CHECKING:  # every rkt command imports this module: keep its start-up light
    import datetime

__all__ = [
    "EXIT_RKT_FAILURE",
    "add_global_options",
    "fetch_options",
    "format_time",
    "human_duration",
    "insecure_options",
    "keystore",
    "print_json",
    "stderr_line",
    "store",
]

#: rkt's generic failure status.
EXIT_RKT_FAILURE = 254


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """rkt's global flags (accepted before or after the command)."""
    parser.add_argument(
        "--dir", default="/var/lib/rkt", help="rkt data directory (default /var/lib/rkt)"
    )
    parser.add_argument(
        "--local-config",
        default="/etc/rkt",
        help="local configuration directory (default /etc/rkt)",
    )
    parser.add_argument(
        "--system-config",
        default="/usr/lib/rkt",
        help="system configuration directory (default /usr/lib/rkt)",
    )
    parser.add_argument(
        "--insecure-options",
        default="none",
        help="comma-separated checks to skip: none, image, tls, http, pubkey, ondisk, capabilities, paths, seccomp, all-fetch, all-run, all",
    )
    parser.add_argument(
        "--trust-keys-from-https",
        action="store_true",
        help="automatically trust keys discovered over HTTPS for images with no trusted key",
    )
    parser.add_argument(
        "--discovery-port",
        type=int,
        metavar="PORT",
        help="connect to this port for discovery and key fetching (default: 443, or 80 for HTTP)",
    )
    parser.add_argument("--ca-file", metavar="PEM", help="extra trusted CA certificates for HTTPS")


def insecure_options(args: argparse.Namespace) -> Any:
    """The parsed ``--insecure-options``."""
    from appc.errors import ValidationError  # noqa: PLC0415
    from appc.fetch import InsecureOptions  # noqa: PLC0415

    try:
        return InsecureOptions.parse(args.insecure_options)
    except ValidationError as err:
        raise UsageError(str(err)) from None


def store(args: argparse.Namespace) -> Any:
    """The image store of ``--dir``."""
    from appc.store import ImageStore  # noqa: PLC0415

    return ImageStore(args.dir)


def keystore(args: argparse.Namespace) -> Any:
    """The trusted keys of ``--local-config`` / ``--system-config``."""
    from appc.keystore import Keystore  # noqa: PLC0415

    return Keystore(args.local_config, args.system_config)


def fetch_options(args: argparse.Namespace, pull_policy: str) -> Any:
    """Fetch options from the global flags (stderr lines only with a reader there)."""
    from appc.fetch import FetchOptions  # noqa: PLC0415

    return FetchOptions(
        insecure=insecure_options(args),
        pull_policy=pull_policy,
        trust_keys_from_https=args.trust_keys_from_https,
        discovery_port=args.discovery_port,
        ca_file=args.ca_file,
        log=stderr_line,
    )


def stderr_line(line: str) -> None:
    """Write one line of progress or warning to stderr (the library's ``log`` callback)."""
    sys.stderr.write(line + "\n")


def format_time(moment: datetime.datetime) -> str:
    """rkt's full time format: ``2006-01-02 15:04:05.999 -0700 MST``."""
    local = moment.astimezone()
    millis = f"{local.microsecond // 1000:03d}".rstrip("0")
    text = local.strftime("%Y-%m-%d %H:%M:%S")
    if millis:
        text += f".{millis}"
    return f"{text} {local.strftime('%z')} {local.tzname() or ''}".rstrip()


def human_duration(moment: datetime.datetime, now: datetime.datetime | None = None) -> str:
    """A relative time like rkt's list output: ``2 minutes ago``."""
    import datetime  # noqa: PLC0415

    now = now or datetime.datetime.now(datetime.UTC)
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"


def print_json(value: Any, fmt: str) -> None:
    """``--format=json`` (compact, one line) or ``json-pretty`` (tab-indented)."""
    import json  # noqa: PLC0415

    if fmt == "json-pretty":
        sys.stdout.write(json.dumps(value, indent="\t") + "\n")
    else:
        sys.stdout.write(json.dumps(value, separators=(",", ":")) + "\n")
