"""Settings of the cmcsync Django example: live CoinMarketCap prices on a page.

Environment variables (all optional):

- ``CMC_PRO_API_KEY``: the CMC key (``test-key`` for ``cmcsync simulate``);
- ``CMCSYNC_URL``: the streaming endpoint, e.g. ``ws://127.0.0.1:8765/v1`` for the simulator;
- ``CMCSYNC_AUTOSTART``: ``false`` when ``manage.py cmcsync_run`` streams instead;
- ``CMCSYNC_LEADER``: ``true`` for leader mode (several workers, one connection);
- ``PRICES_CACHE_DIR``: where the prices are shared between processes;
- ``PRICES_DB``: the SQLite file (``migrate`` creates it).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cmcsync

BASE_DIR = Path(__file__).resolve().parent.parent

# For the example only: a real project reads its secret from the environment.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "true").lower() == "true"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "cmcsync.contrib.django",
    "prices",
]

MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "pricesite.urls"
WSGI_APPLICATION = "pricesite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {},
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("PRICES_DB", str(BASE_DIR / "db.sqlite3")),
    }
}

# The receivers store prices in the cache, and the views read them from it: a file-based
# cache is shared by every process (runserver, gunicorn workers, a cmcsync_run worker).
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": os.environ.get(
            "PRICES_CACHE_DIR", os.path.join(tempfile.gettempdir(), "cmcsync-django-prices")
        ),
    }
}

USE_TZ = True

#: The coins on the page: CMC id -> name.
PRICES_COINS = {1: "Bitcoin", 1027: "Ethereum", 1839: "BNB", 5426: "Solana", 52: "XRP"}
#: How often the page asks for new prices, in milliseconds.
PRICES_POLL_MS = int(os.environ.get("PRICES_POLL_MS", "1000"))

CMCSYNC = {
    "URL": os.environ.get("CMCSYNC_URL", cmcsync.DEFAULT_URL),
    "SUBSCRIPTIONS": [
        {"channel": "market@crypto_latest_price", "crypto_ids": sorted(PRICES_COINS)},
    ],
    "AUTOSTART": os.environ.get("CMCSYNC_AUTOSTART", "true"),
    "LEADER": os.environ.get("CMCSYNC_LEADER", "false"),
}
