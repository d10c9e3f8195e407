"""What a person sees of relations: a record's references both ways, and likely duplicates."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.records import normalize_email, normalize_phone
from hub.relations.index import ref_values
from hub.relations.model import REFERENCE_FIELDS, normalize_name
from hub.store.bulk import select_in
from hub.store.schema import entities, entity_refs


def label(entity_type: str, fields: dict[str, Any]) -> str:
    """A record in a few words: a contact's name and address, a company's name, ..."""
    if entity_type == "contact":
        name = " ".join(str(fields.get(k) or "") for k in ("first_name", "last_name")).strip()
        email = fields.get("email") or ""
        return f"{name} <{email}>" if name and email else name or email
    for key in ("name", "subject", "number", "kind"):
        if fields.get(key):
            return str(fields[key])
    return ""


def _summary(entity_id: str, entity_type: str, fields: dict[str, Any]) -> dict[str, Any]:
    out = {"id": entity_id, "type": entity_type, "label": label(entity_type, fields)}
    for key in ("occurred_at", "kind", "status", "created_at", "issued_on"):
        if fields.get(key) is not None:
            out[key] = fields[key]
    return out


async def relations_of(
    db: AsyncConnection, entity_id: str, entity_type: str, fields: dict[str, Any]
) -> dict[str, Any]:
    """``points_at``: the records this one's reference fields name; ``pointed_at_by``: the
    records naming this one, per type (activities newest first: the timeline)."""
    wanted = {
        f: ref_values(fields.get(f)) for f in REFERENCE_FIELDS.get(entity_type, {}) if fields.get(f)
    }
    incoming = await select_in(
        db, entity_refs, ("entity_id", "field"), {}, "target_id", [entity_id]
    )
    ids = {i for values in wanted.values() for i in values} | {r[0] for r in incoming}
    rows = {
        r[0]: r
        for r in await select_in(
            db, entities, ("id", "type", "fields", "deleted_at"), {}, "id", ids
        )
        if r[3] is None
    }
    points_at = [
        {"field": f, **_summary(i, rows[i][1], rows[i][2])}
        for f, values in wanted.items()
        for i in values
        if i in rows
    ]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for referrer, f in sorted(set(incoming)):
        if referrer in rows:
            _, kind, values, _ = rows[referrer]
            by_type.setdefault(kind, []).append({"field": f, **_summary(referrer, kind, values)})
    for kind, items in by_type.items():
        key = "occurred_at" if kind == "activity" else "id"
        items.sort(key=lambda item: str(item.get(key) or ""), reverse=kind == "activity")
    return {"points_at": points_at, "pointed_at_by": by_type}


async def find_duplicates(
    db: AsyncConnection, entity_type: str | None = None
) -> list[dict[str, Any]]:
    """Groups of live contacts or companies that are likely one person or company: the
    same phone; the same name at the same company (or e-mail domain); companies of the same
    name or domain. A person decides (``crmhub entities merge``)."""
    types = [entity_type] if entity_type else ["contact", "company"]
    groups: dict[tuple[str, str, str], list[str]] = {}
    for entity_id, kind, fields in await db.execute(
        select(entities.c.id, entities.c.type, entities.c.fields)
        .where(entities.c.type.in_(types), entities.c.deleted_at.is_(None))
        .order_by(entities.c.id)
    ):
        for reason, key in _keys(kind, fields):
            groups.setdefault((kind, reason, key), []).append(entity_id)
    found = []
    seen: set[tuple[str, ...]] = set()
    for (kind, reason, key), ids in sorted(groups.items()):
        if len(ids) > 1 and tuple(ids) not in seen:
            seen.add(tuple(ids))
            found.append({"type": kind, "reason": reason, "key": key, "ids": ids})
    return found


def _keys(kind: str, fields: dict[str, Any]) -> list[tuple[str, str]]:
    keys: list[tuple[str, str]] = []
    if kind == "company":
        name = normalize_name(fields.get("name"))
        if name:
            keys.append(("same name", name))
        return keys
    phone = normalize_phone(fields.get("phone"))
    if phone:
        keys.append(("same phone", phone))
    name = normalize_name(" ".join(str(fields.get(k) or "") for k in ("first_name", "last_name")))
    if name:
        email = normalize_email(fields.get("email"))
        if isinstance(fields.get("company"), str):
            keys.append(("same name, same company", f"{name} @ {fields['company']}"))
        if email:
            keys.append(("same name, same e-mail domain", f"{name} @ {email.split('@')[1]}"))
    return keys
