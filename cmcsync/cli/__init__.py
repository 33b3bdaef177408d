"""The ``cmcsync`` command.

Exit codes (a contract, see the docs): 0 done (count, duration or Ctrl-C); 2 usage error;
3 key or plan rejected by the server; 4 gave up connecting; 5 subscription rejected.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cmcsync.cli import _demo, _stream
from cmcsync.cli._common import EXIT_OK

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="cmcsync",
        description="Stream CoinMarketCap real-time data, or try it on the embedded simulator.",
    )
    from cmcsync import __version__

    parser.add_argument("--version", action="version", version=f"cmcsync {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    _demo.add_parser(commands)
    _stream.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args, parser)
    except KeyboardInterrupt:
        code = EXIT_OK
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
