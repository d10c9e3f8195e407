"""A database from before contacts' name keys upgrades: every live contact gets its key."""

from __future__ import annotations

from sqlalchemy import insert, select

from hub.store import Store, utcnow
from hub.store.schema import entities, entity_keys


async def test_contacts_get_their_name_keys(db_url: str) -> None:
    old = Store(Store.create_engine(db_url))
    now = utcnow()

    def entity(id: str, type: str, fields: dict[str, object], deleted: bool = False) -> dict:
        return {
            "id": id,
            "type": type,
            "fields": fields,
            "provenance": {},
            "created_at": now,
            "updated_at": now,
            "deleted_at": now if deleted else None,
        }

    try:
        await old.upgrade("0006")
        async with old.begin() as db:
            await db.execute(
                insert(entities),
                [
                    entity("c1", "contact", {"email": "jo@x.com", "first_name": "José",
                                             "last_name": " de la  Cruz"}),
                    entity("c2", "contact", {"first_name": "ANN"}),
                    entity("c3", "contact", {"email": "nobody@x.com"}),
                    entity("c4", "contact", {"first_name": "Gone", "last_name": "Away"}, True),
                    entity("co", "company", {"name": "Acme"}),
                ],
            )  # fmt: skip
            await db.execute(
                insert(entity_keys),
                [
                    {"entity_type": "contact", "kind": "email", "value": "jo@x.com",
                     "entity_id": "c1"},
                    {"entity_type": "company", "kind": "name", "value": "acme",
                     "entity_id": "co"},
                ],
            )  # fmt: skip
    finally:
        await old.close()
    store = await Store.open(db_url)
    try:
        async with store.connect() as db:
            keys = {tuple(r) for r in await db.execute(select(entity_keys))}
    finally:
        await store.close()
    assert keys == {
        ("contact", "email", "jo@x.com", "c1"),
        ("contact", "full_name", "jose de la cruz", "c1"),
        ("contact", "full_name", "ann", "c2"),
        ("company", "name", "acme", "co"),
    }
