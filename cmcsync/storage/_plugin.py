"""A base class for plugins that write events somewhere through a :class:`BufferedWriter`."""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from cmcsync.events import Event
from cmcsync.hookspecs import hookimpl
from cmcsync.storage._writer import BufferedWriter, Sink, WriterError

__all__ = ["StoragePlugin", "StorageSettings"]

T = TypeVar("T")


class StorageSettings(Protocol):
    """What :class:`StoragePlugin` reads from a plugin's settings."""

    @property
    def url(self) -> str: ...
    @property
    def channels(self) -> tuple[str, ...]: ...
    @property
    def buffer_size(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def close_timeout(self) -> float: ...
    @property
    def backoff(self) -> Any: ...


_live: weakref.WeakSet[StoragePlugin[Any]] = weakref.WeakSet()


class StoragePlugin(Generic[T]):
    """Hooks that hand each event of the configured channels to a buffered writer.

    The hook only appends to the buffer, so the dispatcher thread never waits for the store;
    the writer thread (``writer_thread``) writes in batches and retries while the store
    is down. Problems (an outage, a full buffer, items that could not be written) are
    logged, counted in :meth:`stats`, and raised as :class:`WriterError` from the plugin's
    next hook call, so the client reports them through ``cmcsync_on_plugin_error``. It never
    raises twice in a row, so the client never switches it off for reporting.

    When the client closes (``cmcsync_on_close``), what is held is written within
    ``close_timeout`` and the writer thread is joined; :meth:`close` does the same for a
    program that stops using the plugin without closing its client.

    A subclass names its thread, logger and stats key, and builds its sink and items.
    """

    #: The name of the writer thread.
    writer_thread: ClassVar[str] = "cmcsync-storage-writer"
    #: The key under which :meth:`stats` shows the destination (without its password).
    destination: ClassVar[str] = "url"
    #: Where problems are logged.
    log: ClassVar[logging.Logger] = logging.getLogger("cmcsync.storage")

    def __init__(self, settings: StorageSettings) -> None:
        self.settings = settings
        self._channels = frozenset(settings.channels)
        self._writer: BufferedWriter[T] | None = None
        self._lock = threading.Lock()
        self._raised_last = False
        _live.add(self)

    # --- for subclasses -------------------------------------------------------------------

    def make_sink(self, client: Any) -> Sink[T]:
        """Build the sink the writer writes to, on the first event (``client`` sent it)."""
        raise NotImplementedError

    def item(self, event: Event, client: Any) -> T:
        """What goes into the buffer for ``event``."""
        raise NotImplementedError

    def redacted_url(self) -> str:
        """The destination, without its password, for :meth:`stats` and reprs."""
        return self.settings.url

    # --- hooks ----------------------------------------------------------------------------

    @hookimpl
    def cmcsync_on_event(self, event: Event, client: Any) -> None:
        if event.channel in self._channels:
            self._writer_for(client).put(self.item(event, client))
        self._raise_reports()

    @hookimpl(optionalhook=True)
    def cmcsync_on_close(self, client: Any) -> None:
        writer = self._writer
        if writer is None:
            return
        writer.stop(_close_limit(self.settings.close_timeout, client))
        reports = writer.take_reports()
        self._raised_last = False
        if reports:
            raise WriterError.combine(reports)

    # --- the host's controls --------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Write what is held and join the writer thread; a later event starts it again.

        Problems are logged and counted in :meth:`stats` (there is no hook call to raise
        them from).

        :param timeout: seconds to keep writing; ``close_timeout`` by default.
        """
        writer = self._writer
        if writer is not None:
            writer.stop(self.settings.close_timeout if timeout is None else timeout)

    def stats(self) -> dict[str, Any]:
        """The writer's state and counters (see :meth:`BufferedWriter.stats`), and where to.

        :returns: the destination (under ``destination``, without password),
            ``channels``, then ``state``, ``buffered``, ``in_flight``, ``capacity``,
            ``accepted``, ``written``, ``batches``, ``dropped``, ``rejected``, ``unwritten``,
            ``failed_attempts``, ``outages``, ``failures`` and ``last_error``.
        """
        out: dict[str, Any] = {
            self.destination: self.redacted_url(),
            "channels": list(self.settings.channels),
        }
        writer = self._writer
        if writer is None:
            out.update(
                state="stopped",
                buffered=0,
                in_flight=0,
                capacity=self.settings.buffer_size,
                batch_size=self.settings.batch_size,
                accepted=0,
                written=0,
                batches=0,
                dropped=0,
                rejected=0,
                unwritten=0,
                failed_attempts=0,
                outages=0,
                failures=0,
                last_error=None,
            )
        else:
            out.update(writer.stats())
        return out

    # --- internals ------------------------------------------------------------------------

    def _writer_for(self, client: Any) -> BufferedWriter[T]:
        writer = self._writer
        if writer is not None:
            return writer
        with self._lock:
            if self._writer is None:
                self._writer = BufferedWriter(
                    self.make_sink(client),
                    thread_name=self.writer_thread,
                    capacity=self.settings.buffer_size,
                    batch_size=self.settings.batch_size,
                    backoff=self.settings.backoff,
                    logger=self.log,
                )
            return self._writer

    def _raise_reports(self) -> None:
        writer = self._writer
        if writer is None:
            return
        if self._raised_last:
            # A failing streak would switch the plugin off: report again only after a
            # call that succeeded.
            self._raised_last = False
            return
        reports = writer.take_reports()
        if reports:
            self._raised_last = True
            raise WriterError.combine(reports)


def _close_limit(close_timeout: float, client: Any) -> float:
    """Seconds to keep writing at close: the client gives the dispatcher thread its own
    ``timeouts.close`` for everything left, so stay well within it."""
    timeouts = getattr(client, "timeouts", None)
    client_limit = getattr(timeouts, "close", None)
    if isinstance(client_limit, (int, float)) and client_limit > 0:
        return min(close_timeout, 0.5 * client_limit)
    return close_timeout


@atexit.register
def _close_all() -> None:
    # A backstop for programs that exit without closing their client.
    for plugin in list(_live):
        plugin.close()
