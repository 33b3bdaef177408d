"""Stream latest prices from the local simulator: no key and no network needed."""

import cmcsync
from cmcsync.testing import Simulator

with Simulator(api_keys=["demo-key"], speed=50) as server:  # a CMC server on 127.0.0.1
    with cmcsync.Client(api_key="demo-key", url=server.url) as client:
        client.subscribe("market@crypto_latest_price", crypto_ids=[1, 1027])
        for n, event in enumerate(client.events(timeout=10), start=1):
            print(f"{event.crypto_id:>5} {event.price:>12.2f} USD at {event.time:%H:%M:%S}")
            if n == 6:
                break
