"""Remote deletions: the connection's delete policy, behind the delete guard.

A run whose deletions exceed the guard (a share of the connection's linked records, or a
count) deletes nothing: it records them as pending and waits for ``crmhub runs approve``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.config import DeletePolicy
from hub.engine.context import RunContext
from hub.engine.writes import OutboxQueue
from hub.runtime import Hub
from hub.store import utcnow
from hub.store.schema import entities, entity_keys, links, pending_deletes


def guard_exceeded(hub: Hub, deleting: int, linked: int) -> bool:
    settings = hub.config.hub
    if deleting > settings.delete_guard_max:
        return True
    return linked > 0 and deleting / linked > settings.delete_guard_share


async def linked_count(db: AsyncConnection, connection: str, stream: str) -> int:
    return int(
        await db.scalar(
            select(func.count())
            .select_from(links)
            .where(links.c.connection == connection, links.c.stream == stream)
        )
        or 0
    )


async def has_links(db: AsyncConnection, connection: str, stream: str) -> bool:
    found = await db.scalar(
        select(links.c.id)
        .where(links.c.connection == connection, links.c.stream == stream)
        .limit(1)
    )
    return found is not None


async def hold(db: AsyncConnection, run_id: str, link_ids: list[str]) -> None:
    await db.execute(insert(pending_deletes), [{"run_id": run_id, "link_id": i} for i in link_ids])


async def apply_deletes(
    hub: Hub,
    db: AsyncConnection,
    connection: str,
    policy: DeletePolicy,
    link_rows: Sequence[Any],
) -> int:
    """Apply ``policy`` to the given links (rows of ``links``); returns how many were handled."""
    if policy == "ignore" or not link_rows:
        return 0
    ids = [r.id for r in link_rows]
    await db.execute(delete(links).where(links.c.id.in_(ids)))
    if policy == "unlink":
        return len(ids)
    entity_ids = list({r.entity_id for r in link_rows})
    now = utcnow()
    await db.execute(
        update(entities).where(entities.c.id.in_(entity_ids)).values(deleted_at=now, updated_at=now)
    )
    await db.execute(delete(entity_keys).where(entity_keys.c.entity_id.in_(entity_ids)))
    from hub.relations.merge import clear_references_to  # imports the engine's writes

    await clear_references_to(hub, db, entity_ids)  # nothing points at a deleted record
    # Tell every other system holding a copy.
    queue = OutboxQueue()
    others = await db.execute(
        select(links.c.connection, links.c.stream, links.c.entity_id).where(
            links.c.entity_id.in_(entity_ids)
        )
    )
    for other_connection, other_stream, entity_id in others:
        if other_connection in hub.config.connections:
            queue.add(other_connection, other_stream, entity_id, op="delete")
    await queue.flush(db)
    return len(ids)


async def handle_removed(
    ctx: RunContext, db: AsyncConnection, stream: str, remote_ids: list[str], linked: int
) -> None:
    """Records of ``stream`` deleted remotely: apply the delete policy, or hold the run when
    they exceed the guard (``linked``: the stream's links before the run)."""
    rows: list[Any] = []
    for i in range(0, len(remote_ids), 5000):
        chunk = remote_ids[i : i + 5000]
        rows.extend(
            (
                await db.execute(
                    select(links).where(
                        links.c.connection == ctx.name,
                        links.c.stream == stream,
                        links.c.remote_id.in_(chunk),
                    )
                )
            ).all()
        )
    if not rows:
        return
    if guard_exceeded(ctx.hub, len(rows), linked):
        if not ctx.plan:
            from hub.engine.holds import supersede_older

            await hold(db, ctx.run_id, [r.id for r in rows])
            await supersede_older(db, ctx)
        ctx.held = True
        ctx.count("deletes_held", len(rows))
        ctx.errors.append(
            f"{ctx.name}: {len(rows)} of {linked} linked records were deleted remotely; "
            f"held for approval (crmhub runs approve {ctx.run_id}); what this run would "
            "have created waits with them (a changed key column looks like deletes plus "
            "creates)"
        )
        return
    n = await apply_deletes(ctx.hub, db, ctx.name, ctx.conn.hub.delete_policy, rows)
    ctx.count("deleted", n)
    if ctx.plan:
        ctx.plan_hub_changes.extend({"deleted_remote": r.remote_id} for r in rows)
