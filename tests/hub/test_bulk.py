"""The driver-level page path (hub.store.bulk) on SQLite and PostgreSQL: it must write and
read exactly what SQLAlchemy writes and reads, and its ids must be ordered UUIDv7s."""

from __future__ import annotations

import gc
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.engine.pages import collector_paused
from hub.engine.writes import LINK_COLUMNS
from hub.store import Store
from hub.store.bulk import IdPool, insert_rows, new_id, new_ids, select_in, update_rows
from hub.store.schema import conflicts, entities, inbox, links

WHEN = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
FIELDS = {"email": "ann@example.com", "tags": ["a", "b"], "n": 3, "ok": True, "x": None}


def test_ids_are_ordered_uuid7_with_the_current_time() -> None:
    before = time.time_ns() // 1_000_000
    ids = new_ids(10_000) + [new_id() for _ in range(100)] + new_ids(3)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    for text in (ids[0], ids[5000], ids[-1]):
        parsed = uuid.UUID(text)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text
    millis = int(ids[0].replace("-", "")[:12], 16)
    assert before <= millis <= before + 2000


def test_id_pool_hands_out_distinct_ids_in_order() -> None:
    pool = IdPool(batch=7)
    taken = [pool.take() for _ in range(50)]
    assert taken == sorted(taken)
    assert len(set(taken)) == 50


ENTITY_COLUMNS = ("id", "type", "fields", "provenance", "created_at", "updated_at")


async def _entity(db: AsyncConnection) -> str:
    entity = new_id()
    await insert_rows(db, entities, ENTITY_COLUMNS, [(entity, "contact", {}, {}, WHEN, WHEN)])
    return entity


async def _raw_text(store: Store, table: str, column: str, row_id: str) -> str | None:
    cast = f"CAST({column} AS TEXT)" if not store.is_sqlite else column
    async with store.connect() as db:
        result = await db.exec_driver_sql(
            f"SELECT {cast} FROM {table} WHERE id = {'?' if store.is_sqlite else '%s'}",
            (row_id,),
        )
        value = result.scalar()
    return None if value is None else str(value)


async def test_insert_rows_stores_what_sqlalchemy_stores(store: Store) -> None:
    ours, theirs = new_id(), new_id()
    prov = {"email": ["crm", WHEN.isoformat()]}
    async with store.begin() as db:
        await insert_rows(
            db,
            entities,
            ENTITY_COLUMNS,
            [(ours, "contact", FIELDS, prov, WHEN, WHEN)],
        )
        await db.execute(
            insert(entities).values(
                id=theirs,
                type="contact",
                fields=FIELDS,
                provenance=prov,
                created_at=WHEN,
                updated_at=WHEN,
            )
        )
    for column in ("created_at", "updated_at"):
        assert await _raw_text(store, "entities", column, ours) == await _raw_text(
            store, "entities", column, theirs
        )
    async with store.connect() as db:
        rows = {
            r.id: r
            for r in await db.execute(select(entities).where(entities.c.id.in_([ours, theirs])))
        }
    a, b = rows[ours], rows[theirs]
    assert (a.fields, a.provenance, a.created_at) == (b.fields, b.provenance, b.created_at)
    assert a.fields == FIELDS
    assert a.created_at.replace(tzinfo=UTC) == WHEN


async def test_update_rows_counts_and_none_in_json_is_json_null(store: Store) -> None:
    async with store.begin() as db:
        entity = await _entity(db)
        await db.execute(
            insert(conflicts).values(
                entity_id=entity,
                connection="crm",
                field="phone",
                base_value=None,
                hub_value="1",
                remote_value="2",
                status="open",
                created_at=WHEN,
            )
        )
        later = WHEN + timedelta(hours=1)
        changed = await update_rows(
            db,
            entities,
            ("fields", "updated_at"),
            ("id",),
            [({"city": "Oslo"}, later, entity), ({"city": "x"}, later, "no-such-id")],
        )
        assert changed == 1
        assert await update_rows(
            db,
            conflicts,
            ("remote_value",),
            ("entity_id", "field"),
            [(None, entity, "phone")],
        )
    async with store.connect() as db:
        row = (await db.execute(select(entities).where(entities.c.id == entity))).one()
        base, remote = (
            await db.execute(
                select(conflicts.c.base_value.is_(None), conflicts.c.remote_value.is_(None)).where(
                    conflicts.c.entity_id == entity
                )
            )
        ).one()
    assert row.fields == {"city": "Oslo"}
    assert row.updated_at.replace(tzinfo=UTC) == later
    # SQLAlchemy stores None in a JSON column as JSON null, and so does update_rows
    assert (base, remote) == (False, False)


