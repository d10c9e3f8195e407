"""Merging two golden records that are the same person or company, and clearing the
references to deleted records.

``merge_entities(hub, keep, other)``: the survivor ``keep`` takes ``other``'s links, the
references pointing at it, its change history and the values it lacks; a field both hold
with different values keeps ``keep``'s value unless named in ``take``, or is opened as a
conflict with ``manual_conflicts``. Where both were linked in the same system, ``other``'s
copy there is a duplicate and that connection's delete policy says what happens to it
(``propagate``: deleted there; ``unlink``: forgotten; ``ignore``: left alone, skipped by
pulls). ``other`` is then deleted in the hub.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.edit import owe_to_linked
from hub.engine.writes import OutboxQueue
from hub.errors import ConfigError
from hub.records import is_known_field, match_keys
from hub.relations.index import index_references, ref_values
from hub.relations.model import reference_field
from hub.runtime import Hub
from hub.store import utcnow
from hub.store.bulk import select_in
from hub.store.schema import (
    change_log,
    conflicts,
    entities,
    entity_keys,
    entity_refs,
    links,
    outbox,
)

MERGE = "(merge)"
"""The ``connection`` of conflicts a merge opens: neither side is a system."""


@dataclass
class MergeResult:
    keep: str
    other: str
    taken: dict[str, list[Any]] = field(default_factory=dict)
    """Fields the survivor took from the other record: ``{field: [old, new]}``."""
    conflicts: list[str] = field(default_factory=list)
    links_moved: int = 0
    duplicates: list[dict[str, str]] = field(default_factory=list)
    """The other record's copies in systems that also hold the survivor, and what was done."""
    references_moved: int = 0


async def merge_entities(
    hub: Hub,
    keep_id: str,
    other_id: str,
    *,
    take: Collection[str] = (),
    manual_conflicts: bool = True,
) -> MergeResult:
    """Merge ``other_id`` into ``keep_id`` in one transaction (see the module docstring)."""
    async with hub.store.begin() as db:
        rows = {
            r.id: r
            for r in await db.execute(
                select(entities).where(entities.c.id.in_([keep_id, other_id]))
            )
        }
        keep, other = rows.get(keep_id), rows.get(other_id)
        for wanted, row in ((keep_id, keep), (other_id, other)):
            if row is None or row.deleted_at is not None:
                raise ConfigError(f"no entity with id {wanted!r}")
        assert keep is not None and other is not None
        if keep_id == other_id:
            raise ConfigError("an entity cannot be merged with itself")
        if keep.type != other.type:
            raise ConfigError(f"cannot merge a {other.type} into a {keep.type}")
        unknown = sorted(f for f in take if not is_known_field(keep.type, f))
        if unknown:
            raise ConfigError(f"{keep.type} has no field(s) {', '.join(unknown)} (--take)")
        result = MergeResult(keep_id, other_id)
        now = utcnow()
        fields, provenance = dict(keep.fields), dict(keep.provenance)
        for f, value in other.fields.items():
            mine = fields.get(f)
            ref = reference_field(keep.type, f)
            if value is None or value == mine:
                continue
            if ref is not None and ref.many and mine is not None:
                new: Any = list(dict.fromkeys(ref_values(mine) + ref_values(value)))
            elif mine is None or f in take:
                new = value
            else:
                result.conflicts.append(f)
                continue
            result.taken[f] = [mine, new]
            fields[f] = new
            provenance[f] = other.provenance.get(f) or [None, now.isoformat()]
        await db.execute(
            update(entities)
            .where(entities.c.id == keep_id)
            .values(fields=fields, provenance=provenance, updated_at=now)
        )
        await db.execute(
            update(change_log).where(change_log.c.entity_id == other_id).values(entity_id=keep_id)
        )
        if result.taken:
            await db.execute(
                change_log.insert().values(
                    entity_id=keep_id, connection=None, at=now, changes=result.taken
                )
            )
        if result.conflicts and manual_conflicts:
            await db.execute(
                conflicts.insert(),
                [
                    {
                        "entity_id": keep_id,
                        "connection": MERGE,
                        "field": f,
                        "base_value": None,
                        "hub_value": fields.get(f),
                        "remote_value": other.fields.get(f),
                        "status": "open",
                        "created_at": now,
                    }
                    for f in result.conflicts
                ],
            )
        await db.execute(
            update(conflicts).where(conflicts.c.entity_id == other_id).values(entity_id=keep_id)
        )
        await _move_links(hub, db, keep_id, other_id, result)
        moved = await _repoint(db, other_id, keep_id)
        result.references_moved = len(moved)
        for entity_id, changed in moved.items():
            await owe_to_linked(hub, db, entity_id, changed)
        await db.execute(delete(entity_refs).where(entity_refs.c.entity_id == other_id))
        await index_references(db, keep.type, [(keep_id, fields, False)])
        await db.execute(
            delete(outbox).where(
                outbox.c.entity_id == other_id,
                outbox.c.status == "pending",
                outbox.c.op == "upsert",
            )
        )
        await db.execute(
            update(entities).where(entities.c.id == other_id).values(deleted_at=now, updated_at=now)
        )
        await db.execute(
            delete(entity_keys).where(entity_keys.c.entity_id.in_([keep_id, other_id]))
        )
        keys = set(match_keys(keep.type, fields, hub.config.hub.phone_region))
        if keys:
            await db.execute(
                entity_keys.insert(),
                [
                    {"entity_type": keep.type, "kind": k, "value": v, "entity_id": keep_id}
                    for k, v in keys
                ],
            )
        await owe_to_linked(hub, db, keep_id, set(fields))
    return result


