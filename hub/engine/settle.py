"""Pending references resolved once their targets are known.

After a run has pulled every stream, each stream's pending references (``pending_refs``,
left by this run or earlier ones) are looked up again in bulk. Targets this connection names
by its own ids and can read one by one are fetched first (``Connector.fetch``), so a ticket
whose requester was not in the pulled pages still gets its requester. A resolved reference
is merged into its record like a remote change of that field (three-way, against the
link's base), in a transaction of the record's entity type.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.connector import Page
from hub.engine.context import RunContext, StreamContext
from hub.engine.merge import MISSING, FieldSide, Outcome, merge_field
from hub.engine.references import PageReferences, index_references, ref_values
from hub.engine.writes import OutboxQueue
from hub.store.bulk import insert_rows, select_in, update_rows
from hub.store.schema import change_log, entities, links, pending_refs

Transaction = Callable[[str], contextlib.AbstractAsyncContextManager[AsyncConnection]]
"""``transaction(entity_type)``: the page transaction of that entity type."""

BATCH = 5000
FETCH_MAX = 1000
"""Most records read one by one per stream and run."""


async def settle_pending(ctx: RunContext, transaction: Transaction) -> None:
    """Resolve what can be resolved of every stream's pending references. The distinct
    names waiting are looked up first, so a run with many references that still wait (mail
    from people who are no contact) reads each name once and touches no record."""
    for sctx in ctx.streams:
        refs = PageReferences(ctx, sctx)
        if not refs.refs:
            continue
        await _fetch_targets(ctx, sctx, refs, transaction)
        async with transaction(sctx.stream.entity) as db:
            p = pending_refs.c
            await db.execute(  # fields the mapping no longer reads wait for nothing
                delete(pending_refs).where(
                    p.connection == ctx.name,
                    p.stream == sctx.stream.name,
                    p.field.not_in(list(refs.refs)),
                )
            )
            hits = await _resolvable(ctx, sctx, refs, db)
        names = sorted({v for found in hits.values() for v in found})
        for i in range(0, len(names), BATCH):
            async with transaction(sctx.stream.entity) as db:
                rows = await select_in(
                    db,
                    pending_refs,
                    ("remote_id", "field", "value", "target_type", "by"),
                    {"connection": ctx.name, "stream": sctx.stream.name},
                    "value",
                    names[i : i + BATCH],
                )
                await _settle(ctx, sctx, refs, db, rows, hits)


async def _named(
    ctx: RunContext, sctx: StreamContext, db: AsyncConnection
) -> dict[tuple[str, str], list[str]]:
    """The distinct names the stream's pending references wait for, per (type, key kind)."""
    p = pending_refs.c
    rows = await db.execute(
        select(p.target_type, p.by, p.value)
        .where(p.connection == ctx.name, p.stream == sctx.stream.name)
        .distinct()
    )
    named: dict[tuple[str, str], list[str]] = {}
    for target, by, value in rows:
        named.setdefault((target, by), []).append(value)
    return named


async def _resolvable(
    ctx: RunContext, sctx: StreamContext, refs: PageReferences, db: AsyncConnection
) -> dict[tuple[str, str], dict[str, str]]:
    """The waiting names that now name a record: (type, key kind) -> name -> hub id."""
    hits: dict[tuple[str, str], dict[str, str]] = {}
    for (target, by), values in (await _named(ctx, sctx, db)).items():
        for i in range(0, len(values), BATCH):
            found = await refs.look_up(db, target, by, values[i : i + BATCH])
            if found:
                hits.setdefault((target, by), {}).update(found)
    return hits


async def _fetch_targets(
    ctx: RunContext, sctx: StreamContext, refs: PageReferences, transaction: Transaction
) -> None:
    """Read the targets named by this connection's ids that no page brought."""
    if ctx.plan:
        return
    async with transaction(sctx.stream.entity) as db:
        wanted: dict[str, set[str]] = {}
        for (lookup, by), values in (await _named(ctx, sctx, db)).items():
            if by == "id":  # a ticket whose requester a comment waits for: the ticket
                target = lookup.partition(".")[0]
                known = await refs.look_up(db, target, "id", values)
                wanted.setdefault(target, set()).update(set(values) - set(known))
    from hub.engine.pull import PageApplier  # the pull step uses this module

    for target, ids in wanted.items():
        for other in ctx.streams:
            if other.stream.entity != target or not ids:
                continue
            records = await ctx.connector.fetch(other.stream, sorted(ids)[:FETCH_MAX])
            if not records:
                continue
            ctx.count("references_fetched", len(records))
            async with transaction(target) as db:
                await PageApplier(ctx, other).apply(db, Page(records=records))


