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

from sqlalchemy import and_, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.connector import Page, RemoteRecord
from hub.engine.context import RunContext, StreamContext
from hub.engine.duplicates import report_matches
from hub.engine.identity import Identities, ambiguous_message, identity_key, look_up, note_created
from hub.engine.merge import MISSING, FieldSide, Outcome, merge_field
from hub.engine.references import PageReferences, index_references, owe_renamed
from hub.engine.unparsed import UNPARSED, keep_unparsed
from hub.engine.writes import LINK_COLUMNS, OutboxQueue, rekey, upsert_cursor
from hub.mapping import FieldProblem
from hub.records import KEY_FIELDS, match_keys
from hub.store.bulk import IdPool, insert_rows, select_in, update_rows
from hub.store.schema import change_log, conflicts, entities, links


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
    unparsed: dict[str, set[str]] = field(default_factory=dict)
    """Fields each record (by remote id) holds as written: its value could not be parsed."""


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


@dataclass(slots=True)
class _PageState:
    """What applying one page has decided so far; made in :meth:`PageApplier.apply`,
    written to the store at its end."""

    known: dict[str, _Link]
    """This stream's links by remote id: loaded, then those the page makes."""
    identities: Identities = field(default_factory=Identities)
    """Golden records by their identity key, for records seen for the first time, and the
    name keys (of a stream matching by name) that several golden records have."""
    loaded: dict[str, _Entity] = field(default_factory=dict)
    """The live golden records the page touches, by id (new ones included)."""
    deleted: set[str] = field(default_factory=set)
    """Golden records deleted in the hub that a link of the page points at."""
    held: dict[str, set[str]] = field(default_factory=dict)
    """Fields of each golden record with an open conflict."""
    owed_self: set[str] = field(default_factory=set)
    """Golden records whose values this connection must be sent."""
    new_conflicts: list[dict[str, Any]] = field(default_factory=list)
    conflict_updates: list[tuple[str, str, Any]] = field(default_factory=list)
    """(entity id, field, remote value) of open conflicts the remote moved on in."""
    matches: list[tuple[RemoteRecord, str]] = field(default_factory=list)
    """Records seen for the first time that matched an existing golden record."""
    unparsed: dict[str, set[str]] = field(default_factory=dict)
    """Fields each record (by remote id) holds as written (``Prepared.unparsed``)."""
    weaker: dict[str, str] = field(default_factory=dict)
    """Golden records matched by a weaker key, by remote id (``weaker_matches``)."""


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
            state = await self._load(db, page)
            self._decide(page, state)
            await self._write(db, state)
            await report_matches(db, ctx, stream, state.matches)
            self.seen_remote_ids.update(rec.id for rec, _ in page.records)
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
        unparsed: dict[str, set[str]] = {}
        for rec in page.records:
            canon = to_canonical(rec.data, problems)
            if problems:
                messages.extend(keep_unparsed(name, stream, rec, canon, problems, unparsed))
                problems.clear()
            records.append((rec, canon))
            keys[rec.id] = match_keys(entity_type, canon, region)
        return Prepared(records, keys, messages, page.deleted, page.cursor, unparsed)

    # ---- reading: what the store knows of the page's records -------------------------------

    async def _load(self, db: AsyncConnection, page: Prepared) -> _PageState:
        """The page's links, the golden records they or their match keys lead to, and
        those records' open conflicts; references resolved."""
        known = await self._links(db, [rec.id for rec, _ in page.records])
        state = _PageState(known=known, unparsed=page.unparsed)
        await self.references.resolve(db, page.records, state.known)
        await self._identities(db, page, state)
        unmatched = {
            rec.id: keys
            for rec, _ in page.records
            if rec.id not in state.known and (keys := page.keys[rec.id])
            and keys[0] not in state.identities.by_key
        }  # fmt: skip
        state.weaker = await self.references.weaker_matches(db, unmatched)
        entity_ids = {link.entity_id for link in state.known.values()}
        entity_ids |= set(state.identities.by_key.values()) | set(state.weaker.values())
        await self._entities(db, entity_ids, state)
        state.held = await self._open_conflicts(db, list(state.loaded))
        return state

    async def _links(self, db: AsyncConnection, remote_ids: list[str]) -> dict[str, _Link]:
        rows = await select_in(
            db,
            links,
            ("id", "entity_id", "remote_id", "remote_version", "base"),
            {"connection": self.ctx.name, "stream": self.sctx.stream.name},
            "remote_id",
            remote_ids,
        )
        return {r[2]: _Link(*r) for r in rows}

    async def _identities(self, db: AsyncConnection, page: Prepared, state: _PageState) -> None:
        """Golden records by identity key, for the records this connection shows first."""
        wanted: dict[str, set[str]] = {}
        for rec, _ in page.records:
            if rec.id in state.known:
                continue
            # Only the strongest key present identifies: two addresses sharing a phone
            # number (a switchboard, a household) are two people, not one.
            key = identity_key(page.keys[rec.id], self.sctx.stream)
            if key is not None:
                wanted.setdefault(key[0], set()).add(key[1])
        state.identities = await look_up(db, self.entity_type, wanted)

    async def _entities(self, db: AsyncConnection, ids: set[str], state: _PageState) -> None:
        for entity_id, fields, provenance, deleted_at in await select_in(
            db, entities, ("id", "fields", "provenance", "deleted_at"), {}, "id", ids
        ):
            if deleted_at is None:
                state.loaded[entity_id] = _Entity(entity_id, fields, provenance)
            else:
                state.deleted.add(entity_id)

    async def _open_conflicts(
        self, db: AsyncConnection, entity_ids: list[str]
    ) -> dict[str, set[str]]:
        held: dict[str, set[str]] = {}
        if entity_ids:
            rows = await select_in(
                db, conflicts, ("entity_id", "field"), {"status": "open"}, "entity_id", entity_ids
            )
            for entity_id, f in rows:
                held.setdefault(entity_id, set()).add(f)
        return held

    # ---- deciding: each record created, matched, merged or left alone -----------------------

    def _decide(self, page: Prepared, state: _PageState) -> None:
        ctx = self.ctx
        created = matched = tombstoned = 0
        for rec, canon in page.records:
            link = state.known.get(rec.id)
            if link is not None and link.entity_id in state.deleted:
                self._tombstoned(link, rec)
                tombstoned += 1
                continue
            ent = state.loaded.get(link.entity_id) if link else None
            if link is None or ent is None:
                ent, link, new = self._identify(rec, canon, page.keys[rec.id], state)
                if new:
                    created += 1
                    continue
                matched += 1
            self._merge(ent, link, rec, canon, state)
        self.references.note_keys(state.known)
        ctx.count("created", created)
        ctx.count("matched", matched)
        ctx.count("skipped_deleted", tombstoned)

    @staticmethod
    def _tombstoned(link: _Link, rec: RemoteRecord) -> None:
        """Deleted in the hub (a delete propagated from another system): the link stays
        until this system's copy is deleted too, and nothing comes back. The version seen
        is kept, so the delete owed here is not refused as stale."""
        if rec.version != link.version:
            link.version = rec.version
            link.changed = True

    def _identify(
        self,
        rec: RemoteRecord,
        canon: dict[str, Any],
        own_keys: list[tuple[str, str]],
        state: _PageState,
    ) -> tuple[_Entity, _Link, bool]:
        """The golden record of a record without a live link: the one its strongest match
        key names (a new link, to be merged), or a new one made from it (``True``)."""
        take_id = self.ids.take
        strongest = identity_key(own_keys, self.sctx.stream)
        identities = state.identities
        if strongest in identities.ambiguous:
            self.ctx.count("ambiguous_names")
            self.ctx.errors.append(
                ambiguous_message(self.ctx.name, self.sctx.stream.name, rec, strongest)
            )
            strongest = None
        match_id = identities.by_key.get(strongest) if strongest else None
        match_id = match_id or state.weaker.get(rec.id)
        ent = state.loaded.get(match_id) if match_id else None
        if ent is not None:
            link = state.known[rec.id] = _Link(take_id(), ent.id, rec.id, None, {}, new=True)
            state.matches.append((rec, ent.id))
            return ent, link, False
        ent = self._create(canon, rec, take_id(), state.unparsed.get(rec.id, set()))
        ent.keys = own_keys
        state.loaded[ent.id] = ent
        if strongest:
            identities.by_key.setdefault(strongest, ent.id)
        if self.sctx.stream.match_by_name:
            note_created(identities, own_keys, ent.id)
        link = _Link(take_id(), ent.id, rec.id, rec.version, dict(canon), new=True)
        state.known[rec.id] = link
        return ent, link, True

    def _create(
        self, canon: dict[str, Any], rec: RemoteRecord, entity_id: str, unparsed: set[str]
    ) -> _Entity:
        stamp = [self.ctx.name, (rec.modified_at or self.ctx.started).isoformat()]
        values = {k: v for k, v in canon.items() if v is not None}
        # one list for every field: provenance entries are replaced, never changed
        provenance = dict.fromkeys(values, stamp)
        for f in unparsed:
            provenance[f] = [*stamp, UNPARSED]
        return _Entity(
            id=entity_id,
            fields=values,
            provenance=provenance,
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
        state: _PageState,
    ) -> None:
        """Merge each field of a linked record three-way (base, remote, hub)."""
        ctx = self.ctx
        paths = self.sctx.mapping.remote_paths
        held = state.held.get(ent.id, set())
        unparsed = state.unparsed.get(rec.id, ())
        # A source without change times is judged by when the hub first saw the change.
        remote_at_default = rec.modified_at or ctx.started
        for f, remote in canon.items():
            base = link.base.get(f, MISSING)
            hub_value = ent.fields.get(f, MISSING)
            if f in held:
                state.conflict_updates.append((ent.id, f, remote))
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
                remote_side=FieldSide(remote, remote_at, ctx.name),
                hub_side=FieldSide(
                    hub_value, _time(prov[1]) if prov else None, prov[0] if prov else None
                ),
                prefer=ctx.conn.hub.prefer,
            )
            self._take(outcome, ent, link, f, (base, remote, hub_value), remote_at, held, state)
            if outcome is Outcome.TAKE_REMOTE and f in unparsed:
                ent.provenance[f].append(UNPARSED)  # a list of its own (made by _take)
        if rec.version != link.version:
            link.version = rec.version
            link.changed = True
        if self._lacks_owed_fields(ent, link, canon):
            state.owed_self.add(ent.id)

    def _take(
        self,
        outcome: Outcome,
        ent: _Entity,
        link: _Link,
        f: str,
        sides: tuple[Any, Any, Any],
        remote_at: datetime | None,
        held: set[str],
        state: _PageState,
    ) -> None:
        """Carry out one field's merge outcome on the golden record and the link's base
        (a conflict holds the field: ``held``)."""
        base, remote, hub_value = sides
        if outcome is Outcome.TAKE_REMOTE:
            ent.fields[f] = remote
            ent.provenance[f] = [self.ctx.name, (remote_at or self.ctx.started).isoformat()]
            ent.log[f] = [None if hub_value is MISSING else hub_value, remote]
            ent.changed = True
            if f in KEY_FIELDS:
                ent.keys_changed = True
            link.base[f] = remote
            link.changed = True
        elif outcome is Outcome.CONVERGED:
            link.base[f] = remote
            link.changed = True
        elif outcome is Outcome.OWE_REMOTE:
            state.owed_self.add(ent.id)
        elif outcome is not Outcome.SAME:
            state.new_conflicts.append(
                {
                    "entity_id": ent.id,
                    "connection": self.ctx.name,
                    "field": f,
                    "base_value": None if base is MISSING else base,
                    "hub_value": None if hub_value is MISSING else hub_value,
                    "remote_value": remote,
                }
            )
            held.add(f)
            self.ctx.count("conflicts")

    def _lacks_owed_fields(self, ent: _Entity, link: _Link, canon: dict[str, Any]) -> bool:
        """Whether the hub holds a value of a pushed field this remote record lacks entirely
        (then the record is owed it)."""
        return self.pushes_to_self and any(
            v is not None and f not in canon and f not in link.base
            for f, v in ent.fields.items()
            if f in self.sctx.mapping.push_fields
        )

    # ---- writing: everything the page decided, in its transaction ---------------------------

    async def _write(self, db: AsyncConnection, state: _PageState) -> None:
        ents = list(state.loaded.values())
        created = [e for e in ents if e.new]
        updated = [e for e in ents if e.changed and not e.new]
        self.ctx.count("updated", len(updated))
        if self.ctx.plan:
            self.ctx.plan_hub_changes.extend(
                {"entity": e.id, "new": e.new, "changes": e.log} for e in created + updated
            )
        await self._write_entities(db, created, updated)
        await rekey(
            db,
            self.entity_type,
            [
                (e.id, e.keys if e.keys is not None else self._keys(e), e.new)
                for e in ents
                if e.keys_changed
            ],
        )
        await index_references(
            db,
            self.entity_type,
            [(e.id, e.fields, e.new) for e in ents if self.references.indexed.intersection(e.log)],
        )
        renamed = {e.id: e.log.keys() for e in updated if e.keys_changed}
        if renamed:
            await owe_renamed(self.ctx, db, self.entity_type, renamed)
        if self.track_new:
            self.created_ids.extend(e.id for e in created)
            self.new_link_ids.extend(lk.id for lk in state.known.values() if lk.new)
        await self._write_links(db, list(state.known.values()))
        # A creation's history is its provenance; the log records changes to what existed.
        await insert_rows(
            db,
            change_log,
            ("entity_id", "connection", "run_id", "at", "changes"),
            [
                (e.id, self.ctx.name, self.ctx.run_id, self.ctx.started, e.log)
                for e in ents
                if e.log and not e.new
            ],
        )
        await self._write_conflicts(db, state)
        await self._queue_writes(db, ents, state.owed_self)

    def _keys(self, ent: _Entity) -> list[tuple[str, str]]:
        return match_keys(self.entity_type, ent.fields, self.region)

    async def _write_entities(
        self, db: AsyncConnection, created: list[_Entity], updated: list[_Entity]
    ) -> None:
        now = self.ctx.started
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

    async def _write_links(self, db: AsyncConnection, all_links: list[_Link]) -> None:
        ctx, now, stream = self.ctx, self.ctx.started, self.sctx.stream.name
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

    async def _write_conflicts(self, db: AsyncConnection, state: _PageState) -> None:
        if state.new_conflicts:
            await db.execute(
                insert(conflicts),
                [
                    {**c, "status": "open", "created_at": self.ctx.started}
                    for c in state.new_conflicts
                ],
            )
        for entity_id, f, remote in state.conflict_updates:
            await db.execute(
                update(conflicts)
                .where(
                    and_(
                        conflicts.c.entity_id == entity_id,
                        conflicts.c.field == f,
                        conflicts.c.connection == self.ctx.name,
                        conflicts.c.status == "open",
                    )
                )
                .values(remote_value=remote)
            )

    async def _queue_writes(
        self, db: AsyncConnection, ents: list[_Entity], owed_self: set[str]
    ) -> None:
        """Owe each changed golden record to the systems it goes to (this one included, for
        values it lacks or must be sent)."""
        queue = OutboxQueue(self.ctx)
        if self.pushes_to_self:
            for entity_id in owed_self:
                queue.add(self.ctx.name, self.sctx.stream.name, entity_id)
        for e in ents:
            if not e.log:
                continue
            for target in self.sctx.targets:
                if e.new or target.fields.intersection(e.log):
                    queue.add(target.connection, target.stream, e.id, new=e.new)
        await queue.flush(db)
