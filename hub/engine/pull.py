"""Applying one pulled page: map, match, merge, and stage every write of the page.

A page is first prepared (mapped to canonical values, its match keys computed: work that
needs no database, so the run does it for the next page while the current one is written)
and then applied. Everything a page changes (entities, keys, links with their bases,
conflicts, change log, outbox rows, the cursor) is written in the one transaction the
caller holds, so a crash loses at most the page in flight, which is pulled again and
applies idempotently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.connector import Page, RemoteRecord
from hub.engine.context import RunContext, StreamContext
from hub.engine.duplicates import report_matches
from hub.engine.merge import MISSING, FieldSide, Outcome, merge_field
from hub.engine.references import PageReferences, index_references, owe_renamed
from hub.engine.unparsed import keep_unparsed
from hub.engine.writes import LINK_COLUMNS, OutboxQueue, upsert_cursor
from hub.mapping import FieldProblem
from hub.records import KEY_FIELDS, match_keys
from hub.store.bulk import IdPool, insert_rows, select_in, update_rows
from hub.store.schema import change_log, conflicts, entities, entity_keys, links


@dataclass(slots=True)
class _Entity:
    id: str
    fields: dict[str, Any]
    provenance: dict[str, list[Any]]
    new: bool = False
    changed: bool = False
    keys_changed: bool = False
    log: dict[str, list[Any]] = field(default_factory=dict)
    keys: list[tuple[str, str]] | None = None
    """Match keys already computed from ``fields`` (a new entity's), else ``None``."""


@dataclass(slots=True)
class _Link:
    id: str
    entity_id: str
    remote_id: str
    version: str | None
    base: dict[str, Any]
    new: bool = False
    changed: bool = False


@dataclass(slots=True)
class Prepared:
    """A page mapped to canonical values, with the match keys of each record."""

    records: list[tuple[RemoteRecord, dict[str, Any]]]
    keys: dict[str, list[tuple[str, str]]]
    """Match keys by remote id, strongest first."""
    errors: list[str]
    deleted: list[str]
    cursor: Any


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
        self.ids = IdPool()
        self.references = PageReferences(ctx, sctx)
        self.track_new = False
        """Keep the ids of the entities and links this run creates (``created_ids``,
        ``new_link_ids``), so a run the delete guard holds can keep them back."""
        self.created_ids: list[str] = []
        self.new_link_ids: list[str] = []

    async def apply(self, db: AsyncConnection, page: Page | Prepared) -> None:
        """Apply a page (prepared first if it is not) in the transaction ``db``."""
        ctx, name, stream = self.ctx, self.ctx.name, self.sctx.stream.name
        if isinstance(page, Page):
            page = self.prepare(page)
        ctx.count("records", len(page.records))
        if page.errors:
            ctx.count("field_errors", len(page.errors))
            ctx.errors.extend(page.errors)
        if page.records:
            await self._merge_records(db, page)
        if page.deleted:
            self.deleted_remote_ids.extend(page.deleted)
        if page.cursor is not None and not ctx.plan:
            await upsert_cursor(db, name, stream, page.cursor)

    def prepare(self, page: Page) -> Prepared:
        """Map ``page`` to canonical values and compute its match keys (no database)."""
        name, stream = self.ctx.name, self.sctx.stream.name
        to_canonical = self.sctx.mapping.to_canonical
        entity_type, region = self.entity_type, self.region
        records: list[tuple[RemoteRecord, dict[str, Any]]] = []
        keys: dict[str, list[tuple[str, str]]] = {}
        messages: list[str] = []
        problems: list[FieldProblem] = []
        for rec in page.records:
            canon = to_canonical(rec.data, problems)
            if problems:
                messages.extend(keep_unparsed(name, stream, rec, canon, problems))
                problems.clear()
            records.append((rec, canon))
            keys[rec.id] = match_keys(entity_type, canon, region)
        return Prepared(records, keys, messages, page.deleted, page.cursor)

    async def _merge_records(self, db: AsyncConnection, page: Prepared) -> None:
        ctx, name, stream = self.ctx, self.ctx.name, self.sctx.stream.name
        records, keys_of = page.records, page.keys
        remote_ids = [rec.id for rec, _ in records]
        rows = await select_in(
            db,
            links,
            ("id", "entity_id", "remote_id", "remote_version", "base"),
            {"connection": name, "stream": stream},
            "remote_id",
            remote_ids,
        )
        known: dict[str, _Link] = {r[2]: _Link(*r) for r in rows}
        await self.references.resolve(db, records, known)
        # Identity matching for records seen for the first time.
        wanted: dict[str, set[str]] = {}
        for rec, _ in records:
            if rec.id in known:
                continue
            # Only the strongest key present identifies: two addresses sharing a phone
            # number (a switchboard, a household) are two people, not one.
            for kind, value in keys_of[rec.id][:1]:
                wanted.setdefault(kind, set()).add(value)
        by_key: dict[tuple[str, str], str] = {}
        for kind, values in wanted.items():
            found = await select_in(
                db,
                entity_keys,
                ("value", "entity_id"),
                {"entity_type": self.entity_type, "kind": kind},
                "value",
                values,
            )
            for value, entity_id in found:
                by_key.setdefault((kind, value), entity_id)
        unmatched = {
            rec.id: keys_of[rec.id]
            for rec, _ in records
            if rec.id not in known and keys_of[rec.id] and keys_of[rec.id][0] not in by_key
        }
        weaker = await self.references.weaker_matches(db, unmatched)
        entity_ids = (
            {link.entity_id for link in known.values()}
            | set(by_key.values())
            | set(weaker.values())
        )
        loaded: dict[str, _Entity] = {}
        deleted: set[str] = set()
        for entity_id, fields, provenance, deleted_at in await select_in(
            db, entities, ("id", "fields", "provenance", "deleted_at"), {}, "id", entity_ids
        ):
            if deleted_at is None:
                loaded[entity_id] = _Entity(entity_id, fields, provenance)
            else:
                deleted.add(entity_id)
        held = await self._open_conflicts(db, list(loaded))

        created = matched = tombstoned = 0
        matches: list[tuple[RemoteRecord, str]] = []
        take_id = self.ids.take
        for rec, canon in records:
            link = known.get(rec.id)
            if link is not None and link.entity_id in deleted:
                # Deleted in the hub (a delete propagated from another system): the link
                # stays until this system's copy is deleted too, and nothing comes back. The
                # version seen is kept, so the delete owed here is not refused as stale.
                tombstoned += 1
                if rec.version != link.version:
                    link.version = rec.version
                    link.changed = True
                continue
            ent = loaded.get(link.entity_id) if link else None
            if link is None or ent is None:
                own_keys = keys_of[rec.id]
                strongest = own_keys[0] if own_keys else None
                match_id = by_key.get(strongest) if strongest else None
                match_id = match_id or weaker.get(rec.id)
                ent = loaded.get(match_id) if match_id else None
                if ent is None:
                    ent = self._create(canon, rec, take_id())
                    ent.keys = own_keys
                    loaded[ent.id] = ent
                    if strongest:
                        by_key.setdefault(strongest, ent.id)
                    created += 1
                    known[rec.id] = _Link(
                        take_id(), ent.id, rec.id, rec.version, dict(canon), new=True
                    )
                    continue
                link = known[rec.id] = _Link(take_id(), ent.id, rec.id, None, {}, new=True)
                matched += 1
                matches.append((rec, ent.id))
            self._merge(ent, link, rec, canon, held.get(ent.id, set()))
        self.references.note_keys(known)
        ctx.count("created", created)
        ctx.count("matched", matched)
        ctx.count("skipped_deleted", tombstoned)
        await self._write(db, list(loaded.values()), known, held)
        await report_matches(db, ctx, stream, matches)
        self.seen_remote_ids.update(remote_ids)

    def _create(self, canon: dict[str, Any], rec: RemoteRecord, entity_id: str) -> _Entity:
        stamp = [self.ctx.name, (rec.modified_at or self.ctx.started).isoformat()]
        values = {k: v for k, v in canon.items() if v is not None}
        return _Entity(
            id=entity_id,
            fields=values,
            # one list for every field: provenance entries are replaced, never changed
            provenance=dict.fromkeys(values, stamp),
            new=True,
            changed=True,
            keys_changed=True,
            log={k: [None, v] for k, v in values.items()},
        )

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
        # A source without change times is judged by when the hub first saw the change.
        remote_at_default = rec.modified_at or ctx.started
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
                if f in KEY_FIELDS:
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
        rows = await select_in(
            db, conflicts, ("entity_id", "field"), {"status": "open"}, "entity_id", entity_ids
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
            await insert_rows(
                db,
                entities,
                ("id", "type", "fields", "provenance", "created_at", "updated_at"),
                [(e.id, self.entity_type, e.fields, e.provenance, now, now) for e in created],
            )
        await update_rows(
            db,
            entities,
            ("fields", "provenance", "updated_at"),
            ("id",),
            [(e.fields, e.provenance, now, e.id) for e in updated],
        )
        rekey = [e for e in ents if e.keys_changed]
        if rekey:
            stale = [e.id for e in rekey if not e.new]
            if stale:
                await db.execute(delete(entity_keys).where(entity_keys.c.entity_id.in_(stale)))
            # match_keys gives each kind once, so the rows are distinct
            key_rows = [
                (self.entity_type, kind, value, e.id)
                for e in rekey
                for kind, value in (
                    e.keys
                    if e.keys is not None
                    else match_keys(self.entity_type, e.fields, self.region)
                )
            ]
            await insert_rows(
                db, entity_keys, ("entity_type", "kind", "value", "entity_id"), key_rows
            )
        await index_references(
            db,
            self.entity_type,
            [(e.id, e.fields, e.new) for e in ents if self.references.indexed.intersection(e.log)],
        )
        renamed = {e.id: e.log.keys() for e in updated if e.keys_changed}
        if renamed:
            await owe_renamed(ctx, db, self.entity_type, renamed)
        all_links = list(known.values())
        stream = self.sctx.stream.name
        if self.track_new:
            self.created_ids.extend(e.id for e in created)
            self.new_link_ids.extend(lk.id for lk in all_links if lk.new)
        await insert_rows(
            db,
            links,
            LINK_COLUMNS,
            [
                (lk.id, lk.entity_id, ctx.name, stream, lk.remote_id, lk.version, lk.base, now)
                for lk in all_links
                if lk.new
            ],
        )
        await update_rows(
            db,
            links,
            ("base", "remote_version", "updated_at"),
            ("id",),
            [(lk.base, lk.version, now, lk.id) for lk in all_links if lk.changed and not lk.new],
        )
        # A creation's history is its provenance; the log records changes to what existed.
        await insert_rows(
            db,
            change_log,
            ("entity_id", "connection", "run_id", "at", "changes"),
            [(e.id, ctx.name, ctx.run_id, now, e.log) for e in ents if e.log and not e.new],
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