async def _settle(
    ctx: RunContext,
    sctx: StreamContext,
    refs: PageReferences,
    db: AsyncConnection,
    rows: list[Any],
    hits: dict[tuple[str, str], dict[str, str]],
) -> None:
    """Merge the references of ``rows`` that ``hits`` resolves into their records."""
    resolved: dict[str, dict[str, list[str]]] = {}
    done: list[tuple[str, str, str]] = []
    for remote_id, f, value, target, by in rows:
        hit = hits.get((target, by), {}).get(value)
        if hit is not None and f in refs.refs:
            resolved.setdefault(remote_id, {}).setdefault(f, []).append(hit)
            done.append((remote_id, f, value))
    if not done:
        return
    stream = sctx.stream.name
    link_rows = await select_in(
        db,
        links,
        ("id", "entity_id", "remote_id", "base"),
        {"connection": ctx.name, "stream": stream},
        "remote_id",
        list(resolved),
    )
    by_entity = {r[1]: r for r in link_rows}
    ents = {
        r[0]: r
        for r in await select_in(
            db, entities, ("id", "fields", "provenance", "deleted_at"), {}, "id", list(by_entity)
        )
        if r[3] is None
    }
    changed = _merge(ctx, sctx, refs, resolved, by_entity, ents)
    await _write(ctx, sctx, db, changed)
    p = pending_refs.c
    for i in range(0, len(done), 500):
        await db.execute(
            delete(pending_refs).where(
                p.connection == ctx.name,
                p.stream == stream,
                or_(
                    *(
                        and_(p.remote_id == r, p.field == f, p.value == v)
                        for r, f, v in done[i : i + 500]
                    )
                ),
            )
        )
    ctx.count("references_resolved", len(done))


class _Changed:
    def __init__(self) -> None:
        self.entities: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = []
        self.links: list[tuple[str, dict[str, Any]]] = []
        self.owed_self: set[str] = set()


def _merge(
    ctx: RunContext,
    sctx: StreamContext,
    refs: PageReferences,
    resolved: dict[str, dict[str, list[str]]],
    by_entity: dict[str, Any],
    ents: dict[str, Any],
) -> _Changed:
    out = _Changed()
    stamp = [ctx.name, ctx.started.isoformat()]
    for entity_id, (link_id, _, remote_id, base) in by_entity.items():
        ent = ents.get(entity_id)
        if ent is None:
            continue
        fields, provenance = dict(ent[1]), dict(ent[2])
        base = dict(base)
        log: dict[str, list[Any]] = {}
        for f, ids in resolved.get(remote_id, {}).items():
            old_base = base.get(f, MISSING)
            if refs.refs[f].many:
                known = ref_values(None if old_base is MISSING else old_base)
                remote: Any = known + [i for i in dict.fromkeys(ids) if i not in known]
            else:
                remote = ids[0]
            hub_value = fields.get(f, MISSING)
            prov = provenance.get(f)
            outcome = merge_field(
                old_base,
                remote,
                hub_value,
                policy=ctx.policy(f),
                remote_side=FieldSide(remote, ctx.started, ctx.name),
                hub_side=FieldSide(hub_value, None, prov[0] if prov else None),
                prefer=ctx.conn.hub.prefer,
            )
            if outcome is Outcome.TAKE_REMOTE:
                log[f] = [None if hub_value is MISSING else hub_value, remote]
                fields[f] = remote
                provenance[f] = stamp
                base[f] = remote
            elif outcome is Outcome.CONVERGED:
                base[f] = remote
            elif outcome in (Outcome.OWE_REMOTE, Outcome.CONFLICT):
                out.owed_self.add(entity_id)
        if log:
            out.entities.append((entity_id, fields, provenance, log))
        if base != by_entity[entity_id][3]:
            out.links.append((link_id, base))
    return out


async def _write(
    ctx: RunContext, sctx: StreamContext, db: AsyncConnection, changed: _Changed
) -> None:
    now = ctx.started
    await update_rows(
        db,
        entities,
        ("fields", "provenance", "updated_at"),
        ("id",),
        [(f, p, now, i) for i, f, p, _ in changed.entities],
    )
    await update_rows(
        db, links, ("base", "updated_at"), ("id",), [(b, now, i) for i, b in changed.links]
    )
    await insert_rows(
        db,
        change_log,
        ("entity_id", "connection", "run_id", "at", "changes"),
        [(i, ctx.name, ctx.run_id, now, log) for i, _, _, log in changed.entities],
    )
    await index_references(
        db, sctx.stream.entity, [(i, f, False) for i, f, _, _ in changed.entities]
    )
    queue = OutboxQueue(ctx)
    if ctx.conn.hub.direction != "pull" and sctx.stream.can_push:
        for entity_id in changed.owed_self:
            queue.add(ctx.name, sctx.stream.name, entity_id)
    for entity_id, _, _, log in changed.entities:
        for target in sctx.targets:
            if target.fields.intersection(log):
                queue.add(target.connection, target.stream, entity_id)
    await queue.flush(db)
    ctx.count("updated", len(changed.entities))
