"""Property-based tests: the registry under concurrent use and faults, and any frame.

- A stateful test drives one client from several threads at once (subscribe, unsubscribe,
  unsubscribe_all, the whole channel) while the server drops or closes the connection, and
  checks after every step, once the reconnect settles, that the server holds exactly the
  wanted set and that the wanted set is what the steps asked for.
- The frame fuzzer of ``tests/fuzz_frames.py`` runs briefly: any frame, for any channel,
  is an event or a counted malformed frame, never an exception.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

import cmcsync
from cmcsync.testing import Simulator
from tests import fuzz_frames
from tests._proxy import PRICE, server_set, until, wanted_set
from tests.conftest import KEY, make_client

# Each worker thread owns a pool of ids, so the wanted set after a step does not depend on
# how the threads interleaved: the model stays exact while the client sees real races.
POOLS = ((1, 2, 3), (1027, 1028, 1029), (52, 53, 54))

Op = tuple[str, tuple[int, ...], bool]


def _ops(pool: tuple[int, ...]) -> st.SearchStrategy[list[Op]]:
    ids = st.lists(st.sampled_from(pool), min_size=1, max_size=len(pool), unique=True)
    op = st.tuples(st.sampled_from(["subscribe", "unsubscribe"]), ids.map(tuple), st.booleans())
    return st.lists(op, min_size=1, max_size=3)


_plans = st.tuples(*(_ops(pool) for pool in POOLS))
_faults = st.sampled_from([None, "drop", "close"])


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[Simulator]:
    with Simulator(api_keys=(KEY,), feeds=False) as sim:
        yield sim


def test_registry_matches_the_server_under_concurrent_use_and_faults(
    shared_sim: Simulator,
) -> None:
    sim = shared_sim

    class Registry(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            sim.wait_for(lambda: not sim.connections(), what="the last example's connections")
            self.client = make_client(sim.url, liveness=cmcsync.Liveness(enabled=False))
            self.model: set[int] = set()

        @initialize()
        def connect(self) -> None:
            self.client.start()
            self.client.wait_connected(5)

        def teardown(self) -> None:
            self.client.close()

        def _fault(self, fault: str | None) -> None:
            if fault == "drop":
                sim.drop_all()
            elif fault == "close":
                sim.close_all(1012, "restart")

        def _settle(self) -> None:
            wanted = {(PRICE, frozenset({("crypto_ids", cid)})) for cid in self.model}
            assert wanted_set(self.client) == wanted

            def settled() -> bool:
                states = set(self.client.subscriptions().values())
                return (
                    server_set(sim) == wanted
                    and states <= {cmcsync.SubscriptionState.ACTIVE}
                    and self.client.connected
                    and len(sim.connections()) == 1
                    and not sim.connections()[0].closed
                )

            try:
                until(sim, settled, timeout=10)
            except TimeoutError:
                raise AssertionError(
                    f"server holds {sorted(map(str, server_set(sim)))}, client wants "
                    f"{sorted(map(str, wanted))}: {self.client.subscriptions()}"
                ) from None

        @rule(plan=_plans, fault=_faults)
        def concurrently(self, plan: tuple[list[Op], ...], fault: str | None) -> None:
            barrier = threading.Barrier(len(plan) + 1)
            errors: list[BaseException] = []

            def work(ops: list[Op]) -> None:
                barrier.wait()
                try:
                    for method, ids, wait in ops:
                        getattr(self.client, method)(PRICE, crypto_ids=list(ids), wait=wait)
                except BaseException as exc:  # noqa: BLE001 - re-raised on the test's thread
                    errors.append(exc)

            threads = [
                threading.Thread(target=work, args=(ops,), name=f"test-worker-{i}")
                for i, ops in enumerate(plan)
            ]
            for thread in threads:
                thread.start()
            barrier.wait()
            self._fault(fault)
            for thread in threads:
                thread.join(30)
            assert not errors, errors
            for ops in plan:
                for method, ids, _ in ops:
                    if method == "subscribe":
                        self.model |= set(ids)
                    else:
                        self.model -= set(ids)
            self._settle()

        @rule(whole_channel=st.booleans(), fault=_faults)
        def unsubscribe_everything(self, whole_channel: bool, fault: str | None) -> None:
            self._fault(fault)
            if whole_channel:
                self.client.unsubscribe(PRICE)
            else:
                self.client.unsubscribe_all()
            self.model.clear()
            self._settle()

        @rule(fault=st.sampled_from(["drop", "close"]))
        def disconnect(self, fault: str) -> None:
            # On a loaded machine the keep-alive may be replacing the connection right now.
            sim.wait_for(lambda: len(sim.connections()) == 1, timeout=10, what="a connection")
            first = sim.connections()[0]
            self._fault(fault)
            sim.wait_for(lambda: first.closed)
            self._settle()

    run_state_machine_as_test(
        Registry,
        settings=settings(
            max_examples=6,
            stateful_step_count=6,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


def test_any_frame_for_any_channel_is_an_event_or_counted() -> None:
    fuzz_frames.run(examples=60)
