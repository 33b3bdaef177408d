"""``cmcsync record`` and ``cmcsync replay``: capture a session's frames, feed them back.

The file holds one JSON object per line, one per frame the server sent, in arrival order::

    {"t": 1778663880.111, "frame": "{\\"type\\": \\"data\\", ...}"}
    {"t": 1778663880.512, "frame_b64": "AAEC..."}

``t`` is the receive time (epoch seconds; frames read in one batch share it), ``frame`` the
text of a text frame exactly as received, ``frame_b64`` a binary frame in base64. Replaying
runs the frames through the same decoder, deduplication and plugins as a live client,
without a socket, so a recorded file gives the same events every time.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

from cmcsync._codec import Codec
from cmcsync.cli._common import (
    EXIT_CODES_TEXT,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    Console,
    UsageError,
    channel_epilog,
    paragraph,
    resolve_subscription,
)
from cmcsync.cli._output import FORMATS, Writer, make_writer
from cmcsync.cli._session import Session, add_session_arguments, report_failure
from cmcsync.client import Client
from cmcsync.events import Event
from cmcsync.exceptions import CmcsyncError, ConfigError
from cmcsync.hookspecs import hookimpl
from cmcsync.plugins import plugin_info

__all__ = ["FrameRecorder", "add_parser", "read_frames", "run_record", "run_replay"]

#: The API key a replaying client is built with: it opens no socket, so none is sent.
_REPLAY_KEY = "replay-without-a-socket"


def add_parser(commands: Any) -> None:
    """Add the ``record`` and ``replay`` subcommands."""
    rec = commands.add_parser(
        "record",
        help="capture a session's raw frames to a file, to replay through plugins later",
        description=paragraph(
            "Connect, subscribe like `cmcsync stream`, and write every frame the server sends "
            "to FILE ('-' for stdout): one JSON object per line, "
            '{"t": receive time in epoch seconds, "frame": the text as received} '
            '("frame_b64" for a binary frame). Each line is flushed as it is written.'
        ),
        epilog=(
            f"{channel_epilog()}\n\nexamples:\n"
            "  cmcsync record prices.jsonl crypto_latest_price --crypto-ids 1,1027 --duration 5m\n"
            "  cmcsync record - crypto_latest_price --crypto-ids 1 --count 20 \\\n"
            "      --url ws://127.0.0.1:8765/v1 --api-key test-key\n"
            "  cmcsync record plugin-session.jsonl --plugins --duration 10m   "
            "(what the installed plugins subscribe to)\n\n"
            f"{EXIT_CODES_TEXT}"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rec.add_argument("file", metavar="FILE", help="where to write the frames; '-' for stdout")
    add_session_arguments(rec, channel_required=False)
    rec.set_defaults(run=run_record)

    rep = commands.add_parser(
        "replay",
        help="feed a recorded file through the decoder and every installed plugin, no socket",
        description=paragraph(
            "Feed the frames of a file written by `cmcsync record` through a client without a "
            "socket: the same decoding, deduplication and plugin hooks as live, with the "
            "recorded timing divided by --speed. Every installed plugin is loaded. "
            "Exit code 1 when a plugin raised, 2 when the file cannot be read."
        ),
        epilog=(
            "examples:\n"
            "  cmcsync replay prices.jsonl --speed 0                 as fast as possible\n"
            "  cmcsync replay prices.jsonl --speed 10 --format jsonl\n"
            "  CMCSYNC_PLUGINS=myplugin cmcsync replay session.jsonl --log-level info"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rep.add_argument("file", metavar="FILE", help="a file written by `cmcsync record`")
    rep.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        metavar="X",
        help="replay X times faster than recorded; 0 as fast as possible (default: 1)",
    )
    rep.add_argument(
        "--format",
        choices=FORMATS,
        help="also print every event on stdout, as `cmcsync stream` does",
    )
    rep.add_argument("--decimal", action="store_true", help="exact decimals for prices")
    rep.add_argument(
        "--no-plugins",
        action="store_true",
        help="load no installed plugin (just decode)",
    )
    rep.set_defaults(run=run_replay)


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 (as fast as possible) or more, got {text}")
    return value


# --- record ------------------------------------------------------------------------------------


class FrameRecorder:
    """A frame tap that writes each frame as one JSON line and stops after ``limit`` data frames.

    Called on the client's reader thread; a write error is kept in :attr:`error` for the
    command to report, and nothing more is written.

    :param out: the open file.
    :param limit: data frames to record, or ``None`` for no limit.
    """

    def __init__(self, out: IO[str], limit: int | None) -> None:
        self.out = out
        self.limit = limit
        self.frames = 0
        self.data_frames = 0
        self.error: OSError | None = None
        self.done = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, received_at: float, frame: str | bytes) -> None:
        with self._lock:
            if self.done.is_set():
                return
            record: dict[str, Any] = {"t": round(received_at, 6)}
            if isinstance(frame, str):
                record["frame"] = frame
            else:
                record["frame_b64"] = base64.b64encode(frame).decode("ascii")
            try:
                self.out.write(json.dumps(record, ensure_ascii=False) + "\n")
                self.out.flush()
            except OSError as exc:
                self.error = exc
                self.done.set()
                return
            self.frames += 1
            if isinstance(frame, str) and _is_data(frame):
                self.data_frames += 1
                if self.limit is not None and self.data_frames >= self.limit:
                    self.done.set()


def _is_data(frame: str) -> bool:
    try:
        message = json.loads(frame)
    except (ValueError, RecursionError):
        # Not JSON, or nested deeper than the standard parser reads: not counted as data.
        return False
    return isinstance(message, dict) and message.get("type") == "data"


def run_record(args: argparse.Namespace, console: Console) -> int:
    """Run ``cmcsync record``; return the exit code."""
    if args.channel is None and not args.plugins:
        raise UsageError(
            "CHANNEL is required (or --plugins, to record what the installed plugins subscribe)",
            "e.g. cmcsync record prices.jsonl crypto_latest_price --crypto-ids 1,1027",
        )
    row, params = resolve_subscription(args) if args.channel is not None else (None, {})
    session = Session(args, console, row, params)
    name = "stdout" if args.file == "-" else args.file
    with _open_output(args.file) as out:
        recorder = FrameRecorder(out, args.count)
        session.client.tap_frames(recorder)
        started = time.monotonic()
        try:
            session.subscribe()
            started = time.monotonic()
            _record_until_done(session, recorder, args.duration)
        except CmcsyncError as exc:
            return report_failure(console, exc, args.url)
        except KeyboardInterrupt:
            pass
        finally:
            session.close()
            elapsed = time.monotonic() - started
            console.say(
                f"recorded {recorder.frames} frame(s), {recorder.data_frames} data, to {name} "
                f"in {elapsed:.1f} s"
            )
        if recorder.error is not None:
            raise CommandError(
                f"cannot write {name}: {recorder.error}",
                "check the disk space and the path",
            )
    if args.file != "-":
        console.say(f"replay it with: cmcsync replay {args.file}")
    return EXIT_OK


def _record_until_done(session: Session, recorder: FrameRecorder, seconds: float | None) -> None:
    deadline = None if seconds is None else time.monotonic() + seconds
    client = session.client
    while not recorder.done.is_set():
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return
        # Drain the events (the frames are already written) and notice a fatal error.
        for _ in client.events(timeout=0.2 if remaining is None else min(remaining, 0.2)):
            if recorder.done.is_set():
                break
            if deadline is not None and time.monotonic() >= deadline:
                return
        client.wait(0)


@contextlib.contextmanager
def _open_output(path: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdout
        return
    try:
        out = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UsageError(
            f"cannot write {path}: {exc.strerror or exc}",
            "give a path in a writable directory",
        ) from None
    with out:
        yield out


# --- replay ------------------------------------------------------------------------------------


def read_frames(path: str) -> Iterator[tuple[float, list[str | bytes]]]:
    """Yield ``(t, frames)`` from a recorded file, frames received together in one list.

    :raises CommandError: for a file that cannot be opened or a line that is not a record,
        naming the line.
    """
    hint = (
        'each line must be {"t": seconds, "frame": text} as `cmcsync record` writes; '
        "is this the right file?"
    )
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise CommandError(
            f"cannot read {path}: {exc.strerror or exc}",
            "record one with: cmcsync record FILE CHANNEL ...",
            code=EXIT_USAGE,
        ) from None
    batch: list[str | bytes] = []
    batch_t: float | None = None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                t, frame = _parse_line(line)
            except (ValueError, binascii.Error) as exc:
                raise CommandError(f"{path} line {number}: {exc}", hint, code=EXIT_USAGE) from None
            if batch and t != batch_t:
                assert batch_t is not None
                yield batch_t, batch
                batch = []
            batch_t = t
            batch.append(frame)
    if batch:
        assert batch_t is not None
        yield batch_t, batch


def _parse_line(line: str) -> tuple[float, str | bytes]:
    try:
        record = json.loads(line)
    except RecursionError:
        # A record is one object holding strings: a line nested deeper is not one.
        raise ValueError("nested too deep to be a record") from None
    t = record.get("t") if isinstance(record, dict) else None
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        # A bad line is bad input like the others: ValueError, reported with its number.
        raise ValueError('not a JSON object with a number "t" (the receive time)')
    if isinstance(record.get("frame"), str):
        return float(t), record["frame"]
    if isinstance(record.get("frame_b64"), str):
        return float(t), base64.b64decode(record["frame_b64"], validate=True)
    raise ValueError('no "frame" text (or "frame_b64")')


class _Printer:
    """Prints every event, on the dispatcher thread, in arrival order."""

    def __init__(self, write: Writer) -> None:
        self.write = write
        self.broken = threading.Event()

    @hookimpl
    def cmcsync_on_event(self, event: Event) -> None:
        if self.broken.is_set():
            return
        try:
            self.write(event)
        except BrokenPipeError:
            self.broken.set()


def run_replay(args: argparse.Namespace, console: Console) -> int:
    """Run ``cmcsync replay``; return the exit code."""
    printer = None
    if args.format is not None:
        printer = _Printer(make_writer(args.format, Codec(decimal=args.decimal), sys.stdout))
    try:
        client = Client(api_key=_REPLAY_KEY, decimal=args.decimal, autoload=not args.no_plugins)
    except ConfigError as exc:
        raise CommandError(
            f"cannot load the plugins: {exc}",
            "fix that plugin, or replay without plugins: --no-plugins",
        ) from None
    names = [info.name for info in plugin_info(client.plugin_manager)]
    console.say(f"plugins: {', '.join(names) if names else 'none installed'}")
    if printer is not None:
        client.register(printer, name="cmcsync-replay-printer")
    frames = data = 0
    pause = threading.Event()
    started = time.monotonic()
    first: float | None = None
    try:
        client.start(connect=False)
        for t, batch in read_frames(args.file):
            if first is None:
                first = t
            if args.speed > 0:
                delay = started + (t - first) / args.speed - time.monotonic()
                if delay > 0:
                    pause.wait(delay)
            client.feed(batch)
            frames += len(batch)
            data += sum(1 for f in batch if isinstance(f, str) and _is_data(f))
            if printer is not None and printer.broken.is_set():
                break
    except KeyboardInterrupt:
        pass
    finally:
        # Closing delivers what is still queued to the plugins first.
        client.close(timeout=60.0)
    stats = client.stats()
    console.say(
        f"replayed {frames} frame(s) ({data} data) from {args.file} in "
        f"{time.monotonic() - started:.1f} s: {stats['events']} event(s), "
        f"{stats['duplicates_dropped']} duplicate(s) dropped, {stats['malformed']} malformed"
    )
    failed = stats["dispatch"]["plugin_errors"]
    if failed:
        detail = ", ".join(f"{name} {count} time(s)" for name, count in sorted(failed.items()))
        console.error(
            f"plugin hooks raised: {detail}",
            "the tracebacks are above; fix the plugin and replay the same file again",
        )
        return EXIT_FAILED
    return EXIT_OK
