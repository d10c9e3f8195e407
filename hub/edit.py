"""Changing a golden record from the hub side (a person, or conflict resolution).

The new values get provenance "no connection, at ``at``", a change-log entry, and are owed
to every linked connection whose copy differs from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.engine.writes import OutboxQueue, rekey
from hub.errors import ConfigError
from hub.records import KEY_FIELDS, is_known_field, match_keys
from hub.relations.index import index_references, ref_values, reference_fields
from hub.relations.model import reference_field
from hub.runtime import Hub
from hub.store import utcnow
from hub.store.schema import change_log, entities, links


async def edit_entity(
    hub: Hub,
    entity_id: str,
    changes: dict[str, Any],
    *,
    at: datetime | None = None,
    db: AsyncConnection | None = None,
) -> dict[str, Any]:
    """Set fields of one entity; returns the fields as they are now."""
    if db is None:
        async with hub.store.begin() as conn:
            return await edit_entity(hub, entity_id, changes, at=at, db=conn)
    at = at or utcnow()
    row = (await db.execute(select(entities).where(entities.c.id == entity_id))).one_or_none()
    if row is None or row.deleted_at is not None:
        raise ConfigError(f"no entity with id {entity_id!r}")
    unknown = [f for f in changes if not is_known_field(row.type, f)]
    if unknown:
        raise ConfigError(f"{row.type} has no field(s) {', '.join(sorted(unknown))}")
    await check_references(db, row.type, changes)
    fields = dict(row.fields)
    provenance = dict(row.provenance)
    log = {f: [fields.get(f), v] for f, v in changes.items() if fields.get(f) != v}
    if not log:
        return fields
    for f in log:
        fields[f] = changes[f]
        provenance[f] = [None, at.isoformat()]
    await db.execute(
        update(entities)
        .where(entities.c.id == entity_id)
        .values(fields=fields, provenance=provenance, updated_at=utcnow())
    )
    await db.execute(
        change_log.insert().values(entity_id=entity_id, connection=None, at=at, changes=log)
    )
    if KEY_FIELDS.intersection(log):
        keys = match_keys(row.type, fields, hub.config.hub.phone_region)
        await rekey(db, row.type, [(entity_id, keys, False)])
    if reference_fields(row.type).intersection(log):
        await index_references(db, row.type, [(entity_id, fields, False)])
    await owe_to_linked(hub, db, entity_id, set(log))
    return fields


async def check_references(db: AsyncConnection, entity_type: str, changes: dict[str, Any]) -> None:
    """Refuse a reference field set to anything but ids of live records it may point at."""
    for f, value in changes.items():
        ref = reference_field(entity_type, f)
        if ref is None or value is None:
            continue
        ids = ref_values(value)
        shape_ok = isinstance(value, list) if ref.many else isinstance(value, str)
        found = {
            i: t
            for i, t in await db.execute(
                select(entities.c.id, entities.c.type).where(
                    entities.c.id.in_(ids), entities.c.deleted_at.is_(None)
                )
            )
        }
        wrong = [i for i in ids if found.get(i) not in ref.targets]
        if not shape_ok or wrong or len(ids) != (len(value) if ref.many else 1):
            kinds = " or ".join(ref.targets)
            shape = f"a list of {kinds} ids" if ref.many else f"the id of a {kinds}"
            raise ConfigError(
                f"{entity_type}.{f} must be {shape}"
                + (f"; not found: {', '.join(map(str, wrong))}" if wrong else "")
            )


async def owe_to_linked(hub: Hub, db: AsyncConnection, entity_id: str, changed: set[str]) -> None:
    """Queue a push for every linked connection whose base differs on a changed field."""
    fields = (
        await db.execute(select(entities.c.fields).where(entities.c.id == entity_id))
    ).scalar_one()
    queue = OutboxQueue()
    for link in await db.execute(select(links).where(links.c.entity_id == entity_id)):
        conn = hub.config.connections.get(link.connection)
        if conn is None or conn.hub.direction == "pull":
            continue
        if any(link.base.get(f) != fields.get(f) for f in changed):
            queue.add(link.connection, link.stream, entity_id)
    await queue.flush(db)
