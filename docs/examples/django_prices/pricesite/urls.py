"""URLs of the example: the page, its JSON feed and the cmcsync health check."""

from __future__ import annotations

from django.urls import include, path
from prices import views

urlpatterns = [
    path("", views.index, name="index"),
    path("prices.json", views.prices_json, name="prices-json"),
    path("cmcsync/", include("cmcsync.contrib.django.urls")),
]
