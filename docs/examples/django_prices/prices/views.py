"""The price page and the JSON it polls."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from prices.receivers import KEY


def index(request: HttpRequest) -> HttpResponse:
    """The page: one row per coin, refreshed by polling :func:`prices_json`."""
    return render(
        request,
        "prices/index.html",
        {"coins": settings.PRICES_COINS, "poll_ms": settings.PRICES_POLL_MS},
    )


def prices_json(request: HttpRequest) -> JsonResponse:
    """The latest price of each coin that has one: ``{"prices": {"1": {"price": ...}}}``."""
    found = cache.get_many([KEY.format(coin) for coin in settings.PRICES_COINS])
    prices = {key.split(":", 1)[1]: row for key, row in found.items()}
    response = JsonResponse({"prices": prices})
    response["Cache-Control"] = "no-store"
    return response