async def test_select_in_matches_sqlalchemy_for_lists_past_parameter_limits(store: Store) -> None:
    entity = new_id()
    many = 40_000  # beyond SQLite's 32,766 bound parameters
    async with store.begin() as db:
        await insert_rows(
            db,
            entities,
            ("id", "type", "fields", "provenance", "created_at", "updated_at"),
            [(entity, "contact", {}, {}, WHEN, WHEN)],
        )
        await insert_rows(
            db,
            links,
            LINK_COLUMNS,
            [
                (new_id(), entity, conn, "people", f"r{i}", str(i), {"i": i}, WHEN)
                for conn in ("crm", "shop")
                for i in range(0, many, 7)
            ],
        )
    wanted = [f"r{i}" for i in range(many)]
    async with store.connect() as db:
        ours = await select_in(
            db,
            links,
            ("remote_id", "remote_version", "base", "updated_at"),
            {"connection": "crm", "stream": "people"},
            "remote_id",
            wanted,
        )
        theirs = [
            tuple(r)
            for r in await db.execute(
                select(
                    links.c.remote_id, links.c.remote_version, links.c.base, links.c.updated_at
                ).where(links.c.connection == "crm", links.c.remote_id.in_(wanted))
            )
        ]
        assert await select_in(db, links, ("id",), {}, "remote_id", []) == []
    assert sorted(ours) == sorted(theirs)
    assert len(ours) == len(range(0, many, 7))
    assert ours[0][2] == {"i": int(ours[0][0][1:])}


async def test_driver_errors_come_out_as_sqlalchemy_errors(store: Store) -> None:
    async with store.begin() as db:
        taken = await _entity(db)
    with pytest.raises(IntegrityError):
        async with store.begin() as db:
            await _entity(db)
            await insert_rows(
                db, entities, ENTITY_COLUMNS, [(taken, "contact", {}, {}, WHEN, WHEN)]
            )
    async with store.connect() as db:
        count = len((await db.execute(select(entities.c.id))).all())
    assert count == 1  # the failed transaction left nothing behind


async def test_update_rows_naming_a_row_twice_writes_the_later(store: Store) -> None:
    async with store.begin() as db:
        entity = await _entity(db)
        rows = [({"city": c}, WHEN, entity) for c in ("Lima", "Oslo", "Rome")]
        assert await update_rows(db, entities, ("fields", "updated_at"), ("id",), rows) >= 1
    async with store.connect() as db:
        assert (await db.execute(select(entities.c.fields))).scalar() == {"city": "Rome"}


async def test_values_json_cannot_carry_are_written_all_the_same(store: Store) -> None:
    # SQLite's page writes carry rows as JSON: a bytes column takes the other way in
    body = bytes(range(256))
    columns = ("source", "delivery_id", "kind", "headers", "body", "status", "attempts")
    async with store.begin() as db:
        assert await insert_rows(
            db,
            inbox,
            (*columns, "received_at"),
            [
                ("forms", "d1", "event", {"n": 2**70}, body, "pending", 0, WHEN),
                ("forms", "d2", "event", {}, b"", "pending", 0, WHEN),
            ],
        )
    async with store.connect() as db:
        got = (await db.execute(select(inbox.c.body, inbox.c.headers).order_by(inbox.c.id))).all()
    assert [tuple(r) for r in got] == [(body, {"n": 2**70}), (b"", {})]


def test_collector_pause_nests_and_leaves_a_disabled_collector_alone() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("a page failed")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
