"""``cmcsync record`` and ``cmcsync replay``: a captured session replays to the same events."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from cmcsync._codec import MAX_EXTRA_DEPTH
from cmcsync.cli._record import FrameRecorder
from cmcsync.testing import Simulator
from tests.conftest import KEY
from tests.test_cli import assert_no_traceback, run_cli, sent_records

PRICE = "market@crypto_latest_price"
TRANSACTION = "onchain@transaction"
EVM = "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d"

_PROBE = """
import json, os
import cmcsync

@cmcsync.hookimpl
def cmcsync_on_event(event):
    with open(os.environ["CMCSYNC_PROBE_OUT"], "a") as out:
        out.write(json.dumps([event.channel, event.params, event.ts]) + "\\n")
    if os.environ.get("CMCSYNC_PROBE_RAISE"):
        raise RuntimeError("the probe plugin failed on purpose")
"""


def install_probe(root: Path) -> dict[str, str]:
    """An installed plugin (a module and its dist-info on PYTHONPATH) that logs every event."""
    (root / "cmcsync_probe.py").write_text(_PROBE)
    info = root / "cmcsync_probe-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cmcsync-probe\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[cmcsync]\nprobe = cmcsync_probe\n")
    return {"PYTHONPATH": str(root), "CMCSYNC_PROBE_OUT": str(root / "events.jsonl")}


def record(sim: Simulator, path: Path, *args: str) -> None:
    result = run_cli("record", str(path), *args, "--url", sim.url, "--api-key", KEY)
    assert result.returncode == 0, result.stderr
    assert f"replay it with: cmcsync replay {path}" in result.stderr


def lines_of(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_record_writes_every_frame_with_its_receive_time(sim: Simulator, tmp_path: Path) -> None:
    path = tmp_path / "prices.jsonl"
    before = time.time()
    record(sim, path, "crypto_latest_price", "--crypto-ids", "1,1027", "--count", "5")
    lines = lines_of(path)
    assert all(set(line) == {"t", "frame"} for line in lines)
    times = [line["t"] for line in lines]
    assert times == sorted(times) and before <= times[0] <= time.time()
    frames = [json.loads(line["frame"]) for line in lines]  # type: ignore[arg-type]
    assert frames[0]["type"] == "welcome"
    assert any(f["type"] == "ack" for f in frames)
    data = [f for f in frames if f["type"] == "data"]
    assert len(data) == 5, "--count counts data frames"
    (conn,) = sim.all_connections()
    sent_data = [f for f in conn.sent if f.get("type") == "data"]
    assert data == sent_data[:5]


def test_record_stops_after_its_duration_while_data_flows(sim: Simulator, tmp_path: Path) -> None:
    path = tmp_path / "prices.jsonl"
    started = time.monotonic()
    record(sim, path, "crypto_latest_price", "--crypto-ids", "1,1027", "--duration", "0.5")
    assert time.monotonic() - started < 10
    data = [line for line in lines_of(path) if '"type": "data"' in str(line["frame"])]
    assert len(data) >= 2


def test_record_then_replay_gives_the_same_events(sim: Simulator, tmp_path: Path) -> None:
    path = tmp_path / "swaps.jsonl"
    record(sim, path, "transaction", "--platform-id", "14", "--address", EVM, "--count", "4")
    result = run_cli("replay", str(path), "--speed", "0", "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    replayed = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(replayed) == 4
    assert replayed == sent_records(sim, TRANSACTION)[:4]
    assert "4 event(s)" in result.stderr


def test_replay_feeds_every_installed_plugin(sim: Simulator, tmp_path: Path) -> None:
    env = install_probe(tmp_path)
    path = tmp_path / "prices.jsonl"
    record(sim, path, "crypto_latest_price", "--crypto-ids", "1", "--count", "3")
    result = run_cli("replay", str(path), "--speed", "0", env=env)
    assert result.returncode == 0, result.stderr
    assert "probe" in result.stderr.splitlines()[0]  # "plugins: ..., probe"
    assert result.stdout == "", "without --format, replay prints no events"
    seen = [json.loads(line) for line in Path(env["CMCSYNC_PROBE_OUT"]).read_text().splitlines()]
    sent = sent_records(sim, PRICE)[:3]
    assert seen == [[s["channel"], s["params"], s["ts"]] for s in sent]


def test_replay_exits_1_when_a_plugin_raises(sim: Simulator, tmp_path: Path) -> None:
    env = install_probe(tmp_path)
    env["CMCSYNC_PROBE_RAISE"] = "1"
    path = tmp_path / "prices.jsonl"
    record(sim, path, "crypto_latest_price", "--crypto-ids", "1", "--count", "2")
    result = run_cli("replay", str(path), "--speed", "0", env=env)
    assert result.returncode == 1
    assert "the probe plugin failed on purpose" in result.stderr  # its traceback is logged
    assert "plugin hooks raised: probe 2 time(s)" in result.stderr
    assert "hint:" in result.stderr


def test_replay_keeps_the_recorded_timing_divided_by_speed(tmp_path: Path) -> None:
    frame = json.dumps(
        {
            "type": "data",
            "channel": PRICE,
            "params": {"crypto_ids": 1},
            "data": {"cid": 1, "p": 1.5},
            "ts": 1_000,
        }
    )
    path = tmp_path / "two.jsonl"
    path.write_text(
        json.dumps({"t": 100.0, "frame": frame})
        + "\n"
        + json.dumps({"t": 101.2, "frame": frame})
        + "\n"
    )
    started = time.monotonic()
    slow = run_cli("replay", str(path), "--speed", "2", "--no-plugins")
    assert slow.returncode == 0, slow.stderr
    assert time.monotonic() - started >= 0.6, "1.2 s recorded at speed 2 takes 0.6 s"
    assert "2 event(s)" in slow.stderr


def price_frame(ts: int) -> str:
    """A latest-price push as the server sends it."""
    data = {"cid": 1, "p": 1.5}
    return json.dumps(
        {"type": "data", "channel": PRICE, "params": {"crypto_ids": 1}, "data": data, "ts": ts}
    )


def nested_frame(ts: int, depth: int) -> str:
    """A latest-price push whose unknown key ``x`` holds lists ``depth`` deep."""
    return price_frame(ts).replace('"p": 1.5', '"p": 1.5, "x": ' + "[" * depth + "]" * depth)


@pytest.mark.parametrize(
    "depth",
    [
        200,  # any parser reads it; the decoder refuses it
        1_000,  # past what the standard json module reads, within what orjson reads
        100_000,  # past what any parser reads
    ],
)
def test_replay_skips_a_frame_nested_too_deep_and_goes_on(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "deep.jsonl"
    frames = [price_frame(1), nested_frame(2, depth), price_frame(3)]
    path.write_text("".join(json.dumps({"t": n, "frame": f}) + "\n" for n, f in enumerate(frames)))
    result = run_cli("replay", str(path), "--speed", "0", "--no-plugins", "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    assert_no_traceback(result.stderr)
    assert [json.loads(line)["ts"] for line in result.stdout.splitlines()] == [1, 3]
    assert "replayed 3 frame(s)" in result.stderr
    assert "2 event(s)" in result.stderr and "1 malformed" in result.stderr
    if depth == 200:
        assert f"the value of key 'x' nests deeper than {MAX_EXTRA_DEPTH} levels" in result.stderr


def test_the_recorder_writes_a_frame_nested_too_deep_and_does_not_count_it(
    tmp_path: Path,
) -> None:
    deep = nested_frame(2, 100_000)
    with (tmp_path / "deep.jsonl").open("w") as out:
        recorder = FrameRecorder(out, limit=2)
        for n, frame in enumerate([price_frame(1), deep, price_frame(3)]):
            recorder(float(n), frame)
    assert (recorder.frames, recorder.data_frames) == (3, 2)
    assert recorder.done.is_set(), "the limit counts the data frames it can read"
    assert [line["frame"] for line in lines_of(tmp_path / "deep.jsonl")][1] == deep


def test_binary_frames_are_kept_as_base64_and_replayed_as_malformed(tmp_path: Path) -> None:
    path = tmp_path / "binary.jsonl"
    path.write_text(json.dumps({"t": 1.0, "frame_b64": base64.b64encode(b"\x00\x01").decode()}))
    result = run_cli("replay", str(path), "--speed", "0", "--no-plugins")
    assert result.returncode == 0, result.stderr
    assert "0 event(s)" in result.stderr and "1 malformed" in result.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"t": 1.0, "frame": "{}"}\nnot json\n', "line 2"),
        ('{"frame": "{}"}\n', 'number "t"'),
        ('{"t": 1.0}\n', '"frame"'),
        (
            '{"t": 1.0, "frame": "{}"}\n{"t": ' + "[" * 100_000 + "]" * 100_000 + "}\n",
            "line 2: nested too deep",
        ),
    ],
    ids=["not-json", "no-time", "no-frame", "nested-too-deep"],
)
def test_a_bad_file_is_refused_naming_the_line(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    result = run_cli("replay", str(path), "--no-plugins")
    assert result.returncode == 2
    assert expected in result.stderr and "hint:" in result.stderr
    assert_no_traceback(result.stderr)


def test_replay_of_a_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    result = run_cli("replay", str(tmp_path / "nope.jsonl"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr and "cmcsync record" in result.stderr


def test_record_needs_a_channel_or_plugins(tmp_path: Path) -> None:
    result = run_cli("record", str(tmp_path / "x.jsonl"), "--api-key", KEY)
    assert result.returncode == 2
    assert "CHANNEL is required" in result.stderr and "--plugins" in result.stderr
