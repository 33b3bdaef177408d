"""The dispatcher thread: plugins and the events iterator, fed from the bounded queue.

Reader threads hand over decoded events in batches with :meth:`Dispatcher.submit` and
lifecycle calls with :meth:`Dispatcher.notify`; the one thread ``cmcsync-dispatch`` takes them
in arrival order (:mod:`cmcsync._queue`), calls the plugins, then feeds
:meth:`cmcsync.Client.events`. No user code runs on a reader thread, so a slow plugin never
delays a ping.

While it has nothing queued, the dispatcher thread reads the connections' sockets itself
(they are lent to it: :class:`cmcsync._connection.ReadHost`) and calls the plugins straight
from the read, so a quiet stream costs no thread wake-up per frame. It waits on those sockets
and on its queue's bell at once (one ``epoll`` call where the platform has it); a reader
thread takes its socket back as soon as the dispatcher stays away from it too long, in a
slow plugin.

Each plugin's implementation is called on its own rather than through pluggy's call loop,
which stops at the first implementation that raises: a failure is logged with the plugin and
hook names, counted and reported through ``cmcsync_on_plugin_error``, and the other plugins
still get the call. A plugin failing ``max_plugin_failures`` times in a row is switched off.
"""

from __future__ import annotations

import collections
import inspect
import logging
import math
import select
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pluggy

from cmcsync import hookspecs
from cmcsync._connection import DOZE_AFTER, PATROL, STALL_AFTER, Connection
from cmcsync._queue import EventQueue, Note
from cmcsync.channels import CHANNELS
from cmcsync.config import DispatchConfig
from cmcsync.events import Event
from cmcsync.exceptions import ClientClosedError

__all__ = ["THREAD_NAME", "Dispatcher"]

logger = logging.getLogger("cmcsync.dispatch")

#: The name of the dispatcher thread.
THREAD_NAME = "cmcsync-dispatch"

_ON_EVENT = "cmcsync_on_event"
_PLUGIN_ERROR = "cmcsync_on_plugin_error"

#: Every hook and its argument names, read from the specs.
_SPEC_ARGS: Mapping[str, tuple[str, ...]] = {
    name: tuple(inspect.signature(getattr(hookspecs, name)).parameters)
    for name in dir(hookspecs)
    if hasattr(getattr(hookspecs, name), f"{hookspecs.PROJECT_NAME}_spec")
}
#: Hooks that go through :meth:`Dispatcher.notify`: all but the data hooks and the
#: start-up hook the client calls itself.
_LIFECYCLE_HOOKS = (
    frozenset(_SPEC_ARGS)
    - {_ON_EVENT, "cmcsync_subscriptions"}
    - {row.hook for row in CHANNELS.values()}
)

#: Seconds between two logged queue warnings (slow consumer, drops).
_REPORT_LOG_INTERVAL = 30.0

# How a data-hook implementation takes its arguments: the common shapes get a direct call.
_CALL_EVENT_CLIENT, _CALL_EVENT, _CALL_OTHER = 0, 1, 2
_SHAPES = {("event", "client"): _CALL_EVENT_CLIENT, ("event",): _CALL_EVENT}


class _PluginState:
    """Failure bookkeeping for one plugin, shared by all its hook implementations."""

    __slots__ = ("disabled", "errors", "name", "streak")

    def __init__(self, name: str) -> None:
        self.name = name
        self.errors = 0
        self.streak = 0  # failures in a row; any successful call resets it
        self.disabled = False


# (function, call shape, argument names, plugin state, hook name)
_Entry = tuple[Callable[..., object], int, tuple[str, ...], _PluginState, str]


