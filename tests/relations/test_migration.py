"""A database from before references upgrades: names and addresses become references."""

from __future__ import annotations

from sqlalchemy import insert, select

from hub.store import Store, utcnow
from hub.store.schema import entities, entity_keys, entity_refs, links


async def test_contacts_company_names_and_activity_addresses_become_references(
    db_url: str,
) -> None:
    old = Store(Store.create_engine(db_url))
    now = utcnow()

    def entity(id: str, type: str, fields: dict[str, object]) -> dict[str, object]:
        return {
            "id": id,
            "type": type,
            "fields": fields,
            "provenance": {},
            "created_at": now,
            "updated_at": now,
        }

    try:
        await old.upgrade("0004")
        async with old.begin() as db:
            await db.execute(
                insert(entities),
                [
                    entity("co", "company", {"name": "Acme  Ltd", "domain": "acme.com"}),
                    entity("c1", "contact", {"email": "ann@x.com", "company": "acme ltd"}),
                    entity("c2", "contact", {"email": "bob@x.com", "company": "Globex"}),
                    entity("c3", "contact", {"email": "cy@x.com", "company": "globex "}),
                    entity("a1", "activity", {"contact_email": "ann@x.com", "kind": "form"}),
                    entity("a2", "activity", {"contact_email": "nobody@x.com"}),
                ],
            )
            await db.execute(
                insert(entity_keys),
                [
                    {"entity_type": "contact", "kind": "email", "value": v, "entity_id": i}
                    for i, v in (("c1", "ann@x.com"), ("c2", "bob@x.com"), ("c3", "cy@x.com"))
                ],
            )
            await db.execute(
                insert(links).values(
                    id="l1",
                    entity_id="c2",
                    connection="sales",
                    stream="rows",
                    remote_id="r2",
                    base={"email": "bob@x.com", "company": "Globex"},
                    updated_at=now,
                )
            )
    finally:
        await old.close()
    store = await Store.open(db_url)
    try:
        async with store.connect() as db:
            fields = dict((await db.execute(select(entities.c.id, entities.c.fields))).all())
            refs = {tuple(r) for r in await db.execute(select(entity_refs))}
            base = await db.scalar(select(links.c.base).where(links.c.id == "l1"))
            names = {
                v: e
                for v, e in await db.execute(
                    select(entity_keys.c.value, entity_keys.c.entity_id).where(
                        entity_keys.c.kind == "name"
                    )
                )
            }
    finally:
        await store.close()
    globex = names["globex"]
    assert names["acme ltd"] == "co"
    assert fields[globex] == {"name": "Globex"}  # one company for both spellings
    assert fields["c1"]["company"] == "co"
    assert fields["c2"]["company"] == fields["c3"]["company"] == globex
    assert fields["a1"]["contacts"] == ["c1"] and "contacts" not in fields["a2"]
    assert refs == {
        ("c1", "company", "co"),
        ("c2", "company", globex),
        ("c3", "company", globex),
        ("a1", "contacts", "c1"),
    }
    assert base == {"email": "bob@x.com", "company": globex}
