"""Gmail connections synced by the engine into a real store (SQLite and PostgreSQL), over
real HTTP to the sandbox with google-api-python-client: the first window sync, incremental
history, a stale history id and an expired sync token without duplicates, contacts pushed
with their etag, a stale etag merged without losing either edit, and one message seen by
two mailboxes as one activity."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from auth.credentials import VaultAuth
from connectors.gmail.contacts_push import ContactPush
from connectors.gmail.sandbox import MAILBOX, GmailSandboxApp, create_sandbox, service_account_info
from hub.config import load_config
from hub.edit import edit_entity
from hub.http import forget_limiters
from hub.relations.views import relations_of
from hub.runtime import Hub
from hub.sandbox import serve_sandbox
from hub.store.schema import entities, links
from tests.connectors.gmail_kit import deliver
from tests.e2e.mailkit import contact, count, sync

SALES = "sales@crmhub-sandbox.example"
CONFIG = """\
[hub]
database = "{db}"
phone_region = "US"

[connections.mail]
connector = "gmail"
api_root = "{url}"
service_account_file = "key.json"
mailboxes = ["{mailbox}"]
units_per_second = 100000
{extra}
"""


@pytest.fixture
def sandbox() -> Iterator[tuple[GmailSandboxApp, str]]:
    app = create_sandbox(seed=9, size=60, contacts=8)
    url, server = serve_sandbox(app)
    try:
        yield app, url
    finally:
        server.stop()


async def open_hub(
    tmp_path: Path, db_url: str, app: GmailSandboxApp, url: str, extra: str = ""
) -> Hub:
    forget_limiters()
    (tmp_path / "key.json").write_text(json.dumps(service_account_info(app, url)))
    (tmp_path / "crmhub.toml").write_text(
        CONFIG.format(db=db_url, url=url, mailbox=MAILBOX, extra=extra)
    )
    return await Hub.open(load_config(tmp_path / "crmhub.toml"), auth=VaultAuth())


async def test_mail_and_contacts_sync_both_ways_without_duplicates(
    sandbox: tuple[GmailSandboxApp, str], tmp_path: Path, db_url: str
) -> None:
    app, url = sandbox
    hub = await open_hub(tmp_path, db_url, app, url)
    book = app.provider.book(MAILBOX)
    try:
        await sync(hub)
        assert await count(hub, "activity") == 60
        people = await count(hub, "contact")
        assert people >= 8  # the Google contacts, and everyone the mailbox wrote to

        # incremental: new mail, and a new correspondent
        await deliver(app, sender=MAILBOX, to="Nora Lind <nora@client.example>", sent=True)
        await sync(hub)
        assert await count(hub, "activity") == 61
        assert await count(hub, "contact") == people + 1
        nora_id, nora = await contact(hub, "nora@client.example")
        assert (nora["first_name"], nora["last_name"]) == ("Nora", "Lind")
        async with hub.store.connect() as db:  # the message refers to her contact
            mail = (await db.execute(select(entities.c.fields))).scalars().all()
        assert [m["contacts"] for m in mail if m.get("kind") == "email" and nora_id in
                m.get("contacts", [])] == [[nora_id]]  # fmt: skip

        # Gmail forgets the history id: a new window sync, no activity twice
        await deliver(app, sender="nora@client.example", to=MAILBOX, subject="Re: hello")
        app.provider.mailbox(MAILBOX).expire_history()
        await sync(hub)
        assert await count(hub, "activity") == 62
        async with hub.store.connect() as db:  # her timeline: both messages, newest first
            timeline = (await relations_of(db, nora_id, "contact", nora))["pointed_at_by"]
        emails = timeline["activity"]
        assert [a["kind"] for a in emails] == ["email", "email"]
        assert emails[0]["occurred_at"] >= emails[1]["occurred_at"]

        # the sync token expires: every contact listed again, none twice
        book.expire_sync_tokens()
        await sync(hub)
        assert await count(hub, "contact") == people + 1

        # an edit in the hub reaches Google with the etag the link saw
        person = book.listing(None)[0]
        email = person.fields["emailAddresses"][0]["value"]
        entity_id, _ = await contact(hub, email)
        await edit_entity(hub, entity_id, {"last_name": "Hubedit"})
        before = person.etag
        await sync(hub)
        assert person.fields["names"][0]["familyName"] == "Hubedit"
        assert person.etag != before

        # the contact changes in Google while the hub's next edit is on its way: the push
        # is refused as stale, the contact read again and merged, both edits kept
        original = ContactPush._updates

        async def meanwhile(self: ContactPush, chunk: list[Any]) -> Any:
            book.edit(person.resource, {"organizations": [{"name": "Remote Co"}]})
            ContactPush._updates = original  # once
            return await original(self, chunk)

        ContactPush._updates = meanwhile  # type: ignore[method-assign]
        try:
            await edit_entity(hub, entity_id, {"first_name": "Hubfirst"})
            await sync(hub)
        finally:
            ContactPush._updates = original  # type: ignore[method-assign]
        assert app.log.count("GET", "/v1/people:batchGet") == 1  # the stale contact re-read
        assert person.fields["names"][0]["givenName"] == "Hubfirst"
        assert person.fields["organizations"][0]["name"] == "Remote Co"
        _, fields = await contact(hub, email)
        assert fields["first_name"] == "Hubfirst" and fields["company"] is not None
        async with hub.store.connect() as db:
            company = await db.scalar(
                select(entities.c.fields).where(entities.c.id == fields["company"])
            )
        assert company["name"] == "Remote Co"
        assert book.live() == 8  # nothing was created twice
    finally:
        await hub.close()


async def test_one_message_in_two_mailboxes_is_one_activity(
    sandbox: tuple[GmailSandboxApp, str], tmp_path: Path, db_url: str
) -> None:
    app, url = sandbox
    extra = (
        '\n[connections.sales]\nconnector = "gmail"\n'
        f'api_root = "{url}"\nservice_account_file = "key.json"\n'
        f'mailboxes = ["{SALES}"]\nunits_per_second = 100000\ncontacts = false\n'
    )
    hub = await open_hub(tmp_path, db_url, app, url, extra)
    try:
        await sync(hub, "mail")
        await sync(hub, "sales")
        message_id = "<deal-42@crmhub-sandbox.example>"
        await deliver(app, sender=MAILBOX, to=SALES, sent=True, message_id=message_id)
        await deliver(app, sender=MAILBOX, to=SALES, mailbox=SALES, message_id=message_id)
        await sync(hub, "mail")
        await sync(hub, "sales")
        assert await count(hub, "activity") == 61
        async with hub.store.connect() as db:
            linked = (
                await db.execute(
                    select(links.c.connection, entities.c.fields)
                    .join(entities, entities.c.id == links.c.entity_id)
                    .where(entities.c.type == "activity")
                )
            ).all()
        shared = [
            (c, f) for c, f in linked if f.get("message_id") == "deal-42@crmhub-sandbox.example"
        ]
        assert sorted(c for c, _ in shared) == ["mail", "sales"]
        assert {f["thread_id"] for _, f in shared} and shared[0][1]["kind"] == "email"
    finally:
        await hub.close()
