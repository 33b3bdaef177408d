"""Building blocks for plugins that store or forward events.

A plugin's hook runs on the dispatcher thread, so it must not wait on a database or a
network. :class:`BufferedWriter` gives it a bounded buffer and a writer thread that writes
in batches, retries while the store is down, and counts whatever it could not write
(never losing anything silently). The value helpers write every attribute of an event down
and read it back with the same type and digits, ``Decimal`` included. The cmcsync-sql and
cmcsync-redis plugins are built on this module.
"""

from __future__ import annotations

from cmcsync.storage._plugin import StoragePlugin, StorageSettings
from cmcsync.storage._values import (
    ENVELOPE,
    Kind,
    channel_classes,
    class_named,
    dumps,
    loads,
    number_mode,
    payload_kinds,
    read_real,
    window_class,
    windows_from_plain,
)
from cmcsync.storage._writer import BufferedWriter, PartlyWritten, Sink, WriterError, short_error

__all__ = [
    "ENVELOPE",
    "BufferedWriter",
    "Kind",
    "PartlyWritten",
    "Sink",
    "StoragePlugin",
    "StorageSettings",
    "WriterError",
    "channel_classes",
    "class_named",
    "dumps",
    "loads",
    "number_mode",
    "payload_kinds",
    "read_real",
    "short_error",
    "window_class",
    "windows_from_plain",
]
