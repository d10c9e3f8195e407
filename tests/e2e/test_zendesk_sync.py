"""Zendesk through the engine: the sandbox made from its declaration, over real HTTP, into a
real store (SQLite and PostgreSQL). End users, organizations, tickets and their comments
arrive with their references resolved (an agent's comment on the requester's timeline); a
ticket's status goes back; records made in another system reach Zendesk once, with the
hub's id as external_id and the references as Zendesk ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from auth.credentials import VaultAuth
from auth.flows import store_basic
from hub.config import load_config
from hub.edit import edit_entity
from hub.engine import sync_connection
from hub.registry import Registry
from hub.rest.sandbox import SANDBOX_PASSWORD, SANDBOX_USER, create_sandbox
from hub.runtime import Hub
from hub.sandbox import serve_sandbox
from hub.testing.memory import MemoryConnector, create_remote, remove_remote
from tests.connectors.zendesk_kit import fast_loaded, fast_zendesk
from tests.relations.kit import PEOPLE, TICKETS

pytestmark = pytest.mark.asyncio


def seed(provider: Any) -> None:
    provider.add("organizations", {"name": "Northwind", "domain_names": ["northwind.example"]})
    provider.add(
        "users", {"name": "Ann Lee", "email": "ann@northwind.example", "organization_id": 1}
    )
    provider.add("users", {"name": "Sam Agent", "email": "sam@help.example", "role": "agent"})
    ticket = {"subject": "Printer jams", "description": "It jams", "requester_id": 1}
    provider.add("tickets", {**ticket, "organization_id": 1, "status": "open", "priority": "high"})
    comment = {"id": 501, "event_type": "Comment", "author_id": 2, "body": "Still jams"}
    event = {"ticket_id": 1, "child_events": [{**comment, "created_at": "2026-01-05T10:00:00Z"}]}
    provider.add("comments", event)


async def entities(hub: Hub, kind: str) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from hub.store.schema import entities as table

    async with hub.store.connect() as db:
        rows = await db.execute(select(table.c.id, table.c.fields).where(table.c.type == kind))
        return [{"id": i, **f} for i, f in rows]


async def test_zendesk_syncs_both_ways_with_references(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRMHUB_SECRET_KEY_FILE", str(tmp_path / "crmhub.key"))
    store = f"zd-crm-{tmp_path.name}"
    people, crm_tickets = create_remote(f"{store}/people"), create_remote(f"{store}/tickets")
    for name, text in (("people", PEOPLE), ("tickets", TICKETS)):
        (tmp_path / f"{name}.toml").write_text(text)
    app = create_sandbox(fast_loaded(), size=0)
    seed(app.provider)
    url, server = serve_sandbox(app)
    (tmp_path / "crmhub.toml").write_text(
        f'[hub]\ndatabase = "{db_url}"\n\n'
        f'[connections.zd]\nconnector = "zendesk"\nsubdomain = "acme"\nbase_url = "{url}"\n\n'
        f'[connections.crm]\nconnector = "memory"\nstore = "{store}"\n'
        'streams = { people = "contact", tickets = "ticket" }\n'
        'mapping = { people = "people.toml", tickets = "tickets.toml" }\n'
    )
    registry = Registry.discover(extra={"zendesk": fast_zendesk(), "memory": MemoryConnector})
    hub = await Hub.open(load_config(tmp_path / "crmhub.toml"), registry, auth=VaultAuth())
    try:
        await store_basic(hub, "zd", SANDBOX_USER, SANDBOX_PASSWORD)
        report = await sync_connection(hub, "zd")
        assert report.status == "ok", report.error
        [company] = await entities(hub, "company")
        [ann] = await entities(hub, "contact")  # the agent is not a customer
        [ticket] = await entities(hub, "ticket")
        [comment] = await entities(hub, "activity")
        assert (company["name"], company["domain"]) == ("Northwind", "northwind.example")
        assert (ann["first_name"], ann["company"]) == ("Ann", company["id"])
        assert ticket["requester"] == ann["id"] and ticket["organization"] == company["id"]
        assert (ticket["status"], ticket["priority"], ticket["description"]) == (
            "open",
            "high",
            "It jams",
        )
        # the agent's comment is on the timeline of the ticket's requester and organization
        assert (comment["contacts"], comment["company"]) == ([ann["id"]], company["id"])
        assert comment["body"] == "Still jams"

        # status and priority go back to Zendesk
        await edit_entity(hub, ticket["id"], {"status": "solved", "priority": "low"})
        assert (await sync_connection(hub, "zd")).status == "ok"
        [zt] = app.provider.records("tickets")
        assert (zt["status"], zt["priority"], zt["subject"]) == ("solved", "low", "Printer jams")

        # a person and her ticket made elsewhere reach Zendesk once, references translated
        person = people.add({"email": "bo@example.com", "first_name": "Bo"}, id="p1")
        crm_tickets.add({"subject": "Invoice missing", "requester_id": person}, id="t1")
        assert (await sync_connection(hub, "crm")).status == "ok"
        for _ in range(2):  # the second run writes nothing again
            assert (await sync_connection(hub, "zd")).status == "ok"
        [bo] = [u for u in app.provider.records("users") if u.get("email") == "bo@example.com"]
        [hub_bo] = [c for c in await entities(hub, "contact") if c["email"] == "bo@example.com"]
        assert bo["external_id"] == hub_bo["id"]  # create_or_update by the hub's id
        [made] = [t for t in app.provider.records("tickets") if t["subject"] == "Invoice missing"]
        assert made["requester_id"] == bo["id"]
        creates = [e for e in app.log.entries() if e.method == "POST"]
        assert [e.path for e in creates] == [
            "/api/v2/users/create_or_update",
            "/api/v2/tickets",
        ]
    finally:
        await hub.close()
        server.stop()
        remove_remote(people.name)
        remove_remote(crm_tickets.name)


async def test_zendesk_over_oauth_refreshes_and_keeps_the_rotated_refresh_token(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from auth.flows import open_vault, resolve, store_oauth_token

    monkeypatch.setenv("CRMHUB_SECRET_KEY_FILE", str(tmp_path / "crmhub.key"))
    app = create_sandbox(fast_loaded(), size=2)
    oauth = app.oauth
    assert oauth is not None
    oauth.revoke_access_on_refresh = True  # Zendesk: a refresh deletes the previous tokens
    url, server = serve_sandbox(app)
    (tmp_path / "crmhub.toml").write_text(
        f'[hub]\ndatabase = "{sqlite_url}"\n\n'
        f'[connections.zd]\nconnector = "zendesk"\nsubdomain = "acme"\nbase_url = "{url}"\n\n'
        '[connections.zd.oauth]\nkind = "oauth2"\nclient_id = "sandbox-client"\n'
        f'client_secret = "sandbox-secret"\nauthorize_url = "{url}/oauth/authorize"\n'
        f'token_url = "{url}/oauth/token"\n'
    )
    registry = Registry.discover(extra={"zendesk": fast_zendesk()})
    hub = await Hub.open(load_config(tmp_path / "crmhub.toml"), registry, auth=VaultAuth())
    try:
        grant = oauth.issue_grant(scope="read users:write organizations:write tickets:write")
        await store_oauth_token(open_vault(hub, create_key=True), resolve(hub, "zd"), grant)
        assert (await sync_connection(hub, "zd")).status == "ok"
        assert len(await entities(hub, "contact")) == 2
        oauth.expire_access_tokens()
        app.provider.add("users", {"name": "Cy New", "email": "cy@example.com"})
        report = await sync_connection(hub, "zd")
        assert report.status == "ok", report.error
        assert len(await entities(hub, "contact")) == 3 and oauth.refresh_requests == 1
        kept = await open_vault(hub).get("zd")
        assert kept is not None and kept.data["refresh_token"] != grant["refresh_token"]
    finally:
        await hub.close()
        server.stop()
