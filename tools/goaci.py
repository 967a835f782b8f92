"""``goaci`` / ``acigo``: build a Go program into an App Container Image.

``goaci [go] [flags] PACKAGE`` — the 2016 tool's ``go`` sub-command and its flags
(``reference/goaci.md`` §2), and the walkthrough's older form without a sub-command
(``acigo github.com/coreos/etcd``); both names run this module.  Flags take one or two
dashes, ``-flag=value`` or ``-flag value``, before or after the package.  The work is
done by :func:`appc.goaci.build_go_aci`; this module parses, prints and maps errors to
exit codes (0 ok, 1 failure, 2 usage).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING

# Relative, so that mypy resolves it both through the Makefile's appc_tools link and when
# given this file alone (as tools._cli); at run time it is appc_tools._cli.
from ._cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, ArgumentParser, UsageError, go_style

if TYPE_CHECKING:
    from appc.goaci import GoACIOptions

__all__ = ["main"]

_VERSION = "0.1.0"

_EPILOG = """\
PACKAGE is one of:
  ./dir, /abs/dir     a local module, or a package inside one; a main package is built,
                      otherwise every main package below it is a candidate (./dir/... too)
  path@version        go install path@version through your GOPROXY / module cache
  import/path         a package of the module you are in; outside a module, path@latest

examples:
  acigo ./examples/hello
  goaci go -port www:tcp:5000 -o hello.aci ./examples/hello
  goaci -use-binary etcdctl go.etcd.io/etcd/etcdctl/v3@v3.5.9
  goaci --goarch arm64 --asset '/etc/app.conf:<PROJPATH>/app.conf' ./cmd/app

The Go toolchain runs with your environment (GOPROXY, GOFLAGS, GOPATH, GOMODCACHE,
GOCACHE, HOME ...), CGO_ENABLED=0 unless --cgo, and -trimpath -ldflags='-s -w'.
GOACI_DEBUG=1 or --debug prints every step on stderr.
"""


def _prog() -> str:
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name in ("goaci", "acigo") else "goaci"


def _parser(prog: str) -> ArgumentParser:
    p = ArgumentParser(
        prog=prog,
        usage=f"{prog} [go] [flags] PACKAGE",
        description="Build a Go main package into an App Container Image (writes NAME.aci).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = p.add_argument
    add("--exec", action="append", default=[], metavar="ARG",
        help="an argument appended to the app's exec after the binary (repeatable; "
        "use -exec=-flag for values starting with a dash)")
    add("--use-binary", default="", metavar="NAME", help="which binary to package when several are built")
    add("--asset", action="append", default=[], metavar="ACIPATH:LOCALPATH",
        help="copy LOCALPATH to ACIPATH in the image (repeatable); <GOPATH> and <PROJPATH> "
        "(the main package's module directory) are substituted")
    add("--keep-tmp-dir", action="store_true", help="keep the temporary work directory")
    add("--tmp-dir", metavar="DIR", help="use DIR as the work directory")
    add("--reuse-tmp-dir", metavar="DIR", help="package the build kept in DIR again, without building")
    add("--go-binary", metavar="PATH", help="the go tool to run (default: go on PATH)")
    add("--go-path", metavar="DIR", help="GOPATH for the go command (module cache, <GOPATH>)")
    add("-o", "--output", metavar="FILE", help="the image file (default: BINARY.aci here)")
    add("--name", help="the image name (default: the import path, lower-cased)")
    add("--label", action="append", default=[], metavar="NAME=VALUE", help="an image label (repeatable)")
    add("--goos", help="target GOOS (default: go env GOOS)")
    add("--goarch", help="target GOARCH (default: go env GOARCH)")
    add("--goarm", help="target GOARM for --goarch arm (5, 6 or 7)")
    add("--env", action="append", default=[], metavar="NAME=VALUE", help="an app environment variable (repeatable)")
    add("--port", action="append", default=[], metavar="NAME:PROTOCOL:PORT",
        help="a port the app listens on, e.g. www:tcp:5000 (NAME:PROTOCOL:PORT[:COUNT]; repeatable)")
    add("--mount", action="append", default=[], metavar="NAME:PATH",
        help="a mount point, e.g. data:/var/lib/app (NAME:PATH[:ro]; repeatable)")
    add("--build-flag", action="append", default=[], metavar="FLAG",
        help="a flag for go build / go install, e.g. --build-flag=-tags=netgo (repeatable)")
    add("--cgo", action="store_true", help="build with CGO_ENABLED=1 (a dynamic binary brings its libraries)")
    add("--debug", action="store_true", help="print each step, and tracebacks on errors")
    add("--version", action="store_true", help="print the version and exit")
    add("args", nargs="*", metavar="PACKAGE")
    return p


def _package(prog: str, args: Sequence[str]) -> str:
    """The one package, after an optional ``go`` sub-command (a local directory named
    ``go`` is ``./go``)."""
    rest = list(args)
    if rest and rest[0] == "cmake":
        raise UsageError(f"{prog}: the cmake builder of the 2016 goaci is not implemented; only 'go'")
    if len(rest) > 1 and rest[0] == "go":
        rest = rest[1:]
    if len(rest) != 1:
        raise UsageError(f"{prog}: expected exactly one package to build, got {len(rest)}")
    return rest[0]


def _options(prog: str, args: argparse.Namespace, package: str) -> GoACIOptions:
    """The library's options; a flag value that makes no valid manifest is a usage error."""
    from appc.errors import ValidationError  # noqa: PLC0415

    if args.tmp_dir and args.reuse_tmp_dir and os.path.abspath(args.tmp_dir) != os.path.abspath(args.reuse_tmp_dir):
        raise UsageError(f"{prog}: -tmp-dir and -reuse-tmp-dir cannot be used together (unless equal)")
    try:
        return _make_options(args, package)
    except ValidationError as err:
        raise UsageError(f"{prog}: {err}") from None


