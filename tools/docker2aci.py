"""``docker2aci``: convert Docker and OCI images to App Container Images.

``docker2aci docker://[REGISTRY/]NAME[:TAG|@DIGEST]`` fetches from a registry v2;
``docker2aci FILE`` reads a ``docker save`` archive, an OCI layout directory or an
``oci-archive``.  The original's flags and output (``reference/docker2aci.md`` §1), plus
credentials, a CA file, platform selection and an output directory.

Deliberate differences from the original: an argument without ``docker://`` that is not
an existing file but reads as an image reference is fetched from its registry (the
original took every such argument for a file); flags may follow the image (Go's flag
package stops at the first argument); written ACIs get mode 0644 less the umask (the
original's temporary files left them 0600).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from ._cli import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    ArgumentParser,
    UsageError,
    go_style,
    is_terminal,
    one_malloc_arena,
    tune_interpreter,
)

if TYPE_CHECKING:
    from appc.docker.auth import Credentials
    from appc.docker.convert import ConvertResult

__all__ = ["main"]

_VERSION = "0.1.0"


def _parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="docker2aci",
        usage="docker2aci [flags] IMAGE   (IMAGE: docker://[REGISTRY/]NAME[:TAG|@DIGEST], or a file)",
        description="Convert a Docker or OCI image to an App Container Image.",
    )
    p.add_argument("--compression", default="gzip", help="gzip (default) or none")
    p.add_argument(
        "--debug", action="store_true", help="print progress steps and tracebacks on stderr"
    )
    p.add_argument(
        "--image", metavar="NAME[:TAG]", help="for files: which image of the archive to convert"
    )
    p.add_argument("--insecure-allow-http", action="store_true", help="allow plain HTTP registries")
    p.add_argument(
        "--insecure-skip-verify", action="store_true", help="do not verify TLS certificates"
    )
    p.add_argument(
        "--nosquash",
        action="store_true",
        help="write one ACI per layer instead of one squashed ACI",
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("--username", help="registry user name")
    p.add_argument("--password", help="registry password (see also --creds)")
    p.add_argument("--creds", metavar="USER:PASSWORD", help="registry credentials in one argument")
    p.add_argument("--ca-file", metavar="PEM", help="trust these CA certificates for the registry")
    p.add_argument(
        "--os", default="linux", help="platform to pick from a multi-platform image (default linux)"
    )
    p.add_argument(
        "--arch",
        default="amd64",
        help="architecture to pick (Go names: amd64, arm64, arm, ...; default amd64)",
    )
    p.add_argument("--variant", default="", help="architecture variant to pick (e.g. v7 for arm)")
    p.add_argument(
        "-o",
        "--output-dir",
        default=".",
        metavar="DIR",
        help="where to write the ACIs (default: the current directory)",
    )
    p.add_argument(
        "--tmp-dir",
        metavar="DIR",
        help="where to keep downloads while converting (default: $TMPDIR)",
    )
    p.add_argument("image_arg", nargs="?", metavar="IMAGE")
    return p


def _credentials(args: argparse.Namespace) -> Credentials | None:
    from appc.docker.auth import Credentials, credentials_from_string  # noqa: PLC0415

    if args.creds:
        if args.username or args.password:
            raise UsageError("docker2aci: --creds cannot be combined with --username/--password")
        return credentials_from_string(args.creds)
    if args.username or args.password:
        if not (args.username and args.password is not None):
            raise UsageError("docker2aci: --username and --password go together")
        return Credentials(args.username, args.password)
    return None


def _print_summary(result: ConvertResult, out: TextIO) -> None:
    write = out.write
    app = result.manifest.app
    if app is not None and app.mount_points:
        write("\nConverted volumes:\n")
        for mp in app.mount_points:
            write(
                f'\tname: "{mp.name}", path: "{mp.path}", readOnly: {str(mp.read_only).lower()}\n'
            )
    if app is not None and app.ports:
        write("\nConverted ports:\n")
        for port in app.ports:
            write(
                f'\tname: "{port.name}", protocol: "{port.protocol}", port: {port.port}, '
                f"count: {port.count}, socketActivated: {str(port.socket_activated).lower()}\n"
            )
    write("\nGenerated ACI(s):\n")
    for path in result.paths:
        write(f"{os.path.normpath(path)}\n")


_ARCHIVE_SUFFIXES = (".tar", ".tgz", ".gz", ".zst", ".xz", ".bz2", ".oci")


def _is_remote(text: str) -> bool:
    """``docker://...`` is remote; an existing path is a file; anything else that parses as
    an image reference is remote too (``docker2aci busybox:latest`` works without the prefix),
    unless it ends like an archive (a missing ``image.tar`` is a missing file)."""
    if text.startswith("docker://"):
        return True
    if os.path.exists(text) or text.endswith(_ARCHIVE_SUFFIXES):
        return False
    from appc.docker.reference import parse_reference  # noqa: PLC0415
    from appc.errors import ValidationError  # noqa: PLC0415

    try:
        parse_reference(text)
    except ValidationError:
        return False
    return True


def _debug_line(line: str) -> None:
    sys.stderr.write(line + "\n")


def _run(args: argparse.Namespace) -> int:
    from appc.docker.convert import ConvertOptions, convert_image  # noqa: PLC0415
    from appc.docker.image import Platform  # noqa: PLC0415

    if args.compression not in ("gzip", "none"):
        from appc.errors import ValidationError  # noqa: PLC0415

        raise ValidationError(f"unknown compression method: {args.compression}")
    one_malloc_arena()
    platform = Platform(args.os, args.arch, args.variant)
    log = _debug_line if args.debug else None
    options = ConvertOptions(squash=not args.nosquash, compression=args.compression, log=log)
    if _is_remote(args.image_arg):
        from appc.docker.reference import parse_reference  # noqa: PLC0415
        from appc.docker.registry import RegistryOptions  # noqa: PLC0415
        from appc.docker.remote import open_remote_image  # noqa: PLC0415

        if args.image:  # the original's message and status (1, not a usage error)
            from appc.errors import ValidationError  # noqa: PLC0415

            raise ValidationError("flag --image works only with files.")
        reference = parse_reference(args.image_arg)
        credentials = _credentials(args)
        if credentials is None:
            from appc.docker.auth import load_docker_credentials  # noqa: PLC0415

            credentials = load_docker_credentials(reference.credential_keys())
        registry_options = RegistryOptions(
            insecure_allow_http=args.insecure_allow_http,
            insecure_skip_verify=args.insecure_skip_verify,
            ca_file=args.ca_file,
            credentials=credentials,
        )
        progress = None
        if is_terminal(sys.stderr):
            from ._progress import TerminalProgress  # noqa: PLC0415

            progress = TerminalProgress(sys.stderr)
        if log:
            log("Getting image info...")
        try:
            with open_remote_image(
                reference,
                options=registry_options,
                platform=platform,
                workdir=args.tmp_dir,
                progress=progress,
            ) as image:
                result = convert_image(image, args.output_dir, options)
        finally:
            if progress is not None:
                progress.close()
    else:
        from appc.docker.archive import open_archive_image  # noqa: PLC0415

        if not os.path.exists(args.image_arg):
            from appc.errors import ImageError  # noqa: PLC0415

            raise ImageError("no such file or directory", source=args.image_arg)
        with open_archive_image(
            args.image_arg, image=args.image, platform=platform, workdir=args.tmp_dir
        ) as image:
            result = convert_image(image, args.output_dir, options)
    _print_summary(result, sys.stdout)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``docker2aci`` console script."""
    from appc.errors import AppcError  # noqa: PLC0415

    tune_interpreter()
    parser = _parser()
    args_list = go_style(list(sys.argv[1:] if argv is None else argv), short="ho")
    debug = False
    try:
        args = parser.parse_intermixed_args(args_list)
        debug = args.debug
        if args.version:
            sys.stdout.write(f"docker2aci version {_VERSION}\nappc version 0.8.11\n")
            return EXIT_OK
        if not args.image_arg:
            raise UsageError("docker2aci: give exactly one IMAGE")
        return _run(args)
    except UsageError as err:
        sys.stderr.write(f"{err}\n{parser.format_usage()}")
        return EXIT_USAGE
    except AppcError as err:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"Error: {err}\n")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        sys.stderr.write("Error: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
