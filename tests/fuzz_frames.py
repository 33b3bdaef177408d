"""Fuzzing the frame -> event path: whatever the server sends, nothing escapes the reader.

Frames go in through :meth:`cmcsync.Client.feed`, the path a socket's frames take: envelope
parsing, channel lookup, the codec, deduplication, the dispatcher and a plugin. The inputs
start from real pushes of every channel (made by the simulator's generators) and are
mutated: values swapped for arbitrary JSON, keys dropped or added, envelope fields retyped,
the text cut, bytes flipped, binary frames.

What must hold for every frame:

- no exception leaves :meth:`~cmcsync.Client.feed`, and the client keeps working;
- a ``data`` frame is accounted for exactly once: an event, a malformed frame, or a
  dropped duplicate (``stats()``);
- every event reaching a plugin is its channel's class, has an ``int`` ts, and can be
  written out as strict JSON (``Codec.to_dict``).

Run briefly by ``tests/test_properties.py``; by hand, at length::

    python tests/fuzz_frames.py --examples 200000          # hypothesis
    python tests/fuzz_frames.py --atheris -max_total_time=3600   # if atheris is installed

"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import seed as fixed_seed
from hypothesis import strategies as st

import cmcsync
from cmcsync._codec import Codec
from cmcsync.channels import CHANNELS
from cmcsync.hookspecs import hookimpl
from cmcsync.testing._feeds import Feeds

__all__ = ["FrameSink", "check_frames", "frames", "run", "seed_frames"]

_PARAMS: dict[str, dict[str, Any]] = {
    "market@crypto_latest_price": {"crypto_ids": 1027},
    "onchain@token_agg_event": {"platform_id": 14, "address": "0xabc"},
    "onchain@transaction": {"platform_id": 14, "address": "0xabc"},
    "onchain@liquidity_event": {"platform_id": 14, "address": "0xabc"},
    "onchain@kline": {"platform_id": 14, "address": "0xabc", "interval": "1s"},
    "onchain@token_metric": {"platform_id": 14, "address": "0xabc"},
    "onchain@pool_metric": {"platform_id": 14, "pool_address": "0xdef"},
    "onchain@unique_trader": {"platform_id": 14, "address": "0xabc", "interval": "1s"},
    "onchain@holders_metrics": {"platform_id": 14, "address": "0xabc"},
    "onchain@holder_wallet_update": {"platform_id": 14, "wallet_address": "0x123"},
}


def seed_frames(per_channel: int = 3) -> list[dict[str, Any]]:
    """Real pushes of every channel, as envelopes, from the simulator's generators."""
    feeds = Feeds(seed="fuzz", speed=1000)
    pause = threading.Event()
    out: list[dict[str, Any]] = []
    for channel in CHANNELS:
        params = _PARAMS[channel]
        found = 0
        for _ in range(200):
            for source in feeds.sources(channel, params):
                # Interval sources emit once the (sped-up) wall clock crosses a boundary.
                pause.wait(min(feeds.delay(source), 0.01))
                for (_, items), data in feeds.tick(source):
                    if found < per_channel:
                        frame = {"type": "data", "channel": channel, "params": dict(items)}
                        out.append({**frame, "data": data, "ts": 1778663880111 + found})
                        found += 1
            if found >= per_channel:
                break
        assert found, f"no sample push for {channel}"
    return out


_SEEDS = seed_frames()

# Arbitrary JSON, shallow enough to stay far from the parser's recursion limit.
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def _mutated(draw: st.DrawFn) -> tuple[int, bytes]:
    frame: dict[str, Any] = json.loads(json.dumps(draw(st.sampled_from(_SEEDS))))
    data = frame["data"]
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["value", "drop", "add", "envelope", "data"]))
        keys = sorted(data) if isinstance(data, dict) else []
        if action == "value" and keys:
            data[draw(st.sampled_from(keys))] = draw(_json)
        elif action == "drop" and keys:
            del data[draw(st.sampled_from(keys))]
        elif action == "add" and isinstance(data, dict):
            data[draw(st.text(max_size=6))] = draw(_json)
        elif action == "envelope":
            field = draw(st.sampled_from(["type", "channel", "params", "ts", "data", "id"]))
            frame[field] = draw(_json | st.sampled_from(["data", "ack", "error", "pong"]))
        elif action == "data":
            frame["data"] = data = draw(_json)
    text = json.dumps(frame).encode()
    damage = draw(st.sampled_from(["none", "none", "none", "cut", "flip", "binary"]))
    if damage == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif damage == "flip":
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + bytes([draw(st.integers(0, 255))]) + text[at + 1 :]
    return (2 if damage == "binary" else 1), text


