"""What the subcommands share: exit codes, messages, argument types, channel and connection flags.

Every message a command writes goes through :class:`Console`: data on stdout, progress and
errors on stderr, each error followed by a ``hint:`` line that says what to do, and the API
key never written (it is redacted from any text that would carry it).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
import textwrap
from collections.abc import Iterable, Mapping
from typing import IO, Any

from cmcsync import _protocol
from cmcsync.channels import CHANNELS, Channel, get_channel
from cmcsync.exceptions import (
    AuthError,
    CmcsyncError,
    CmcsyncTimeoutError,
    ConfigError,
    GaveUpError,
    SubscriptionError,
)

__all__ = [
    "EXIT_AUTH",
    "EXIT_FAILED",
    "EXIT_GAVE_UP",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_USAGE",
    "PARAM_FLAGS",
    "CommandError",
    "Console",
    "UsageError",
    "add_channel_arguments",
    "add_connection_arguments",
    "advice_for",
    "api_key_from",
    "channel_epilog",
    "duration",
    "exit_code_for",
    "load_simulator",
    "paragraph",
    "positive_float",
    "positive_int",
    "resolve_subscription",
    "use_color",
]

#: Done: the count or duration was reached, or Ctrl-C.
EXIT_OK = 0
#: A command-specific failure (doctor found a problem, a plugin raised during replay...).
EXIT_FAILED = 1
#: Wrong flags or arguments; nothing was sent.
EXIT_USAGE = 2
#: The server rejected the API key or its plan (no retry).
EXIT_AUTH = 3
#: Gave up connecting (retries exhausted, or no answer in time).
EXIT_GAVE_UP = 4
#: The server refused the subscription; its message is on stderr.
EXIT_REJECTED = 5

EXIT_CODES_TEXT = (
    "exit codes: 0 done (count, duration or Ctrl-C), 2 usage error,\n"
    "            3 key or plan rejected, 4 gave up connecting, 5 subscription rejected"
)

#: Subscribe params and the flags that set them.
PARAM_FLAGS: Mapping[str, str] = {
    "crypto_ids": "--crypto-ids",
    "platform_id": "--platform-id",
    "address": "--address",
    "pool_address": "--pool-address",
    "wallet_address": "--wallet-address",
    "interval": "--interval",
}

#: Example values for the help text, by param.
_EXAMPLES: Mapping[str, str] = {
    "crypto_ids": "1,1027",
    "platform_id": "14",
    "address": "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d",
    "pool_address": "0x16b9a82891338f9ba80e2d6970fdda79d1eb0dae",
    "wallet_address": "0x8894e0a0c962cb723c1976a4421c95949be2d4e3",
    "interval": "1m",
}

#: Params given once, as they are; the others are lists.
_SCALAR_PARAMS = frozenset({"platform_id", "interval"})

#: Flags of other settings, for errors the client raises about them.
_SETTING_FLAGS: Mapping[str, str] = {
    "api_key": "--api-key",
    "url": "--url",
    "proxy": "--proxy",
}


class CommandError(Exception):
    """A command cannot go on: exit ``code`` after the message and a hint.

    :param message: what went wrong.
    :param hint: what to do about it.
    :param code: the exit code.
    """

    def __init__(self, message: str, hint: str | None = None, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


class UsageError(Exception):
    """Wrong input on the command line: exit 2 after the message and a hint.

    :param message: what is wrong, naming the flag.
    :param hint: what to do instead.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def use_color(stream: IO[str]) -> bool:
    """Whether to colour output on ``stream``: a terminal, and neither NO_COLOR nor TERM=dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret of at least 4 characters in ``text`` with ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


class Console:
    """Writes a command's messages to stderr, never an API key.

    :param command: the command name, the prefix of error lines (``cmcsync stream``).
    :param secrets: values to redact from every message (the API key).
    :param err: where messages go; stderr by default.
    """

    def __init__(
        self, command: str, *, secrets: Iterable[str] = (), err: IO[str] | None = None
    ) -> None:
        self.command = command
        self.secrets = [s for s in secrets if s]
        self.err = err if err is not None else sys.stderr
        self.color = use_color(self.err)

    def say(self, text: str) -> None:
        """Write one progress line."""
        self._write(text)

    def error(self, message: str, hint: str | None = None) -> None:
        """Write an error line and, when there is one, the hint that says what to do."""
        label = "\x1b[1;31merror:\x1b[0m" if self.color else "error:"
        self._write(f"{self.command}: {label} {message}")
        if hint:
            label = "\x1b[1mhint:\x1b[0m" if self.color else "hint:"
            self._write(f"{label} {hint}")

    def warn(self, message: str) -> None:
        """Write a warning line."""
        label = "\x1b[1;33mwarning:\x1b[0m" if self.color else "warning:"
        self._write(f"{self.command}: {label} {message}")

    def _write(self, text: str) -> None:
        try:
            self.err.write(redact(text, self.secrets) + "\n")
            self.err.flush()
        except (BrokenPipeError, ValueError):
            pass  # stderr closed: nowhere left to report to


# --- argument types ----------------------------------------------------------------------------


def load_simulator() -> Any:
    """The :class:`~cmcsync.testing.Simulator` class.

    :raises CommandError: when the ``websockets`` package it runs on is missing.
    """
    try:
        from cmcsync.testing import Simulator
    except ImportError as exc:
        raise CommandError(
            f"the embedded simulator needs the websockets package ({exc})",
            "install it with: python3 -m pip install 'cmcsync[simulator]'",
        ) from None
    return Simulator


def positive_int(text: str) -> int:
    """An argparse type: an integer above 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return value


