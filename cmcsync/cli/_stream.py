"""``cmcsync stream``: subscribe to one channel and print its events."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from cmcsync import _protocol
from cmcsync._codec import Codec
from cmcsync.channels import CHANNELS, get_channel
from cmcsync.cli._common import (
    EXIT_OK,
    EXIT_USAGE,
    PARAM_FLAGS,
    advice_for,
    exit_code_for,
    say,
)
from cmcsync.config import Backoff
from cmcsync.events import Event
from cmcsync.exceptions import CmcsyncError, ConfigError
from cmcsync.hookspecs import hookimpl


def add_parser(commands: Any) -> None:
    """Add the ``stream`` subcommand."""
    short = ", ".join(row.short for row in CHANNELS.values())
    p = commands.add_parser(
        "stream",
        help="subscribe to a channel and print its events",
        description=(
            "Subscribe to one CMC channel and print its decoded events on stdout; connection "
            "events and progress go to stderr. Exit codes: 0 done, 2 usage error, 3 key or plan "
            "rejected, 4 gave up connecting, 5 subscription rejected."
        ),
        epilog=f"channels: {short} (with or without the market@/onchain@ prefix)",
    )
    p.add_argument("channel", help="the channel, e.g. crypto_latest_price or onchain@kline")
    p.add_argument("--crypto-ids", help="comma-separated CMC ids, e.g. 1,1027")
    p.add_argument("--platform-id", help="numeric platform id, e.g. 14 (BSC), 16 (Solana)")
    p.add_argument("--address", action="append", help="token address (repeat or comma-separate)")
    p.add_argument("--pool-address", action="append", help="pool address (pool_metric)")
    p.add_argument(
        "--wallet-address", action="append", help="wallet address (holder_wallet_update)"
    )
    p.add_argument("--interval", help="kline / unique_trader interval, e.g. 1m")
    p.add_argument("--url", default=_protocol.DEFAULT_URL, help="endpoint (default: %(default)s)")
    p.add_argument(
        "--api-key",
        help=f"CMC API key (default: the {_protocol.API_KEY_ENV} environment variable)",
    )
    p.add_argument("--format", choices=("table", "jsonl"), default="table")
    p.add_argument("--count", type=_positive_int, help="stop after this many events")
    p.add_argument("--duration", type=_positive_float, help="stop after this many seconds")
    p.add_argument(
        "--retries",
        type=_positive_int,
        default=5,
        help="give up after this many failed connection attempts in a row (default: 5)",
    )
    p.add_argument("--decimal", action="store_true", help="exact decimals for prices")
    p.add_argument("--allow-insecure", action="store_true", help="allow ws:// to a remote host")
    p.set_defaults(run=run)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _split_list(values: list[str] | str | None) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def collect_params(args: argparse.Namespace) -> dict[str, Any]:
    """The subscribe params given on the command line, by param name."""
    found: dict[str, Any] = {}
    if args.crypto_ids is not None:
        found["crypto_ids"] = _split_list(args.crypto_ids)
    if args.platform_id is not None:
        found["platform_id"] = args.platform_id
    for name in ("address", "pool_address", "wallet_address"):
        value = _split_list(getattr(args, name))
        if value is not None:
            found[name] = value
    if args.interval is not None:
        found["interval"] = args.interval
    return found


class _Progress:
    """Reports connection events on stderr."""

    @hookimpl
    def cmcsync_on_connect(self, url: str, reconnect: bool) -> None:
        say(f"{'reconnected' if reconnect else 'connected'} to {url}")

    @hookimpl
    def cmcsync_on_disconnect(self, code: int | None, reason: str, will_reconnect: bool) -> None:
        what = _protocol.describe_close(code, reason)
        say(f"disconnected: {what}" + ("; reconnecting" if will_reconnect else ""))

    @hookimpl
    def cmcsync_on_subscription_state(
        self, channel: str, params: dict[str, Any], state: str, error: BaseException | None
    ) -> None:
        if state == "rejected":
            say(f"subscription rejected: {error}")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``cmcsync stream``."""
    from cmcsync.client import Client

    def usage(message: str) -> int:
        parser.print_usage(sys.stderr)
        say(f"cmcsync stream: error: {message}")
        return EXIT_USAGE

    try:
        row = get_channel(args.channel)
    except ConfigError as exc:
        return usage(str(exc))
    params = collect_params(args)
    for name in params:
        if name not in row.params:
            takes = " ".join(PARAM_FLAGS[p] for p in row.params)
            return usage(f"{PARAM_FLAGS[name]} does not apply to {row.name}; it takes {takes}")
    try:
        row.split(params)
        client = Client(
            api_key=args.api_key or os.environ.get(_protocol.API_KEY_ENV) or None,
            url=args.url,
            decimal=args.decimal,
            allow_insecure=args.allow_insecure,
            backoff=Backoff(max_attempts=args.retries),
        )
    except ConfigError as exc:
        flag = PARAM_FLAGS.get(exc.param or "", exc.param or "")
        return usage(f"{flag}: {exc}" if flag else str(exc))

    codec = Codec(decimal=args.decimal)
    write = _jsonl_writer(codec) if args.format == "jsonl" else _table_writer(codec)
    client.register(_Progress(), name="cmcsync-cli-progress")
    deadline = None if args.duration is None else time.monotonic() + args.duration
    count = 0
    try:
        client.start()
        subs = client.subscribe(row.name, timeout=max(client.timeouts.ack, 30.0), **params)
        say(f"subscribed to {len(subs)} {row.name} subscription(s)")
        while args.count is None or count < args.count:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            got_any = False
            for event in client.events(timeout=remaining if remaining is not None else 1.0):
                got_any = True
                write(event)
                count += 1
                if args.count is not None and count >= args.count:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
            if not got_any:
                client.wait(0)  # raises the fatal error, if the client stopped on one
        return EXIT_OK
    except CmcsyncError as exc:
        say(f"cmcsync stream: error: {exc}")
        advice = advice_for(exc)
        if advice:
            say(f"hint: {advice}")
        return exit_code_for(exc)
    except BrokenPipeError:
        return EXIT_OK
    finally:
        client.close()
        say(f"{count} event(s)")


def _jsonl_writer(codec: Codec) -> Callable[[Event], None]:
    out = sys.stdout

    def write(event: Event) -> None:
        record = {
            "channel": event.channel,
            "params": dict(event.params),
            "ts": event.ts,
            "data": codec.to_dict(event),
        }
        out.write(json.dumps(record, separators=(",", ":")) + "\n")
        out.flush()

    return write


def _table_writer(codec: Codec) -> Callable[[Event], None]:
    out = sys.stdout

    def write(event: Event) -> None:
        row = CHANNELS[event.channel]
        subject = event.params.get(row.list_param, "")
        fields = " ".join(
            f"{k}={v}" for k, v in codec.to_dict(event).items() if v is not None and v != {}
        )
        stamp = time.strftime("%H:%M:%S", time.gmtime(event.ts / 1000))
        out.write(f"{stamp} {row.short:<22} {subject!s:<12} {fields}\n")
        out.flush()

    return write
