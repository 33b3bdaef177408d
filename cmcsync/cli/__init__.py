"""The ``cmcsync`` command.

Subcommands: ``demo``, ``stream``, ``simulate``, ``record``, ``replay``, ``plugins`` and
``doctor``; ``cmcsync COMMAND --help`` documents each.

Exit codes (a contract, see the docs): 0 done (count, duration or Ctrl-C); 1 the command's
own failure (``doctor`` found a problem, a plugin raised during ``replay``); 2 usage error;
3 key or plan rejected by the server; 4 gave up connecting; 5 subscription rejected.

Data goes to stdout, everything else to stderr; the API key is never written anywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from cmcsync import _protocol
from cmcsync.cli import _demo, _doctor, _plugins, _record, _simulate, _stream
from cmcsync.cli._common import (
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    Console,
    UsageError,
    redact,
)

__all__ = ["build_parser", "main"]

_LOG_LEVELS = ("debug", "info", "warning", "error")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors end with what to do next."""

    #: Every option of every subcommand, to suggest the one meant by a misspelt flag.
    known_options: tuple[str, ...] = ()

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:"):
            for token in message.partition(":")[2].split():
                flag = token.partition("=")[0]
                close = difflib.get_close_matches(flag, self.known_options, n=1, cutoff=0.7)
                if flag.startswith("--") and close:
                    self.exit(
                        EXIT_USAGE,
                        f"{self.prog}: error: unknown flag {flag}\n"
                        f"hint: did you mean {close[0]}? "
                        "`cmcsync COMMAND --help` lists the flags\n",
                    )
        if self.prog == "cmcsync":
            hint = (
                "start with `cmcsync demo` (no key, no network), or see `cmcsync --help` "
                "for every command"
            )
        else:
            hint = f"`{self.prog} --help` lists the flags, with examples"
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\nhint: {hint}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    from cmcsync import __version__

    parser = _Parser(
        prog="cmcsync",
        description=(
            "Stream CoinMarketCap real-time data, or try it on the embedded simulator. "
            "New here? `cmcsync demo` shows live data with no key and no network."
        ),
        epilog=(
            "Each command has its own help: cmcsync COMMAND --help. Exit codes: 0 done, "
            "1 command failure (doctor, replay), 2 usage error, 3 key or plan rejected, "
            "4 gave up connecting, 5 subscription rejected."
        ),
    )
    parser.add_argument("--version", action="version", version=f"cmcsync {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    commands.required = True
    for module in (_demo, _stream, _simulate, _record, _plugins, _doctor):
        module.add_parser(commands)
    for sub in commands.choices.values():
        sub.add_argument(
            "--log-level",
            choices=_LOG_LEVELS,
            default="warning",
            help="log messages of this level and above on stderr (default: warning)",
        )
        sub.set_defaults(parser=sub)
    parser.known_options = tuple(
        sorted({flag for sub in commands.choices.values() for flag in sub._option_string_actions})
    )
    return parser


#: Flags whose value may be a key, spelt right or not (``--api-key``, ``--apikey``, ``--key``).
_KEY_FLAG = re.compile(r"--(?:api[\w-]*|[\w-]*key[\w-]*)", re.IGNORECASE)


def _secrets(argv: Sequence[str]) -> list[str]:
    """The API keys in the arguments and the environment, to keep out of every message."""
    found = [os.environ.get(_protocol.API_KEY_ENV, "").strip()]
    for i, arg in enumerate(argv):
        flag, sep, value = arg.partition("=")
        if not _KEY_FLAG.fullmatch(flag):
            continue
        if sep:
            found.append(value.strip())
        elif i + 1 < len(argv):
            found.append(argv[i + 1].strip())
    return [s for s in found if s]


class _ReportedByCommand(logging.Filter):
    """Drops the library's log line about a fatal connection error: the command reports it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "cmcsync.connection" and record.levelno >= logging.ERROR)


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("cmcsync: %(levelname)s %(name)s: %(message)s"))
    if level in ("warning", "error"):
        handler.addFilter(_ReportedByCommand())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    secrets = _secrets(arguments)
    parser = build_parser()
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            args = parser.parse_args(arguments)
    except SystemExit as exc:
        sys.stderr.write(redact(errors.getvalue(), secrets))
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    sys.stderr.write(redact(errors.getvalue(), secrets))

    _configure_logging(args.log_level)
    console = Console(f"cmcsync {args.command}", secrets=secrets)
    try:
        code: int = args.run(args, console)
    except UsageError as exc:
        console.error(exc.message, exc.hint)
        code = EXIT_USAGE
    except CommandError as exc:
        console.error(exc.message, exc.hint)
        code = exc.code
    except KeyboardInterrupt:
        code = EXIT_OK
    except BrokenPipeError:
        # The reader of stdout went away (`| head`): done. Point stdout at /dev/null so the
        # interpreter's final flush does not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = EXIT_OK
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
