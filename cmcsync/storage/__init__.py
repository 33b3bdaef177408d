"""Building blocks for plugins that store or forward events.

A plugin's hook runs on the dispatcher thread, so it must not wait on a database or a
network. :class:`BufferedWriter` gives it a bounded buffer and a writer thread that writes
in batches, retries while the store is down, and counts whatever it could not write
(never losing anything silently). The value helpers write every attribute of an event down
and read it back with the same type and digits, ``Decimal`` included. The cmcsync-sql and
cmcsync-redis plugins are built on this module.
"""

from __future__ import annotations

from cmcsync.storage._values import ENVELOPE
from cmcsync.storage._values import Kind
from cmcsync.storage._values import channel_classes
from cmcsync.storage._values import class_named
from cmcsync.storage._values import dumps
from cmcsync.storage._values import loads
from cmcsync.storage._values import number_mode
from cmcsync.storage._values import payload_kinds
from cmcsync.storage._values import read_real
from cmcsync.storage._values import window_class
from cmcsync.storage._values import windows_from_plain
from cmcsync.storage._writer import BufferedWriter
from cmcsync.storage._writer import PartlyWritten
from cmcsync.storage._writer import Sink
from cmcsync.storage._writer import WriterError
from cmcsync.storage._writer import short_error

__all__ = [
    "ENVELOPE",
    "BufferedWriter",
    "Kind",
    "PartlyWritten",
    "Sink",
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
