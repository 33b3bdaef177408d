"""Store latest prices in a database, then read them back as typed events.

Run it against the simulator (``cmcsync simulate`` prints its URL)::

    python store_prices.py ws://127.0.0.1:8765/v1 sqlite:///prices.db
"""

from __future__ import annotations

import sys

from cmcsync_sql import SqlPlugin

import cmcsync


def main(cmc_url: str, database_url: str, api_key: str = "test-key", count: int = 20) -> int:
    """Store ``count`` prices of Bitcoin and Ethereum; return how many rows were written."""
    store = SqlPlugin(url=database_url, channels=["crypto_latest_price"])
    # autoload=False: this plugin only, not those installed in the environment.
    client = cmcsync.Client(api_key=api_key, url=cmc_url, plugins=[store], autoload=False)
    with client:
        client.subscribe("market@crypto_latest_price", crypto_ids=[1, 1027])
        for n, _ in enumerate(client.events(timeout=30), start=1):
            if n == count:
                break
    # Closing the client wrote what the plugin held and stopped its writer thread.
    stats = store.stats()
    print(f"written {stats['written']}, lost {stats['dropped'] + stats['unwritten']}")  # noqa: T201
    last = store.read_events("crypto_latest_price")[-1]
    print(f"last: id {last.crypto_id} at {last.price} USD, {last.time:%H:%M:%S} UTC")  # noqa: T201
    return int(stats["written"])


if __name__ == "__main__":
    main(*sys.argv[1:3])