_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """Parse ``500ms``, ``10s``, ``2m``, ``1h`` or a bare number of seconds.

    :raises ValueError: naming the accepted forms.
    """
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(
            f"{text!r} is not a duration; write seconds (10, 2.5) or a number with a unit "
            "(500ms, 10s, 2m, 1h)"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def duration(text: str) -> float:
    """An argparse type: a duration above 0 (see :func:`parse_duration`)."""
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be longer than 0, got {text}")
    return value


# --- channel flags -----------------------------------------------------------------------------


def channel_epilog() -> str:
    """The help text listing every channel with the flags it takes, from the channel table."""
    width = max(len(row.short) for row in CHANNELS.values())
    lines = ["channels and the flags each needs (the market@/onchain@ prefix is optional):"]
    for row in CHANNELS.values():
        names = [p for p in row.params if p != "interval"]
        flags = " ".join(PARAM_FLAGS[p] for p in names)
        if row.intervals is not None:
            flags += f" --interval ({'|'.join(row.intervals)})"
        lines.append(f"  {row.short:<{width}}  {flags}")
    return "\n".join(lines)


def paragraph(text: str) -> str:
    """``text`` filled to 79 columns, for descriptions shown as they are."""
    return textwrap.fill(" ".join(text.split()), 79)


def add_channel_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """Add the CHANNEL argument and the subscribe-param flags (shared by stream and record)."""
    parser.add_argument(
        "channel",
        nargs=None if required else "?",
        metavar="CHANNEL",
        help="the channel, e.g. crypto_latest_price or onchain@kline (listed below)",
    )
    group = parser.add_argument_group("channel params")
    group.add_argument("--crypto-ids", metavar="IDS", help="CMC ids, comma-separated: 1,1027")
    group.add_argument(
        "--platform-id",
        metavar="N",
        help="CMC platform id: 1 Ethereum, 14 BSC, 16 Solana",
    )
    for name, what in (
        ("address", "token address"),
        ("pool_address", "pool address (pool_metric)"),
        ("wallet_address", "wallet address (holder_wallet_update)"),
    ):
        group.add_argument(
            PARAM_FLAGS[name],
            action="append",
            metavar="ADDR",
            help=f"{what}; repeat the flag or comma-separate",
        )
    group.add_argument("--interval", metavar="I", help="kline / unique_trader interval, e.g. 1m")


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --url, --api-key, --retries, --proxy and --allow-insecure."""
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--url",
        default=_protocol.DEFAULT_URL,
        help="the endpoint (default: %(default)s); a simulator's URL to test offline",
    )
    group.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"the CMC API key (default: the {_protocol.API_KEY_ENV} environment variable); "
        "never printed",
    )
    group.add_argument(
        "--retries",
        type=positive_int,
        default=5,
        metavar="N",
        help="give up (exit 4) after N failed connection attempts in a row (default: 5)",
    )
    group.add_argument(
        "--proxy",
        metavar="URL",
        help="HTTP proxy to tunnel through, http://host:port (default: HTTPS_PROXY for wss://)",
    )
    group.add_argument(
        "--allow-insecure",
        action="store_true",
        help="allow a plain ws:// URL to a host other than this machine",
    )


def api_key_from(args: argparse.Namespace) -> tuple[str | None, str]:
    """The API key given on the command line or in the environment, and where it came from."""
    given = (getattr(args, "api_key", None) or "").strip()
    if given:
        return given, "--api-key"
    env = os.environ.get(_protocol.API_KEY_ENV, "").strip()
    if env:
        return env, _protocol.API_KEY_ENV
    return None, ""


def _split(values: list[str] | str | None) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _channel_row(name: str) -> Channel:
    try:
        return get_channel(name)
    except ConfigError:
        pass
    names = [row.short for row in CHANNELS.values()] + list(CHANNELS)
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UsageError(
        f"unknown channel {name!r}",
        f"{hint}the channels are {', '.join(row.short for row in CHANNELS.values())}; "
        "`--help` shows the flags each takes",
    )


def _flag_list(row: Channel) -> str:
    return " ".join(f"{PARAM_FLAGS[p]} {_EXAMPLES[p]}" for p in row.params)


def resolve_subscription(args: argparse.Namespace) -> tuple[Channel, dict[str, Any]]:
    """The channel row and validated subscribe params given on the command line.

    :returns: the row and the params, as the client takes them (list params as lists).
    :raises UsageError: naming the flag that is missing, misplaced or wrong.
    """
    row = _channel_row(args.channel)
    given: dict[str, Any] = {}
    for name in PARAM_FLAGS:
        raw = getattr(args, name, None)
        if raw is None:
            continue
        value = raw if name in _SCALAR_PARAMS else _split(raw)
        if not value:
            raise UsageError(
                f"{PARAM_FLAGS[name]} is empty",
                f"give at least one value, e.g. {_EXAMPLES[name]}",
            )
        given[name] = value
    for name in given:
        if name not in row.params:
            raise UsageError(
                f"{PARAM_FLAGS[name]} does not apply to {row.name}",
                f"{row.short} takes {_flag_list(row)}",
            )
    missing = [PARAM_FLAGS[p] for p in row.params if p not in given]
    if missing:
        raise UsageError(
            f"{row.name} needs {' and '.join(missing)}",
            f"for example: {row.short} {_flag_list(row)}",
        )
    try:
        row.split(given)
    except ConfigError as exc:
        flag = PARAM_FLAGS.get(exc.param or "", "")
        hint = f"for example: {row.short} {_flag_list(row)}"
        if exc.param == "interval" and row.intervals is not None:
            hint = f"e.g. --interval {row.intervals[3]}"
        raise UsageError(f"{flag}: {exc}" if flag else str(exc), hint) from None
    return row, given


def config_error_usage(exc: ConfigError) -> UsageError:
    """Turn a :class:`ConfigError` from building a client into a usage error naming the flag."""
    if exc.param == "api_key":
        return UsageError(
            "no API key",
            f"pass --api-key KEY or set {_protocol.API_KEY_ENV}; no key yet? `cmcsync demo` "
            "runs on the embedded simulator, or point --url at `cmcsync simulate`",
        )
    flag = _SETTING_FLAGS.get(exc.param or "") or PARAM_FLAGS.get(exc.param or "", "")
    if exc.param == "url":
        hint = "use wss://host/path (or ws://127.0.0.1:PORT/v1 for a local simulator)"
        if "ws://" in str(exc):
            hint = "use wss://, or pass --allow-insecure if you really mean plain ws://"
        return UsageError(f"{flag}: {exc}", hint)
    return UsageError(f"{flag}: {exc}" if flag else str(exc), "see --help for the flags")


# --- errors that end a command -----------------------------------------------------------------


def exit_code_for(error: BaseException) -> int:
    """The documented exit code for an error that ended a command."""
    if isinstance(error, AuthError):
        return EXIT_AUTH
    if isinstance(error, SubscriptionError):
        return EXIT_REJECTED
    if isinstance(error, ConfigError):
        return EXIT_USAGE
    if isinstance(error, (GaveUpError, CmcsyncTimeoutError, CmcsyncError)):
        return EXIT_GAVE_UP
    return EXIT_FAILED


def advice_for(error: BaseException | None) -> str:
    """One line that tells the user what to do about an error."""
    if isinstance(error, AuthError):
        return (
            f"check the key (--api-key or {_protocol.API_KEY_ENV}) and that its plan includes "
            "the WebSocket API (Startup or above); `cmcsync doctor` checks the key and the network"
        )
    if isinstance(error, SubscriptionError):
        if error.code == 2303:
            return "subscribe to fewer ids or addresses per connection, or run a second command"
        if error.code == 2302:
            return "this channel is not on your plan; pick another channel or upgrade the plan"
        return "check the channel params against the server's message above"
    if isinstance(error, GaveUpError):
        return (
            "check --url, your network and proxy (HTTPS_PROXY), or raise --retries; "
            "`cmcsync doctor` tests each step"
        )
    if isinstance(error, CmcsyncTimeoutError):
        return "the server did not answer in time; `cmcsync doctor` tests the connection"
    return "`cmcsync doctor` tests the key, the network and the endpoint"
