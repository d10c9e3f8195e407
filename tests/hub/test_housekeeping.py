"""Retention (hub.housekeeping) on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.housekeeping import changed_nothing, prune
from hub.store import Store
from hub.store.bulk import new_id
from hub.store.schema import entities, inbox, outbox, runs

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=40)
RECENT = NOW - timedelta(days=2)


async def _add_run(
    db: AsyncConnection,
    run_id: str,
    connection: str,
    status: str,
    started: datetime,
    counts: dict[str, int],
) -> None:
    await db.execute(
        insert(runs).values(
            id=run_id,
            connection=connection,
            status=status,
            full=False,
            started_at=started,
            finished_at=started + timedelta(minutes=1),
            counts=counts,
        )
    )


async def _seed(store: Store) -> None:
    entity = new_id()
    async with store.begin() as db:
        await db.execute(
            insert(entities).values(
                id=entity, type="contact", fields={}, provenance={}, created_at=OLD, updated_at=OLD
            )
        )
        for name, status, touched in [
            ("old-done", "done", OLD),
            ("new-done", "done", RECENT),
            ("old-pending", "pending", OLD),
            ("old-dead", "dead", OLD),
        ]:
            await db.execute(
                insert(outbox).values(
                    id=name,
                    connection="crm",
                    stream="people",
                    entity_id=entity,
                    op="upsert",
                    status=status,
                    attempts=0,
                    created_at=touched,
                    updated_at=touched,
                )
            )
        for delivery, status, received, processed in [
            ("old-done", "done", OLD, OLD),
            ("late-done", "done", OLD, RECENT),  # received long ago, processed lately
            ("old-dead", "dead", OLD, OLD),
            ("old-malformed", "malformed", OLD, None),
        ]:
            await db.execute(
                insert(inbox).values(
                    source="forms",
                    delivery_id=delivery,
                    kind="event",
                    headers={},
                    body=b"{}",
                    status=status,
                    attempts=1,
                    received_at=received,
                    processed_at=processed,
                )
            )
        for run_id, connection, status, day in [
            ("crm-1", "crm", "ok", 50),
            ("crm-2", "crm", "held", 45),
            ("crm-3", "crm", "failed", 41),
            ("crm-4", "crm", "ok", 1),
            ("shop-1", "shop", "ok", 60),  # old, but shop's latest run
        ]:
            await _add_run(db, run_id, connection, status, NOW - timedelta(days=day), {})


async def test_prune_deletes_only_settled_rows_past_the_retention(store: Store) -> None:
    await _seed(store)
    pruned = await prune(store, timedelta(days=30), now=NOW)
    assert pruned.as_dict() == {"inbox": 1, "outbox": 1, "runs": 2}
    async with store.connect() as db:
        left_outbox = {r for (r,) in await db.execute(select(outbox.c.id))}
        left_inbox = {r for (r,) in await db.execute(select(inbox.c.delivery_id))}
        left_runs = {r for (r,) in await db.execute(select(runs.c.id))}
    assert left_outbox == {"new-done", "old-pending", "old-dead"}
    assert left_inbox == {"late-done", "old-dead", "old-malformed"}
    assert left_runs == {"crm-2", "crm-4", "shop-1"}
    again = await prune(store, timedelta(days=30), now=NOW)
    assert again.as_dict() == {"inbox": 0, "outbox": 0, "runs": 0}


LOOKED = {"records": 53, "pages": 1, "http_calls": 2, "http_bytes_received": 3448}


async def test_runs_that_changed_nothing_go_after_their_shorter_retention(store: Store) -> None:
    async with store.begin() as db:
        for run_id, status, day, counts in [
            ("idle-old", "ok", 10, LOOKED),
            ("idle-pushed-nothing", "ok", 5, {"records": 3, "push_calls": 0, "updated": 0}),
            ("changed", "ok", 10, {**LOOKED, "updated": 1, "queued": 1}),
            ("pushed", "ok", 10, {"pages": 1, "push_calls": 1, "pushed_update": 4}),
            ("failed-idle", "failed", 10, LOOKED),
            ("idle-recent", "ok", 1, LOOKED),
            ("idle-latest", "ok", 0, {}),
        ]:
            started = NOW - timedelta(days=day, hours=1)
            await _add_run(db, run_id, "crm", status, started, counts)
    # without an idle retention shorter than the retention, nothing here is old enough
    assert (await prune(store, timedelta(days=30), now=NOW)).runs == 0
    pruned = await prune(store, timedelta(days=30), idle_older_than=timedelta(days=3), now=NOW)
    assert pruned.as_dict() == {"inbox": 0, "outbox": 0, "runs": 2}
    async with store.connect() as db:
        left = {r for (r,) in await db.execute(select(runs.c.id))}
    assert left == {"changed", "pushed", "failed-idle", "idle-recent", "idle-latest"}
    # the latest run of a connection stays however idle and old
    pruned = await prune(store, timedelta(days=30), idle_older_than=timedelta(days=1), now=NOW)
    assert pruned.runs == 1
    async with store.connect() as db:
        left = {r for (r,) in await db.execute(select(runs.c.id))}
    assert left == {"changed", "pushed", "failed-idle", "idle-latest"}


def test_changed_nothing_reads_the_counts() -> None:
    assert changed_nothing({})
    assert changed_nothing(LOOKED)
    assert changed_nothing({"records": 5, "created": 0})
    for key in ("created", "matched", "updated", "deleted", "conflicts", "queued", "push_dead"):
        assert not changed_nothing({**LOOKED, key: 1}), key
