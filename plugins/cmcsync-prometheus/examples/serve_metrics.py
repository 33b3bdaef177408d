"""Serve Prometheus metrics of a client while it streams.

Run it against the simulator (``cmcsync simulate``), then scrape the URL it prints::

    python serve_metrics.py ws://127.0.0.1:8765/v1
"""

from __future__ import annotations

import sys
import urllib.request

from cmcsync_prometheus import PrometheusPlugin

import cmcsync


def main(cmc_url: str, api_key: str = "test-key", count: int = 20) -> str:
    """Stream ``count`` prices and return the endpoint's text, scraped while connected."""
    metrics = PrometheusPlugin(port=0)  # 0: any free port; see metrics.url
    client = cmcsync.Client(api_key=api_key, url=cmc_url, plugins=[metrics], autoload=False)
    try:
        with client:
            client.subscribe("market@crypto_latest_price", crypto_ids=[1, 1027])
            for n, _ in enumerate(client.events(timeout=30), start=1):
                if n == count:
                    break
            assert metrics.url is not None
            with urllib.request.urlopen(metrics.url, timeout=5) as response:  # noqa: S310
                text: str = response.read().decode()
    finally:
        metrics.close()  # stops the endpoint and joins its thread
    print(*(line for line in text.splitlines() if line.startswith("cmcsync_events")), sep="\n")  # noqa: T201
    return text


if __name__ == "__main__":
    main(sys.argv[1])
