"""The registry: identity, states, waiting for acks, request correlation."""

from __future__ import annotations

import threading
import time

from cmcsync.channels import get_channel
from cmcsync.subscriptions import (
    Registry,
    Requests,
    Subscription,
    SubscriptionState,
    expand,
)


def subs(*ids: int) -> list[Subscription]:
    return expand(get_channel("crypto_latest_price"), {"crypto_ids": list(ids)})


def test_identity_is_channel_plus_normalized_params() -> None:
    a = expand(get_channel("transaction"), {"platform_id": 14, "address": "0xABC"})
    b = expand(get_channel("onchain@transaction"), {"platform_id": "14", "address": ["0xabc"]})
    assert a == b
    assert str(a[0]) == "onchain@transaction platform_id=14 address=0xabc"


def test_add_reports_only_new_and_states_move() -> None:
    registry = Registry()
    assert registry.add(subs(1, 2)) == subs(1, 2)
    assert registry.add(subs(2, 3)) == subs(3)
    assert registry.counts() == {"pending": 3, "active": 0, "rejected": 0}
    assert registry.set_state(subs(1), SubscriptionState.ACTIVE) == subs(1)
    assert registry.set_state(subs(1), SubscriptionState.ACTIVE) == []
    error = RuntimeError("refused")
    registry.set_state(subs(2), SubscriptionState.REJECTED, error)
    assert registry.error(subs(2)[0]) is error
    assert registry.reset_pending() == subs(1, 2, 3)
    assert registry.counts()["pending"] == 3


def test_discard_channel_and_clear() -> None:
    registry = Registry()
    registry.add(subs(1, 2))
    kline = expand(get_channel("kline"), {"platform_id": 14, "address": "0x1", "interval": "1m"})
    registry.add(kline)
    assert registry.discard_channel("market@crypto_latest_price") == subs(1, 2)
    assert registry.wanted() == kline
    assert registry.clear() == kline
    assert len(registry) == 0


def test_wait_settled_wakes_on_ack_from_another_thread() -> None:
    registry = Registry()
    registry.add(subs(1))
    acker = threading.Timer(0.05, registry.set_state, (subs(1), SubscriptionState.ACTIVE))
    acker.start()
    try:
        assert registry.wait_settled(subs(1), time.monotonic() + 5, stop=lambda: False)
    finally:
        acker.join()


def test_wait_settled_gives_up_at_the_deadline_or_on_stop() -> None:
    registry = Registry()
    registry.add(subs(1))
    assert not registry.wait_settled(subs(1), time.monotonic() + 0.05, stop=lambda: False)
    assert not registry.wait_settled(subs(1), None, stop=lambda: True)


def test_requests_resolve_by_id_and_fail_all() -> None:
    requests = Requests()
    first = requests.open("subscribe", "market@crypto_latest_price", {"crypto_ids": [1]}, subs(1))
    second = requests.open("unsubscribe_all")
    assert second.id == first.id + 1
    assert requests.resolve(first.id, answer={"type": "ack"}) is first
    assert first.done.is_set() and first.answer == {"type": "ack"}
    assert requests.resolve(first.id) is None
    error = ConnectionError("gone")
    assert requests.fail_all(error) == [second]
    assert second.error is error
    assert requests.pending() == []
