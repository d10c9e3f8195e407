"""The Outlook connector against its sandbox over real HTTPS, tokens from msal: the contract
for contacts and messages, and Graph's habits (delta links per folder, page sizes that must
be asked for on every page, @removed, 410, $batch with per-request throttling, 4 requests
in flight per mailbox, change keys)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.outlook import OutlookConnector
from connectors.outlook.connector import CONTACTS, MESSAGES, PARTICIPANTS
from connectors.outlook.sandbox import MAILBOX, OutlookSandboxApp, create_sandbox
from connectors.outlook.sandbox_store import CONTACTS as CONTACT_FOLDER
from connectors.outlook.sandbox_store import message, recipient
from hub.connector import Change, Stream
from hub.errors import ErrorKind
from hub.sandbox import serve_sandbox
from hub.testing.contract import ConnectorContract
from tests.connectors.gmail_kit import MessageSamples, pull_all, subset
from tests.connectors.outlook_kit import app_connector


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[OutlookSandboxApp, str]]:
    app = create_sandbox(seed=4, size=0, contacts=0)
    url, server = serve_sandbox(app)
    try:
        yield app, url
    finally:
        server.stop()


@pytest.fixture
def sandbox(served: tuple[OutlookSandboxApp, str]) -> OutlookSandboxApp:
    app, _ = served
    app.reset()
    return app


class TestOutlookContactsContract(ConnectorContract):
    stream_name = "contacts"

    @pytest.fixture
    async def connector(
        self, served: tuple[OutlookSandboxApp, str], sandbox: OutlookSandboxApp, tmp_path: Path
    ) -> AsyncIterator[OutlookConnector]:
        connector = app_connector(sandbox, served[1], tmp_path)
        connector.box = sandbox.provider.mailbox(MAILBOX)  # type: ignore[attr-defined]
        yield connector
        await connector.aclose()

    async def seed(self, connector: Any, records: list[dict[str, Any]]) -> None:
        for record in records:
            connector.box.put(CONTACT_FOLDER, dict(record))

    async def remote_records(self, connector: Any) -> list[dict[str, Any]]:
        return [i.data for i in connector.box.live(CONTACT_FOLDER)]

    async def edit_remotely(self, connector: Any, identity: str, changes: dict[str, Any]) -> None:
        for item in connector.box.live(CONTACT_FOLDER):
            if self.identity(CONTACTS, item.data) == identity:
                connector.box.update(item.id, changes)

    def sample(self, stream: Stream, i: int) -> dict[str, Any]:
        return {
            "givenName": f"First{i}",
            "surname": "Doe",
            "emailAddresses": [{"address": f"contract{i}@example.com", "name": f"First{i} Doe"}],
        }

    def identity(self, stream: Stream, data: dict[str, Any]) -> str:
        emails = data.get("emailAddresses") or [{}]
        return str(emails[0].get("address") or "").strip().lower()

    def edit(self, stream: Stream, data: dict[str, Any]) -> dict[str, Any]:
        return {"givenName": f"{data['givenName']} Changed"}

    def matches(self, pulled: dict[str, Any], expected: dict[str, Any]) -> bool:
        return subset(pulled, expected)


class TestOutlookMessagesContract(MessageSamples, ConnectorContract):
    source = "outlook"
    stream_name = "messages"
    remote_edits = False

    @pytest.fixture
    async def connector(
        self, served: tuple[OutlookSandboxApp, str], sandbox: OutlookSandboxApp, tmp_path: Path
    ) -> AsyncIterator[OutlookConnector]:
        connector = app_connector(sandbox, served[1], tmp_path, create_contacts="never")
        connector.box = sandbox.provider.mailbox(MAILBOX)  # type: ignore[attr-defined]
        yield connector
        await connector.aclose()

    async def seed(self, connector: Any, records: list[dict[str, Any]]) -> None:
        from datetime import UTC, datetime

        for record in records:
            connector.box.put(
                "inbox",
                message(
                    sender=recipient("", record["from"]),
                    to=[recipient("", MAILBOX)],
                    subject=record["subject"],
                    body="hello",
                    when=datetime.now(UTC),
                    internet_id=f"<{record['message_id']}>",
                    conversation="c1",
                ),
            )

    async def remote_records(self, connector: Any) -> list[dict[str, Any]]:
        return [
            {"message_id": i.data["internetMessageId"].strip("<>")}
            for folder in ("inbox", "sentitems")
            for i in connector.box.live(folder)
        ]


# -- mail -----------------------------------------------------------------------------


@pytest.fixture
def mail() -> Iterator[tuple[OutlookSandboxApp, str]]:
    app = create_sandbox(seed=2, size=90, contacts=40)
    url, server = serve_sandbox(app)
    try:
        yield app, url
    finally:
        server.stop()


async def test_each_folder_has_its_delta_link_and_pages_keep_their_size(
    mail: tuple[OutlookSandboxApp, str], tmp_path: Path
) -> None:
    app, url = mail
    connector = app_connector(app, url, tmp_path, page_size=7, create_contacts="never")
    try:
        records, _, cursor = await pull_all(connector, MESSAGES)
        assert len(records) == 90 and len({r.id for r in records}) == 90
        assert set(cursor["folders"]) == {"inbox", "sentitems"}
        # 60 in the inbox, 30 sent: 7 a page on every page (Graph's default would be 10)
        delta = "/v1.0/users/me@crmhub-sandbox.example/mailFolders/*/messages/*"
        assert app.log.count("GET", delta) == 9 + 5
        assert {r.data["direction"] for r in records} == {"in", "out"}
        assert all(r.data["thread_id"] and r.data["message_id"] for r in records)
        box = app.provider.mailbox(MAILBOX)
        gone = next(i.id for i in box.live("inbox"))
        box.remove(gone)
        again, deleted, cursor = await pull_all(connector, MESSAGES, cursor)
        assert again == [] and deleted == [gone]
        # the delta links expire: a new round per folder, the same ids
        box.expire_tokens()
        resync, _, cursor = await pull_all(connector, MESSAGES, cursor)
        assert app.log.count("GET", delta, status=410) == 2
        assert {r.id for r in resync} == {r.id for r in records} - {gone}
        assert (await pull_all(connector, MESSAGES, cursor))[0] == []
    finally:
        await connector.aclose()


async def test_participants_come_from_sent_items(
    mail: tuple[OutlookSandboxApp, str], tmp_path: Path
) -> None:
    app, url = mail
    connector = app_connector(app, url, tmp_path)
    try:
        people, _, _ = await pull_all(connector, PARTICIPANTS)
        box = app.provider.mailbox(MAILBOX)
        wrote_to = {
            r["emailAddress"]["address"]
            for i in box.live("sentitems")
            for r in i.data["toRecipients"] + i.data["ccRecipients"]
        }
        assert {r.id for r in people} == wrote_to
        assert app.log.count("GET", "*/mailFolders/inbox/*") == 0
    finally:
        await connector.aclose()


# -- contacts ---------------------------------------------------------------------------


async def test_writes_go_in_batches_of_20_at_most_4_in_flight_throttles_retried_alone(
    mail: tuple[OutlookSandboxApp, str], tmp_path: Path
) -> None:
    app, url = mail
    connector = app_connector(app, url, tmp_path)
    try:
        records, _, _ = await pull_all(connector, CONTACTS)
        with app.provider.lock:
            app.provider.batch_throttle = 3
        before = len(app.log)
        changes = [
            Change(
                key=str(n),
                op="update",
                data={"surname": "Changed"},
                idempotency_key=str(n),
                remote_id=r.id,
                version=r.version,
            )
            for n, r in enumerate(records)
        ]
        results = await connector.push(CONTACTS, changes)
        assert all(r.ok for r in results), [r.message for r in results if not r.ok]
        calls = [e.path for e in app.log.entries(before)]
        assert calls == ["/v1.0/$batch"] * 3  # 40 in two calls, then the 3 throttled ones
        assert app.provider.batch_items == 43
        assert app.provider.max_in_flight <= 4
        box = app.provider.mailbox(MAILBOX)
        assert {i.data["surname"] for i in box.live(CONTACT_FOLDER)} == {"Changed"}
        assert all(r.version != c.version for r, c in zip(results, changes, strict=True))
    finally:
        await connector.aclose()


async def test_a_stale_change_key_is_refused_and_fetch_reads_the_new_one(
    mail: tuple[OutlookSandboxApp, str], tmp_path: Path
) -> None:
    app, url = mail
    connector = app_connector(app, url, tmp_path)
    box = app.provider.mailbox(MAILBOX)
    try:
        records, _, cursor = await pull_all(connector, CONTACTS)
        target = records[0]
        box.update(target.id, {"jobTitle": "Changed in Outlook"})
        change = Change(
            key="k",
            op="update",
            data={"surname": "Hub"},
            idempotency_key="i",
            remote_id=target.id,
            version=target.version,
        )
        (result,) = await connector.push(CONTACTS, [change])
        assert result.stale and result.error == ErrorKind.TRANSIENT
        (fresh,) = await connector.fetch(CONTACTS, [target.id])
        assert fresh.data["jobTitle"] == "Changed in Outlook"
        (result,) = await connector.push(
            CONTACTS, [Change(**{**change.__dict__, "version": fresh.version})]
        )
        assert result.ok
        changed, _, _ = await pull_all(connector, CONTACTS, cursor)
        assert [r.id for r in changed] == [target.id]
    finally:
        await connector.aclose()


async def test_an_email_change_keeps_the_other_addresses(
    mail: tuple[OutlookSandboxApp, str], tmp_path: Path
) -> None:
    app, url = mail
    connector = app_connector(app, url, tmp_path)
    box = app.provider.mailbox(MAILBOX)
    try:
        records, _, _ = await pull_all(connector, CONTACTS)
        target = records[0]
        extra = {"address": "home@private.example", "name": "home"}
        item = box.update(target.id, {"emailAddresses": [*target.data["emailAddresses"], extra]})
        assert item is not None
        change = Change(
            key="k",
            op="update",
            data={"emailAddresses": [{"address": "new@work.example"}]},
            idempotency_key="i",
            remote_id=target.id,
            version=item.change_key,
        )
        (result,) = await connector.push(CONTACTS, [change])
        assert result.ok, result.message
        held = box.get(target.id)
        assert held is not None
        assert [e["address"] for e in held.data["emailAddresses"]] == [
            "new@work.example",
            "home@private.example",
        ]
    finally:
        await connector.aclose()
