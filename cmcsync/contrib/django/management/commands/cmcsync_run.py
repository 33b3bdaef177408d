"""``manage.py cmcsync_run``: run the client in the foreground, as a dedicated worker.

The recommended production set-up: web processes keep ``CMCSYNC["AUTOSTART"] = False`` and
serve what the worker stored (database, cache); one ``cmcsync_run`` process, supervised like
any worker, holds the CMC connection and sends the signals to the project's receivers.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.apps import apps  # type: ignore[import-untyped]
from django.core.management.base import BaseCommand, CommandError  # type: ignore[import-untyped]

from cmcsync.contrib._foreground import exit_code_of, run_foreground
from cmcsync.exceptions import CmcsyncError


class Command(BaseCommand):  # type: ignore[misc]
    """Run the cmcsync client until SIGTERM or Ctrl-C."""

    help = (
        "Run the cmcsync client in this process until SIGTERM or Ctrl-C, sending the "
        "cmcsync signals to the project's receivers (the dedicated streaming worker). "
        "Exit status: 0 stopped, 3 key or plan rejected, 4 gave up connecting, 1 other errors."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add ``--duration`` and ``--leader``/``--no-leader``."""
        parser.add_argument(
            "--duration",
            type=float,
            default=None,
            metavar="SECONDS",
            help="stop after this many seconds (default: run until stopped)",
        )
        parser.add_argument(
            "--leader",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="leader mode: among the processes of this host using the same lock, one "
            "streams and the others stand by (default: CMCSYNC['LEADER'])",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Run until stopped."""
        duration = options.get("duration")
        if duration is not None and duration <= 0:
            raise CommandError(f"--duration must be > 0, got {duration}", returncode=2)
        config = apps.get_app_config("cmcsync")
        try:
            runtime = config.new_runtime(leader=options.get("leader"))
            run_foreground(runtime, duration=duration, say=self.stdout.write)
        except CmcsyncError as exc:
            raise CommandError(f"cmcsync: {exc}", returncode=exit_code_of(exc)) from exc
