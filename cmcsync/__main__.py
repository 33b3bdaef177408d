"""``python -m cmcsync`` runs the ``cmcsync`` command."""

from __future__ import annotations

import sys

from cmcsync.cli import main

sys.exit(main())
