"""Integrations with web frameworks: :mod:`cmcsync.contrib.django` and :mod:`cmcsync.contrib.flask`.

Both share the same machinery, which imports no framework:

- the start-once rules: the client starts in processes that serve requests, once, and never
  in ``manage.py migrate``, ``flask shell``, an autoreloader's watcher or a gunicorn master;
- :class:`Runtime`: the one client of a process, safe across ``fork()``, with an optional
  leader mode in which one process of the host holds the CMC connection and the others take
  over within a second of its death.

Django and Flask are optional dependencies (``pip install "cmcsync[django]"`` or
``"cmcsync[flask]"``); importing :mod:`cmcsync.contrib` itself needs neither.
"""

from __future__ import annotations

from cmcsync.contrib._runtime import Role, Runtime

__all__ = ["Role", "Runtime"]
