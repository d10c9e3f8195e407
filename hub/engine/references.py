"""Reference fields on pull: each page's references resolved in bulk, the rest kept pending.

A pulled record names other records by this remote's ids (``by = "id"``, resolved through
the connection's links) or by a key (``email``, ``domain``, ``name``, ``number``, resolved
through the hub's match keys). Per page there is one look-up per referenced type and key
kind, whatever the number of records. A reference that finds nothing is never guessed: with
``create_missing`` its target is created (a company from a contact's company column),
otherwise the field is left as it was (unknown, not emptied) and the reference is kept in
``pending_refs`` until its target arrives (see :mod:`hub.engine.settle`).

The hub keeps reference values as hub entity ids, so the three-way merge compares ids, and
``entity_refs`` indexes them by the record pointed at.
"""

from __future__ import annotations

from collections import abc
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.connector import RemoteRecord
from hub.engine.context import RunContext, StreamContext, Target, key_renderers, targets_for
from hub.engine.writes import OutboxQueue
from hub.records import match_keys
from hub.relations.index import index_references, ref_values, reference_fields
from hub.relations.model import KEY_FIELD, Reference, normalize_key
from hub.store.bulk import IdPool, insert_rows, select_in, update_rows
from hub.store.schema import entities, entity_keys, entity_refs, links, pending_refs

__all__ = ["PageReferences", "index_references", "owe_renamed", "ref_values"]

Wanted = tuple[str, dict[str, Any], str, Reference, list[str], bool]
"""(remote id, canonical values, field, reference, keys in order, some key unreadable)"""

WEAKER_KEYS: dict[str, tuple[str, str]] = {"company": ("domain", "name")}
"""Entity type -> (strong kind, weak kind): a record whose strong key matches nothing may be
the record of the same weak key that has no strong key yet (see ``weaker_matches``)."""

KEY_SUFFIX = "#key"
"""A link's base keeps, beside a reference named by a key, the key both sides agreed on
(``base["company#key"] = ["acme"]``): a remote still showing a company's old name (renamed
in the hub, the new name not written yet) is then no change, rather than a new company."""