#: A batch of fuzzed frames: (opcode, payload) with opcode 1 text, 2 binary.
frames = st.lists(_mutated(), min_size=1, max_size=8)


class FrameSink:
    """A plugin that checks and counts every event it is handed."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.count = 0
        self.failures: list[str] = []
        self._codec = Codec()

    @hookimpl
    def cmcsync_on_event(self, event: Any, client: Any) -> None:
        problem = None
        row = CHANNELS.get(event.channel)
        if row is None or not isinstance(event, row.event_type):
            problem = f"{type(event).__name__} for {event.channel!r}"
        elif type(event.ts) is not int:
            problem = f"ts {event.ts!r}"
        else:
            try:
                json.dumps(self._codec.to_dict(event), allow_nan=False)
            except Exception as exc:  # noqa: BLE001 - any failure at all is a finding
                problem = f"to_dict: {exc!r}"
        with self._cond:
            if problem:
                self.failures.append(f"{problem}: {event!r}"[:500])
            self.count += 1
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count >= count, timeout)


def check_frames(
    client: cmcsync.Client, sink: FrameSink, batch: Sequence[tuple[int, bytes]]
) -> None:
    """Feed ``batch`` one frame at a time and check the properties of the module docstring.

    :raises AssertionError: naming the frame that broke one.
    """
    for opcode, payload in batch:
        before = client.stats()
        frame: str | bytes = payload if opcode == 2 else payload.decode("utf-8", "replace")
        client.feed([frame])
        after = client.stats()
        delta = {
            key: after[key] - before[key]
            for key in (
                "events",
                "malformed",
                "duplicates_dropped",
                "acks",
                "pongs",
                "server_errors",
            )
        }
        is_data = False
        if opcode == 1:
            with contextlib.suppress(ValueError, RecursionError, AttributeError):
                is_data = json.loads(payload).get("type") == "data"
        accounted = delta["events"] + delta["malformed"] + delta["duplicates_dropped"]
        if is_data:
            assert accounted == 1, f"data frame counted {delta}: {payload[:300]!r}"
        else:
            assert accounted <= 1, f"frame counted {delta}: {payload[:300]!r}"
    assert sink.wait_for(client.stats()["events"]), "an event never reached the plugin"
    assert not sink.failures, sink.failures[0]


def _new_client(sink: FrameSink) -> cmcsync.Client:
    client = cmcsync.Client(
        api_key="fuzz", url="ws://127.0.0.1:1/v1", autoload=False, plugins=[sink]
    )
    return client.start(connect=False)


def run(examples: int, *, seed: int | None = None) -> None:
    """Fuzz with hypothesis for ``examples`` batches.

    :raises AssertionError: with the smallest failing batch hypothesis finds.
    """
    sink = FrameSink()
    client = _new_client(sink)

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(batch=frames)
    def fuzz(batch: list[tuple[int, bytes]]) -> None:
        check_frames(client, sink, batch)

    if seed is not None:
        fuzz = fixed_seed(seed)(fuzz)
    try:
        fuzz()
    finally:
        client.close()


def _run_atheris(argv: list[str]) -> None:
    import atheris  # type: ignore[import-not-found]

    sink = FrameSink()
    client = _new_client(sink)
    corpus = Path("fuzz-corpus")
    corpus.mkdir(exist_ok=True)
    for index, frame in enumerate(_SEEDS):
        (corpus / f"seed-{index}").write_text(json.dumps(frame))

    def one_input(data: bytes) -> None:
        check_frames(client, sink, [(1, data)])

    atheris.Setup([argv[0], str(corpus), *argv[1:]], one_input)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=20_000, help="batches to try")
    parser.add_argument("--seed", type=int, default=None, help="reproduce a run")
    parser.add_argument("--atheris", action="store_true", help="coverage-guided, with atheris")
    args, rest = parser.parse_known_args(argv)
    # Every skipped frame is logged; thousands of them would hide the result.
    logging.getLogger("cmcsync").setLevel(logging.ERROR)
    if args.atheris:
        _run_atheris([sys.argv[0], *rest])
        return 0
    run(args.examples, seed=args.seed)
    print(f"{args.examples} batches: no property broken")  # noqa: T201 - a script's result
    return 0


if __name__ == "__main__":
    sys.exit(main())
