"""Settling conflicts a person was asked about (policy ``manual``)."""

from __future__ import annotations

import json
from typing import Any, Literal

from sqlalchemy import select, update

from hub.edit import edit_entity, owe_to_linked
from hub.errors import ConfigError
from hub.runtime import Hub
from hub.store import utcnow
from hub.store.schema import conflicts, links


def parse_take(take: str) -> tuple[Literal["hub", "remote", "value"], Any]:
    """``hub``, ``remote``, or a literal value (JSON if it parses, else the text itself)."""
    if take == "hub":
        return "hub", None
    if take == "remote":
        return "remote", None
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
        value = {"hub": row.hub_value, "remote": row.remote_value}.get(kind, literal)
        await db.execute(
            update(conflicts)
            .where(
                conflicts.c.entity_id == row.entity_id,
                conflicts.c.field == row.field,
                conflicts.c.status == "open",
            )
            .values(status="resolved", resolved_at=now, resolution={"take": kind, "value": value})
        )
        # The side that already holds the chosen value agrees now: its base moves, no write.
        if row.remote_value == value:
            link = (
                await db.execute(
                    select(links).where(
                        links.c.entity_id == row.entity_id, links.c.connection == row.connection
                    )
                )
            ).first()
            if link is not None:
                await db.execute(
                    update(links)
                    .where(links.c.id == link.id)
                    .values(base={**link.base, row.field: value})
                )
        await edit_entity(hub, row.entity_id, {row.field: value}, at=now, db=db)
        await owe_to_linked(hub, db, row.entity_id, {row.field})
    return value
