"""What every appc command-line tool shares: Go-style flags, sub-commands, errors, exit codes.

Users of the original Go tools type ``actool -debug validate x`` and
``rkt gc -grace-period=10s``: every long flag is accepted with one or two dashes, as
``--flag=value`` or ``--flag value``, before or after positional arguments.  Errors are
one line on stderr naming the input; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

import attrs

from appc.errors import AppcError

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "ArgumentParser",
    "Command",
    "Tool",
    "UsageError",
    "go_style",
    "is_terminal",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """The command line is wrong: print the message and exit with status 2."""


def go_style(argv: Sequence[str], *, short: str = "h") -> list[str]:
    """Rewrite Go-style ``-flag`` arguments to ``--flag`` (short flags in *short* stay as they are).

    Arguments after a bare ``--`` are left alone, as are negative numbers and ``-``.

    >>> go_style(["-debug", "validate", "-type=layout", "x", "-h"])
    ['--debug', 'validate', '--type=layout', 'x', '-h']
    """
    out: list[str] = []
    for index, arg in enumerate(argv):
        if arg == "--":
            out.extend(argv[index:])
            break
        if (
            arg.startswith("-")
            and not arg.startswith("--")
            and len(arg) > 2
            and arg[1] not in "0123456789."
            and not (arg[1] in short and (len(arg) == 2 or arg[2] == "="))
        ):
            out.append("-" + arg)
        else:
            out.append(arg)
    return out


class ArgumentParser(argparse.ArgumentParser):
    """argparse, raising :class:`UsageError` instead of exiting, and without prefix matching."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def is_terminal(stream: TextIO) -> bool:
    """True when *stream* is an interactive terminal (progress is shown only then)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@attrs.frozen
class Command:
    """One sub-command: its name, one-line summary, usage line, flags and action.

    ``run`` returns the exit status.
    """

    name: str
    summary: str
    usage: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""


@attrs.define
class Tool:
    """A command-line tool made of sub-commands, with the reference tools' conventions."""

    name: str
    description: str
    version: str
    commands: list[Command]
    stdout: TextIO = attrs.field(factory=lambda: sys.stdout)
    stderr: TextIO = attrs.field(factory=lambda: sys.stderr)

    def command(self, name: str) -> Command | None:
        """Return the sub-command called *name*."""
        return next((c for c in self.commands if c.name == name), None)

    def usage(self) -> str:
        """The global help text: NAME, USAGE, VERSION, COMMANDS, GLOBAL OPTIONS."""
        width = max(len(c.name) for c in self.commands)
        lines = [
            "NAME:",
            f"   {self.name} - {self.description}",
            "",
            "USAGE:",
            f"   {self.name} [global options] <command> [command options] [arguments...]",
            "",
            "VERSION:",
            f"   {self.version}",
            "",
            "COMMANDS:",
            *(f"   {c.name.ljust(width)}  {c.summary}" for c in self.commands),
            "",
            "GLOBAL OPTIONS:",
            "   --debug    print debug information (tracebacks) to stderr",
            "   --help     show help",
            "",
            f"Run '{self.name} help COMMAND' for a command's options.",
        ]
        return "\n".join(lines) + "\n"

    def parser_for(self, command: Command) -> ArgumentParser:
        """The argument parser of *command* (its help is what ``help COMMAND`` prints)."""
        parser = ArgumentParser(
            prog=f"{self.name} {command.name}",
            usage=f"{self.name} {command.name} {command.usage}",
            description=command.description or command.summary,
        )
        parser.add_argument("--debug", action="store_true", help="print tracebacks on errors")
        command.configure(parser)
        return parser

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Run the tool on *argv* (default: ``sys.argv[1:]``) and return the exit status."""
        args = go_style(list(sys.argv[1:] if argv is None else argv))
        index = self._command_index(args)
        debug = os.environ.get("APPC_DEBUG") == "1"
        for flag in args[:index]:
            if flag in ("--help", "-h"):
                self.stdout.write(self.usage())
                return EXIT_OK
            if flag != "--debug":
                self.stderr.write(
                    f"{self.name}: unknown global flag {flag!r}\nRun '{self.name} help' for usage.\n"
                )
                return EXIT_USAGE
            debug = True
        if index == len(args):
            self.stderr.write(self.usage())
            return EXIT_USAGE
        name, rest = args[index], args[index + 1 :]
        if name == "help":
            return self._help(rest)
        command = self.command(name)
        if command is None:
            self.stderr.write(
                f'{self.name}: unknown subcommand: "{name}"\nRun \'{self.name} help\' for usage.\n'
            )
            return EXIT_USAGE
        try:
            namespace = self.parser_for(command).parse_intermixed_args(rest)
            debug = debug or namespace.debug
            namespace.debug = debug
            return command.run(namespace)
        except UsageError as err:
            self.stderr.write(f"{err}\nRun '{self.name} help {name}' for usage.\n")
            return EXIT_USAGE
        except AppcError as err:
            if debug:
                traceback.print_exc(file=self.stderr)
            self.stderr.write(f"{self.name} {name}: {err}\n")
            return EXIT_FAILURE
        except KeyboardInterrupt:
            self.stderr.write(f"{self.name} {name}: interrupted\n")
            return 130

    @staticmethod
    def _command_index(args: Sequence[str]) -> int:
        for index, arg in enumerate(args):
            if not arg.startswith("-"):
                return index
        return len(args)

    def _help(self, rest: Sequence[str]) -> int:
        if not rest:
            self.stdout.write(self.usage())
            return EXIT_OK
        command = self.command(rest[0])
        if command is None:
            self.stderr.write(f'{self.name}: unknown subcommand: "{rest[0]}"\n')
            return EXIT_USAGE
        self.stdout.write(self.parser_for(command).format_help())
        return EXIT_OK
