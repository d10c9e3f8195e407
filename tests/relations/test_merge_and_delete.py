"""Merging two golden records and deleting one that others point at. SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.errors import ConfigError
from hub.relations.merge import merge_entities
from hub.store.schema import conflicts, entity_refs, links
from tests.relations.kit import Relations


@pytest.fixture
async def rel(tmp_path: Path, db_url: str) -> AsyncIterator[Relations]:
    r = Relations(
        tmp_path,
        db_url,
        extra="delete_guard_share = 1.0",
        sheet='delete_policy = "propagate"',
    )
    await r.open()
    yield r
    await r.close()


async def test_merge_moves_links_references_and_values_to_the_survivor(rel: Relations) -> None:
    rel.sheet.add({"email": "ann@x.com", "first_name": "Ann", "company": "Acme"})
    ann_crm = rel.crm["people"].add({"email": "ann@y.com", "first_name": "Anne"})
    rel.crm["tickets"].add({"subject": "Help", "requester_id": ann_crm})
    await rel.sync("sheet")
    await rel.sync("crm")
    people = {p["email"]: p for p in await rel.by_type("contact")}
    keep, other = people["ann@x.com"], people["ann@y.com"]
    assert rel.hub is not None
    result = await merge_entities(rel.hub, keep["id"], other["id"], take=["first_name"])
    assert result.taken == {"first_name": ["Ann", "Anne"]} and result.conflicts == ["email"]
    # The CRM got the sheet's Ann too: its copy of the other one is a duplicate there,
    # forgotten (the CRM's policy: unlink).
    assert result.links_moved == 0 and result.references_moved == 1
    assert result.duplicates == [{"connection": "crm", "remote_id": ann_crm, "action": "forgotten"}]
    [person] = await rel.by_type("contact")
    [ticket] = await rel.by_type("ticket")
    assert person["id"] == keep["id"] and person["first_name"] == "Anne"
    assert person["company"] == keep["company"]  # what only the survivor had stays
    assert ticket["requester"] == keep["id"]
    kept = {(r["connection"], r["entity_id"]): r["remote_id"] for r in await rel.rows(links)}
    assert set(kept) == {
        ("sheet", keep["id"]),
        ("crm", keep["id"]),
        ("crm", ticket["id"]),
        ("crm", keep["company"]),
    }
    assert {(r["field"], r["target_id"]) for r in await rel.rows(entity_refs)} == {
        ("company", keep["company"]),
        ("requester", keep["id"]),
    }
    [conflict] = await rel.rows(conflicts)
    assert (conflict["hub_value"], conflict["remote_value"]) == ("ann@x.com", "ann@y.com")
    await rel.sync("sheet")
    await rel.sync("crm")
    assert rel.sheet.get(rel.sheet.ids()[0])["first_name"] == "Anne"  # type: ignore[index]
    [(_, crm_ticket)] = rel.crm["tickets"].all().items()
    assert crm_ticket["requester_id"] == kept[("crm", keep["id"])]  # the survivor's CRM id
    with pytest.raises(ConfigError, match="no entity"):
        await merge_entities(rel.hub, keep["id"], other["id"])


async def test_a_duplicate_in_the_same_system_follows_its_delete_policy(rel: Relations) -> None:
    rel.sheet.add({"email": "bo@x.com", "first_name": "Bo"})
    rel.sheet.add({"email": "bo@work.com", "first_name": "Bo", "phone": "+14155550100"})
    await rel.sync("sheet")
    people = {p["email"]: p["id"] for p in await rel.by_type("contact")}
    assert rel.hub is not None
    result = await merge_entities(rel.hub, people["bo@x.com"], people["bo@work.com"])
    assert result.duplicates[0]["action"] == "deleted there"
    await rel.sync("sheet")
    [(_, row)] = rel.sheet.all().items()
    assert row["email"] == "bo@x.com"


async def test_deleting_a_company_clears_what_pointed_at_it_everywhere(rel: Relations) -> None:
    rel.sheet.add({"email": "cy@x.com", "company": "Gone Inc"})
    await rel.sync("sheet")
    [company] = await rel.by_type("company")
    assert rel.hub is not None
    # The company, known to the CRM, is deleted there (policy propagate).
    rel.hub.config.connections["crm"].hub.delete_policy = "propagate"
    await rel.sync("crm")  # the company is pushed to the CRM and linked
    company_link = [r for r in await rel.rows(links) if r["entity_id"] == company["id"]]
    rel.crm["companies"].delete(company_link[0]["remote_id"])
    await rel.sync("crm")
    assert await rel.by_type("company") == []
    [person] = await rel.by_type("contact")
    assert person.get("company") is None and await rel.count(entity_refs) == 0
    await rel.sync("sheet")
    assert rel.sheet.all()[rel.sheet.ids()[0]]["company"] in (None, "")
