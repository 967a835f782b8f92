"""What every appc command-line tool shares: Go-style flags, sub-commands, errors, exit codes.

Users of the original Go tools type ``actool -debug validate x`` and
``rkt gc -grace-period=10s``: every long flag is accepted with one or two dashes, as
``--flag=value`` or ``--flag value``, before or after positional arguments.  Errors are
one line on stderr naming the input; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, NoReturn, TextIO

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
    "one_malloc_arena",
    "tune_interpreter",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
#: The GIL switch interval of the tools (seconds; Python's default is 0.005).
GIL_SWITCH_INTERVAL = 0.001


def tune_interpreter() -> None:
    """Set the process up for the tools' thread pipelines.

    Reading and writing images run a Python thread (tar parsing, framing) beside
    threads that spend their time in C with the GIL released (inflate, deflate,
    sha512).  Each time such a thread returns from C it waits for the GIL, up to a
    whole switch interval while the Python thread runs: at the default 5 ms that
    waiting, not the work, bounded ``actool validate`` (1 ms: about 12 % faster;
    shorter gained nothing more).  A whole-process setting, so only the CLIs make it.
    """
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)


def one_malloc_arena() -> None:
    """Make glibc's malloc serve every thread from one arena (``M_ARENA_MAX=1``).

    A conversion passes hundreds of MB through buffers of 1-4 MiB made and freed on
    six threads; with an arena per thread, freed buffers stay in the arena of the
    thread that freed them and the peak RSS grows by a third (docker2aci of a 300 MB
    image: 120 MB, with one arena 98 MB, at the same speed).  Called before the
    threads start; does nothing off glibc.
    """
    import ctypes  # noqa: PLC0415 - only a conversion pays for it

    m_arena_max = -8  # from glibc's malloc.h
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(m_arena_max, 1)


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


_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


class ArgumentParser(argparse.ArgumentParser):
    """argparse, raising :class:`UsageError` instead of exiting, and without prefix matching.

    Boolean flags also take Go's ``--flag=true`` / ``--flag=false`` forms.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def _go_booleans(self, args: Sequence[str] | None) -> list[str] | None:
        if args is None:
            return None
        out = []
        for arg in args:
            flag, sep, value = arg.partition("=")
            action = self._option_string_actions.get(flag) if sep and arg.startswith("-") else None
            if action is not None and action.nargs == 0 and (value in _TRUE or value in _FALSE):
                if value in _TRUE:
                    out.append(flag)
                continue
            out.append(arg)
        return out

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        return super().parse_args(self._go_booleans(args), namespace)

    def parse_intermixed_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> Any:
        return super().parse_intermixed_args(self._go_booleans(args), namespace)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def is_terminal(stream: TextIO) -> bool:
    """True when *stream* is an interactive terminal (progress is shown only then)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Command(NamedTuple):
    """One sub-command: its name, one-line summary, usage line, flags and action.

    ``run`` returns the exit status.  A command with ``subcommands`` (``rkt image``)
    dispatches on the next word instead.  ``intermixed`` lets flags follow positional
    arguments; commands that pass arguments through (``rkt enter UUID CMD -x``) turn it off.
    (A NamedTuple, not attrs: every CLI start pays for this module's imports.)
    """

    name: str
    summary: str
    usage: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""
    subcommands: tuple[Command, ...] = ()
    intermixed: bool = True


def _no_options(parser: argparse.ArgumentParser) -> None:
    """A tool without global options beyond --debug."""


class Tool:
    """A command-line tool made of sub-commands, with the reference tools' conventions.

    :param global_options: adds the tool's global flags (``rkt --dir``); they are
        accepted before the command and after it, like cobra's persistent flags.
    :param failure_status: the exit status of a failed operation (rkt uses 254).
    """

    def __init__(
        self,
        name: str,
        description: str,
        version: str,
        commands: list[Command],
        *,
        global_options: Callable[[argparse.ArgumentParser], None] = _no_options,
        failure_status: int = EXIT_FAILURE,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.name = name
        self.description = description
        self.version = version
        self.commands = commands
        self.global_options = global_options
        self.failure_status = failure_status
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr

    def command(self, name: str, within: Sequence[Command] | None = None) -> Command | None:
        """Return the sub-command called *name*."""
        return next(
            (c for c in (self.commands if within is None else within) if c.name == name), None
        )

    def _global_parser(self, *, add_help: bool) -> ArgumentParser:
        parser = ArgumentParser(prog=self.name, add_help=add_help)
        parser.add_argument("--debug", action="store_true", help="print tracebacks on errors")
        self.global_options(parser)
        return parser

    def usage(self) -> str:
        """The global help text: NAME, USAGE, VERSION, COMMANDS, GLOBAL OPTIONS."""
        width = max(len(c.name) for c in self.commands)
        options = []
        for action in self._global_parser(add_help=False)._actions:
            flags = ", ".join(action.option_strings)
            options.append(f"   {flags:<28} {action.help or ''}")
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
            *options,
            f"   {'--help':<28} show help",
            "",
            f"Run '{self.name} help COMMAND' for a command's options.",
        ]
        return "\n".join(lines) + "\n"

    def parser_for(self, command: Command, prog: str | None = None) -> ArgumentParser:
        """The argument parser of *command* (its help is what ``help COMMAND`` prints)."""
        prog = prog or f"{self.name} {command.name}"
        parser = ArgumentParser(
            prog=prog,
            usage=f"{prog} {command.usage}",
            description=command.description or command.summary,
            parents=[self._global_parser(add_help=False)],
        )
        command.configure(parser)
        return parser

    def _command_index(self, args: Sequence[str]) -> int:
        """Where the command word is: the first argument that is neither a global flag nor its value."""
        actions = self._global_parser(add_help=True)._option_string_actions
        index = 0
        while index < len(args):
            arg = args[index]
            if not arg.startswith("-"):
                return index
            action = actions.get(arg.split("=", 1)[0])
            if action is not None and action.nargs != 0 and "=" not in arg:
                index += 1  # skip the flag's value
            index += 1
        return len(args)

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Run the tool on *argv* (default: ``sys.argv[1:]``) and return the exit status."""
        tune_interpreter()
        args = go_style(list(sys.argv[1:] if argv is None else argv))
        index = self._command_index(args)
        if any(flag in ("--help", "-h") for flag in args[:index]):
            self.stdout.write(self.usage())
            return EXIT_OK
        try:
            global_namespace = self._global_parser(add_help=False).parse_args(args[:index])
        except UsageError as err:
            self.stderr.write(f"{err}\nRun '{self.name} help' for usage.\n")
            return EXIT_USAGE
        debug = global_namespace.debug or os.environ.get("APPC_DEBUG") == "1"
        if index == len(args):
            self.stderr.write(self.usage())
            return EXIT_USAGE
        name, rest = args[index], args[index + 1 :]
        if name == "help":
            return self._help(rest)
        command = self.command(name)
        if command is None:
            self.stderr.write(
                f"{self.name}: unknown subcommand: \"{name}\"\nRun '{self.name} help' for usage.\n"
            )
            return EXIT_USAGE
        prog = f"{self.name} {name}"
        if command.subcommands:
            # Global flags may sit between the command and its sub-command (rkt image --dir=X list).
            at = self._command_index(rest)
            sub = self.command(rest[at], command.subcommands) if at < len(rest) else None
            if sub is None:
                names = ", ".join(c.name for c in command.subcommands)
                self.stderr.write(f"{prog}: give a sub-command: {names}\n")
                return EXIT_USAGE
            command, rest, prog = sub, [*rest[:at], *rest[at + 1 :]], f"{prog} {sub.name}"
        try:
            parser = self.parser_for(command, prog)
            if command.intermixed:
                namespace = parser.parse_intermixed_args(rest, namespace=global_namespace)
            else:
                namespace = parser.parse_args(rest, namespace=global_namespace)
            debug = debug or namespace.debug
            namespace.debug = debug
            return command.run(namespace)
        except UsageError as err:
            # argparse's messages name the command already; a command's own ones do not.
            text = str(err) if str(err).startswith(f"{prog}: ") else f"{prog}: {err}"
            self.stderr.write(f"{text}\nRun '{self.name} help {name}' for usage.\n")
            return EXIT_USAGE
        except AppcError as err:
            if debug:
                import traceback  # noqa: PLC0415 - only a failing --debug run needs it

                traceback.print_exc(file=self.stderr)
            self.stderr.write(f"{prog}: {err}\n")
            return self.failure_status
        except KeyboardInterrupt:
            self.stderr.write(f"{prog}: interrupted\n")
            return 130

    def _help(self, rest: Sequence[str]) -> int:
        if not rest:
            self.stdout.write(self.usage())
            return EXIT_OK
        command = self.command(rest[0])
        if command is None:
            self.stderr.write(f'{self.name}: unknown subcommand: "{rest[0]}"\n')
            return EXIT_USAGE
        if command.subcommands and len(rest) > 1:
            sub = self.command(rest[1], command.subcommands)
            if sub is not None:
                self.stdout.write(
                    self.parser_for(sub, f"{self.name} {command.name} {sub.name}").format_help()
                )
                return EXIT_OK
        if command.subcommands:
            lines = [f"{self.name} {command.name} <sub-command>", ""]
            lines += [f"   {c.name:<14} {c.summary}" for c in command.subcommands]
            self.stdout.write("\n".join(lines) + "\n")
            return EXIT_OK
        self.stdout.write(self.parser_for(command).format_help())
        return EXIT_OK