class PageReferences:
    """Resolves the reference fields of the pages of one stream (one per stream per run)."""

    def __init__(self, ctx: RunContext, sctx: StreamContext) -> None:
        self.ctx = ctx
        self.sctx = sctx
        mapping = sctx.mapping
        self.refs = {f: r for f, r in mapping.references.items() if f in mapping.pull_fields}
        self.indexed = reference_fields(sctx.stream.entity)
        """Every reference field of the stream's entity type (``entity_refs`` indexes them)."""
        self.region = ctx.hub.config.hub.phone_region
        self.ids = IdPool()
        self.agreed: dict[str, dict[str, tuple[list[str], Any]]] = {}
        """remote id -> field -> (keys, hub value) of the last page's by-key references."""

    def key(self, ref: Reference, item: Any) -> str | None:
        if ref.by == "id":
            text = str(item).strip()
            return text or None
        return normalize_key(ref.by, item, self.region)

    async def resolve(
        self,
        db: AsyncConnection,
        records: list[tuple[RemoteRecord, dict[str, Any]]],
        links_of: dict[str, Any],
    ) -> None:
        """Replace the raw reference values in each record's canonical values by hub ids;
        ``links_of``: the records' links (with their ``base``) by remote id."""
        self.agreed = {}
        if not self.refs:
            return
        wanted: list[Wanted] = []
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        creating: dict[tuple[str, str], bool] = {}
        for rec, canon in records:
            for f, ref in self.refs.items():
                if f not in canon:
                    continue
                raw = canon[f]
                items = raw if isinstance(raw, list) else ([] if raw is None else [raw])
                keys: list[str] = []
                spelled: dict[str, Any] = {}
                bad = False
                for item in items:
                    k = self.key(ref, item)
                    if k is None:
                        bad = True
                        self.ctx.errors.append(
                            f"{self.ctx.name} {self.sctx.stream.name} record {rec.id}: field "
                            f"{f!r}: {item!r} does not name a {ref.names} by {ref.by}"
                        )
                        continue
                    if k not in keys:
                        keys.append(k)
                        spelled[k] = item
                link = links_of.get(rec.id)
                base = link.base if link is not None else {}
                if ref.by != "id" and not bad and base.get(f + KEY_SUFFIX) == keys:
                    if f in base:  # named as agreed: no change
                        canon[f] = base[f]
                    else:
                        del canon[f]
                    continue
                for k in keys:
                    groups.setdefault((ref.lookup, ref.by), {}).setdefault(k, spelled[k])
                creating[(ref.lookup, ref.by)] = (
                    creating.get((ref.lookup, ref.by), False) or ref.create_missing
                )
                wanted.append((rec.id, canon, f, ref, keys, bad))
        if not wanted:
            return
        found: dict[tuple[str, str], dict[str, str]] = {}
        for (target, by), raws in groups.items():
            hits = await self.look_up(db, target, by, raws)
            missing = {k: v for k, v in raws.items() if k not in hits}
            if missing and creating[(target, by)]:
                hits.update(await self._create(db, target, by, missing))
            found[(target, by)] = hits
        await self._keep_pending(db, wanted, found)

    async def _keep_pending(
        self,
        db: AsyncConnection,
        wanted: list[Wanted],
        found: dict[tuple[str, str], dict[str, str]],
    ) -> None:
        """Put the ids into the records; keep what found nothing in ``pending_refs``."""
        pending: dict[tuple[str, str, str], tuple[str, str]] = {}
        for rec_id, canon, f, ref, keys, bad in wanted:
            hits = found.get((ref.lookup, ref.by), {})
            ids: list[str] = []
            for k in keys:
                hit = hits.get(k)
                if hit is None:
                    pending[(rec_id, f, k)] = (ref.lookup, ref.by)
                elif hit not in ids:
                    ids.append(hit)
            if len(ids) < len(keys) or bad:
                if ref.many and ids:
                    canon[f] = ids  # the known ones now, the others when they arrive
                else:
                    del canon[f]  # unknown until the target arrives: changes nothing
            else:
                canon[f] = (ids or None) if ref.many else (ids[0] if ids else None)
                if ref.by != "id":
                    self.agreed.setdefault(rec_id, {})[f] = (keys, canon[f])
        ctx, stream = self.ctx, self.sctx.stream.name
        touched = sorted({w[0] for w in wanted})
        fields = sorted({w[2] for w in wanted})
        await db.execute(
            delete(pending_refs).where(
                pending_refs.c.connection == ctx.name,
                pending_refs.c.stream == stream,
                pending_refs.c.field.in_(fields),
                pending_refs.c.remote_id.in_(touched),
            )
        )
        await insert_rows(
            db,
            pending_refs,
            (
                "connection",
                "stream",
                "remote_id",
                "field",
                "value",
                "target_type",
                "by",
                "created_at",
            ),
            [
                (ctx.name, stream, rec_id, f, k, target, by, ctx.started)
                for (rec_id, f, k), (target, by) in pending.items()
            ],
        )
        ctx.count("references_pending", len(pending))

    async def weaker_matches(
        self, db: AsyncConnection, unmatched: dict[str, list[tuple[str, str]]]
    ) -> dict[str, str]:
        """Records whose strongest key matched nothing, matched by a weaker key to a record
        that lacks the stronger kind: a company with a domain is the company of that name
        created from a spreadsheet's company column (which had no domain), never a company
        that has another domain. Remote id -> entity id."""
        weaker = WEAKER_KEYS.get(self.sctx.stream.entity)
        if not weaker or not unmatched:
            return {}
        strong, weak = weaker
        wanted: dict[str, str] = {}
        for rec_id, keys in unmatched.items():
            kinds = dict(keys)
            if strong in kinds and weak in kinds:
                wanted[rec_id] = kinds[weak]
        if not wanted:
            return {}
        entity_type = self.sctx.stream.entity
        where = {"entity_type": entity_type, "kind": weak}
        found = dict(
            await select_in(
                db, entity_keys, ("value", "entity_id"), where, "value", set(wanted.values())
            )
        )
        if not found:
            return {}
        stronger = {
            entity_id
            for entity_id, kind in await select_in(
                db, entity_keys, ("entity_id", "kind"), {"entity_type": entity_type}, "entity_id",
                set(found.values()),
            )
            if kind == strong
        }  # fmt: skip
        return {
            rec_id: found[value]
            for rec_id, value in wanted.items()
            if value in found and found[value] not in stronger
        }

    def note_keys(self, links_of: dict[str, Any]) -> None:
        """After the merge: where a link's base took the page's reference, keep the key
        it was named by beside it (see :data:`KEY_SUFFIX`)."""
        for rec_id, fields in self.agreed.items():
            link = links_of.get(rec_id)
            if link is None:
                continue
            for f, (keys, value) in fields.items():
                took = f in link.base and link.base[f] == value
                if took and link.base.get(f + KEY_SUFFIX) != keys:
                    link.base[f + KEY_SUFFIX] = keys
                    link.changed = True

    async def look_up(
        self, db: AsyncConnection, target: str, by: str, keys: Iterable[str]
    ) -> dict[str, str]:
        """Hub ids of the live ``target`` records named by ``keys``: this connection's remote
        ids (``by = "id"``) or normalised match keys. A ``target`` read through another
        record (``"ticket.requester"``) gives what the named records' field points at; a
        named record whose field points at nothing yet finds nothing."""
        keys = list(keys)
        kind, _, through = target.partition(".")
        if through:
            named = await self.look_up(db, kind, by, keys)
            rows = await select_in(db, entities, ("id", "fields"), {}, "id", set(named.values()))
            read = {entity_id: fields.get(through) for entity_id, fields in rows}
            return {k: read[i] for k, i in named.items() if isinstance(read.get(i), str)}
        if by != "id":
            rows = await select_in(
                db,
                entity_keys,
                ("value", "entity_id"),
                {"entity_type": target, "kind": by},
                "value",
                keys,
            )
            return dict(rows)
        found: dict[str, str] = {}
        for sctx in self.ctx.streams:
            if sctx.stream.entity != target:
                continue
            where = {"connection": self.ctx.name, "stream": sctx.stream.name}
            rows = await select_in(db, links, ("remote_id", "entity_id"), where, "remote_id", keys)
            for remote_id, entity_id in rows:
                found.setdefault(remote_id, entity_id)
        if found:
            live = {
                entity_id
                for entity_id, deleted_at in await select_in(
                    db, entities, ("id", "deleted_at"), {}, "id", set(found.values())
                )
                if deleted_at is None
            }
            found = {k: v for k, v in found.items() if v in live}
        return found

    async def _create(
        self, db: AsyncConnection, target: str, by: str, missing: dict[str, Any]
    ) -> dict[str, str]:
        """Create the ``target`` records named by ``missing`` keys (with their first
        spelling seen), once: under the target type's matching lock, after looking again."""
        ctx = self.ctx
        if not ctx.plan:
            await ctx.hub.store.lock_in(db, f"match:{target}")
        hits = await self.look_up(db, target, by, missing)
        made: dict[str, str] = {}
        rows = []
        key_rows: list[tuple[str, str, str, str]] = []
        stamp = [ctx.name, ctx.started.isoformat()]
        queue = OutboxQueue(ctx)
        pushes = self._create_targets(target)
        for k, raw in missing.items():
            if k in hits:
                made[k] = hits[k]
                continue
            entity_id = self.ids.take()
            fields = {KEY_FIELD[by]: raw}
            rows.append((entity_id, target, fields, {KEY_FIELD[by]: stamp}, ctx.started))
            key_rows.extend(
                (target, kind, value, entity_id)
                for kind, value in match_keys(target, fields, self.region)
            )
            made[k] = entity_id
            for push in pushes:
                queue.add(push.connection, push.stream, entity_id, new=True)
            if ctx.plan:
                ctx.plan_hub_changes.append(
                    {"entity": entity_id, "new": True, "changes": {KEY_FIELD[by]: [None, raw]}}
                )
        await insert_rows(
            db,
            entities,
            ("id", "type", "fields", "provenance", "created_at", "updated_at"),
            [(*r, r[-1]) for r in rows],
        )
        await insert_rows(db, entity_keys, ("entity_type", "kind", "value", "entity_id"), key_rows)
        await queue.flush(db)
        ctx.count("references_created", len(rows))
        return made

    def _create_targets(self, target: str) -> list[Target]:
        cache = self.ctx.reference_targets
        if target not in cache:
            cache[target] = targets_for(self.ctx.hub, target, exclude=self.ctx.name)
        return cache[target]


