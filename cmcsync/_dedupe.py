"""Dropping the second copy of a swap or liquidity event.

CMC pushes a swap on the subscription of each token it involves, so a client watching both
tokens of a pair sees it twice. The channel table names the attributes that identify one
event (:attr:`cmcsync.channels.Channel.dedupe_key`); :class:`Deduper` remembers the most
recent keys of each channel and says which events it has seen.

A key is one ``str``: the transaction hash followed by two characters that spell the index
(seven bits each, so indexes 0 to 16,383). The suffix has a fixed length, so two keys are
equal exactly when hash and index are: nothing is truncated, case-folded or decoded.
(Decoding a hex hash to bytes would save another 48 bytes a key, but its checks would
double the time of a call on the reader thread.) On CPython 3.11 a key costs 51 bytes plus
the hash's length, rounded up to 8: 120 bytes for an EVM hash (``0x`` and 64 hex digits),
144 for an 87- or 88-character Solana signature; the table and the queue that hold it add
about 50 bytes. A full window of the default 10,000 keys is about 1.7 MB per channel for
EVM swaps and 1.9 MB for Solana ones. A spelled key shares no object with its event, so the
window keeps none of a delivered event's strings alive.
"""

from __future__ import annotations

import numbers
import threading
from collections import deque
from collections.abc import Callable, Hashable
from operator import attrgetter
from typing import Any

from cmcsync.channels import Channel
from cmcsync.events import Event
from cmcsync.exceptions import ConfigError

__all__ = ["Deduper"]

# Two characters of seven bits: the key stays ASCII, one byte a character, for an ASCII hash.
_SPELLABLE = 1 << 14


def _spell(index: int) -> str:
    """``index`` (0 to 16,383) as two characters, its high and low seven bits."""
    return chr(index >> 7) + chr(index & 0x7F)


# The spelling of the indexes events really carry (EVM log indexes, Solana instruction
# indexes), made once so the reader thread only looks it up. A dict rather than a tuple:
# what equals one of these ints (``True``, ``3.0``, ``Decimal(3)``) finds the same spelling,
# as ``==`` would match it, and a negative index misses instead of counting from the end.
_SPELLED: dict[int, str] = {index: _spell(index) for index in range(512)}


def _as_int(number: Any) -> Any:
    """``number`` as the ``int`` it equals (``True``, ``600.0``), else ``number`` itself."""
    try:
        whole = int(number)
    except (TypeError, ValueError, ArithmeticError):  # NaN, infinity, complex
        return number
    return whole if whole == number else number


def _rare_key(tx: Any, index: Any) -> Hashable:
    """The key of an event the fast path in :meth:`Deduper.is_duplicate` cannot spell.

    That is a hash of a ``str`` subclass (keyed by its text), an index that is a number equal
    to an ``int`` (keyed as that ``int``, as ``==`` compares them), or an index past the
    table of spellings. Whatever cannot be spelled (a negative or huge index, one that is no
    integer, a hash that is no string) stays a ``(tx, index)`` tuple, which equals no string.
    """
    if type(index) is not int and isinstance(index, numbers.Number):
        index = _as_int(index)
    if not isinstance(tx, str):
        return (tx, index)
    text = str.__str__(tx)  # the plain text: a subclass's own __add__ has no say in keys
    if type(index) is int and 0 <= index < _SPELLABLE:
        return text + _spell(index)
    return (text, index)


def _read_each(event: object, names: tuple[str, ...]) -> tuple[Any, ...]:
    """The attributes ``names`` of ``event``, ``None`` for each it lacks."""
    # Not inline in Deduper.is_duplicate: a generator there would make ``event`` a cell
    # variable, a cost on every call.
    return tuple(getattr(event, name, None) for name in names)


def _first_set(values: tuple[Any, ...]) -> Any:
    """The first of the alternative indexes after the second name that is not ``None``."""
    for value in values[2:]:
        if value is not None:
            return value
    return None


