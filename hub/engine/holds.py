"""Runs held by the delete guard: what a hold keeps back, and approving one later.

A held run deletes nothing. It also keeps back what it created: when a key column changes
(a CSV header renamed, an export that switched id scheme) the same records are seen from two
sides, as deletions of the old ones and creations of new ones; applying only the creations
would double every record and push the copies elsewhere. So the run's new entities and links
are removed again and its cursor put back, and the next run sees the same change afresh.

Held deletions are kept per record (``pending_deletes``: run, link). A later run that sees a
held record again takes it out of the hold, so approving an old hold never deletes a record
that came back. A new hold supersedes the connection's older ones (status ``superseded``,
naming the new run): it saw the records as they are now, and only it can be approved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.engine.context import RunContext
from hub.engine.deletes import apply_deletes
from hub.engine.writes import upsert_cursor
from hub.errors import CrmhubError
from hub.runtime import Hub
from hub.store import Lease
from hub.store import runs as run_rows
from hub.store.bulk import select_in
from hub.store.schema import cursors, entities, entity_keys, links, outbox, pending_deletes, runs
from hub.store.status import RunStatus


class ApprovalRefused(CrmhubError):
    """The run cannot be approved (not held, or superseded); the message says what to do."""


async def has_holds(db: AsyncConnection, connection: str, stream: str) -> bool:
    """Whether any held deletion waits for a record of this connection's stream."""
    found = await db.scalar(
        select(pending_deletes.c.link_id)
        .join(links, links.c.id == pending_deletes.c.link_id)
        .where(links.c.connection == connection, links.c.stream == stream)
        .limit(1)
    )
    return found is not None


async def forget_seen(
    db: AsyncConnection, connection: str, stream: str, remote_ids: list[str]
) -> None:
    """Records seen again are no longer deleted: take them out of every hold."""
    if not remote_ids:
        return
    rows = await select_in(
        db,
        links,
        ("id",),
        {"connection": connection, "stream": stream},
        "remote_id",
        remote_ids,
    )
    seen = [r[0] for r in rows]
    for i in range(0, len(seen), 5000):
        await db.execute(
            delete(pending_deletes).where(pending_deletes.c.link_id.in_(seen[i : i + 5000]))
        )


async def keep_back_creates(
    db: AsyncConnection,
    ctx: RunContext,
    stream: str,
    created: list[str],
    new_links: list[str],
    cursor_before: Any,
) -> int:
    """Undo what a held run brought in: its new entities (with their keys and owed
    writes) and the links it made; put the stream's cursor back. Returns how many
    entities were kept back."""
    for i in range(0, max(len(created), len(new_links)), 5000):
        ents, lks = created[i : i + 5000], new_links[i : i + 5000]
        if ents:
            await db.execute(delete(outbox).where(outbox.c.entity_id.in_(ents)))
            await db.execute(delete(entity_keys).where(entity_keys.c.entity_id.in_(ents)))
            await db.execute(delete(links).where(links.c.entity_id.in_(ents)))
        if lks:
            await db.execute(delete(links).where(links.c.id.in_(lks)))
        if ents:
            await db.execute(delete(entities).where(entities.c.id.in_(ents)))
    if not ctx.plan:
        if cursor_before is None:
            await db.execute(
                delete(cursors).where(cursors.c.connection == ctx.name, cursors.c.stream == stream)
            )
        else:
            await upsert_cursor(db, ctx.name, stream, cursor_before)
    ctx.count("creates_held", len(created))
    return len(created)


async def supersede_older(db: AsyncConnection, ctx: RunContext) -> None:
    """The connection's older held runs give way to this one (held in the same transaction)."""
    older = [
        r
        for (r,) in await db.execute(
            select(runs.c.id).where(
                runs.c.connection == ctx.name,
                runs.c.status == RunStatus.HELD,
                runs.c.id != ctx.run_id,
            )
        )
    ]
    if not older:
        return
    await db.execute(delete(pending_deletes).where(pending_deletes.c.run_id.in_(older)))
    await db.execute(
        update(runs)
        .where(runs.c.id.in_(older))
        .values(
            status=RunStatus.SUPERSEDED,
            error=f"superseded by the later held run {ctx.run_id}, which saw the records as "
            "they are now",
        )
    )


@dataclass
class Approval:
    applied: int
    """Deletions applied."""
    kept: int
    """Held deletions that no longer apply: the record was seen again, or is gone."""


async def approve(hub: Hub, run_id: str) -> Approval:
    """Apply the deletions held run ``run_id`` still waits for, re-checked against what is
    known now. Raises ``ApprovalRefused`` for a run that is not held or that a later held
    run of its connection supersedes."""
    async with hub.store.connect() as db:
        run = (await db.execute(select(runs).where(runs.c.id == run_id))).one_or_none()
        if run is None:
            raise ApprovalRefused(f"no run with id {run_id!r}")
        if run.status == RunStatus.SUPERSEDED:
            raise ApprovalRefused(
                f"run {run_id} of connection {run.connection!r} was {run.error}: approve that "
                "one if its deletions are right"
            )
        if run.status != RunStatus.HELD:
            raise ApprovalRefused(
                f"run {run_id} of connection {run.connection!r} is not held (it is "
                f"{run.status}): there is nothing to approve"
            )
        later = (
            await db.execute(
                select(runs.c.id)
                .where(
                    runs.c.connection == run.connection,
                    runs.c.status == RunStatus.HELD,
                    runs.c.started_at > run.started_at,
                )
                .order_by(runs.c.started_at.desc())
                .limit(1)
            )
        ).scalar()
    if later is not None:
        raise ApprovalRefused(
            f"run {run_id} is superseded by the later held run {later} of connection "
            f"{run.connection!r}, which saw the records as they are now: approve that one "
            f"(crmhub runs approve {later}) if its deletions are right"
        )
    # No run of the connection may go on meanwhile: it could bring a held record back.
    async with Lease(hub.store, f"run:{run.connection}"), hub.store.begin() as db:
        rows = (
            await db.execute(
                select(links)
                .join(pending_deletes, pending_deletes.c.link_id == links.c.id)
                .where(pending_deletes.c.run_id == run_id)
            )
        ).all()
        policy = hub.config.connection(run.connection).hub.delete_policy
        n = await apply_deletes(hub, db, run.connection, policy, rows)
        await db.execute(delete(pending_deletes).where(pending_deletes.c.run_id == run_id))
        counts = dict(run.counts)
        kept = max(int(counts.get("deletes_held", 0)) - len(rows), 0)
        counts["deleted"] = counts.get("deleted", 0) + n
        if kept:
            counts["deletes_kept"] = kept
        await run_rows.finish(db, run_id, RunStatus.OK, counts=counts)
    return Approval(n, kept)
