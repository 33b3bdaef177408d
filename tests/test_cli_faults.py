"""The ``--fault`` syntax and the schedule that fires faults on a simulator."""

from __future__ import annotations

from typing import Any

import pytest

from cmcsync.cli._faults import Fault, FaultSchedule, parse_fault


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("every=30s,close=1012", {"action": "close", "value": 1012, "first": 30, "every": 30}),
        ("at=10s,silence=5s", {"action": "silence", "value": 5, "first": 10, "every": None}),
        ("every=20s,drop", {"action": "drop", "first": 20, "every": 20}),
        (
            "at=5,every=1m,times=3,close=4004,reason=busy",
            {"first": 5, "every": 60, "times": 3, "value": 4004, "reason": "busy"},
        ),
        ("at=0,reject=429,count=3", {"action": "reject", "value": 429, "count": 3, "first": 0}),
        ("at=500ms,fail-subscribe=2303", {"action": "fail-subscribe", "value": 2303, "first": 0.5}),
        (" AT=1h , drop ", {"action": "drop", "first": 3600}),
    ],
)
def test_valid_specs(spec: str, expected: dict[str, Any]) -> None:
    fault = parse_fault(spec)
    assert fault.spec == spec
    for name, value in expected.items():
        assert getattr(fault, name) == value, name


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("every=30s", "exactly one action"),
        ("at=1s,drop,close=1000", "found close and drop"),
        ("drop", "say when"),
        ("every=0s,drop", "every must be longer than 0"),
        ("at=soon,drop", "at: 'soon' is not a duration"),
        ("at=1s,close=1006", "cannot be sent in a close frame"),
        ("at=1s,close=999", "from 1000 to 4999"),
        ("at=1s,reject=200", "from 400 to 599"),
        ("at=1s,reject=499", "not an HTTP status"),
        ("at=1s,silence=0", "silence must be longer than 0"),
        ("at=1s,drop=yes", "drop takes no value"),
        ("at=1s,close", "close needs a value, e.g. close=1012"),
        ("at=1s,times=2,drop", "times needs every"),
        ("at=1s,count=2,drop", "count goes with reject or fail-subscribe"),
        ("at=1s,at=2s,drop", "at is given twice"),
        ("at=1s,boom", "unknown part 'boom'"),
    ],
)
def test_invalid_specs_say_what_is_wrong_and_show_the_syntax(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match="invalid fault") as info:
        parse_fault(spec)
    assert message in str(info.value)
    assert "every=30s,close=1012" in str(info.value)


class FakeSimulator:
    """Records the fault calls a schedule makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def connections(self) -> list[object]:
        return [object()]

    def close_all(self, code: int, reason: str = "") -> None:
        self.calls.append(("close", code, reason))

    def drop_all(self) -> None:
        self.calls.append(("drop",))

    def silence(self, on: bool = True) -> None:
        self.calls.append(("silence", on))

    def reject_handshakes(self, status: int, count: int = 1) -> None:
        self.calls.append(("reject", status, count))

    def fail_next_subscribe(
        self, error_code: int, detail: str | None = None, count: int = 1
    ) -> None:
        self.calls.append(("fail", error_code, count))


def run_schedule(
    faults: list[Fault], until: float, step: float = 0.1
) -> tuple[FakeSimulator, list[str]]:
    sim, lines = FakeSimulator(), []
    schedule = FaultSchedule(faults, sim, lines.append, start=0.0)
    now = 0.0
    while now <= until + 1e-9:
        schedule.run_due(now)
        now = round(now + step, 6)
    return sim, lines


def test_every_repeats_and_times_limits() -> None:
    sim, lines = run_schedule([parse_fault("at=1s,every=2s,times=3,close=1012")], until=20)
    assert sim.calls == [("close", 1012, "")] * 3
    assert [line.split("]")[0] for line in lines] == ["[    1.0s", "[    3.0s", "[    5.0s"]
    assert "closed 1 connection(s) with close 1012 (Frame sink cancellation)" in lines[0]


def test_overlapping_silences_resume_once_after_the_last() -> None:
    sim, lines = run_schedule(
        [parse_fault("at=1s,silence=3s"), parse_fault("at=2s,silence=3s")], until=10
    )
    assert sim.calls == [("silence", True), ("silence", False)]
    assert lines[-1].startswith("[    5.0s] fault: silence over")


def test_once_only_faults_and_what_is_left() -> None:
    faults = [parse_fault("at=0,reject=503,count=2"), parse_fault("at=0.5s,fail-subscribe=2302")]
    sim = FakeSimulator()
    schedule = FaultSchedule(faults, sim, lambda line: None, start=100.0)
    assert schedule.next_due() == 100.0
    schedule.run_due(100.0)
    assert schedule.next_due() == 100.5
    schedule.run_due(101.0)
    assert sim.calls == [("reject", 503, 2), ("fail", 2302, 1)]
    assert schedule.next_due() is None


def test_stop_ends_a_silence_in_progress() -> None:
    sim = FakeSimulator()
    schedule = FaultSchedule([parse_fault("at=0,silence=1m")], sim, lambda line: None, start=0.0)
    schedule.run_due(0.0)
    schedule.stop()
    assert sim.calls == [("silence", True), ("silence", False)]
