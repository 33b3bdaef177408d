"""The database side: the sink the writer thread fills, and reading events back.

Only this module and :mod:`cmcsync_sql._schema` import SQLAlchemy, and only once the first
event is written (or read back): a client that never stores anything does not pay for it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite

from cmcsync.channels import Channel, get_channel
from cmcsync.events import Event
from cmcsync.storage import short_error
from cmcsync_sql._schema import TableSpec, meta_tables, table_spec
from cmcsync_sql._settings import redact_url

__all__ = ["SqlSink", "make_engine", "read_events"]

log = logging.getLogger("cmcsync_sql")

_TRANSIENT = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
    ConnectionError,
    TimeoutError,
)
#: libpq settings that bound every wait on a server that stopped answering: the connection
#: attempt (seconds), and unacknowledged data or silence on an open connection (keepalives,
#: tcp_user_timeout in ms). Without them a write to a vanished host could hang for minutes.
_PG_CONNECT = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}


class _NotReady(Exception):
    """Preparing the tables failed; retried like a lost connection, since it usually is one
    (or another process creating the same tables at the same moment)."""


def make_engine(url: str) -> sa.Engine:
    """Build an engine for a SQLite or PostgreSQL URL (already normalized by the settings).

    SQLite files are switched to write-ahead logging, so readers do not wait for the writer.
    """
    if url.startswith("postgresql"):
        return sa.create_engine(url, pool_pre_ping=True, connect_args=_PG_CONNECT)
    engine = sa.create_engine(url, pool_pre_ping=True)

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    return engine


def _insert_for(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


class SqlSink:
    """Write batches of events to the channel tables, one transaction per batch.

    Used by the writer thread only. Tables are created on the first write (and again after
    a failure, in case they were dropped meanwhile).

    :param url: the normalized database URL.
    :param channels: the channels stored.
    :param prefix: the table name prefix.
    :param decimal: store numbers exactly; a table that already exists keeps the mode it was
        created with.
    """

    def __init__(self, url: str, channels: Iterable[str], *, prefix: str, decimal: bool) -> None:
        self.url = url
        self.channels = tuple(get_channel(name) for name in channels)
        self.prefix = prefix
        self.decimal = decimal
        #: Identifies this sink's batches in the ``<prefix>writers`` table.
        self.writer_id = uuid.uuid4().hex
        self._engine: sa.Engine | None = None
        self._specs: dict[str, TableSpec] = {}
        self._statements: dict[str, Any] = {}
        self._writers: sa.Table | None = None
        self._mark: Any = None

    def describe(self) -> str:
        return f"the database {redact_url(self.url)}"

    # --- the writer thread's calls ----------------------------------------------------------

    def write(self, batch: Sequence[Event], batch_id: int) -> None:
        engine = self._ready()
        groups: dict[str, list[Event]] = {}
        for event in batch:
            groups.setdefault(event.channel, []).append(event)
        with engine.begin() as conn:
            for channel, events in groups.items():
                conn.execute(self._statements[channel], self._specs[channel].rows(events))
            conn.execute(
                self._mark,
                {"writer": self.writer_id, "batch": batch_id, "updated_ms": _now_ms()},
            )

    def committed(self, batch_id: int) -> bool:
        engine = self._ready()
        assert self._writers is not None
        with engine.connect() as conn:
            found = conn.execute(
                sa.select(self._writers.c.batch).where(self._writers.c.writer == self.writer_id)
            ).scalar()
        return found is not None and found >= batch_id

    def transient(self, error: BaseException) -> bool:
        if isinstance(error, (_NotReady, *_TRANSIENT)):
            return True
        return isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated

    def reset(self) -> None:
        self.close()

    def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()

    # --- tables -------------------------------------------------------------------------------

    def _ready(self) -> sa.Engine:
        if self._engine is not None:
            return self._engine
        engine = make_engine(self.url)
        try:
            self._prepare(engine)
        except Exception as exc:
            engine.dispose()
            raise _NotReady(f"cannot prepare the tables: {short_error(exc)}") from exc
        self._engine = engine
        return engine

    def _prepare(self, engine: sa.Engine) -> None:
        dialect = engine.dialect.name
        insert = _insert_for(dialect)
        metadata = sa.MetaData()
        tables, writers = meta_tables(metadata, self.prefix)
        metadata.create_all(engine)
        with engine.connect() as conn:
            rows = conn.execute(sa.select(tables.c.name, tables.c.numbers))
            modes: Mapping[str, str] = {name: numbers for name, numbers in rows}  # noqa: C416
        specs: dict[str, TableSpec] = {}
        for row in self.channels:
            name = f"{self.prefix}{row.short}"
            stored = modes.get(name)
            decimal = self.decimal if stored is None else stored == "decimal"
            if decimal != self.decimal:
                log.warning(
                    "%s stores numbers as %s (it was created so); events of this client are "
                    "converted",
                    name,
                    "exact decimals" if decimal else "floats",
                )
            specs[row.name] = table_spec(
                row, metadata, prefix=self.prefix, decimal=decimal, dialect=dialect
            )
        metadata.create_all(engine)
        with engine.begin() as conn:
            for spec in specs.values():
                numbers = "decimal" if spec.decimal else "float"
                conn.execute(
                    insert(tables)
                    .values(name=spec.table.name, numbers=numbers)
                    .on_conflict_do_nothing(index_elements=["name"])
                )
        self._specs = specs
        self._statements = {channel: _statement(spec, insert) for channel, spec in specs.items()}
        self._writers = writers
        mark = insert(writers)
        self._mark = mark.on_conflict_do_update(
            index_elements=["writer"],
            set_={"batch": mark.excluded.batch, "updated_ms": mark.excluded.updated_ms},
        )


def _statement(spec: TableSpec, insert: Any) -> Any:
    statement = insert(spec.table)
    if spec.upsert:
        return statement.on_conflict_do_update(
            index_elements=list(spec.conflict),
            set_={
                name: statement.excluded[name] for name in spec.columns if name not in spec.conflict
            },
        )
    if spec.conflict:
        return statement.on_conflict_do_nothing(index_elements=list(spec.conflict))
    return statement


def read_events(url: str, channel: str | Channel, *, prefix: str = "cmcsync_") -> list[Event]:
    """Read back the events stored for a channel, in the order they were first written.

    Each row becomes the event it was written from, with the same types (Decimal or float)
    and values; an interval channel gives each interval once, with its latest values.

    :param url: the normalized database URL.
    :param channel: the channel, by row or by name.
    :param prefix: the table name prefix.
    :returns: the events, oldest first; ``[]`` when the table does not exist.
    """
    row = channel if isinstance(channel, Channel) else get_channel(channel)
    engine = make_engine(url)
    try:
        name = f"{prefix}{row.short}"
        if not sa.inspect(engine).has_table(name):
            return []
        metadata = sa.MetaData()
        tables, _ = meta_tables(metadata, prefix)
        with engine.connect() as conn:
            numbers = conn.execute(
                sa.select(tables.c.numbers).where(tables.c.name == name)
            ).scalar()
            spec = table_spec(
                row,
                metadata,
                prefix=prefix,
                decimal=numbers == "decimal",
                dialect=engine.dialect.name,
            )
            result = conn.execute(sa.select(spec.table).order_by(spec.table.c.id)).mappings()
            return [spec.event(found) for found in result]
    finally:
        engine.dispose()


def _now_ms() -> int:
    return int(time.time() * 1000)
