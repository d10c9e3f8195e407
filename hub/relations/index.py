"""``entity_refs``: every reference field's ids, indexed by the record pointed at."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.relations.model import REFERENCE_FIELDS
from hub.store.bulk import insert_rows
from hub.store.schema import entity_refs


def ref_values(value: Any) -> list[str]:
    """The hub ids a reference field's value holds (one id, a list of ids, or none)."""
    if value is None:
        return []
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return [value] if isinstance(value, str) else []


async def index_references(
    db: AsyncConnection, entity_type: str, changed: list[tuple[str, dict[str, Any], bool]]
) -> None:
    """Keep ``entity_refs`` in step with the reference fields of ``changed`` records:
    ``(entity id, fields, new)`` of records whose reference fields may have changed."""
    fields = REFERENCE_FIELDS.get(entity_type)
    if not fields or not changed:
        return
    stale = [entity_id for entity_id, _, new in changed if not new]
    if stale:
        for i in range(0, len(stale), 5000):
            await db.execute(
                delete(entity_refs).where(entity_refs.c.entity_id.in_(stale[i : i + 5000]))
            )
    rows = {
        (entity_id, f, target)
        for entity_id, values, _ in changed
        for f in fields
        for target in ref_values(values.get(f))
    }
    await insert_rows(db, entity_refs, ("entity_id", "field", "target_id"), sorted(rows))


def reference_fields(entity_type: str) -> frozenset[str]:
    return frozenset(REFERENCE_FIELDS.get(entity_type, {}))
