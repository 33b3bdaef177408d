"""A bounded buffer and the thread that empties it into a store, retrying while it is down.

The plugin's hook only appends to the buffer, so the dispatcher thread never waits for the
store. The writer thread takes what the buffer holds (up to a batch), writes it in one
transaction, and on a failure the :class:`Sink` calls transient (store down, connection
lost) keeps the batch and tries again after a backoff, for as long as it takes. A batch the
store refuses for good (a value it cannot hold) is written again item by item, so that only
the items it refuses are lost, and those are counted.

Nothing is lost without being counted: when the buffer is full the oldest item gives way
(``dropped``); what is still held when :meth:`BufferedWriter.stop` runs out of time is
``unwritten``; what the store refuses is ``rejected``. Each of these, and the start of an
outage, becomes a :class:`WriterError` in :meth:`BufferedWriter.take_reports`, which the
plugin raises from its next hook call so cmcsync reports it like any plugin failure.

A batch whose write failed in a way that leaves its fate unknown (the connection dropped
while the commit was in flight) is not written twice: each batch carries an increasing id,
the sink records the last id it committed in the same transaction, and before retrying the
writer asks :meth:`Sink.committed`.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar

from cmcsync import Backoff, CmcsyncError

__all__ = ["BufferedWriter", "PartlyWritten", "Sink", "WriterError", "short_error"]

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)

#: Extra seconds :meth:`BufferedWriter.stop` waits for the thread past its deadline, for the
#: write that was in flight when the deadline passed.
_JOIN_MARGIN = 1.0


class Sink(Protocol[T_contra]):
    """Where a :class:`BufferedWriter` writes; every method runs on the writer thread."""

    def describe(self) -> str:
        """Name the store for messages, without any password."""

    def write(self, batch: Sequence[T_contra], batch_id: int) -> None:
        """Write ``batch`` in one transaction that also records ``batch_id`` as committed."""

    def committed(self, batch_id: int) -> bool:
        """Whether the batch ``batch_id`` was committed (asked after an unclear failure)."""

    def transient(self, error: BaseException) -> bool:
        """Whether ``error`` may go away by itself (retry) or never will (refused data)."""

    def reset(self) -> None:
        """Forget connections after a transient failure, so the next attempt makes new ones."""

    def close(self) -> None:
        """Release every connection; the sink may be used again afterwards."""


def short_error(error: BaseException) -> str:
    """The type and first line of an error, at most 300 characters; never a whole statement."""
    cause = getattr(error, "orig", None)  # SQLAlchemy keeps the driver's error here
    shown = cause if isinstance(cause, BaseException) else error
    text = str(shown).strip().splitlines()[0] if str(shown).strip() else ""
    out = f"{type(shown).__name__}: {text}" if text else type(shown).__name__
    return out if len(out) <= 300 else out[:297] + "..."


class PartlyWritten(Exception):
    """Raised by :meth:`Sink.write` when the batch was committed except some refused items.

    Stores whose transactions do not roll back (Redis) apply every command that did not
    fail; writing the batch again would write the others twice.

    :param refused: the positions in the batch of the items refused for good.
    :param error: the store's refusal of the first of them.
    """

    def __init__(self, refused: Sequence[int], error: BaseException) -> None:
        super().__init__(f"{len(refused)} items refused: {short_error(error)}")
        self.refused = tuple(refused)
        self.error = error


class WriterError(CmcsyncError):
    """A store plugin could not write everything it was given, or not yet.

    :param message: what happened, what was done about it, and the store (no password).
    :param kind: ``"unavailable"`` (the store is failing; items are held and retried),
        ``"overflow"`` (the buffer is full; the oldest items give way), ``"dropped"`` (how
        many gave way, once the buffer has drained), ``"rejected"`` (items the store refused
        for good), ``"unwritten"`` (items still held when the writer had to stop), or
        ``"several"`` for a report combining others (see ``reports``).
    :param count: the number of items concerned.
    :param reports: the reports combined into this one, or ``()``.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        count: int = 0,
        reports: Sequence[WriterError] = (),
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.count = count
        self.reports = tuple(reports)

    @classmethod
    def combine(cls, reports: Sequence[WriterError]) -> WriterError:
        """One error for several reports: the report itself when there is only one."""
        if len(reports) == 1:
            return reports[0]
        return cls(
            "; ".join(str(report) for report in reports),
            kind="several",
            count=sum(report.count for report in reports),
            reports=reports,
        )