def _make_options(args: argparse.Namespace, package: str) -> GoACIOptions:
    from appc.goaci import GoACIOptions, parse_key_value, parse_mount, parse_port  # noqa: PLC0415

    labels = [parse_key_value(text, "label") for text in args.label]
    environment = [parse_key_value(text, "environment variable") for text in args.env]
    return GoACIOptions(
        package=package,
        exec_args=args.exec,
        use_binary=args.use_binary,
        assets=args.asset,
        keep_tmp_dir=args.keep_tmp_dir,
        tmp_dir=args.tmp_dir,
        reuse_tmp_dir=args.reuse_tmp_dir,
        go_binary=args.go_binary,
        go_path=args.go_path,
        output=args.output,
        name=args.name,
        labels=labels,
        goos=args.goos,
        goarch=args.goarch,
        goarm=args.goarm,
        environment=environment,
        ports=[parse_port(text) for text in args.port],
        mount_points=[parse_mount(text) for text in args.mount],
        build_flags=args.build_flag,
        cgo=args.cgo,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``goaci`` and ``acigo`` console scripts."""
    from appc.errors import AppcError, BuildError  # noqa: PLC0415

    prog = _prog()
    parser = _parser(prog)
    debug = os.environ.get("GOACI_DEBUG", "") not in ("", "0")
    kept: str | None = None
    try:
        args = parser.parse_intermixed_args(go_style(list(sys.argv[1:] if argv is None else argv), short="ho"))
        debug = debug or args.debug
        if args.version:
            sys.stdout.write(f"{prog} version {_VERSION}\nappc version 0.8.11\n")
            return EXIT_OK
        package = _package(prog, args.args)
        if args.keep_tmp_dir and not args.tmp_dir and not args.reuse_tmp_dir:
            # Choose the directory here so that it can be named even when the build fails.
            args.tmp_dir = kept = tempfile.mkdtemp(prefix="goaci-")
        elif args.keep_tmp_dir:
            kept = args.tmp_dir or args.reuse_tmp_dir
        options = _options(prog, args, package)
        from appc.goaci import build_go_aci  # noqa: PLC0415

        def log(line: str) -> None:
            sys.stderr.write(f"{prog}: {line}\n")

        result = build_go_aci(options, log=log if debug else None)
        sys.stdout.write(f"Wrote {args.output or os.path.basename(result.output)}\n")
        return EXIT_OK
    except UsageError as err:
        sys.stderr.write(f"{err}\n{parser.format_usage()}")
        return EXIT_USAGE
    except AppcError as err:
        if debug:
            traceback.print_exc()
        if isinstance(err, BuildError) and err.output:
            sys.stderr.write(err.output if err.output.endswith("\n") else err.output + "\n")
        sys.stderr.write(f"{prog}: {err}\n")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return 130
    finally:
        if kept:
            sys.stderr.write(f"{prog}: kept the work directory {kept}\n")


if __name__ == "__main__":
    sys.exit(main())
