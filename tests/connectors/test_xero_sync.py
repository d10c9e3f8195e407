"""A Xero organisation synced by the engine over HTTP into a real store, on SQLite and
PostgreSQL: the first sync, rotating refresh tokens, a hub edit pushed with its
idempotency key, the daily limit that stops the connection until the next day and says so,
the day's usage in ``crmhub connections``, and webhooks (intent to receive, bad
signatures, events turned into targeted fetches)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from connectors.xero.sandbox import XeroSandboxApp, create_sandbox
from hub.sandbox import serve_sandbox
from hub.store.schema import entities, links, runs
from tests.connectors.xero_kit import Folder


@pytest.fixture
def served() -> Iterator[tuple[XeroSandboxApp, str]]:
    app = create_sandbox(seed=5, size=20, invoices=30)
    url, server = serve_sandbox(app)
    try:
        yield app, url
    finally:
        server.stop()


@pytest.fixture
def folder(tmp_path: Path, db_url: str, served: tuple[XeroSandboxApp, str]) -> Folder:
    return Folder(tmp_path, db_url, served[0], served[1])


async def test_first_sync_rotation_push_and_the_daily_limit(
    folder: Folder, served: tuple[XeroSandboxApp, str]
) -> None:
    app, _ = served
    sandbox, org = app.provider, app.provider.org(0)
    report = await folder.sync()
    # /connections, one listing of /Contacts for both streams, one of /Invoices
    assert report.counts["http_calls"] == 3
    organisations = [c for c in org.contacts.values() if c["ContactPersons"]]
    people = len(org.contacts) - len(organisations) + 2 * len(organisations)
    assert len(await folder.entities("company")) == len(organisations)
    assert len(await folder.entities("contact")) == people
    invoices = await folder.entities("invoice")
    assert len(invoices) == 30
    assert {i["number"] for i in invoices} == {i["InvoiceNumber"] for i in org.invoices.values()}

    # the 30-minute token ran out: one refresh, the rotated refresh token kept
    sandbox.oauth.expire_access_tokens()
    await folder.sync()
    await folder.sync()
    assert sandbox.oauth.refresh_requests == 1 and sandbox.oauth.reused_refresh_tokens == []

    # a person's last name changed in the hub reaches Xero, Name following it
    hub = await folder.open()
    try:
        from hub.edit import edit_entity

        person = next(c for c in org.contacts.values() if c["FirstName"])
        async with hub.store.connect() as db:
            entity_id = await db.scalar(
                select(links.c.entity_id).where(links.c.remote_id == person["ContactID"])
            )
        await edit_entity(hub, str(entity_id), {"last_name": "Hubedited"})
    finally:
        await hub.close()
    sandbox.requests.clear()
    await folder.sync()
    [post] = [r for r in sandbox.requests if r["method"] == "POST"]
    assert post["idempotency_key"]
    assert person["LastName"] == "Hubedited"
    assert person["Name"] == f"{person['FirstName']} Hubedited"
    assert len(org.contacts) == len(organisations) + people - 2 * len(organisations)

    # the day's calls are spent: the run stops until the next day, and says so
    sandbox.limits.day = sandbox.limits.used_today(org.tenant_id)
    report = await folder.sync(expect="throttled")
    assert "daily limit" in str(report.error) and report.throttled_until is not None
    assert report.throttled_until.hour == 0 and report.throttled_until.minute == 0
    hub = await folder.open()
    try:
        from hub.cli.auth_commands import connection_rows
        from hub.sync_scheduler import throttled_until

        [row] = await connection_rows(hub)
        assert "calls today" in row["usage"] and "daily limit spent" in row["usage"]
        assert await throttled_until(hub, "xe") == report.throttled_until
        async with hub.store.connect() as db:
            status = await db.scalar(select(runs.c.status).order_by(runs.c.started_at.desc()))
        assert status == "throttled"
    finally:
        await hub.close()


async def test_webhooks_are_checked_and_become_targeted_fetches(
    folder: Folder, served: tuple[XeroSandboxApp, str]
) -> None:
    from hub.inbox import InboxProcessor
    from hub.web import create_app

    app, _ = served
    sandbox, org = app.provider, app.provider.org(0)
    await folder.sync()
    hub = await folder.open()
    web = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(hub)), base_url="http://hub"
    )
    try:

        async def post(payload: dict, headers: dict | None = None) -> int:
            body, signed = sandbox.webhooks.prepare(payload)
            signed.update(headers or {})
            answer = await web.post("/hooks/xe", content=body, headers=signed)
            if answer.status_code == 200:
                assert answer.content == b"", "Xero wants an empty 200"
            return answer.status_code

        # intent to receive: 200 for the signed, 401 for the others, nothing stored
        empty = {"events": [], "firstEventSequence": 0, "lastEventSequence": 0, "entropy": "X"}
        assert await post(empty) == 200
        assert await post(empty, {"x-xero-signature": "d3Jvbmc="}) == 401
        assert await post(empty, {"x-xero-signature": ""}) == 401

        invoice = next(i for i in org.invoices.values() if i["Status"] == "AUTHORISED")
        company = next(c for c in org.contacts.values() if c["ContactPersons"])
        deliveries = [
            sandbox.pay(0, invoice["InvoiceID"], 10.0),
            sandbox.edit(0, company["ContactID"], {"Name": "Webhook Renamed Ltd"}),
        ]
        for payload in deliveries:
            assert await post(payload) == 200
        forged = sandbox.pay(0, invoice["InvoiceID"], 5.0)  # paid, but the note is forged
        assert await post(forged, {"x-xero-signature": "Zm9yZ2Vk"}) == 401

        sandbox.requests.clear()
        processor = InboxProcessor(hub)
        assert await processor.run_once() == 2
        await processor.aclose()
    finally:
        await web.aclose()
        await hub.close()
    queried = [r["query"] for r in sandbox.requests]
    assert all("IDs=" in str(q) for q in queried), queried
    names = {c["name"] for c in await folder.entities("company")}
    assert "Webhook Renamed Ltd" in names
    number = invoice["InvoiceNumber"]
    [due] = [i["amount_due"] for i in await folder.entities("invoice") if i["number"] == number]
    assert due == f"{invoice['AmountDue']:.2f}" == f"{invoice['Total'] - 15.0:.2f}"
    assert app.violations.take() == []


async def test_an_archived_contact_follows_the_delete_policy(
    folder: Folder, served: tuple[XeroSandboxApp, str]
) -> None:
    app, _ = served
    org = app.provider.org(0)
    await folder.sync()
    person = next(c for c in org.contacts.values() if c["FirstName"])
    app.provider.archive(0, person["ContactID"])
    await folder.sync()
    hub = await folder.open()
    try:
        async with hub.store.connect() as db:
            entity_id = await db.scalar(
                select(links.c.entity_id).where(links.c.remote_id == person["ContactID"])
            )
            deleted = await db.scalar(
                select(entities.c.deleted_at).where(entities.c.id == entity_id)
            )
    finally:
        await hub.close()
    assert entity_id is None or deleted is not None


async def test_a_create_interrupted_after_xeros_answer_makes_no_second_contact(
    tmp_path: Path, db_url: str, served: tuple[XeroSandboxApp, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from connectors.xero import XeroConnector

    app, url = served
    org = app.provider.org(0)
    folder = Folder(tmp_path, db_url, app, url)
    config = tmp_path / "crmhub.toml"
    config.write_text(
        config.read_text() + '\n[connections.people]\nconnector = "csv"\npath = "people.csv"\n'
    )
    (tmp_path / "people.csv").write_text(
        "email,first_name,last_name\nnew.person@example.com,New,Person\n"
    )
    await folder.sync()
    await folder.sync("people")
    before = len(org.contacts)
    pushed = XeroConnector.push

    async def answered_then_killed(self: XeroConnector, stream, changes):  # type: ignore[no-untyped-def]
        await pushed(self, stream, changes)
        raise asyncio.CancelledError  # the process dies before the hub records the answer

    monkeypatch.setattr(XeroConnector, "push", answered_then_killed)
    with pytest.raises(asyncio.CancelledError):
        await folder.sync()
    assert len(org.contacts) == before + 1
    monkeypatch.setattr(XeroConnector, "push", pushed)
    await folder.sync()
    await folder.sync()
    named = [c for c in org.contacts.values() if c["EmailAddress"] == "new.person@example.com"]
    assert len(named) == 1 and len(org.contacts) == before + 1
    assert named[0]["Name"] == "New Person"
    # the next pull met the contact first and matched it by e-mail: nothing left to send
    # (a create sent again would carry its key and get Xero's first answer: test_xero_sandbox)
    assert [r["method"] for r in app.provider.requests].count("POST") == 1


async def test_a_customers_invoices_show_on_its_company_and_people_on_theirs(
    folder: Folder, served: tuple[XeroSandboxApp, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import json

    from typer.testing import CliRunner

    from hub.cli import app as cli
    from hub.cli import commands  # noqa: F401  (registers the commands)

    app, _ = served
    org = app.provider.org(0)
    await folder.sync()
    customer = next(
        c
        for c in org.contacts.values()
        if c["ContactPersons"]
        and any(i["Contact"]["ContactID"] == c["ContactID"] for i in org.invoices.values())
    )
    numbers = {
        i["InvoiceNumber"]
        for i in org.invoices.values()
        if i["Contact"]["ContactID"] == customer["ContactID"]
    }
    hub = await folder.open()
    try:
        async with hub.store.connect() as db:
            company = await db.scalar(
                select(links.c.entity_id).where(
                    links.c.remote_id == customer["ContactID"], links.c.stream == "companies"
                )
            )
    finally:
        await hub.close()
    monkeypatch.setenv("CRMHUB_CONFIG", str(folder.path / "crmhub.toml"))
    args = ["entities", "show", str(company), "--json"]
    shown = await asyncio.to_thread(CliRunner().invoke, cli, args)  # the CLI runs its own loop
    assert shown.exit_code == 0, shown.output
    pointing = json.loads(shown.output)["relations"]["pointed_at_by"]
    assert {i["label"] for i in pointing["invoice"]} == numbers
    people = {p["label"] for p in pointing["contact"]}
    assert people == {
        f"{p['FirstName']} {p['LastName']} <{p['EmailAddress']}>"
        for p in customer["ContactPersons"]
    }
    # an invoice of a person carries the person's address
    person_invoice = next(
        i for i in org.invoices.values() if org.contacts[i["Contact"]["ContactID"]]["FirstName"]
    )
    [hub_invoice] = [
        i
        for i in await folder.entities("invoice")
        if i["number"] == person_invoice["InvoiceNumber"]
    ]
    person = org.contacts[person_invoice["Contact"]["ContactID"]]
    assert hub_invoice["contact_email"] == person["EmailAddress"].lower()
    assert "contact" not in hub_invoice