class BufferedWriter(Generic[T]):
    """Hand items to a sink on a thread of its own, in batches, retrying while it is down.

    :param sink: where to write.
    :param thread_name: the writer thread's name, ``cmcsync-...``.
    :param capacity: the most items held while waiting to be written, besides the batch
        being written; past it the oldest give way, counted.
    :param batch_size: the most items written in one transaction.
    :param backoff: the wait between two failed attempts.
    :param logger: where outages, recoveries and losses are logged.
    """

    def __init__(
        self,
        sink: Sink[T],
        *,
        thread_name: str,
        capacity: int,
        batch_size: int,
        backoff: Backoff,
        logger: logging.Logger,
    ) -> None:
        self.sink = sink
        self.thread_name = thread_name
        self.capacity = capacity
        self.batch_size = batch_size
        self.backoff = backoff
        self._log = logger
        self._cond = threading.Condition()
        self._buffer: collections.deque[T] = collections.deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._deadline = 0.0
        self._next_id = 0
        self._reports: list[WriterError] = []
        self._overflowing = False
        self._episode_dropped = 0
        self._outage_since: float | None = None
        self._counts = dict.fromkeys(
            (
                "accepted",
                "written",
                "batches",
                "dropped",
                "rejected",
                "unwritten",
                "failed_attempts",
                "outages",
            ),
            0,
        )
        self._in_flight = 0
        self._failures = 0
        self._last_error: str | None = None

    # --- producer side (the plugin's hooks) ---------------------------------------------------

    def put(self, item: T) -> None:
        """Append an item; never blocks. When the buffer is full, the oldest item gives way."""
        with self._cond:
            self._counts["accepted"] += 1
            if len(self._buffer) >= self.capacity:
                self._buffer.popleft()
                self._counts["dropped"] += 1
                self._episode_dropped += 1
                if not self._overflowing:
                    self._overflowing = True
                    self._report(
                        f"the buffer of {self.sink.describe()} is full ({self.capacity} items): "
                        "the oldest items give way and are counted as dropped",
                        kind="overflow",
                        count=1,
                        level=logging.WARNING,
                    )
            self._buffer.append(item)
            self._cond.notify()
        if self._thread is None or not self._thread.is_alive():
            self.start()

    def take_reports(self) -> list[WriterError]:
        """Return and forget the problems found since the last call, oldest first."""
        with self._cond:
            reports, self._reports = self._reports, []
        return reports

    def stats(self) -> dict[str, Any]:
        """Counters and state.

        :returns: ``state`` (``"stopped"``, ``"idle"``, ``"writing"``, ``"retrying"`` or
            ``"stopping"``), ``buffered``, ``in_flight``, ``capacity``, ``batch_size``, and
            the counters ``accepted``, ``written``, ``batches``, ``dropped``, ``rejected``,
            ``unwritten``, ``failed_attempts``, ``outages``; ``failures`` (in a row, now)
            and ``last_error``. ``accepted`` always equals ``written + dropped + rejected +
            unwritten + buffered + in_flight``.
        """
        with self._cond:
            alive = self._thread is not None and self._thread.is_alive()
            if not alive:
                state = "stopped"
            elif self._closing:
                state = "stopping"
            elif self._failures:
                state = "retrying"
            elif self._in_flight:
                state = "writing"
            else:
                state = "idle"
            return {
                "state": state,
                "buffered": len(self._buffer),
                "in_flight": self._in_flight,
                "capacity": self.capacity,
                "batch_size": self.batch_size,
                **self._counts,
                "failures": self._failures,
                "last_error": self._last_error,
            }

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread, if it is not running."""
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._closing = False
            self._wake.clear()
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Write what is held, then stop and join the thread; it starts again on the next put.

        :param timeout: seconds to keep trying; what is still held then is counted as
            ``unwritten`` and reported.
        :returns: whether the thread stopped (a write stuck in the store's driver may keep it
            alive a little longer; it is a daemon thread and exits when the write returns).
        """
        with self._cond:
            thread = self._thread
            if thread is None:
                return True
            self._closing = True
            self._deadline = time.monotonic() + timeout
            self._cond.notify_all()
        self._wake.set()
        if thread is threading.current_thread():
            return False
        thread.join(timeout + _JOIN_MARGIN)
        if thread.is_alive():
            self._log.warning(
                "the writer of %s is still inside a write %.1f s after it was asked to stop",
                self.sink.describe(),
                timeout,
            )
            return False
        return True

    # --- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                self._deliver(batch)
                self._after_batch()
        except BaseException as exc:  # noqa: BLE001 - a bug here must not lose items silently
            self._log.critical("the writer of %s failed", self.sink.describe(), exc_info=exc)
            with self._cond:
                lost = len(self._buffer) + self._in_flight
                self._buffer.clear()
                self._in_flight = 0
                self._counts["unwritten"] += lost
                self._report(
                    f"the writer of {self.sink.describe()} failed ({short_error(exc)}); "
                    f"{lost} items were not written",
                    kind="unwritten",
                    count=lost,
                    level=logging.ERROR,
                )
        finally:
            try:
                self.sink.close()
            except Exception:  # noqa: BLE001 - closing must not hide what happened before
                self._log.debug("closing %s failed", self.sink.describe(), exc_info=True)

    def _next_batch(self) -> list[T] | None:
        with self._cond:
            while not self._buffer:
                if self._closing:
                    return None
                self._cond.wait()
            n = min(self.batch_size, len(self._buffer))
            batch = [self._buffer.popleft() for _ in range(n)]
            self._in_flight = n
            return batch

    def _after_batch(self) -> None:
        with self._cond:
            if self._overflowing and not self._buffer:
                self._end_overflow()

    def _end_overflow(self) -> None:
        # Called with the lock held, once the buffer has drained (or at the end).
        dropped, self._episode_dropped = self._episode_dropped, 0
        self._overflowing = False
        if dropped:
            self._report(
                f"{dropped} items gave way in the full buffer of {self.sink.describe()} and "
                "were not written",
                kind="dropped",
                count=dropped,
                level=logging.ERROR,
            )

    def _deliver(self, batch: list[T]) -> None:
        """Write a batch; if the store refuses it, write its items one by one."""
        refused = self._write_with_retry(batch)
        if refused is None:
            return
        if len(batch) == 1:
            self._settle(rejected=1)
            self._report(
                f"{self.sink.describe()} refused an item for good ({short_error(refused)}); "
                "it is not written",
                kind="rejected",
                count=1,
                level=logging.ERROR,
                error=refused,
            )
            return
        for n, item in enumerate(batch):
            if self._abandoned():
                self._give_up(len(batch) - n)
                return
            self._deliver([item])

    def _write_with_retry(self, batch: list[T]) -> BaseException | None:
        """Write until done or refused; return the refusal, or ``None`` when settled."""
        with self._cond:
            self._next_id += 1
            batch_id = self._next_id
        unclear = False
        failures = 0
        while True:
            try:
                if not (unclear and self.sink.committed(batch_id)):
                    self.sink.write(batch, batch_id)
            except PartlyWritten as partly:
                refused = len(partly.refused)
                self._settle(written=len(batch) - refused, rejected=refused)
                self._report(
                    f"{self.sink.describe()} refused {refused} of {len(batch)} items for good "
                    f"({short_error(partly.error)}); they are not written",
                    kind="rejected",
                    count=refused,
                    level=logging.ERROR,
                    error=partly.error,
                )
                if failures:
                    self._recovered()
                return None
            except Exception as exc:  # noqa: BLE001 - the sink says which errors pass
                if not self.sink.transient(exc):
                    if unclear:
                        # Refused after an unclear failure: it may be committed after all, or
                        # the store may be refusing the lookup itself. Try again, plainly.
                        unclear = False
                        continue
                    return exc
                failures += 1
                unclear = True
                self._failed(exc, failures)
                try:
                    self.sink.reset()
                except Exception:  # noqa: BLE001 - the next attempt will tell
                    self._log.debug("resetting %s failed", self.sink.describe(), exc_info=True)
                if self._abandoned():
                    self._give_up(len(batch))
                    return None
                self._pause(failures)
                continue
            self._settle(written=len(batch))
            if failures:
                self._recovered()
            return None

    def _pause(self, failures: int) -> None:
        delay = self.backoff.compute(failures)
        with self._cond:
            closing, deadline = self._closing, self._deadline
        if closing:
            delay = min(delay, max(0.0, deadline - time.monotonic()))
        # stop() sets the event once: the first wait after it returns at once, so the
        # writer tries to flush right away instead of finishing its backoff.
        if self._wake.wait(delay):
            self._wake.clear()

    def _abandoned(self) -> bool:
        with self._cond:
            return self._closing and time.monotonic() >= self._deadline

    def _give_up(self, held: int) -> None:
        """Count what is in flight and in the buffer as unwritten: the deadline has passed."""
        with self._cond:
            buffered = len(self._buffer)
            self._buffer.clear()
            lost = held + buffered
            self._in_flight -= held
            self._counts["unwritten"] += lost
            if self._overflowing:
                self._end_overflow()
            self._report(
                f"{lost} items could not be written to {self.sink.describe()} before the "
                f"writer had to stop (last error: {self._last_error})",
                kind="unwritten",
                count=lost,
                level=logging.ERROR,
            )

    def _settle(self, *, written: int = 0, rejected: int = 0) -> None:
        with self._cond:
            self._in_flight -= written + rejected
            self._counts["written"] += written
            self._counts["rejected"] += rejected
            if written:
                self._counts["batches"] += 1

    def _failed(self, error: BaseException, failures: int) -> None:
        with self._cond:
            self._counts["failed_attempts"] += 1
            self._failures = failures
            self._last_error = short_error(error)
            if self._outage_since is not None:
                return
            self._outage_since = time.monotonic()
            self._counts["outages"] += 1
            held = len(self._buffer) + self._in_flight
            self._report(
                f"cannot write to {self.sink.describe()} ({self._last_error}); holding "
                f"{held} items (buffer of {self.capacity}) and retrying with backoff",
                kind="unavailable",
                count=held,
                level=logging.WARNING,
            )

    def _recovered(self) -> None:
        with self._cond:
            since, self._outage_since = self._outage_since, None
            failures, self._failures = self._failures, 0
        if since is not None:
            self._log.warning(
                "writing to %s again after %d failed attempts over %.1f s",
                self.sink.describe(),
                failures,
                time.monotonic() - since,
            )

    def _report(
        self,
        message: str,
        *,
        kind: str,
        count: int,
        level: int,
        error: BaseException | None = None,
    ) -> None:
        # Called with the lock held; logging here keeps the log in step with the reports.
        report = WriterError(message, kind=kind, count=count)
        if error is not None:
            report.__cause__ = error
        self._reports.append(report)
        self._log.log(level, "%s", message)
