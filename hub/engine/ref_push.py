"""Reference fields on push: hub ids translated into what the target system writes.

A field the mapping names ``by = "id"`` is written as the target record's id in this
system (through this connection's links); one named by a key is written as that key of the
target (a company's name into a spreadsheet's company column). Per batch there is one
look-up per referenced type. A target this system holds but has no copy of yet is written
first: the dependent write waits (its outbox row is put back a little) and the target's own
write is owed, so a system never receives an id that does not exist there. A target this
system cannot hold is left out of the write.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from hub.engine.context import RunContext, StreamContext
from hub.engine.references import ref_values
from hub.engine.writes import OutboxQueue
from hub.relations.model import KEY_FIELD
from hub.store import utcnow
from hub.store.bulk import select_in, update_rows
from hub.store.schema import entities, links, outbox

WAIT = timedelta(seconds=30)
"""How long a write waits for the record it points at to be written first."""


class PushReferences:
    """Translates the reference fields of one stream's pushes (one per stream per run)."""

    def __init__(self, ctx: RunContext, sctx: StreamContext) -> None:
        self.ctx = ctx
        mapping = sctx.mapping
        self.refs = {f: r for f, r in mapping.references.items() if f in mapping.push_fields}
        self.streams: dict[str, Any] = {}
        """Target type -> this connection's stream holding it."""
        for other in ctx.streams:
            self.streams.setdefault(other.stream.entity, other.stream)
        self.remote_ids: dict[str, str] = {}
        self.keys: dict[tuple[str, str], Any] = {}

    async def load(self, db: AsyncConnection, values: Iterable[dict[str, Any]]) -> None:
        """Look up what the referenced records are called here, for a batch's values."""
        if not self.refs:
            return
        by_id: dict[str, set[str]] = {}
        by_key: set[str] = set()
        for fields in values:
            for f, ref in self.refs.items():
                ids = ref_values(fields.get(f))
                if ref.by == "id":
                    by_id.setdefault(ref.target, set()).update(ids)
                else:
                    by_key.update(ids)
        for target, named in by_id.items():
            stream = self.streams.get(target)
            wanted = named - self.remote_ids.keys()
            if stream is None or not wanted:
                continue
            where = {"connection": self.ctx.name, "stream": stream.name}
            for entity_id, remote_id in await select_in(
                db, links, ("entity_id", "remote_id"), where, "entity_id", wanted
            ):
                self.remote_ids[entity_id] = remote_id
        unseen = {i for i in by_key if (i, "") not in self.keys}
        if unseen:
            for entity_id, fields, deleted_at in await select_in(
                db, entities, ("id", "fields", "deleted_at"), {}, "id", unseen
            ):
                self.keys[(entity_id, "")] = True
                if deleted_at is None:
                    for kind, name in KEY_FIELD.items():
                        self.keys[(entity_id, kind)] = fields.get(name)

    def render(
        self, values: dict[str, Any], only: Collection[str] | None = None
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """``values`` with each reference field as this system writes it, and the targets
        this system must receive first, as ``(stream, hub id)`` (for the fields in
        ``only``)."""
        if not self.refs:
            return values, []
        out = dict(values)
        waiting: list[tuple[str, str]] = []
        for f, ref in self.refs.items():
            if f not in values or values[f] is None:
                continue
            ids = ref_values(values[f])
            if ref.by == "id":
                got = [self.remote_ids.get(i) for i in ids]
                stream = self.streams.get(ref.target)
                if stream is not None and stream.can_create and (only is None or f in only):
                    waiting.extend(
                        (stream.name, i) for i, g in zip(ids, got, strict=True) if g is None
                    )
            else:
                got = [self.keys.get((i, ref.by)) for i in ids]
            shown = [g for g in got if g is not None]
            if ref.many:
                out[f] = shown or None
            elif shown:
                out[f] = shown[0]
            else:
                del out[f]  # nothing this system can show: left out, never a dangling id
        return out, waiting

    async def defer(
        self, db: AsyncConnection, waiting: list[tuple[str, list[tuple[str, str]]]]
    ) -> None:
        """Put back the outbox rows ``(row id, target ids)`` that wait for their targets,
        and owe the targets' own writes (once each)."""
        if not waiting:
            return
        now = utcnow()
        await update_rows(
            db,
            outbox,
            ("next_attempt_at", "updated_at"),
            ("id",),
            [(now + WAIT, now, row_id) for row_id, _ in waiting],
        )
        queue = OutboxQueue(self.ctx)
        for _, targets in waiting:
            for stream, target in targets:
                queue.add(self.ctx.name, stream, target)
        await queue.flush(db)
        self.ctx.count("push_waiting", len(waiting))
