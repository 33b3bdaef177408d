"""Live CoinMarketCap prices on a Flask page: the cmcsync Flask example.

Run it against the real service (``CMC_PRO_API_KEY`` set) with::

    flask --app prices_app run

or against a local simulator, with several gunicorn workers sharing one CMC connection::

    cmcsync simulate --port 8765 &
    export CMC_PRO_API_KEY=test-key FLASK_CMCSYNC_URL=ws://127.0.0.1:8765/v1
    FLASK_CMCSYNC_LEADER=true FLASK_PRICES_FILE=/tmp/prices.json \\
        gunicorn -w 4 'prices_app:create_app()'

Any config key can come from the environment with the ``FLASK_`` prefix (Flask's
``from_prefixed_env``; values are read as JSON when they parse).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from typing import Any

from flask import Flask, jsonify, render_template

import cmcsync
from cmcsync.contrib.flask import CMCSync
from cmcsync.events import CryptoLatestPrice

#: The extension; ``create_app`` initialises it on each app it makes.
cmc = CMCSync()

#: The coins on the page: CMC id -> name.
COINS = {1: "Bitcoin", 1027: "Ethereum", 1839: "BNB", 5426: "Solana", 52: "XRP"}


class PriceBoard:
    """The latest price of each coin, kept by a cmcsync plugin.

    :param path: a JSON file shared by every process of the app (leader mode: only the
        leader receives prices, every worker serves them); ``None`` keeps them in memory.
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._prices: dict[str, dict[str, Any]] = {}

    @cmcsync.hookimpl
    def cmcsync_on_crypto_latest_price(self, event: CryptoLatestPrice) -> None:
        """Record a price (on the client's dispatcher thread)."""
        row = {
            "price": float(event.price),
            "change_24h": None
            if event.percent_change_24h is None
            else float(event.percent_change_24h),
            "ts": event.ts,
        }
        with self._lock:
            self._prices[str(event.crypto_id)] = row
            if self.path is not None:
                _write_json(self.path, self._prices)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """The latest prices by CMC id (as a string, the JSON key)."""
        if self.path is not None:
            try:
                with open(self.path, encoding="utf-8") as handle:
                    loaded: dict[str, dict[str, Any]] = json.load(handle)
                    return loaded
            except (OSError, ValueError):
                return {}
        with self._lock:
            return dict(self._prices)


def _write_json(path: str, data: dict[str, Any]) -> None:
    # Readers in other processes must never see half a file: write aside, then rename.
    fd, temp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    os.replace(temp, path)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app.

    :param config: config values applied last (tests use it); ``CMCSYNC_*`` keys configure
        the client, ``PRICES_POLL_MS`` the page's refresh period and ``PRICES_FILE`` the
        shared price file.
    """
    app = Flask(__name__)
    app.config.from_mapping(
        CMCSYNC_SUBSCRIPTIONS=[
            {"channel": "market@crypto_latest_price", "crypto_ids": sorted(COINS)},
        ],
        PRICES_POLL_MS=1000,
        PRICES_FILE=None,
    )
    app.config.from_prefixed_env()
    app.config.update(config or {})
    board = PriceBoard(app.config["PRICES_FILE"])
    cmc.init_app(app, plugins=[board])

    @app.get("/")
    def index() -> str:
        return render_template("index.html", coins=COINS, poll_ms=app.config["PRICES_POLL_MS"])

    @app.get("/prices.json")
    def prices() -> Any:
        response = jsonify({"prices": board.snapshot()})
        response.headers["Cache-Control"] = "no-store"
        return response

    return app
