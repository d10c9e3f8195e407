"""Small write helpers shared by the pull, push and delete steps."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.store import utcnow
from hub.store.schema import cursors, outbox

if TYPE_CHECKING:
    from hub.engine.context import RunContext


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
        for chunk in _chunks(sorted(entity_ids), 5000):
            rows = await db.execute(
                select(outbox.c.connection, outbox.c.stream, outbox.c.entity_id, outbox.c.op).where(
                    outbox.c.status == "pending", outbox.c.entity_id.in_(chunk)
                )
            )
            existing.update(tuple(r) for r in rows)
        missing = sorted(self.wanted - existing)
        now = utcnow()
        if missing:
            await db.execute(
                insert(outbox),
                [
                    {
                        "id": str(uuid.uuid4()),
                        "connection": c,
                        "stream": s,
                        "entity_id": e,
                        "op": op,
                        "status": "pending",
                        "attempts": 0,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for c, s, e, op in missing
                ],
            )
        if self.ctx is not None:
            self.ctx.count("queued", len(missing))
        self.wanted.clear()
        self.fresh.clear()
        return len(missing)


async def upsert_cursor(db: AsyncConnection, connection: str, stream: str, value: Any) -> None:
    now = utcnow()
    result = await db.execute(
        update(cursors)
        .where(cursors.c.connection == connection, cursors.c.stream == stream)
        .values(value=value, updated_at=now)
    )
    if result.rowcount == 0:
        await db.execute(
            insert(cursors).values(
                connection=connection, stream=stream, value=value, updated_at=now
            )
        )


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
