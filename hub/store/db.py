"""Opening the database, applying migrations, and transactions."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

import orjson
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from hub.errors import StoreError

MIGRATIONS = Path(__file__).parent / "migrations"


def dump_json(value: Any) -> str:
    """JSON text of a column value: orjson for speed, the standard library for what orjson
    declines (integer dict keys, out-of-range integers), so the same values are accepted as
    with ``json.dumps``. Datetimes are not JSON values here either: they raise."""
    try:
        return orjson.dumps(value, option=orjson.OPT_PASSTHROUGH_DATETIME).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"))


def utcnow() -> datetime:
    """The hub's clock: aware UTC."""
    return datetime.now(UTC)


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """A stamp read from the store as aware UTC: SQLite hands datetimes back without their
    offset, and every stamp the hub writes is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_JSON: dict[str, Any] = {"json_serializer": dump_json, "json_deserializer": orjson.loads}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA cache_size=-16384")  # 16 MiB a connection; the OS caches the rest
    # Checkpoint the WAL every 8,000 pages (32 MiB) rather than 1,000: a large sync rewrites
    # the same index pages in many transactions, and each checkpoint copies and syncs them.
    # The file is cut back to 64 MiB after a checkpoint.
    cursor.execute("PRAGMA wal_autocheckpoint=8000")
    cursor.execute("PRAGMA journal_size_limit=67108864")
    cursor.close()


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


class Store:
    """The hub's database. ``await Store.open(url)`` connects and migrates to head."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @classmethod
    def create_engine(cls, url: str) -> AsyncEngine:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            if database in (None, "", ":memory:"):
                engine = create_async_engine(url, poolclass=NullPool, **_JSON)
            else:
                # SQLite serialises writers anyway; a few pooled connections spare reconnects.
                engine = create_async_engine(url, pool_size=4, max_overflow=4, **_JSON)
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            return engine
        return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True, **_JSON)

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> Store:
        store = cls(cls.create_engine(url))
        try:
            if migrate:
                await store.upgrade()
            else:
                await store.check_revision()
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        await self.engine.dispose()

    async def upgrade(self, revision: str = "head") -> None:
        """Apply migrations up to ``revision`` (safe to call on every start)."""

        def run(connection: Connection) -> None:
            cfg = _alembic_config()
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)

        try:
            async with self.engine.begin() as conn:
                if self.is_sqlite:
                    # Python's sqlite3 commits each CREATE TABLE on its own unless a
                    # transaction is open: a process killed half-way through would leave
                    # tables without the revision that made them. One transaction, taken
                    # with the write lock, also keeps two starting processes in turn.
                    await conn.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    # Two processes starting at once must not both run the migrations.
                    from sqlalchemy import text

                    await conn.execute(text("SELECT pg_advisory_xact_lock(7201)"))
                await conn.run_sync(run)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot migrate database {self.url}: {exc}") from exc

    async def revision(self) -> str | None:
        def current(connection: Connection) -> str | None:
            return MigrationContext.configure(connection).get_current_revision()

        async with self.engine.connect() as conn:
            return await conn.run_sync(current)

    async def check_revision(self) -> None:
        head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
        found = await self.revision()
        if found != head:
            raise StoreError(
                f"database {self.url} is at revision {found or 'none'}, crmhub needs {head}: "
                "run `crmhub db upgrade`"
            )

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; committed when the block ends, rolled back on error."""
        async with self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def begin_serialized(self, key: str) -> AsyncIterator[AsyncConnection]:
        """A transaction that holds the lock named ``key`` from its first statement on, so
        transactions of the same key (in any process) run one after the other and each sees
        what the previous committed. SQLite: ``BEGIN IMMEDIATE`` (its single write lock);
        PostgreSQL: a transaction-scoped advisory lock."""
        async with self.engine.connect() as conn:
            if self.is_sqlite:
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                await self.lock_in(conn, key)
            try:
                yield conn
            except BaseException:
                await conn.rollback()
                raise
            await conn.commit()

    async def lock_in(self, conn: AsyncConnection, key: str) -> None:
        """Take the lock named ``key`` (as :meth:`begin_serialized` does) inside the
        transaction ``conn`` already holds, until it ends. On SQLite a writing transaction
        already holds the one write lock: nothing to do."""
        if self.is_sqlite:
            return
        from sqlalchemy import text

        lock_id = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
        await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})

    async def refresh_statistics(self, *tables: str) -> list[str]:
        """Refresh PostgreSQL's planner statistics of those ``tables`` that have none yet or
        whose rows changed by more than a fifth since they were gathered; returns the tables
        analysed (none on SQLite, whose planner needs no statistics). Tables filled faster
        than autovacuum looks at them otherwise keep the statistics of an empty table, and
        the planner then reads a whole index to find a page's thousand keys."""
        if self.is_sqlite or not tables:
            return []
        async with self.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            result = await conn.exec_driver_sql(
                "SELECT c.relname, c.reltuples, s.n_mod_since_analyze FROM pg_class c "
                "JOIN pg_stat_user_tables s ON s.relid = c.oid "
                "WHERE c.oid = ANY(SELECT to_regclass(t) FROM unnest(%s::text[]) AS t)",
                (list(tables),),
            )
            found: list[Any] = list(result)
            stale = [
                str(name)
                for name, estimate, changed in found
                if estimate < 0 or changed > 0.2 * max(estimate, 1000)
            ]
            if stale:
                quote = conn.dialect.identifier_preparer.quote
                await conn.exec_driver_sql(f"ANALYZE {', '.join(quote(t) for t in stale)}")
        return sorted(stale)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn


async def open_store(url: str) -> Store:
    """Open ``url`` and migrate it, retrying briefly while another process holds a lock."""
    for attempt in range(5):
        try:
            return await Store.open(url)
        except StoreError:
            if attempt == 4:
                raise
            await asyncio.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")
