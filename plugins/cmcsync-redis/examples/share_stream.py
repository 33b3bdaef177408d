"""One process publishes the stream to Redis; consumers anywhere read it back.

Run the two halves in two terminals, against the simulator (``cmcsync simulate``)::

    python share_stream.py publish ws://127.0.0.1:8765/v1 redis://127.0.0.1:6379/0
    python share_stream.py consume redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import sys

from cmcsync_redis import Consumer, RedisPlugin

import cmcsync
from cmcsync.events import Event


def publish(cmc_url: str, redis_url: str, api_key: str = "test-key", count: int = 20) -> int:
    """Publish ``count`` latest prices and klines; return how many entries were added."""
    publisher = RedisPlugin(url=redis_url, maxlen=10_000)
    client = cmcsync.Client(api_key=api_key, url=cmc_url, plugins=[publisher], autoload=False)
    with client:
        client.subscribe("market@crypto_latest_price", crypto_ids=[1, 1027])
        client.subscribe(
            "onchain@kline",
            platform_id=14,
            address="0x0e09fabb73bd3ade0a17ecc321fd13a19e81ce82",
            interval="1s",
        )
        for n, _ in enumerate(client.events(timeout=30), start=1):
            if n == count:
                break
    return int(publisher.stats()["written"])


def consume(redis_url: str, group: str | None = None, idle: float | None = None) -> list[Event]:
    """Print what was published, as typed events, until nothing comes for ``idle`` seconds.

    With ``group``, consumers started with the same group share the entries.
    """
    seen: list[Event] = []
    channels = ["crypto_latest_price", "kline"]
    options = {"group": group, "name": "printer"} if group else {}
    with Consumer(redis_url, channels=channels, **options) as consumer:
        for event in consumer.events(timeout=idle):
            seen.append(event)
            print(event.channel, event.params, event.ts)  # noqa: T201
    return seen


if __name__ == "__main__":
    if sys.argv[1] == "publish":
        publish(sys.argv[2], sys.argv[3])
    else:
        consume(sys.argv[2])
