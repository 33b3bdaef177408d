"""Bad params fail before anything is sent; a refusal carries the server's fields."""

import cmcsync
from cmcsync.testing import Simulator

with Simulator(api_keys=["demo-key"], speed=50) as server:
    with cmcsync.Client(api_key="demo-key", url=server.url) as client:
        try:
            client.subscribe("onchain@kline", platform_id=14, address="0xabc", interval="2m")
        except cmcsync.ConfigError as exc:
            print(f"ConfigError ({exc.param}): {exc}")

        server.fail_next_subscribe(2302)  # as CMC answers a plan without the channel
        try:
            client.subscribe("market@crypto_latest_price", crypto_ids=[1])
        except cmcsync.SubscriptionError as exc:
            print(f"SubscriptionError {exc.error_code} {exc.category}: {exc.error_message}")
        print("still wanted:", len(client.subscriptions()))
