"""The tables: one per channel, built from the channel table and the event classes.

Every table has:

- ``id``: the insertion order;
- ``ts``: the push time (epoch ms), and ``params``: the subscription as the push echoed it
  (JSON);
- ``sub_<param>``: each subscribe param of the channel, normalized (EVM addresses in lower
  case), typed and indexed with ``ts``: ``sub_crypto_ids``, ``sub_platform_id``,
  ``sub_address``, ``sub_interval``...;
- one typed column per payload attribute, named like the attribute (for the holder
  channels, the attributes of every kind, plus ``event_type``, the event's class name);
  numbers are ``DOUBLE PRECISION``, or, for a client built with ``decimal=True``,
  ``NUMERIC`` on PostgreSQL and exact text on SQLite;
- ``windows`` (the metric channels) and ``extra``: JSON, ``NULL`` when empty.

Natural keys make writes idempotent: interval channels (``onchain@kline``,
``onchain@unique_trader``) are upserted on their subscription and ``open_ts``; channels with
a dedupe key (swaps, liquidity events) get a unique ``dedupe_key`` column (``tx:index``, as
the client dedupes) and a second copy is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import attrs
import sqlalchemy as sa

from cmcsync.channels import Channel
from cmcsync.events import Event
from cmcsync.storage import (
    Kind,
    channel_classes,
    class_named,
    dumps,
    loads,
    number_mode,
    payload_kinds,
    windows_from_plain,
)

__all__ = ["TableSpec", "meta_tables", "table_spec"]

#: The payload attribute that, with the subscription, identifies an interval's event.
OPEN_TS = "open_ts"

_FIXED = ("id", "ts", "params", "event_type", "dedupe_key")
_INT_PARAMS = ("platform_id", "crypto_ids")


class ExactDecimal(sa.types.TypeDecorator[Decimal]):
    """A Decimal kept as its exact text, for SQLite (whose NUMERIC would round it)."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        if value is None:
            return None
        return str(value if type(value) is Decimal else Decimal(repr(value)))

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


def _real_type(decimal: bool, dialect: str) -> sa.types.TypeEngine[Any]:
    if not decimal:
        return sa.Double()
    if dialect == "sqlite":
        return ExactDecimal()
    return sa.Numeric(asdecimal=True)


def _column_type(kind: Kind, decimal: bool, dialect: str) -> sa.types.TypeEngine[Any]:
    if kind == "int":
        return sa.BigInteger()
    if kind == "real":
        return _real_type(decimal, dialect)
    if kind == "bool":
        return sa.Boolean(create_constraint=False)
    return sa.Text()


