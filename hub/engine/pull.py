"""Applying one pulled page: map, match, merge, and stage every write of the page.

Everything a page changes (entities, keys, links with their bases, conflicts, change log,
outbox rows, the cursor) is written in the one transaction the caller holds, so a crash
loses at most the page in flight, which is pulled again and applies idempotently.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.connector import Page, RemoteRecord
from hub.engine.context import RunContext, StreamContext
from hub.engine.merge import MISSING, FieldSide, Outcome, merge_field
from hub.engine.writes import OutboxQueue, upsert_cursor
from hub.mapping import FieldProblem
from hub.records import match_keys
from hub.store.schema import change_log, conflicts, entities, entity_keys, links


@dataclass
class _Entity:
    id: str
    fields: dict[str, Any]
    provenance: dict[str, list[Any]]
    new: bool = False
    changed: bool = False
    keys_changed: bool = False
    log: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class _Link:
    id: str
    entity_id: str
    remote_id: str
    version: str | None
    base: dict[str, Any]
    new: bool = False
    changed: bool = False


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


class PageApplier:
    """Applies pages of one stream of one run. One instance per stream per run."""

    def __init__(self, ctx: RunContext, sctx: StreamContext) -> None:
        self.ctx = ctx
        self.sctx = sctx
        self.entity_type = sctx.stream.entity
        self.region = ctx.hub.config.hub.phone_region
        self.pushes_to_self = ctx.conn.hub.direction != "pull" and sctx.stream.can_push
        self.seen_remote_ids: set[str] = set()
        self.deleted_remote_ids: list[str] = []

    async def apply(self, db: AsyncConnection, page: Page) -> None:
        ctx, name, stream = self.ctx, self.ctx.name, self.sctx.stream.name
        mapping = self.sctx.mapping
        records: list[tuple[RemoteRecord, dict[str, Any]]] = []
        for rec in page.records:
            errors: list[FieldProblem] = []
            canon = mapping.to_canonical(rec.data, errors)
            for problem in errors:
                ctx.count("field_errors")
                ctx.errors.append(f"{name} {stream} record {rec.id}: {problem}")
            records.append((rec, canon))
        ctx.count("records", len(records))
        if records:
            await self._merge_records(db, records)
        if page.deleted:
            self.deleted_remote_ids.extend(page.deleted)
        if page.cursor is not None and not ctx.plan:
            await upsert_cursor(db, name, stream, page.cursor)

    async def _merge_records(
        self, db: AsyncConnection, records: list[tuple[RemoteRecord, dict[str, Any]]]
    ) -> None:
        ctx, name, stream = self.ctx, self.ctx.name, self.sctx.stream.name
        remote_ids = [rec.id for rec, _ in records]
        rows = await db.execute(
            select(links).where(
                links.c.connection == name,
                links.c.stream == stream,
                links.c.remote_id.in_(remote_ids),
            )
        )
        known: dict[str, _Link] = {
            r.remote_id: _Link(r.id, r.entity_id, r.remote_id, r.remote_version, dict(r.base))
            for r in rows
        }
        # Identity matching for records seen for the first time.
        wanted: dict[str, set[str]] = {}
        keys_of: dict[str, list[tuple[str, str]]] = {}
        for rec, canon in records:
            if rec.id in known:
                continue
            # Only the strongest key present identifies: two addresses sharing a phone
            # number (a switchboard, a household) are two people, not one.
            keys = match_keys(self.entity_type, canon, self.region)[:1]
            keys_of[rec.id] = keys
            for kind, value in keys:
                wanted.setdefault(kind, set()).add(value)
        by_key: dict[tuple[str, str], str] = {}
        for kind, values in wanted.items():
            found = await db.execute(
                select(entity_keys.c.value, entity_keys.c.entity_id).where(
                    entity_keys.c.entity_type == self.entity_type,
                    entity_keys.c.kind == kind,
                    entity_keys.c.value.in_(values),
                )
            )
            for value, entity_id in found:
                by_key.setdefault((kind, value), entity_id)
        entity_ids = {link.entity_id for link in known.values()} | set(by_key.values())
        loaded: dict[str, _Entity] = {}
        if entity_ids:
            found_entities = await db.execute(
                select(entities.c.id, entities.c.fields, entities.c.provenance).where(
                    entities.c.id.in_(entity_ids), entities.c.deleted_at.is_(None)
                )
            )
            for row in found_entities:
                loaded[row.id] = _Entity(row.id, dict(row.fields), dict(row.provenance))
        held = await self._open_conflicts(db, list(loaded))

        for rec, canon in records:
            link = known.get(rec.id)
            ent = loaded.get(link.entity_id) if link else None
            if link is not None and ent is None:
                # The link points at an entity deleted in the hub: start it afresh.
                link = None
            if link is None:
                ent = self._match(keys_of.get(rec.id, []), by_key, loaded)
                link = _Link(str(uuid.uuid4()), "", rec.id, None, {}, new=True)
                known[rec.id] = link
                if ent is None:
                    ent = self._create(canon, rec, loaded)
                    for kind, value in keys_of.get(rec.id, []):
                        by_key.setdefault((kind, value), ent.id)
                    ctx.count("created")
                    link.entity_id, link.base, link.version = ent.id, dict(canon), rec.version
                    continue
                link.entity_id = ent.id
                ctx.count("matched")
            assert ent is not None
            self._merge(ent, link, rec, canon, held.get(ent.id, set()))
        await self._write(db, list(loaded.values()), known, held)
        self.seen_remote_ids.update(remote_ids)

    def _match(
        self,
        keys: list[tuple[str, str]],
        by_key: dict[tuple[str, str], str],
        loaded: dict[str, _Entity],
    ) -> _Entity | None:
        for key in keys:
            entity_id = by_key.get(key)
            if entity_id is not None and entity_id in loaded:
                return loaded[entity_id]
        return None

    def _create(
        self, canon: dict[str, Any], rec: RemoteRecord, loaded: dict[str, _Entity]
    ) -> _Entity:
        at = (rec.modified_at or self.ctx.started).isoformat()
        values = {k: v for k, v in canon.items() if v is not None}
        ent = _Entity(
            id=str(uuid.uuid4()),
            fields=values,
            provenance={k: [self.ctx.name, at] for k in values},
            new=True,
            changed=True,
            keys_changed=True,
            log={k: [None, v] for k, v in values.items()},
        )
        loaded[ent.id] = ent
        return ent

    def _merge(
        self,
        ent: _Entity,
        link: _Link,
        rec: RemoteRecord,
        canon: dict[str, Any],
        held: set[str],
    ) -> None:
        ctx, name = self.ctx, self.ctx.name
        paths = self.sctx.mapping.remote_paths
        remote_at_default = rec.modified_at
        for f, remote in canon.items():
            base = link.base.get(f, MISSING)
            hub_value = ent.fields.get(f, MISSING)
            if f in held:
                self.conflict_updates.append((ent.id, f, remote))
                continue
            if (
                base is not MISSING
                and remote == base
                and ((hub_value is MISSING and base is None) or hub_value == base)
            ):
                continue  # the common case, decided without building the sides
            prov = ent.provenance.get(f)
            remote_at = remote_at_default
            if rec.field_modified_at and f in paths:
                remote_at = rec.field_modified_at.get(paths[f], remote_at)
            outcome = merge_field(
                base,
                remote,
                hub_value,
                policy=ctx.policy(f),
                remote_side=FieldSide(remote, remote_at, name),
                hub_side=FieldSide(
                    hub_value, _time(prov[1]) if prov else None, prov[0] if prov else None
                ),
                prefer=ctx.conn.hub.prefer,
            )
            if outcome is Outcome.SAME:
                continue
            if outcome is Outcome.TAKE_REMOTE:
                old = None if hub_value is MISSING else hub_value
                ent.fields[f] = remote
                ent.provenance[f] = [name, (remote_at or ctx.started).isoformat()]
                ent.log[f] = [old, remote]
                ent.changed = True
                if f in ("email", "phone", "domain", "number"):
                    ent.keys_changed = True
                link.base[f] = remote
                link.changed = True
            elif outcome is Outcome.CONVERGED:
                link.base[f] = remote
                link.changed = True
            elif outcome is Outcome.OWE_REMOTE:
                self.owed_self.add(ent.id)
            else:
                self.new_conflicts.append(
                    {
                        "entity_id": ent.id,
                        "connection": name,
                        "field": f,
                        "base_value": None if base is MISSING else base,
                        "hub_value": None if hub_value is MISSING else hub_value,
                        "remote_value": remote,
                    }
                )
                held.add(f)
                ctx.count("conflicts")
        if rec.version != link.version:
            link.version = rec.version
            link.changed = True
        # Fields the hub holds that this remote record lacks entirely are owed to it.
        if self.pushes_to_self and any(
            v is not None and f not in canon and f not in link.base
            for f, v in ent.fields.items()
            if f in self.sctx.mapping.push_fields
        ):
            self.owed_self.add(ent.id)

    async def _open_conflicts(
        self, db: AsyncConnection, entity_ids: list[str]
    ) -> dict[str, set[str]]:
        self.owed_self: set[str] = set()
        self.new_conflicts: list[dict[str, Any]] = []
        self.conflict_updates: list[tuple[str, str, Any]] = []
        held: dict[str, set[str]] = {}
        if not entity_ids:
            return held
        rows = await db.execute(
            select(conflicts.c.entity_id, conflicts.c.field).where(
                conflicts.c.status == "open", conflicts.c.entity_id.in_(entity_ids)
            )
        )
        for entity_id, f in rows:
            held.setdefault(entity_id, set()).add(f)
        return held

    async def _write(
        self,
        db: AsyncConnection,
        ents: list[_Entity],
        known: dict[str, _Link],
        held: dict[str, set[str]],
    ) -> None:
        ctx, now = self.ctx, self.ctx.started
        created = [e for e in ents if e.new]
        updated = [e for e in ents if e.changed and not e.new]
        ctx.count("updated", len(updated))
        if ctx.plan:
            ctx.plan_hub_changes.extend(
                {"entity": e.id, "new": e.new, "changes": e.log} for e in created + updated
            )
        if created:
            await db.execute(
                insert(entities),
                [
                    {
                        "id": e.id,
                        "type": self.entity_type,
                        "fields": e.fields,
                        "provenance": e.provenance,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for e in created
                ],
            )
        if updated:
            await db.execute(
                update(entities)
                .where(entities.c.id == bindparam("b_id"))
                .values(
                    fields=bindparam("b_fields"),
                    provenance=bindparam("b_prov"),
                    updated_at=bindparam("b_now"),
                ),
                [
                    {"b_id": e.id, "b_fields": e.fields, "b_prov": e.provenance, "b_now": now}
                    for e in updated
                ],
            )
        rekey = [e for e in ents if e.keys_changed]
        if rekey:
            stale = [e.id for e in rekey if not e.new]
            if stale:
                await db.execute(delete(entity_keys).where(entity_keys.c.entity_id.in_(stale)))
            key_rows = {
                (self.entity_type, kind, value, e.id)
                for e in rekey
                for kind, value in match_keys(self.entity_type, e.fields, self.region)
            }
            if key_rows:
                await db.execute(
                    insert(entity_keys),
                    [
                        {"entity_type": t, "kind": k, "value": v, "entity_id": i}
                        for t, k, v, i in key_rows
                    ],
                )
        all_links = list(known.values())
        fresh = [lk for lk in all_links if lk.new]
        if fresh:
            await db.execute(
                insert(links),
                [
                    {
                        "id": lk.id,
                        "entity_id": lk.entity_id,
                        "connection": ctx.name,
                        "stream": self.sctx.stream.name,
                        "remote_id": lk.remote_id,
                        "remote_version": lk.version,
                        "base": lk.base,
                        "updated_at": now,
                    }
                    for lk in fresh
                ],
            )
        changed = [lk for lk in all_links if lk.changed and not lk.new]
        if changed:
            await db.execute(
                update(links)
                .where(links.c.id == bindparam("b_id"))
                .values(
                    base=bindparam("b_base"),
                    remote_version=bindparam("b_version"),
                    updated_at=bindparam("b_now"),
                ),
                [
                    {"b_id": lk.id, "b_base": lk.base, "b_version": lk.version, "b_now": now}
                    for lk in changed
                ],
            )
        # A creation's history is its provenance; the log records changes to what existed.
        logged = [e for e in ents if e.log and not e.new]
        if logged:
            await db.execute(
                insert(change_log),
                [
                    {
                        "entity_id": e.id,
                        "connection": ctx.name,
                        "run_id": ctx.run_id,
                        "at": now,
                        "changes": e.log,
                    }
                    for e in logged
                ],
            )
        if self.new_conflicts:
            await db.execute(
                insert(conflicts),
                [{**c, "status": "open", "created_at": now} for c in self.new_conflicts],
            )
        for entity_id, f, remote in self.conflict_updates:
            await db.execute(
                update(conflicts)
                .where(
                    and_(
                        conflicts.c.entity_id == entity_id,
                        conflicts.c.field == f,
                        conflicts.c.connection == ctx.name,
                        conflicts.c.status == "open",
                    )
                )
                .values(remote_value=remote)
            )
        queue = OutboxQueue(ctx)
        if self.pushes_to_self:
            for entity_id in self.owed_self:
                queue.add(ctx.name, self.sctx.stream.name, entity_id)
        for e in ents:
            if not e.log:
                continue
            for target in self.sctx.targets:
                if e.new or target.fields.intersection(e.log):
                    queue.add(target.connection, target.stream, e.id, new=e.new)
        await queue.flush(db)
