"""``cmcsync stream``: subscribe to one channel and print its events on stdout."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from cmcsync._codec import Codec
from cmcsync.cli._common import (
    EXIT_CODES_TEXT,
    EXIT_OK,
    Console,
    channel_epilog,
    paragraph,
    resolve_subscription,
)
from cmcsync.cli._output import FORMATS, make_writer
from cmcsync.cli._session import Session, add_session_arguments, report_failure
from cmcsync.exceptions import CmcsyncError

__all__ = ["add_parser", "run"]

_EXAMPLES = """\
examples:
  cmcsync stream crypto_latest_price --crypto-ids 1,1027 --count 10
  cmcsync stream kline --platform-id 14 --interval 1m --format jsonl \\
      --address 0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d
  cmcsync stream crypto_latest_price --crypto-ids 1 --url ws://127.0.0.1:8765/v1 \\
      --api-key test-key          (against `cmcsync simulate`, no real key needed)
"""


def add_parser(commands: Any) -> None:
    """Add the ``stream`` subcommand."""
    p = commands.add_parser(
        "stream",
        help="subscribe to a channel and print its events (needs a CMC API key)",
        description=paragraph(
            "Subscribe to one CMC channel and print its decoded events on stdout, one line "
            "each; connection events and progress go to stderr. Reconnects with backoff and "
            "subscribes again after every reconnect."
        ),
        epilog=f"{channel_epilog()}\n\n{_EXAMPLES}\n{EXIT_CODES_TEXT}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_session_arguments(p, channel_required=True)
    out = p.add_argument_group("output")
    out.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table: one readable line per event; jsonl: one JSON object per event "
        '{"channel", "params", "ts", "data"} (default: table)',
    )
    out.add_argument(
        "--decimal",
        action="store_true",
        help="exact decimals for prices (as JSON strings)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``cmcsync stream``; return the exit code."""
    row, params = resolve_subscription(args)
    session = Session(args, console, row, params, decimal=args.decimal)
    write = make_writer(args.format, Codec(decimal=args.decimal), sys.stdout)
    started = time.monotonic()
    failure: CmcsyncError | None = None
    try:
        session.subscribe()
        started = time.monotonic()
        for event in session.events():
            write(event)
    except CmcsyncError as exc:
        failure = exc
    except KeyboardInterrupt:
        pass
    finally:
        session.close()
        console.say(f"{session.count} event(s) in {time.monotonic() - started:.1f} s")
    if failure is not None:
        return report_failure(console, failure, args.url)
    return EXIT_OK
