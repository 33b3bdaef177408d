"""Dropping the second copy of a swap or liquidity event.

CMC pushes a swap on the subscription of each token it involves, so a client watching both
tokens of a pair sees it twice. The channel table names the attributes that identify one
event (:attr:`cmcsync.channels.Channel.dedupe_key`); :class:`Deduper` remembers the most
recent keys of each channel and says which events it has seen.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable

from cmcsync.channels import Channel
from cmcsync.events import Event
from cmcsync.exceptions import ConfigError

__all__ = ["Deduper"]


class _Memory:
    """The last ``window`` keys of one channel: a set for lookups, a deque for their age."""

    __slots__ = ("keys", "order")

    def __init__(self) -> None:
        self.keys: set[Hashable] = set()
        self.order: deque[Hashable] = deque()


class Deduper:
    """Tell whether an event repeats one seen recently on the same channel.

    The key of an event is ``(channel name, first dedupe attribute, first non-None of the
    others)``: for swaps, the transaction hash and the EVM log index or Solana instruction
    index. An event without a transaction hash or without any index is never a duplicate
    (nothing identifies it safely), and neither is an event of a channel whose row has no
    ``dedupe_key``.

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

    def is_duplicate(self, channel: Channel, event: Event) -> bool:
        """Remember ``event`` and say whether its key was already remembered.

        :param channel: the channel row the event came from.
        :param event: the decoded event.
        :returns: ``True`` if the event is a copy of a recent one (and is counted in
            :attr:`dropped`), ``False`` otherwise.
        """
        names = channel.dedupe_key
        if not names:
            return False
        tx = getattr(event, names[0], None)
        if tx is None:
            return False
        index = None
        for name in names[1:]:
            index = getattr(event, name, None)
            if index is not None:
                break
        if index is None:
            return False
        key = (channel.name, tx, index)
        memory = self._memories.get(channel.name)
        if memory is None:
            memory = self._memories[channel.name] = _Memory()
        if key in memory.keys:
            self.dropped += 1
            return True
        memory.keys.add(key)
        memory.order.append(key)
        if len(memory.order) > self.window:
            memory.keys.discard(memory.order.popleft())
        return False
