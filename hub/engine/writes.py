"""Small write helpers shared by the pull, push and delete steps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.store import utcnow
from hub.store.bulk import insert_rows, new_ids, select_in, update_rows
from hub.store.schema import cursors, entity_keys, outbox
from hub.store.status import OutboxStatus

if TYPE_CHECKING:
    from hub.engine.context import RunContext


LINK_COLUMNS = (
    "id",
    "entity_id",
    "connection",
    "stream",
    "remote_id",
    "remote_version",
    "base",
    "updated_at",
)
"""Every column of a new ``links`` row, in the order pull and push give them."""

_OUTBOX_COLUMNS = (
    "id",
    "connection",
    "stream",
    "entity_id",
    "op",
    "status",
    "attempts",
    "created_at",
    "updated_at",
)


class OutboxQueue:
    """Collects owed writes for one transaction; at most one pending row per
    (connection, stream, entity, op): the payload is computed at push time from the hub's
    current values, so one row covers any number of changes."""

    def __init__(self, ctx: RunContext | None = None) -> None:
        self.ctx = ctx
        self.wanted: set[tuple[str, str, str, str]] = set()
        self.fresh: set[str] = set()

    def add(
        self, connection: str, stream: str, entity_id: str, op: str = "upsert", *, new: bool = False
    ) -> None:
        """Owe ``op`` on ``entity_id`` to ``connection``; ``new``: the entity was created in
        this transaction, so nothing can be pending for it yet."""
        self.wanted.add((connection, stream, entity_id, op))
        if new:
            self.fresh.add(entity_id)

    async def flush(self, db: AsyncConnection) -> int:
        if not self.wanted:
            return 0
        entity_ids = {w[2] for w in self.wanted} - self.fresh
        existing: set[tuple[str, str, str, str]] = set()
        rows = await select_in(
            db,
            outbox,
            ("connection", "stream", "entity_id", "op"),
            {"status": OutboxStatus.PENDING},
            "entity_id",
            entity_ids,
        )
        existing.update(rows)
        missing = sorted(self.wanted - existing)
        now = utcnow()
        await insert_rows(
            db,
            outbox,
            _OUTBOX_COLUMNS,
            [
                (row_id, c, s, e, op, "pending", 0, now, now)
                for row_id, (c, s, e, op) in zip(new_ids(len(missing)), missing, strict=True)
            ],
        )
        if self.ctx is not None:
            self.ctx.count("queued", len(missing))
        self.wanted.clear()
        self.fresh.clear()
        return len(missing)


async def upsert_cursor(db: AsyncConnection, connection: str, stream: str, value: Any) -> None:
    now = utcnow()
    changed = await update_rows(
        db,
        cursors,
        ("value", "updated_at"),
        ("connection", "stream"),
        [(value, now, connection, stream)],
    )
    if changed == 0:
        await insert_rows(
            db,
            cursors,
            ("connection", "stream", "value", "updated_at"),
            [(connection, stream, value, now)],
        )


async def rekey(
    db: AsyncConnection, entity_type: str, rows: list[tuple[str, list[tuple[str, str]], bool]]
) -> None:
    """Replace the match keys of golden records: ``(entity id, its keys, new)`` each, the
    keys as :func:`hub.records.match_keys` gives them (each kind once, so rows are
    distinct). The keys of a record that is not new are deleted first."""
    if not rows:
        return
    stale = [entity_id for entity_id, _, new in rows if not new]
    if stale:
        await db.execute(delete(entity_keys).where(entity_keys.c.entity_id.in_(stale)))
    await insert_rows(
        db,
        entity_keys,
        ("entity_type", "kind", "value", "entity_id"),
        [
            (entity_type, kind, value, entity_id)
            for entity_id, keys, _ in rows
            for kind, value in keys
        ],
    )