class Dispatcher:
    """Deliver events and lifecycle calls to plugins and iterators on one thread.

    :param pm: the client's plugin manager.
    :param client: passed to the hooks as ``client``.
    :param config: queue size, overflow policy, slow-consumer threshold, failure limit.
    """

    def __init__(self, pm: pluggy.PluginManager, client: object, config: DispatchConfig) -> None:
        self._pm = pm
        self._client = client
        self._config = config
        self._queue = EventQueue(config, client)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._next_report_log = 0.0
        # Inline mode: whoever delivers (a reader thread with its events, or the dispatcher
        # thread with lifecycle calls) holds this lock, so hooks never run on two threads at
        # once and run in the order things were queued. _owner is the holder's thread id.
        self._inline = config.mode == "inline"
        self._delivering = threading.Lock()
        self._owner: int | None = None

        # Thread mode: the sockets lent by the connections (fd by connection), the bell the
        # queue rings through, and since when the thread has been away from its sockets
        # (0.0 while it waits on them).
        self._loans_lock = threading.Lock()
        self._loans: dict[Connection, int] = {}
        # Lent since the thread last looked: their buffers may already hold frames.
        self._fresh: list[Connection] = []
        self._loans_changed = False
        self._hosting = False
        self._bell: tuple[socket.socket, socket.socket] | None = None
        self._away = 0.0
        # Since when the thread has waited on its sockets (set before each wait).
        self._idle_since = math.inf
        # The ident of this thread while it reads lent sockets (0 otherwise): its submits
        # from the read are delivered at once.
        self._reading = 0

        # Iterator state, guarded by _iter_cond.
        self._iter_cond = threading.Condition()
        self._iter_buf: collections.deque[Event] = collections.deque()
        self._iter_enabled = False
        self._iter_warned = False
        self._finished = False
        self._fatal: BaseException | None = None

        # Implementation lists per hook, rebuilt when the manager's registrations change.
        self._states_lock = threading.Lock()
        self._states: dict[str, _PluginState] = {}
        self._cache_key: object = object()
        self._entries: dict[str, tuple[_Entry, ...]] = {}
        self._data: dict[str, tuple[_Entry, ...]] = {}
        self._any: tuple[_Entry, ...] = ()
        self._warned_wrappers: set[str] = set()
        self._refresh()

    # ---------------------------------------------------------------------------------------
    # Life cycle
    # ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread ``cmcsync-dispatch``; calling it again does nothing.

        :raises ClientClosedError: if the dispatcher was closed.
        """
        with self._start_lock:
            if self._queue.closing:
                raise ClientClosedError("the dispatcher is closed")
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
            self._queue.consumer = self._thread
            if not self._inline:
                receive, send = socket.socketpair()
                receive.setblocking(False)
                send.setblocking(False)
                self._bell = (receive, send)
                self._queue.set_waker(self._ring)
                self._hosting = True
            self._thread.start()

    def finish(self, error: BaseException | None) -> None:
        """End every :meth:`iterate` after its buffered events, raising ``error`` if given.

        :param error: the fatal background error (a rejected key...), or ``None``.
        """
        with self._iter_cond:
            self._finished = True
            if error is not None and self._fatal is None:
                self._fatal = error
            self._iter_cond.notify_all()

    def close(self, timeout: float) -> None:
        """Deliver what is queued, then stop and join the thread.

        Events still queued when ``timeout`` runs out are counted as ``undelivered``; so are
        events submitted from now on. Idempotent. Called on the dispatcher thread itself (a
        plugin closing the client from a hook), it returns at once and the thread stops by
        itself once the hook has returned and the queue is drained.

        :param timeout: seconds to deliver and join.
        """
        with self._start_lock:
            deadline = self._queue.close(timeout)
            thread = self._thread
        if thread is None:
            self._stopped()
            return
        if thread is threading.current_thread() or self._owner == threading.get_ident():
            # Inside a hook: the thread finishes once the hook has returned.
            return
        # A little past the deadline: the thread needs a moment to count what it left.
        thread.join(max(0.0, deadline - time.monotonic()) + 0.1)
        if thread.is_alive():
            logger.warning("the dispatcher thread is still inside a plugin after %.1f s", timeout)

    # ---------------------------------------------------------------------------------------
    # Producers: reader threads and the client
    # ---------------------------------------------------------------------------------------

    def stop_waiting(self) -> None:
        """The producers are stopping: from now on a :meth:`submit` that finds the queue full
        counts the events that do not fit as ``undelivered`` instead of waiting for room (a
        waiting one stops waiting). What is queued is still delivered."""
        self._queue.stop_waiting()

    @property
    def blocked(self) -> bool:
        """Whether a :meth:`submit` is waiting for room in the queue."""
        return self._queue.blocked

    def submit(self, events: Sequence[Event]) -> None:
        """Queue a batch of decoded events, applying the overflow policy when the queue is full.

        With ``"block"`` this waits for room (and returns at once, counting what it could not
        queue, when the dispatcher closes); it never waits on the dispatcher thread itself.

        In inline mode the events are delivered here, on the calling thread, after any
        lifecycle call queued before them.

        :param events: the events, in arrival order.
        """
        if not events:
            return
        if self._inline:
            self._submit_inline(events)
            return
        if self._reading == threading.get_ident():
            # Read from a lent socket by this thread: delivered now, and nothing is queued
            # (it drained the queue before reading).
            queue = self._queue
            if queue.closing:  # too late, as for a queued batch
                queue.count("submitted", len(events))
                queue.count("undelivered", len(events))
                return
            reading, self._reading = self._reading, 0
            try:
                queue.count("submitted", len(events))
                self._refresh()
                self._deliver(events)
            finally:
                self._reading = reading
            return
        report = self._queue.put(events)
        if report:
            self._log_report(report)

    def _submit_inline(self, events: Sequence[Event]) -> None:
        queue = self._queue
        me = threading.get_ident()
        if self._owner == me or queue.closing:
            # Submitted from a hook (delivered after the current batch), or too late.
            report = queue.put(events, wait=False)
            if report:
                self._log_report(report)
            return
        with self._delivering:
            self._owner = me
            try:
                self._drain()  # lifecycle calls queued before these events go first
                queue.count("submitted", len(events))
                self._deliver(events)
                self._drain()  # and what hooks or other threads queued meanwhile
            finally:
                self._owner = None

    def _drain(self) -> None:
        while (batch := self._queue.take_nowait()) is not None:
            self._refresh()
            self._deliver(batch)

    def notify(self, hook: str, **kwargs: Any) -> None:
        """Queue a lifecycle hook call, in order with the events; never blocks or drops it.

        :param hook: a lifecycle hook such as ``"cmcsync_on_connect"``.
        :param kwargs: the hook's arguments; ``client`` is filled in when left out.
        :raises ValueError: for a data hook or a name that is no hook.
        :raises TypeError: when the arguments do not match the hook's.
        """
        if hook not in _LIFECYCLE_HOOKS:
            raise ValueError(
                f"{hook!r} is not a lifecycle hook: {', '.join(sorted(_LIFECYCLE_HOOKS))}"
            )
        argnames = _SPEC_ARGS[hook]
        if "client" in argnames:
            kwargs.setdefault("client", self._client)
        if set(kwargs) != set(argnames):
            raise TypeError(f"{hook} takes {', '.join(argnames)}; got {', '.join(sorted(kwargs))}")
        if not self._queue.put_note(Note(hook, kwargs)):
            logger.debug("dispatcher stopped; %s not delivered", hook)

    def _log_report(self, report: str) -> None:
        # A burst can fill and drain the queue many times a second (the GIL hands the consumer
        # long slices): every report reaches the hook and the stats, but the log gets one per
        # interval.
        now = time.monotonic()
        if now >= self._next_report_log:
            self._next_report_log = now + _REPORT_LOG_INTERVAL
            logger.warning(
                "%s (for %.0f s, further reports only go to the hook and stats())",
                report,
                _REPORT_LOG_INTERVAL,
            )

    # ---------------------------------------------------------------------------------------
    # Lent sockets (cmcsync._connection.ReadHost)
    # ---------------------------------------------------------------------------------------

    def read_host(self) -> Dispatcher | None:
        """This dispatcher, if its thread reads lent sockets (thread mode), else ``None``."""
        return None if self._inline else self

    def idle(self) -> bool:
        """Whether the thread waits on its sockets with nothing queued (a hint)."""
        queue = self._queue
        return self._hosting and not self._away and queue.empty and not queue.closing

    def borrow(self, conn: Connection, fd: int) -> bool:
        """Start reading ``conn``'s socket, unless the thread has stopped.

        :param conn: the connection; its :meth:`~Connection.read_lent` is called when ``fd``
            is readable, or at once when it was just lent.
        :param fd: the socket's file descriptor.
        :returns: whether the socket was taken.
        """
        with self._loans_lock:
            if not self._hosting:
                return False
            self._loans[conn] = fd
            self._fresh.append(conn)
            self._loans_changed = True
        self._ring()
        return True

    def give_back(self, conn: Connection) -> None:
        """Stop reading ``conn``'s socket (the thread forgets it before it next waits)."""
        with self._loans_lock:
            if self._loans.pop(conn, None) is not None:
                self._loans_changed = True

    def stalls_in(self) -> float:
        """Seconds until a standing-by reader thread should look again (see
        :meth:`cmcsync._connection.ReadHost.stalls_in`).

        :returns: ``0.0`` once the thread has been away from its sockets for
            ``STALL_AFTER``, or when it no longer reads sockets.
        """
        if not self._hosting:
            return 0.0
        away = self._away
        if away:
            return max(0.0, away + STALL_AFTER - time.monotonic())
        if time.monotonic() - self._idle_since >= DOZE_AFTER:
            # Idle a while: the thread wakes the lenders itself when it leaves this wait.
            return math.inf
        # Keeping up: a plugin call that starts now is caught at the next look.
        return PATROL

    def _ring(self) -> None:
        bell = self._bell
        if bell is not None:
            try:
                bell[1].send(b"\0")
            except OSError:  # full (it will wake anyway) or closed (it is gone)
                pass

    # ---------------------------------------------------------------------------------------
    # The iterator behind Client.events()
    # ---------------------------------------------------------------------------------------

    def enable_iterator(self) -> None:
        """Keep data events for :meth:`iterate` from now on (after the plugins had them)."""
        self._iter_enabled = True

    def iterate(self, timeout: float | None) -> Iterator[Event]:
        """Yield the delivered events in arrival order; enables the iterator buffer.

        Ends when no event came for ``timeout`` seconds, or once the buffer is empty after the
        dispatcher stopped or :meth:`finish` was called.

        :param timeout: the longest wait for one event, in seconds; ``None`` waits for ever.
        :raises BaseException: the fatal error given to :meth:`finish`, after the buffer.
        """
        self.enable_iterator()
        return self._iterate(timeout)

    def _iterate(self, timeout: float | None) -> Iterator[Event]:
        cond, buf = self._iter_cond, self._iter_buf
        while True:
            with cond:
                deadline = None if timeout is None else time.monotonic() + timeout
                while not buf:
                    if self._fatal is not None:
                        raise self._fatal
                    if self._finished:
                        return
                    if deadline is None:
                        cond.wait()
                        continue
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    cond.wait(remaining)
                event = buf.popleft()
            yield event

    # ---------------------------------------------------------------------------------------
    # Statistics
    # ---------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """A snapshot of the queue, the iterator and the plugins' health.

        :returns: ``queue_depth``, ``queue_capacity``, ``max_queue_depth``, ``overflow``,
            ``submitted``, ``delivered``, ``dropped`` (``"drop_oldest"``), ``conflated``,
            ``undelivered`` (left when closing), ``blocked``, ``blocked_submits``,
            ``blocked_seconds``, ``slow_consumer_reports``, ``iterator_depth``,
            ``iterator_dropped``, ``plugin_errors`` (per plugin name), ``disabled_plugins``
            and ``running``.
        """
        out: dict[str, Any] = self._queue.stats()
        with self._iter_cond:
            out["iterator_depth"] = len(self._iter_buf)
        with self._states_lock:
            states = list(self._states.values())
        out["plugin_errors"] = {s.name: s.errors for s in states if s.errors}
        out["disabled_plugins"] = sorted(s.name for s in states if s.disabled)
        thread = self._thread
        out["running"] = thread is not None and thread.is_alive()
        return out

    # ---------------------------------------------------------------------------------------
    # The dispatcher thread
    # ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        queue = self._queue
        try:
            if self._inline:
                # Events are delivered by the threads that submit them; this thread delivers
                # lifecycle calls queued while no event comes.
                while queue.wait():
                    with self._delivering:
                        self._owner = threading.get_ident()
                        try:
                            self._drain()
                        finally:
                            self._owner = None
                return
            self._run_hosting()
        except BaseException as exc:  # a bug here must not leave producers blocked for ever
            logger.critical("the cmcsync dispatcher thread failed", exc_info=exc)
            self.finish(exc)
        finally:
            self._stop_hosting()
            self._stopped()

    def _run_hosting(self) -> None:
        """Deliver what is queued; while nothing is, read the lent sockets."""
        queue = self._queue
        bell = self._bell
        assert bell is not None
        waiter = _Waiter()
        waiter.register(bell[0].fileno(), None)
        registered: dict[int, Connection] = {}
        # Connections to read again without waiting: their buffers may hold frames.
        again: list[Connection] = []
        try:
            while True:
                batch = queue.take_or_sleep()
                if batch is None:
                    return
                if batch is not False:
                    assert isinstance(batch, list)
                    self._away = time.monotonic()
                    self._refresh()
                    self._deliver(batch)
                    continue
                if self._loans_changed:
                    again += self._sync(waiter, registered)
                if again:
                    ready = [(conn, False) for conn in again]
                    again = []
                else:
                    self._idle_since = time.monotonic()
                    self._away = 0.0
                    ready = []
                    for conn in waiter.wait():
                        if conn is None:
                            _drain(bell[0])
                        else:
                            ready.append((conn, True))
                    self._away = now = time.monotonic()
                    if now - self._idle_since >= DOZE_AFTER:
                        # The lenders may be waiting without a timeout (stalls_in()).
                        with self._loans_lock:
                            lenders = list(self._loans)
                        for conn in lenders:
                            conn.wake_standby()
                self._reading = threading.get_ident()
                try:
                    for conn, readable in ready:
                        if conn.read_lent(readable):
                            again.append(conn)
                finally:
                    self._reading = 0
        finally:
            waiter.close()

    def _sync(self, waiter: _Waiter, registered: dict[int, Connection]) -> list[Connection]:
        """Wait on the sockets lent now; return the connections lent since the last call."""
        with self._loans_lock:
            loans = dict(self._loans)
            fresh, self._fresh = [c for c in self._fresh if c in loans], []
            self._loans_changed = False
        for fd, conn in list(registered.items()):
            if loans.get(conn) != fd:
                del registered[fd]
                try:
                    waiter.unregister(fd)
                except (KeyError, ValueError):
                    pass
        for conn, fd in loans.items():
            if fd not in registered:
                try:
                    waiter.register(fd, conn)
                except (KeyError, ValueError, OSError):
                    # Closed meanwhile: its reader thread finds out and takes it back.
                    continue
                registered[fd] = conn
        return fresh

    def _stop_hosting(self) -> None:
        with self._loans_lock:
            self._hosting = False
            lenders = list(self._loans)
            self._loans.clear()
            self._fresh.clear()
        for conn in lenders:
            conn.wake_standby()  # to take their sockets back
        self._away = 0.0
        bell, self._bell = self._bell, None
        if bell is not None:
            for end in bell:
                end.close()

    def _deliver(self, batch: Sequence[object]) -> None:
        data, any_hooks, client, queue = self._data, self._any, self._client, self._queue
        delivered: list[Event] = []
        for position, item in enumerate(batch):
            if queue.closing and queue.past_deadline():
                self._count_undelivered(batch[position:])
                break
            if item.__class__ is Note:
                assert isinstance(item, Note)
                self._deliver_note(item)
                continue
            event: Any = item
            for function, shape, argnames, state, hook in data.get(event.channel, any_hooks):
                if state.disabled:
                    continue
                try:
                    if shape == _CALL_EVENT_CLIENT:
                        function(event, client)
                    elif shape == _CALL_EVENT:
                        function(event)
                    else:
                        function(*[event if name == "event" else client for name in argnames])
                except Exception as exc:  # noqa: BLE001 - plugin isolation: reported, not raised
                    self._failed(state, hook, exc)
                else:
                    if state.streak:
                        state.streak = 0
            delivered.append(event)
        if delivered:
            queue.count("delivered", len(delivered))
            if self._iter_enabled:
                self._feed_iterator(delivered)

    def _deliver_note(self, note: Note) -> None:
        if note.hook == _PLUGIN_ERROR:
            self._tell_plugin_error(note.kwargs)
            return
        for function, _, argnames, state, hook in self._entries.get(note.hook, ()):
            if state.disabled:
                continue
            try:
                function(*[note.kwargs[name] for name in argnames])
            except Exception as exc:  # noqa: BLE001 - plugin isolation: reported, not raised
                self._failed(state, hook, exc)
            else:
                if state.streak:
                    state.streak = 0

    def _failed(self, state: _PluginState, hook: str, exc: Exception) -> None:
        limit = self._config.max_plugin_failures
        with self._states_lock:
            state.errors += 1
            state.streak += 1
            disable = limit is not None and state.streak >= limit and not state.disabled
            state.disabled = state.disabled or disable
        logger.error("cmcsync plugin %r raised in %s", state.name, hook, exc_info=exc)
        if disable:
            logger.error(
                "cmcsync plugin %r switched off after %d failures in a row", state.name, limit
            )
            self._pm.set_blocked(state.name)
        self._tell_plugin_error(
            {
                "client": self._client,
                "plugin_name": state.name,
                "hook_name": hook,
                "error": exc,
                "disabled": disable,
            }
        )

    def _tell_plugin_error(self, kwargs: Mapping[str, Any]) -> None:
        # Failures here are only logged: reporting them through the same hook could recurse.
        for function, _, argnames, state, hook in self._entries.get(_PLUGIN_ERROR, ()):
            if state.disabled:
                continue
            try:
                function(*[kwargs[name] for name in argnames])
            except Exception:
                logger.exception("cmcsync plugin %r raised in %s; ignored", state.name, hook)

    def _feed_iterator(self, events: list[Event]) -> None:
        with self._iter_cond:
            buf = self._iter_buf
            buf.extend(events)
            excess = len(buf) - self._config.queue_size
            for _ in range(excess):
                buf.popleft()
            warn = excess > 0 and not self._iter_warned
            self._iter_warned = self._iter_warned or warn
            self._iter_cond.notify_all()
        if excess > 0:
            self._queue.count("iterator_dropped", excess)
        if warn:
            logger.warning(
                "client.events() is not read fast enough: its oldest events are being dropped "
                "(counted in stats()['iterator_dropped'])"
            )

    def _count_undelivered(self, items: Sequence[object]) -> None:
        notes = sum(1 for item in items if isinstance(item, Note))
        events = len(items) - notes
        self._queue.count("undelivered", events)
        if items:
            logger.warning(
                "dispatcher stopped with %d events and %d lifecycle calls not delivered",
                events,
                notes,
            )

    def _stopped(self) -> None:
        self._count_undelivered(self._queue.stop())
        with self._iter_cond:
            self._finished = True
            self._iter_cond.notify_all()

    def _refresh(self) -> None:
        """Rebuild the per-hook implementation lists if registrations changed."""
        generation = getattr(self._pm, "generation", None)
        if generation is None:  # a plain pluggy manager: compare its registrations instead
            generation = tuple((name, id(plugin)) for name, plugin in self._pm.list_name_plugin())
        if generation == self._cache_key:
            return
        entries: dict[str, tuple[_Entry, ...]] = {}
        for hook in _SPEC_ARGS:
            caller = getattr(self._pm.hook, hook, None)
            found: list[_Entry] = []
            # pluggy calls the last registered first, honouring tryfirst/trylast; so do we.
            for impl in reversed(caller.get_hookimpls() if caller is not None else []):
                if impl.wrapper or impl.hookwrapper:
                    if impl.plugin_name not in self._warned_wrappers:
                        self._warned_wrappers.add(impl.plugin_name)
                        logger.warning(
                            "cmcsync plugin %r: %s is a hook wrapper, which cmcsync "
                            "does not support; it is never called",
                            impl.plugin_name,
                            hook,
                        )
                    continue
                with self._states_lock:
                    state = self._states.setdefault(
                        impl.plugin_name, _PluginState(impl.plugin_name)
                    )
                argnames = tuple(impl.argnames)
                shape = _SHAPES.get(argnames, _CALL_OTHER)
                found.append((impl.function, shape, argnames, state, hook))
            entries[hook] = tuple(found)
        any_hooks = entries[_ON_EVENT]
        self._data = {name: any_hooks + entries.get(row.hook, ()) for name, row in CHANNELS.items()}
        self._any = any_hooks
        self._entries = entries
        self._cache_key = generation


class _Waiter:
    """Waits until some of a set of file descriptors are readable.

    The dispatcher thread waits once per read of a lent socket, so the wait is kept thin:
    where the platform has ``epoll``, one ``poll()`` call on it and a dictionary lookup per
    ready descriptor; elsewhere, the :mod:`selectors` module's default selector.
    """

    def __init__(self) -> None:
        self._data: dict[int, Any] = {}
        self._epoll = select.epoll() if hasattr(select, "epoll") else None
        self._selector = None if self._epoll is not None else selectors.DefaultSelector()

    def register(self, fd: int, data: Any) -> None:
        """Wait on ``fd`` too; :meth:`wait` returns ``data`` when it is readable.

        :raises OSError: (or :class:`ValueError`, :class:`KeyError`) when ``fd`` is closed or
            registered already.
        """
        if self._epoll is not None:
            self._epoll.register(fd, select.EPOLLIN)
        else:
            assert self._selector is not None
            self._selector.register(fd, selectors.EVENT_READ)
        self._data[fd] = data

    def unregister(self, fd: int) -> None:
        """Stop waiting on ``fd``; nothing happens if it is not registered or closed."""
        self._data.pop(fd, None)
        try:
            if self._epoll is not None:
                self._epoll.unregister(fd)
            elif self._selector is not None:
                self._selector.unregister(fd)
        except (KeyError, ValueError, OSError):
            pass

    def wait(self) -> list[Any]:
        """Block until a descriptor is readable; return the ``data`` of each readable one."""
        data = self._data
        if self._epoll is not None:
            return [data[fd] for fd, _ in self._epoll.poll() if fd in data]
        assert self._selector is not None
        return [data[key.fd] for key, _ in self._selector.select() if key.fd in data]

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
        elif self._selector is not None:
            self._selector.close()


def _drain(sock: socket.socket) -> None:
    """Empty a non-blocking bell socket."""
    try:
        while sock.recv(4096):
            pass
    except OSError:  # nothing left (BlockingIOError)
        pass