async def _move_links(
    hub: Hub, db: AsyncConnection, keep_id: str, other_id: str, result: MergeResult
) -> None:
    held = {
        (r.connection, r.stream)
        for r in await db.execute(select(links).where(links.c.entity_id == keep_id))
    }
    queue = OutboxQueue()
    for link in (await db.execute(select(links).where(links.c.entity_id == other_id))).all():
        if (link.connection, link.stream) not in held:
            await db.execute(update(links).where(links.c.id == link.id).values(entity_id=keep_id))
            result.links_moved += 1
            continue
        conn = hub.config.connections.get(link.connection)
        policy = conn.hub.delete_policy if conn is not None else "unlink"
        if policy == "propagate":
            queue.add(link.connection, link.stream, other_id, op="delete")
            action = "deleted there"
        elif policy == "unlink":
            await db.execute(delete(links).where(links.c.id == link.id))
            action = "forgotten"
        else:
            action = "left alone"
        result.duplicates.append(
            {"connection": link.connection, "remote_id": link.remote_id, "action": action}
        )
    await queue.flush(db)


async def _repoint(db: AsyncConnection, old: str, new: str | None) -> dict[str, set[str]]:
    """References to ``old`` point at ``new`` (or are removed when ``new`` is ``None``);
    returns the records changed, with their changed fields (logged; the caller owes the
    pushes)."""
    rows = await select_in(db, entity_refs, ("entity_id", "field"), {}, "target_id", [old])
    fields_of: dict[str, set[str]] = {}
    for entity_id, f in rows:
        fields_of.setdefault(entity_id, set()).add(f)
    now = utcnow()
    changed: dict[str, set[str]] = {}
    for entity_id, type_, values, provenance in await select_in(
        db, entities, ("id", "type", "fields", "provenance"), {}, "id", list(fields_of)
    ):
        log: dict[str, list[Any]] = {}
        for f in fields_of[entity_id]:
            before = values.get(f)
            ids = [new if i == old else i for i in ref_values(before)]
            kept = [i for i in dict.fromkeys(ids) if i is not None]
            after: Any = (kept or None) if isinstance(before, list) else (kept[0] if kept else None)
            if after != before:
                log[f] = [before, after]
                values[f] = after
                provenance[f] = [None, now.isoformat()]
        if not log:
            continue
        await db.execute(
            update(entities)
            .where(entities.c.id == entity_id)
            .values(fields=values, provenance=provenance, updated_at=now)
        )
        await db.execute(
            change_log.insert().values(entity_id=entity_id, connection=None, at=now, changes=log)
        )
        await index_references(db, type_, [(entity_id, values, False)])
        changed[entity_id] = set(log)
    await db.execute(delete(entity_refs).where(entity_refs.c.target_id == old))
    return changed


async def clear_references_to(hub: Hub, db: AsyncConnection, deleted: list[str]) -> int:
    """Records pointing at ``deleted`` records no longer do (a contact's company emptied,
    the deleted one taken out of an activity's contacts); each change is logged and owed
    to the systems holding those records. Returns how many records changed."""
    changed: set[str] = set()
    for target in deleted:
        for entity_id, fields in (await _repoint(db, target, None)).items():
            await owe_to_linked(hub, db, entity_id, fields)
            changed.add(entity_id)
    return len(changed)
