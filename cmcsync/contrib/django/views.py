"""The health-check view: this process's client as JSON, with HTTP 200 or 503.

Mount it with ``path("cmcsync/", include("cmcsync.contrib.django.urls"))`` (then
``/cmcsync/health/``), or route :func:`health` yourself.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse  # type: ignore[import-untyped]

from cmcsync.contrib._runtime import idle_health
from cmcsync.contrib.django import _app_config

__all__ = ["health"]


def health(request: HttpRequest) -> JsonResponse:
    """Report the client of this process.

    200 when it is connected, or when this process is a follower in leader mode (another
    process streams); 503 otherwise, including when no client was started here (the body's
    ``reason`` says why). The body holds ``status``, ``pid``, ``role``, ``leader_pid``,
    ``state``, ``connected``, ``subscriptions`` (a count per state), ``events``,
    ``reconnects``, ``last_close_code`` and ``error`` when something failed.
    """
    config = _app_config()
    runtime = config.runtime
    status, body = runtime.health() if runtime is not None else idle_health()
    if status != 200 and config.decision is not None and body["role"] in ("idle", "waiting"):
        body["reason"] = f"not started in this process: {config.decision.reason}"
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    return response