class _Memory:
    """The last ``window`` keys of one channel, and how to read them off its events."""

    __slots__ = ("keys", "names", "order", "read")

    def __init__(self, names: tuple[str, ...]) -> None:
        # A dict as a set: at 10,000 keys and steady churn CPython 3.11 keeps a set's table
        # at 65,536 slots of 16 bytes, a str-keyed dict's at 21,845 entries of 16 bytes plus
        # 32,768 two-byte slots: 42 bytes a key instead of 105.
        self.keys: dict[Hashable, None] = {}
        self.order: deque[Hashable] = deque()
        self.read_with(names)

    def read_with(self, names: tuple[str, ...]) -> None:
        """Read the attributes ``names`` (at least two) off the events from now on."""
        #: The channel row's ``dedupe_key``, which :attr:`read` reads in one call.
        self.names = names
        self.read: Callable[[Any], tuple[Any, ...]] = attrgetter(*names)


class Deduper:
    """Tell whether an event repeats one seen recently on the same channel.

    The identity of an event is its first dedupe attribute and the first non-None of the
    others: for swaps, the transaction hash and the EVM log index or Solana instruction
    index. Two events are the same when both values are equal (``==``), so hashes that
    differ only in letter case are different events. An event without a transaction hash or
    without any index is never a duplicate (nothing identifies it safely), and neither is an
    event of a channel whose row has no ``dedupe_key``.

    Each channel keeps its own keys. A key is the hash with the index spelled in two
    characters after it (see the module docstring): with its share of the table and the
    queue, about 170 bytes per remembered EVM swap and 190 per Solana one, so a full default
    window takes about 1.7 MB per channel. A hash that is no string, or an index outside 0 to
    16,383 or no integer, is kept as a ``(hash, index)`` tuple instead, about 100 bytes more.

    Memory is bounded: each channel remembers its last ``window`` keys, so a copy that comes
    back after ``window`` newer events is delivered again. Not thread-safe: one thread (the
    reader) owns it.

    :param window: how many recent keys to remember per channel, at least 1.
    :raises ConfigError: if ``window`` is not a positive integer.

    :ivar dropped: how many duplicates :meth:`is_duplicate` has reported so far.
    """

    def __init__(self, *, window: int = 10_000) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ConfigError(
                f"dedupe window must be a positive integer, not {window!r}", param="dedupe_window"
            )
        self.window = window
        self.dropped = 0
        self._memories: dict[str, _Memory] = {}
        # The row of the previous call and its memory (None: the row names no key), in one
        # attribute so that another thread never sees half of it. Rows are frozen, and most
        # calls repeat the previous row, so this skips the lookup.
        self._last: tuple[Channel | None, _Memory | None] = (None, None)
        # Two threads may decode at once (several connections, or a reader thread taking a
        # socket back from a dispatcher thread still at work): looking a key up and
        # remembering it is one step.
        self._lock = threading.Lock()

    def is_duplicate(self, channel: Channel, event: Event) -> bool:
        """Remember ``event`` and say whether its key was already remembered.

        :param channel: the channel row the event came from.
        :param event: the decoded event.
        :returns: ``True`` if the event is a copy of a recent one (and is counted in
            :attr:`dropped`), ``False`` otherwise.
        """
        row, memory = self._last
        if channel is not row:
            memory = self._recall(channel)
        if memory is None:
            return False
        try:
            values = memory.read(event)
        except AttributeError:
            values = _read_each(event, memory.names)
        tx = values[0]
        if tx is None:
            return False
        index = values[1]
        if index is None:
            # The table's rows name three attributes: skip the loop for them.
            index = values[2] if len(values) == 3 else _first_set(values)
            if index is None:
                return False
        if type(tx) is str:
            try:
                key: Hashable = tx + _SPELLED[index]
            except KeyError:
                key = _rare_key(tx, index)
        else:
            key = _rare_key(tx, index)
        keys = memory.keys
        with self._lock:
            if key in keys:
                self.dropped += 1
                return True
            keys[key] = None
            order = memory.order
            order.append(key)
            if len(order) > self.window:
                del keys[order.popleft()]
        return False

    def _recall(self, channel: Channel) -> _Memory | None:
        """The memory of ``channel``'s keys, made on first use; ``None`` if it names no key."""
        names = channel.dedupe_key
        memory = None
        if names and len(names) >= 2:
            with self._lock:
                memory = self._memories.get(channel.name)
                if memory is None:
                    memory = self._memories[channel.name] = _Memory(names)
                elif memory.names is not names:
                    memory.read_with(names)  # another row of the same name: keys stay shared
        self._last = (channel, memory)
        return memory
