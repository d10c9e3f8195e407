"""Retention (hub.housekeeping) on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from hub.housekeeping import prune
from hub.store import Store
from hub.store.bulk import new_id
from hub.store.schema import entities, inbox, outbox, runs

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=40)
RECENT = NOW - timedelta(days=2)


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
            started = NOW - timedelta(days=day)
            await db.execute(
                insert(runs).values(
                    id=run_id,
                    connection=connection,
                    status=status,
                    full=False,
                    started_at=started,
                    finished_at=started + timedelta(minutes=1),
                    counts={},
                )
            )


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
