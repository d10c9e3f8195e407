"""Reading and writing many rows of one table in one driver call, and the hub's row ids.

A page of a sync reads and writes thousands of rows in a handful of tables. Through
SQLAlchemy's compiled statements and its asyncio adapter that costs more than the database
work itself (parameters processed one by one; several round trips to aiosqlite's thread for
every statement), so the page path goes to the driver's own connection, inside the
transaction the caller holds:

- :func:`insert_rows` and :func:`update_rows`: on SQLite one statement whose rows come in
  as one JSON parameter (``json_each``); on PostgreSQL one ``COPY`` for inserts and one
  ``executemany`` for updates;
- :func:`select_in`: rows whose key is in a list, the list passed as one parameter
  (SQLite's ``json_each``, PostgreSQL's ``= ANY``), however long it is.

Values go in and come out exactly as SQLAlchemy would write and read them: each column's
conversion is the dialect's own (timestamps, JSON through the engine's serialiser). The SQL
is made once per table, column list and dialect. Driver errors come out as SQLAlchemy's,
as from any other statement. A driver other than aiosqlite or psycopg goes through
SQLAlchemy as usual.

SQLite's page writes are single statements for a second reason: the driver lets go of the
interpreter lock while a statement runs, and takes it again for every row of an
``executemany``. Beside a busy event loop (another connection's run mapping its page, a
webhook burst) each retaking waits for the loop's thread to yield, up to the interpreter's
switch interval, so a page's rows would wait on the loop once each. One statement takes
the lock back once.

Row ids are UUIDv7 strings (:func:`new_ids`): time-ordered, so the rows a page inserts land
next to each other at the end of every primary-key and foreign-key index instead of at
random places, which is what keeps large syncs fast on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import JSON, DateTime, Table, select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.store.db import dump_json

_id_lock = threading.Lock()
_last_ms = 0
_counter = 0xFFF  # the last sequence number used in millisecond ``_last_ms``


def new_ids(n: int) -> list[str]:
    """``n`` new row ids, in order. Each is a UUIDv7 (RFC 9562): 48-bit Unix milliseconds,
    a 12-bit sequence that keeps the ids of one millisecond in order within this process
    (past 4,096 the next millisecond is borrowed), then 62 random bits from the module's
    generator (reseeded in every forked child; these ids must be unique, not secret)."""
    global _last_ms, _counter
    now = time.time_ns() // 1_000_000
    runs: list[tuple[int, int, int]] = []
    with _id_lock:
        if now > _last_ms:
            _last_ms, _counter = now, -1
        left = n
        while left:
            if _counter >= 0xFFF:
                _last_ms, _counter = _last_ms + 1, -1
            take = min(left, 0xFFF - _counter)
            runs.append((_last_ms, _counter + 1, take))
            _counter += take
            left -= take
    bits = random.getrandbits
    ids: list[str] = []
    for ms, start, take in runs:
        prefix = f"{ms >> 16:08x}-{ms & 0xFFFF:04x}-7"
        for seq in range(start, start + take):
            tail = f"{bits(62) | 1 << 63:016x}"  # the top two bits: the RFC 9562 variant
            ids.append(f"{prefix}{seq:03x}-{tail[:4]}-{tail[4:]}")
    return ids


def new_id() -> str:
    """One new row id (see :func:`new_ids`)."""
    return new_ids(1)[0]


class IdPool:
    """Row ids handed out one at a time, made a thousand at a go."""

    def __init__(self, batch: int = 1000) -> None:
        self.batch = batch
        self._ids: list[str] = []

    def take(self) -> str:
        if not self._ids:
            self._ids = new_ids(self.batch)
            self._ids.reverse()
        return self._ids.pop()


def _dump_json_or_null(value: Any) -> str | None:
    return None if value is None else dump_json(value)


Converter = Callable[[Any], Any]


class _Timestamp:
    """The dialect's timestamp conversion, marked so that each :func:`_convert` remembers
    its last answer: the rows of one page carry the same few timestamps, and formatting one
    costs more than the rest of its row."""

    def __init__(self, convert: Converter) -> None:
        self.convert = convert

    def remembering(self) -> Converter:
        last: list[Any] = [object(), None]
        convert = self.convert

        def remembered(value: Any) -> Any:
            if value is not last[0]:
                last[0], last[1] = value, convert(value)
            return last[1]

        return remembered


def _native(db: AsyncConnection) -> str | None:
    """``"sqlite"`` or ``"postgresql"`` when ``db`` runs on a driver this module talks to
    directly (aiosqlite, psycopg's asyncio connection), else ``None``."""
    dialect = db.dialect
    if dialect.driver == "aiosqlite":
        return "sqlite"
    if dialect.driver == "psycopg" and dialect.is_async:
        return "postgresql"
    return None


def _mark(dialect: Dialect) -> str:
    return "%s" if dialect.paramstyle in ("format", "pyformat") else "?"


# UPDATE ... FROM arrived in SQLite 3.33; older libraries take updates one row at a time.
_SQLITE_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)