async def owe_renamed(
    ctx: RunContext,
    db: AsyncConnection,
    entity_type: str,
    changed: abc.Mapping[str, abc.Collection[str]],
) -> None:
    """Records whose key changed (``changed``: entity id -> changed fields): the systems
    that show references to them by that key (a company's name in a contacts file) are
    owed the new one. Their links forget the reference's base, so the push writes it."""
    if entity_type not in ctx.key_renderers:
        ctx.key_renderers[entity_type] = key_renderers(ctx.hub, entity_type)
    renderers = [
        r
        for r in ctx.key_renderers[entity_type]
        if any(KEY_FIELD[r[3]] in c for c in changed.values())
    ]
    if not renderers:
        return
    ids = [i for i, c in changed.items() if any(KEY_FIELD[r[3]] in c for r in renderers)]
    referrers: dict[str, set[str]] = {}
    for entity_id, f, _ in await select_in(
        db, entity_refs, ("entity_id", "field", "target_id"), {}, "target_id", ids
    ):
        referrers.setdefault(f, set()).add(entity_id)
    queue = OutboxQueue(ctx)
    forgotten: list[tuple[dict[str, Any], str]] = []
    for connection, stream, f, _ in renderers:
        if not referrers.get(f):
            continue
        where = {"connection": connection, "stream": stream}
        for link_id, entity_id, base in await select_in(
            db, links, ("id", "entity_id", "base"), where, "entity_id", referrers[f]
        ):
            if f in base:
                forgotten.append(({k: v for k, v in base.items() if k != f}, link_id))
                queue.add(connection, stream, entity_id)
    await update_rows(db, links, ("base",), ("id",), forgotten)
    await queue.flush(db)
