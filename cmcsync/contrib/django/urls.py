"""URLs of the cmcsync app: ``include("cmcsync.contrib.django.urls")``."""

from __future__ import annotations

from django.urls import path  # type: ignore[import-untyped]

from cmcsync.contrib.django import views

app_name = "cmcsync"
urlpatterns = [path("health/", views.health, name="health")]