@lru_cache(maxsize=256)
def _write_plan(
    dialect: Dialect,
    table: Table,
    columns: tuple[str, ...],
    where: tuple[str, ...],
    mode: str = "rows",
) -> tuple[str, tuple[Converter | _Timestamp | None, ...]]:
    """SQL text and per-parameter conversions of an INSERT (``where`` empty) or of an
    UPDATE setting ``columns`` on the rows matching ``where`` (parameters: ``columns``, then
    ``where``). ``mode``: ``"rows"``, a statement for ``executemany``; ``"copy"``,
    PostgreSQL's ``COPY ... FROM STDIN``; ``"json"``, one SQLite statement taking every row
    as one JSON array of arrays."""
    quote = dialect.identifier_preparer.quote
    marks: list[str] = []
    converters: list[Converter | _Timestamp | None] = []
    for position, name in enumerate(columns + where):
        kind = table.c[name].type.dialect_impl(dialect)
        mark = _mark(dialect) if mode != "json" else f"json_extract(r.value, '$[{position}]')"
        if isinstance(kind, JSON):
            # As SQLAlchemy's JSON type does by default, ``None`` is stored as JSON ``null``.
            converters.append(_dump_json_or_null if kind.none_as_null else dump_json)
            if dialect.name == "postgresql":
                mark = f"CAST({mark} AS JSON)"
        elif isinstance(kind, DateTime):
            process = kind.bind_processor(dialect)
            converters.append(_Timestamp(process) if process is not None else None)
        else:
            converters.append(kind.bind_processor(dialect))
        marks.append(mark)
    name = quote(table.name)
    rows_of = " FROM json_each(?) AS r"
    if not where:
        cols = ", ".join(quote(c) for c in columns)
        if mode == "copy":
            return f"COPY {name} ({cols}) FROM STDIN", tuple(converters)
        if mode == "json":
            sql = f"INSERT INTO {name} ({cols}) SELECT {', '.join(marks)}{rows_of}"
            return sql, tuple(converters)
        return f"INSERT INTO {name} ({cols}) VALUES ({', '.join(marks)})", tuple(converters)
    sets = ", ".join(f"{quote(c)} = {m}" for c, m in zip(columns, marks, strict=False))
    cond = " AND ".join(
        f"{name}.{quote(c)} = {m}" for c, m in zip(where, marks[len(columns) :], strict=True)
    )
    if mode == "json":
        return f"UPDATE {name} SET {sets}{rows_of} WHERE {cond}", tuple(converters)
    return f"UPDATE {name} SET {sets} WHERE {cond}", tuple(converters)


def _convert(
    converters: Sequence[Converter | _Timestamp | None], rows: Sequence[Sequence[Any]]
) -> list[tuple[Any, ...]]:
    active = [
        (i, c.remembering() if isinstance(c, _Timestamp) else c)
        for i, c in enumerate(converters)
        if c is not None
    ]
    if not active:
        return [tuple(r) for r in rows]
    out = []
    for row in rows:
        values = list(row)
        for i, convert in active:
            values[i] = convert(values[i])
        out.append(tuple(values))
    return out


