"""Pulled references: resolved per page in bulk, kept pending until their target arrives,
never resolved to the wrong record. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import update

from hub.store.schema import cursors, entity_refs, pending_refs
from tests.relations.kit import Relations


@pytest.fixture
async def rel(tmp_path: Path, db_url: str) -> AsyncIterator[Relations]:
    r = Relations(tmp_path, db_url, page_size=1)
    await r.open()
    yield r
    await r.close()


async def test_streams_are_pulled_targets_first_and_references_become_hub_ids(
    rel: Relations,
) -> None:
    acme = rel.crm["companies"].add({"name": "Acme", "domain": "acme.com"})
    ann = rel.crm["people"].add({"email": "ann@x.com", "first_name": "Ann", "company_id": acme})
    rel.crm["tickets"].add({"subject": "Help", "requester_id": ann})
    report = await rel.sync("crm")
    [company] = await rel.by_type("company")
    [person] = await rel.by_type("contact")
    [ticket] = await rel.by_type("ticket")
    assert person["company"] == company["id"] and ticket["requester"] == person["id"]
    assert await rel.count(pending_refs) == 0
    refs = {(r["entity_id"], r["field"], r["target_id"]) for r in await rel.rows(entity_refs)}
    assert refs == {
        (person["id"], "company", company["id"]),
        (ticket["id"], "requester", person["id"]),
    }
    assert "references_pending" not in report.counts


async def test_a_reference_to_a_record_not_seen_yet_waits_for_it_across_runs(
    rel: Relations,
) -> None:
    rel.crm["companies"].add({"name": "Other"}, id="c9-other")
    rel.crm["people"].add({"email": "bo@x.com", "company_id": "c9"})
    # A ticket naming the company's id as its requester: that id is no person's.
    rel.crm["tickets"].add({"subject": "Hi", "requester_id": "c9-other"})
    first = await rel.sync("crm")
    [person] = await rel.by_type("contact")
    [ticket] = await rel.by_type("ticket")
    assert "company" not in person and "requester" not in ticket  # unknown, not guessed
    assert first.counts["references_pending"] == 2
    assert await rel.count(pending_refs) == 2
    rel.crm["companies"].add({"name": "Late Ltd"}, id="c9")
    second = await rel.sync("crm")
    late = [c for c in await rel.by_type("company") if c["name"] == "Late Ltd"]
    [person] = await rel.by_type("contact")
    assert person["company"] == late[0]["id"]
    assert second.counts.get("references_resolved") == 1
    [ticket] = await rel.by_type("ticket")
    assert "requester" not in ticket and await rel.count(pending_refs) == 1


async def test_a_target_the_listing_missed_is_fetched_by_its_id(rel: Relations) -> None:
    await rel.sync("crm")
    hidden = rel.crm["companies"].add({"name": "Hidden"})
    rel.crm["people"].add({"email": "cy@x.com", "company_id": hidden})
    assert rel.hub is not None
    async with rel.hub.store.begin() as db:  # the listing will not show the company
        await db.execute(
            update(cursors)
            .where(cursors.c.connection == "crm", cursors.c.stream == "companies")
            .values(value={"seq": rel.crm["companies"].seq})
        )
    report = await rel.sync("crm")
    [company] = await rel.by_type("company")
    [person] = await rel.by_type("contact")
    assert company["name"] == "Hidden" and person["company"] == company["id"]
    assert report.counts["references_fetched"] == 1 and rel.crm["companies"].fetch_calls == 1
    assert await rel.count(pending_refs) == 0


async def test_companies_named_in_a_column_are_created_once_and_matched_by_name(
    rel: Relations,
) -> None:
    for email, company in (("a@x.com", "Acme"), ("b@x.com", " acme "), ("c@x.com", "Globex")):
        rel.sheet.add({"email": email, "company": company})
    report = await rel.sync("sheet")
    companies = {c["name"]: c["id"] for c in await rel.by_type("company")}
    assert set(companies) == {"Acme", "Globex"} and report.counts["references_created"] == 2
    people = {p["email"]: p["company"] for p in await rel.by_type("contact")}
    assert people == {"a@x.com": companies["Acme"], "b@x.com": companies["Acme"],
                      "c@x.com": companies["Globex"]}  # fmt: skip
    rel.crm["companies"].add({"name": "ACME"})  # the CRM's own copy: matched by name
    await rel.sync("crm")
    assert len(await rel.by_type("company")) == 2
    rel.sheet.add({"email": "d@x.com", "company": "Globex"})
    again = await rel.sync("sheet")
    assert "references_created" not in again.counts


async def test_a_company_with_a_domain_is_the_one_a_column_named_but_not_another_firm(
    rel: Relations,
) -> None:
    rel.sheet.add({"email": "a@x.com", "company": "Acme"})
    await rel.sync("sheet")  # the company column makes "Acme", without a domain
    rel.crm["companies"].add({"name": "ACME", "domain": "acme.com"})
    await rel.sync("crm")
    [acme] = await rel.by_type("company")
    assert acme["domain"] == "acme.com"  # the same company, now with its domain
    rel.crm["companies"].add({"name": "Acme", "domain": "acme.de"})  # another firm
    await rel.sync("crm")
    assert sorted(c["domain"] for c in await rel.by_type("company")) == ["acme.com", "acme.de"]
    [person] = await rel.by_type("contact")
    assert person["company"] == acme["id"]


async def test_a_reference_read_through_another_record_follows_it_when_it_is_known(
    tmp_path: Path, db_url: str
) -> None:
    rel = Relations(tmp_path, db_url, page_size=1, notes=True)  # notes listed first
    await rel.open()
    try:
        ann = rel.crm["people"].add({"email": "ann@x.com"})
        help_ = rel.crm["tickets"].add({"subject": "Help", "requester_id": ann})
        rel.crm["notes"].add({"body": "An agent's reply", "ticket_id": help_}, id="n1")
        rel.crm["notes"].add({"body": "Not listed yet", "ticket_id": "t-late"}, id="n2")
        rel.crm["notes"].add({"body": "Whose?", "ticket_id": "t-orphan"}, id="n3")
        rel.crm["tickets"].add({"subject": "Wait", "requester_id": "p-cy"}, id="t-wait")
        rel.crm["notes"].add({"body": "Requester unknown", "ticket_id": "t-wait"}, id="n4")
        first = await rel.sync("crm")
        person = {p["email"]: p["id"] for p in await rel.by_type("contact")}
        notes = {n["body"]: n for n in await rel.by_type("activity")}
        assert notes["An agent's reply"]["contacts"] == [person["ann@x.com"]]
        assert first.counts["references_pending"] == 4
        assert not {"Not listed yet", "Whose?", "Requester unknown"} & {
            body for body, note in notes.items() if "contacts" in note
        }
        waiting = {(r["remote_id"], r["target_type"]) for r in await rel.rows(pending_refs)}
        assert waiting == {
            ("n2", "ticket.requester"),
            ("n3", "ticket.requester"),
            ("n4", "ticket.requester"),
            ("t-wait", "contact"),
        }

        # the ticket arrives, naming a requester who arrives with it; the other ticket's
        # requester arrives: its ticket takes it first, then the note
        bo = rel.crm["people"].add({"email": "bo@x.com"}, id="p-bo")
        rel.crm["tickets"].add({"subject": "Late", "requester_id": bo}, id="t-late")
        rel.crm["people"].add({"email": "cy@x.com"}, id="p-cy")
        second = await rel.sync("crm")
        person = {p["email"]: p["id"] for p in await rel.by_type("contact")}
        notes = {n["body"]: n for n in await rel.by_type("activity")}
        assert notes["Not listed yet"]["contacts"] == [person["bo@x.com"]]
        assert notes["Requester unknown"]["contacts"] == [person["cy@x.com"]]
        assert second.counts["references_resolved"] == 3  # two notes and a ticket
        assert await rel.count(pending_refs) == 1  # the orphan still waits, unguessed
        refs = {(r["field"], r["target_id"]) for r in await rel.rows(entity_refs)}
        assert ("contacts", person["bo@x.com"]) in refs
    finally:
        await rel.close()
