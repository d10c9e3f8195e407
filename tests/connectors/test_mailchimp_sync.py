"""A CSV file and a Mailchimp audience synced by the engine, on SQLite and PostgreSQL: updates
batched by a hub that has just started, consent that stays unknown, consent times that
move only with consent."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from auth.credentials import VaultAuth
from connectors.mailchimp.sandbox import (
    LIST_ID,
    SANDBOX_API_KEY,
    MailchimpSandboxApp,
    create_sandbox,
)
from hub.sandbox import serve_sandbox

HEADER = "email,first_name,last_name,consent\n"
MEMBER_PATH = f"/3.0/lists/{LIST_ID}/members/*"
BATCH_PATH = f"/3.0/lists/{LIST_ID}"


@pytest.fixture
def served() -> Iterator[tuple[MailchimpSandboxApp, str]]:
    app = create_sandbox(seed=9, size=0)
    url, server = serve_sandbox(app)
    try:
        yield app, url
    finally:
        server.stop()


class Folder:
    """A crmhub folder: ``crmhub.toml``, ``people.csv``; ``open()`` starts a hub on it, as a
    new ``crmhub`` process would (new connectors, nothing remembered but the store)."""

    def __init__(self, path: Path, db_url: str, api_base: str) -> None:
        self.path = path
        self.csv = path / "people.csv"
        (path / "crmhub.toml").write_text(
            f'[hub]\ndatabase = "{db_url}"\nphone_region = "US"\n\n'
            '[connections.people]\nconnector = "csv"\npath = "people.csv"\n\n'
            f'[connections.mc]\nconnector = "mailchimp"\nlist_id = "{LIST_ID}"\n'
            f'api_base = "{api_base}"\n'
        )
        self.keyed = False

    async def open(self) -> Any:
        from auth.flows import store_api_key
        from hub.config import load_config
        from hub.runtime import Hub

        hub = await Hub.open(load_config(self.path / "crmhub.toml"), auth=VaultAuth())
        if not self.keyed:
            await store_api_key(hub, "mc", SANDBOX_API_KEY)
            self.keyed = True
        return hub

    async def sync(self, *names: str) -> None:
        """Each connection in a hub of its own, like ``crmhub sync NAME`` run in turn."""
        from hub.engine import sync_connection

        for name in names:
            hub = await self.open()
            try:
                report = await sync_connection(hub, name)
                assert report.status == "ok", (name, report.error, report.errors)
            finally:
                await hub.close()

    def rows(self) -> dict[str, dict[str, str]]:
        with self.csv.open(newline="") as f:
            return {row["email"]: row for row in csv.DictReader(f)}

    async def contact(self, email: str) -> dict[str, Any]:
        from sqlalchemy import select

        from hub.store.schema import entities

        hub = await self.open()
        try:
            async with hub.store.connect() as db:
                found = [
                    f
                    for (f,) in await db.execute(select(entities.c.fields))
                    if (json.loads(f) if isinstance(f, str) else f).get("email") == email
                ]
        finally:
            await hub.close()
        [fields] = found
        return json.loads(fields) if isinstance(fields, str) else dict(fields)


@pytest.fixture
async def folder(
    tmp_path: Path, db_url: str, served: tuple[MailchimpSandboxApp, str]
) -> AsyncIterator[Folder]:
    yield Folder(tmp_path, db_url, f"{served[1]}/3.0/")


async def test_a_new_process_batches_changed_last_names(
    folder: Folder, served: tuple[MailchimpSandboxApp, str]
) -> None:
    app, _ = served
    people = 30  # more than the connector's batch threshold (20)
    rows = [f"p{i}@example.com,First{i},Last{i},yes\n" for i in range(people)]
    folder.csv.write_text(HEADER + "".join(rows))
    # the second Mailchimp run lists the new members; the third skips them, unchanged
    await folder.sync("people", "mc", "mc", "mc")
    assert len(app.provider.audience.listing()) == people
    folder.csv.write_text(folder.csv.read_text().replace(",Last", ",Renamed"))
    app.log.clear()

    await folder.sync("people", "mc")  # the Mailchimp run: incremental pull, then the push
    assert app.log.count("PUT") == 0 and app.log.count("GET", MEMBER_PATH) == 0
    assert app.log.count("POST", BATCH_PATH) == 1
    names = {m.merge_fields["LNAME"] for m in app.provider.audience.listing()}
    assert names == {f"Renamed{i}" for i in range(people)}


async def test_unknown_consent_stays_unknown_on_every_side(
    folder: Folder, served: tuple[MailchimpSandboxApp, str]
) -> None:
    app, _ = served
    folder.csv.write_text(HEADER + "cy@example.com,Cy,Park,\nann@example.com,Ann,Lee,no\n")
    await folder.sync("people", "mc", "mc", "people")
    assert app.provider.audience.get("cy@example.com").status == "transactional"  # type: ignore[union-attr]
    assert (await folder.contact("cy@example.com")).get("consent") is None
    assert folder.rows()["cy@example.com"]["consent"] == ""
    assert folder.rows()["ann@example.com"]["consent"] == "no"
    # an edit in Mailchimp brings the member back in a pull: still unknown
    app.provider.edit("cy@example.com", {"merge_fields": {"FNAME": "Cyrus"}})
    await folder.sync("mc", "people")
    assert folder.rows()["cy@example.com"] == {
        "email": "cy@example.com",
        "first_name": "Cyrus",
        "last_name": "Park",
        "consent": "",
    }


async def test_consent_time_moves_only_when_consent_does(
    folder: Folder, served: tuple[MailchimpSandboxApp, str]
) -> None:
    app, _ = served
    sandbox = app.provider
    sandbox.add("sub@example.com", FNAME="Sue")
    sandbox.add("out@example.com", status="unsubscribed", FNAME="Otto")
    folder.csv.write_text(HEADER)
    await folder.sync("mc")
    sub, out = await folder.contact("sub@example.com"), await folder.contact("out@example.com")
    assert sub["consent"] is True and sub["consent_at"]
    assert out["consent"] is False and out.get("consent_at") is None

    sandbox.audience.clock = lambda: 2_000_000_000.0  # a later second: last_changed moves
    sandbox.edit("sub@example.com", {"merge_fields": {"FNAME": "Susan"}})
    sandbox.edit("out@example.com", {"merge_fields": {"FNAME": "Ottó"}})
    await folder.sync("mc")
    assert (await folder.contact("sub@example.com"))["consent_at"] == sub["consent_at"]
    assert (await folder.contact("out@example.com")).get("consent_at") is None

    sandbox.unsubscribe("sub@example.com")
    await folder.sync("mc")
    withdrawn = await folder.contact("sub@example.com")
    assert withdrawn["consent"] is False and withdrawn.get("consent_at") is None
