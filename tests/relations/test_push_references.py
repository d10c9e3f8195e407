"""Pushed references: translated to each system's ids or keys, targets written first,
references compared by hub id in the three-way merge. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import update

from hub.edit import edit_entity
from hub.store.schema import outbox
from tests.relations.kit import Relations


@pytest.fixture
async def rel(tmp_path: Path, db_url: str) -> AsyncIterator[Relations]:
    r = Relations(tmp_path, db_url)
    await r.open()
    yield r
    await r.close()


def only(remote_records: dict[str, dict[str, object]]) -> tuple[str, dict[str, object]]:
    [(rid, data)] = remote_records.items()
    return rid, data


async def test_a_new_contact_with_a_new_company_reaches_the_crm_company_first(
    rel: Relations,
) -> None:
    rel.sheet.add({"email": "dee@x.com", "first_name": "Dee", "company": "Newco"})
    await rel.sync("sheet")
    report = await rel.sync("crm")
    company_id, company = only(rel.crm["companies"].all())
    _, person = only(rel.crm["people"].all())
    assert company["name"] == "Newco"
    assert person["company_id"] == company_id  # the CRM's own id, never a hub id
    assert report.counts["pushed_create"] == 2 and "push_waiting" not in report.counts
    again = await rel.sync("crm")  # the echo of our own writes changes nothing
    assert "pushed_create" not in again.counts and "updated" not in again.counts
    assert rel.sheet.changes_written == 0


async def test_a_write_waits_until_the_record_it_points_at_is_there(rel: Relations) -> None:
    rel.sheet.add({"email": "eve@x.com", "company": "Waitco"})
    await rel.sync("sheet")
    rel.crm["companies"].refuse = lambda change: "not today"
    first = await rel.sync("crm")
    assert first.counts["push_waiting"] == 1 and rel.crm["people"].all() == {}
    rel.crm["companies"].refuse = None
    assert rel.hub is not None
    async with rel.hub.store.begin() as db:  # later: the wait is over
        await db.execute(
            update(outbox).where(outbox.c.status == "pending").values(next_attempt_at=None)
        )
    await rel.sync("crm")
    company_id, _ = only(rel.crm["companies"].all())
    _, person = only(rel.crm["people"].all())
    assert person["company_id"] == company_id


async def test_references_merge_three_ways_by_hub_id(rel: Relations) -> None:
    a = rel.crm["companies"].add({"name": "Alpha"})
    b = rel.crm["companies"].add({"name": "Beta"})
    ann = rel.crm["people"].add({"email": "ann@x.com", "company_id": a})
    await rel.sync("crm")
    await rel.sync("sheet")
    _, row = only(rel.sheet.all())
    assert row["company"] == "Alpha"  # the sheet shows the company's name
    rel.crm["people"].update(ann, company_id=b)  # changed in the CRM: the hub follows
    await rel.sync("crm")
    await rel.sync("sheet")
    assert only(rel.sheet.all())[1]["company"] == "Beta"
    companies = {c["name"]: c["id"] for c in await rel.by_type("company")}
    [person] = await rel.by_type("contact")
    assert rel.hub is not None
    await edit_entity(rel.hub, person["id"], {"company": companies["Alpha"]})
    report = await rel.sync("crm")  # changed in the hub: owed to the CRM, as its id
    assert report.counts["pushed_update"] == 1
    assert rel.crm["people"].get(ann)["company_id"] == a  # type: ignore[index]
    # The sheet spells its (old) company otherwise: the same hub id, so no change there,
    # and the hub's change goes out.
    rel.sheet.update(only(rel.sheet.all())[0], company=" beta ")
    await rel.sync("sheet")
    [person] = await rel.by_type("contact")
    assert person["company"] == companies["Alpha"]
    assert only(rel.sheet.all())[1]["company"] == "Alpha"


async def test_renaming_a_company_changes_what_every_row_naming_it_shows(
    rel: Relations,
) -> None:
    acme = rel.crm["companies"].add({"name": "Acme"})
    for email in ("a@x.com", "b@x.com"):
        rel.sheet.add({"email": email, "company": "acme"})
    await rel.sync("crm")
    await rel.sync("sheet")
    assert len(await rel.by_type("company")) == 1  # the rows named the CRM's company
    rel.crm["companies"].update(acme, name="Acme Ltd")
    await rel.sync("crm")
    # A row edited meanwhile still shows the old name: no change, and no new company.
    first = rel.sheet.ids()[0]
    rel.sheet.update(first, first_name="Ann")
    await rel.sync("sheet")
    assert {r["company"] for r in rel.sheet.all().values()} == {"Acme Ltd"}
    assert [c["name"] for c in await rel.by_type("company")] == ["Acme Ltd"]
    quiet = await rel.sync("sheet")
    assert "pushed_update" not in quiet.counts and "updated" not in quiet.counts
