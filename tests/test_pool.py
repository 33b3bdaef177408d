"""Subscriptions spread over a pool of connections: budget, balance, replay per connection."""

from __future__ import annotations

import pytest

import cmcsync
from cmcsync.testing import EventRecorder, Simulator
from tests.conftest import KEY, make_client

PRICE = "market@crypto_latest_price"


def ids_on(conn: object) -> set[int]:
    return {dict(p)["crypto_ids"] for c, p in conn.subscriptions if c == PRICE}  # type: ignore[attr-defined]


def test_a_thousand_subscriptions_land_on_exactly_ten_connections() -> None:
    wanted = set(range(1, 1001))
    with Simulator(api_keys=(KEY,), sub_limit=100, speed=20, seed=11) as sim:
        recorder = EventRecorder()
        client = make_client(sim.url, recorder)
        try:
            client.subscribe(PRICE, crypto_ids=sorted(wanted), timeout=15)
            assert len(sim.connections()) == 10
            assert [len(c.subscriptions) for c in sim.connections()] == [100] * 10
            seen: set[int] = set()

            def every_id_has_data() -> bool:
                seen.update(e.params["crypto_ids"] for e in list(recorder.events))
                return seen >= wanted

            recorder.wait_for(every_id_has_data, timeout=30)
            stats = client.stats()
            assert stats["open_connections"] == 10
            assert [c["subscriptions"] for c in stats["connections"]] == [100] * 10
            assert stats["estimated_credits"] == 100.0
        finally:
            client.close()


def test_killing_one_connection_replays_only_its_share() -> None:
    with Simulator(api_keys=(KEY,), sub_limit=10, speed=50, seed=12) as sim:
        client = make_client(sim.url)
        try:
            client.subscribe(PRICE, crypto_ids=list(range(1, 31)))
            victim, *others = sim.connections()
            share = ids_on(victim)
            before = {id(c): len(c.received) for c in others}
            victim.close(1012, "restart")
            sim.wait_for(lambda: len(sim.all_connections()) == 4, timeout=5, what="reconnect")
            fresh = sim.all_connections()[3]
            sim.wait_for(lambda: ids_on(fresh) == share, timeout=5, what="replay")
            replayed = {
                cid
                for m in fresh.received
                if m.get("method") == "subscribe"
                for cid in m["params"]["crypto_ids"]
            }
            assert replayed == share
            sent_again = [
                m
                for c in others
                for m in c.received[before[id(c)] :]
                if m.get("method") == "subscribe"
            ]
            assert sent_again == [], "the other connections' subscriptions were not touched"
        finally:
            client.close()


def test_subscriptions_are_balanced_over_the_connections_they_need() -> None:
    with Simulator(api_keys=(KEY,), sub_limit=10, feeds=False) as sim:
        client = make_client(sim.url)
        try:
            client.subscribe(PRICE, crypto_ids=[1])  # learns sub_limit=10
            client.subscribe(PRICE, crypto_ids=list(range(2, 16)))
            loads = sorted(len(c.subscriptions) for c in sim.connections())
            assert loads == [7, 8]
        finally:
            client.close()


def test_over_the_budget_fails_early_stating_it() -> None:
    with Simulator(api_keys=(KEY,), sub_limit=5, feeds=False) as sim:
        client = make_client(sim.url, max_connections=2)
        try:
            client.subscribe(PRICE, crypto_ids=[1])
            with pytest.raises(cmcsync.ConfigError, match="the budget is 10") as info:
                client.subscribe(PRICE, crypto_ids=list(range(2, 12)))
            assert info.value.param == "crypto_ids"
            assert len(client.subscriptions()) == 1
        finally:
            client.close()


def test_a_full_connection_moves_subscriptions_instead_of_failing() -> None:
    with Simulator(api_keys=(KEY,), sub_limit=10, feeds=False) as sim:
        client = make_client(sim.url)
        try:
            client.subscribe(PRICE, crypto_ids=[1, 2])
            sim.fail_next_subscribe(2303)
            client.subscribe(PRICE, crypto_ids=[3, 4])
            assert set(client.subscriptions().values()) == {cmcsync.SubscriptionState.ACTIVE}
            first, second = sim.connections()
            assert ids_on(first) == {1, 2}
            assert ids_on(second) == {3, 4}
            assert client.stats()["moved_subscriptions"] == 2
        finally:
            client.close()


def test_invalid_max_connections_is_a_config_error() -> None:
    with pytest.raises(cmcsync.ConfigError, match="max_connections"):
        cmcsync.Client(api_key=KEY, url="ws://127.0.0.1:1/v1", autoload=False, max_connections=0)