@attrs.frozen
class TableSpec:
    """A channel's table and how events become rows and back.

    :param channel: the channel row.
    :param table: the SQLAlchemy table.
    :param decimal: whether numbers are stored exactly (``decimal=True`` clients).
    :param columns: every column but ``id``, in table order.
    :param routed: whether several classes share the table (``event_type`` tells which).
    :param conflict: the columns of the natural key, or ``()``.
    :param upsert: on a conflict, update the row (interval channels) instead of ignoring
        the new one (deduped channels).
    """

    channel: Channel
    table: sa.Table
    decimal: bool
    columns: tuple[str, ...]
    routed: bool
    conflict: tuple[str, ...]
    upsert: bool
    #: params echo -> (its JSON, the sub_* columns): every push of a subscription repeats it.
    _subs: dict[Any, tuple[str, dict[str, Any]]] = attrs.field(factory=dict, eq=False)

    # --- events to rows ---------------------------------------------------------------------

    def rows(self, events: Sequence[Event]) -> list[dict[str, Any]]:
        """Return one row per event, later copies of a natural key folded into one.

        Within one statement a key may appear once: the last copy wins for an upsert, the
        first for an ignored duplicate, as if the rows had been written one by one; rows
        keep the order of their key's first event.
        """
        rows = [self.row(event) for event in events]
        if not self.conflict:
            return rows
        out: list[dict[str, Any]] = []
        seen: dict[tuple[Any, ...], int] = {}
        for row in rows:
            key = tuple(row[name] for name in self.conflict)
            if any(part is None for part in key):
                out.append(row)  # NULLs never conflict in SQL either
                continue
            at = seen.get(key)
            if at is None:
                seen[key] = len(out)
                out.append(row)
            elif self.upsert:
                out[at] = row  # the row keeps its place, as an UPDATE would
        return out

    def row(self, event: Event) -> dict[str, Any]:
        """Return the row of one event: every column except ``id``."""
        row: dict[str, Any] = dict.fromkeys(self.columns)
        row["ts"] = event.ts
        params, subs = self._params(event.params)
        row["params"] = params
        row.update(subs)
        if self.routed:
            row["event_type"] = type(event).__name__
        for name, kind in payload_kinds(type(event)).items():
            value = getattr(event, name)
            if kind == "windows" or kind == "json":
                value = dumps(value) if value else None
            row[name] = value
        row["extra"] = dumps(event.extra) if event.extra else None
        if self.channel.dedupe_key is not None:
            row["dedupe_key"] = _dedupe_key(self.channel.dedupe_key, event)
        return row

    def _params(self, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        try:
            key: Any = tuple(params.items())
            found = self._subs.get(key)
        except TypeError:  # an unhashable value in the echo: not cached
            key, found = None, None
        if found is None:
            scalar = self.channel.scalar_form(params) or {}
            subs = {f"sub_{name}": scalar.get(name) for name in self.channel.params}
            found = (dumps(params), subs)
            if key is not None:
                if len(self._subs) >= 100_000:
                    self._subs.clear()
                self._subs[key] = found
        return found

    # --- rows to events ---------------------------------------------------------------------

    def event(self, row: Mapping[Any, Any]) -> Event:
        """Rebuild the event a row was written from."""
        cls = class_named(row["event_type"]) if self.routed else self.channel.event_type
        real = number_mode(self.decimal)
        fields: dict[str, Any] = {}
        for name, kind in payload_kinds(cls).items():
            value = row[name]
            if value is None:
                continue
            if kind == "real":
                value = real(value)
            elif kind == "int":
                value = int(value)
            elif kind == "bool":
                value = bool(value)
            elif kind == "windows":
                value = windows_from_plain(cls, name, loads(value, self.decimal))
            elif kind == "json":
                value = loads(value, self.decimal)
            fields[name] = value
        extra = loads(row["extra"], self.decimal) if row["extra"] is not None else {}
        return cls(
            channel=self.channel.name,
            params=loads(row["params"], self.decimal),
            ts=int(row["ts"]),
            extra=extra,
            **fields,
        )


def _dedupe_key(names: Sequence[str], event: Event) -> str | None:
    # The client's own rule (cmcsync._dedupe): the transaction, then the first index set.
    tx = getattr(event, names[0], None)
    index = next((v for v in (getattr(event, n, None) for n in names[1:]) if v is not None), None)
    if tx is None or index is None:
        return None
    return f"{tx}:{index}"


def table_spec(
    channel: Channel, metadata: sa.MetaData, *, prefix: str, decimal: bool, dialect: str
) -> TableSpec:
    """Build the table of ``channel`` in ``metadata``.

    :param channel: the channel row.
    :param metadata: where the table is defined.
    :param prefix: the table name prefix.
    :param decimal: store numbers exactly (``NUMERIC``, or text on SQLite).
    :param dialect: ``"sqlite"`` or ``"postgresql"``.
    """
    classes = channel_classes(channel)
    kinds: dict[str, Kind] = {}
    for cls in classes:
        for name, kind in payload_kinds(cls).items():
            if name in _FIXED or name.startswith("sub_"):
                raise RuntimeError(f"{cls.__name__}.{name} clashes with a cmcsync-sql column")
            if kinds.setdefault(name, kind) != kind:
                raise RuntimeError(f"{name} has two kinds in the classes of {channel.name}")
    routed = len(classes) > 1
    name = f"{prefix}{channel.short}"
    subs = [f"sub_{param}" for param in channel.params]
    columns: list[sa.Column[Any]] = [
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
    ]
    for param, sub in zip(channel.params, subs, strict=True):
        columns.append(sa.Column(sub, sa.BigInteger() if param in _INT_PARAMS else sa.Text()))
    if routed:
        columns.append(sa.Column("event_type", sa.Text(), nullable=False))
    for field, kind in kinds.items():
        columns.append(sa.Column(field, _column_type(kind, decimal, dialect)))
    columns.append(sa.Column("extra", sa.Text()))
    conflict: tuple[str, ...] = ()
    upsert = False
    indexes = [sa.Index(f"ix_{name}_sub_ts", *subs, "ts")]
    if channel.intervals is not None and OPEN_TS in kinds:
        conflict, upsert = (*subs, OPEN_TS), True
        indexes.append(sa.Index(f"ux_{name}_natural", *conflict, unique=True))
    elif channel.dedupe_key is not None:
        columns.append(sa.Column("dedupe_key", sa.Text()))
        conflict = ("dedupe_key",)
        indexes.append(sa.Index(f"ux_{name}_dedupe", "dedupe_key", unique=True))
    table = sa.Table(name, metadata, *columns, *indexes)
    names = tuple(column.name for column in columns if column.name != "id")
    return TableSpec(channel, table, decimal, names, routed, conflict, upsert)


def meta_tables(metadata: sa.MetaData, prefix: str) -> tuple[sa.Table, sa.Table]:
    """The bookkeeping tables: each table's number mode, and each writer's last batch.

    ``<prefix>tables`` records whether a table stores numbers exactly, so reading it back
    gives the same types; ``<prefix>writers`` holds the id of the last batch each writer
    committed, written in the same transaction as the batch, so that a batch whose commit
    may or may not have happened is never written twice.
    """
    tables = sa.Table(
        f"{prefix}tables",
        metadata,
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("numbers", sa.Text(), nullable=False),
    )
    writers = sa.Table(
        f"{prefix}writers",
        metadata,
        sa.Column("writer", sa.Text(), primary_key=True),
        sa.Column("batch", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
    )
    return tables, writers