async def insert_rows(
    db: AsyncConnection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> int:
    """INSERT ``rows`` (tuples of Python values in the order of ``columns``) into ``table``;
    returns the number of rows."""
    if not rows:
        return 0
    mode = {"postgresql": "copy", "sqlite": "json"}.get(_native(db) or "", "rows")
    return await _write(db, table, tuple(columns), (), mode, rows)


async def update_rows(
    db: AsyncConnection,
    table: Table,
    columns: Sequence[str],
    where: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> int:
    """UPDATE ``table`` once per row: each tuple holds the new values of ``columns``, then
    the values of the ``where`` columns naming the row; where two tuples name the same row,
    the later one is written. Returns the rows changed."""
    if not rows:
        return 0
    mode = "json" if _native(db) == "sqlite" and _SQLITE_UPDATE_FROM else "rows"
    if mode == "json":  # one statement: it must not name a row twice
        rows = list({tuple(r[len(columns) :]): r for r in rows}.values())
    return await _write(db, table, tuple(columns), tuple(where), mode, rows)


async def _write(
    db: AsyncConnection,
    table: Table,
    columns: tuple[str, ...],
    where: tuple[str, ...],
    mode: str,
    rows: Sequence[Sequence[Any]],
) -> int:
    """Write ``rows`` with the statement :func:`_write_plan` makes; returns the rows
    written."""
    sql, converters = _write_plan(db.dialect, table, columns, where, mode)
    converted = _convert(converters, rows)
    native = _native(db)
    if native is None:
        result = await db.exec_driver_sql(sql, converted)
        return int(result.rowcount)
    if mode == "json":
        try:
            payload = orjson.dumps(converted).decode()
        except TypeError:  # a value JSON cannot carry (bytes, out-of-range integers)
            return await _write(db, table, columns, where, "rows", rows)
    async with _driver(db, sql, converted[:1]) as driver:
        if native == "sqlite":
            if mode == "json":
                cursor = await driver.execute(sql, (payload,))
            else:
                cursor = await driver.executemany(sql, converted)
            return int(cursor.rowcount)
        async with driver.cursor() as cursor:
            if mode == "copy":
                async with cursor.copy(sql) as stream:
                    for row in converted:
                        await stream.write_row(row)
                return len(converted)
            await cursor.executemany(sql, converted)
            return int(cursor.rowcount)


@asynccontextmanager
async def _driver(db: AsyncConnection, sql: str, params: Any) -> AsyncIterator[Any]:
    """The driver's connection under ``db`` (same transaction); its errors are raised as
    SQLAlchemy's, naming ``sql``."""
    driver = (await db.get_raw_connection()).driver_connection
    assert driver is not None
    base_error = db.dialect.loaded_dbapi.Error
    try:
        yield driver
    except base_error as exc:
        raise DBAPIError.instance(sql, params, exc, base_error, dialect=db.dialect) from exc


@lru_cache(maxsize=256)
def _select_plan(
    dialect: Dialect, table: Table, columns: tuple[str, ...], where: tuple[str, ...], key: str
) -> tuple[str, tuple[Converter | None, ...]]:
    quote = dialect.identifier_preparer.quote
    mark = _mark(dialect)
    conditions = [f"{quote(c)} = {mark}" for c in where]
    if dialect.name == "postgresql":
        conditions.append(f"{quote(key)} = ANY({mark})")
    else:
        conditions.append(f"{quote(key)} IN (SELECT value FROM json_each({mark}))")
    sql = (
        f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(table.name)} "
        f"WHERE {' AND '.join(conditions)}"
    )
    processors = tuple(
        table.c[c].type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
    )
    return sql, processors


async def select_in(
    db: AsyncConnection,
    table: Table,
    columns: Sequence[str],
    where: dict[str, Any],
    key: str,
    values: Collection[Any],
) -> list[tuple[Any, ...]]:
    """``columns`` of the rows of ``table`` whose ``key`` is one of ``values`` and whose
    ``where`` columns equal the values given there."""
    if not values:
        return []
    native = _native(db)
    listed = list(values)
    if native is None:
        stmt = select(*(table.c[c] for c in columns)).where(
            *(table.c[c] == v for c, v in where.items()), table.c[key].in_(listed)
        )
        return [tuple(r) for r in await db.execute(stmt)]
    sql, processors = _select_plan(db.dialect, table, tuple(columns), tuple(where), key)
    params = (*where.values(), listed if native == "postgresql" else dump_json(listed))
    async with _driver(db, sql, params) as driver:
        if native == "sqlite":
            rows = await driver.execute_fetchall(sql, params)
        else:
            async with driver.cursor() as cursor:
                await cursor.execute(sql, params)
                rows = await cursor.fetchall()
    return _convert(processors, rows)
