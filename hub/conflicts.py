"""Settling conflicts a person was asked about (policy ``manual``)."""

from __future__ import annotations

import json
from typing import Any, Literal

from sqlalchemy import select, update

from hub.engine.writes import OutboxQueue
from hub.errors import ConfigError
from hub.runtime import Hub
from hub.store import utcnow
from hub.store.schema import change_log, conflicts, entities, links


def parse_take(take: str) -> tuple[Literal["hub", "remote", "value"], Any]:
    """``hub``, ``remote``, or a literal value (JSON if it parses, else the text itself)."""
    if take in ("hub", "remote"):
        return take, None  # type: ignore[return-value]
    try:
        return "value", json.loads(take)
    except json.JSONDecodeError:
        return "value", take


async def resolve_conflict(hub: Hub, conflict_id: int, take: str) -> Any:
    """Set the field to the chosen value, close every open conflict on that field, and owe
    the value to every connection whose copy differs. Returns the value chosen."""
    kind, literal = parse_take(take)
    now = utcnow()
    async with hub.store.begin() as db:
        row = (
            await db.execute(select(conflicts).where(conflicts.c.id == conflict_id))
        ).one_or_none()
        if row is None:
            raise ConfigError(f"no conflict with id {conflict_id}")
        if row.status != "open":
            raise ConfigError(f"conflict {conflict_id} is already {row.status}")
        ent = (await db.execute(select(entities).where(entities.c.id == row.entity_id))).one()
        fields = dict(ent.fields)
        value = {"hub": row.hub_value, "remote": row.remote_value}.get(kind, literal)
        old = fields.get(row.field)
        provenance = dict(ent.provenance)
        if value != old:
            fields[row.field] = value
            provenance[row.field] = [None, now.isoformat()]
            await db.execute(
                update(entities)
                .where(entities.c.id == ent.id)
                .values(fields=fields, provenance=provenance, updated_at=now)
            )
            await db.execute(
                change_log.insert().values(
                    entity_id=ent.id,
                    connection=None,
                    at=now,
                    changes={row.field: [old, value]},
                )
            )
        await db.execute(
            update(conflicts)
            .where(
                conflicts.c.entity_id == row.entity_id,
                conflicts.c.field == row.field,
                conflicts.c.status == "open",
            )
            .values(status="resolved", resolved_at=now, resolution={"take": kind, "value": value})
        )
        # A side that already holds the value agrees now: its base moves, no write needed.
        queue = OutboxQueue()
        open_rows = await db.execute(select(links).where(links.c.entity_id == row.entity_id))
        for link in open_rows:
            if link.connection not in hub.config.connections:
                continue
            base = dict(link.base)
            same_remote = link.connection == row.connection and row.remote_value == value
            if same_remote:
                base[row.field] = value
                await db.execute(update(links).where(links.c.id == link.id).values(base=base))
            elif base.get(row.field) != value:
                queue.add(link.connection, link.stream, row.entity_id)
        await queue.flush(db)
    return value
