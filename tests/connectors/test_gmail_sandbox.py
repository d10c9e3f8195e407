"""The Gmail connector against its sandbox over real HTTP, with google-api-python-client:
the contract for contacts and messages, and the behaviours Gmail and People are known for
(history ids, quota units, batches, sync tokens, etags, scopes, service accounts)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.gmail import GmailConnector, GmailSettings
from connectors.gmail.connector import CONTACTS, MESSAGES, PARTICIPANTS
from connectors.gmail.sandbox import MAILBOX, GmailSandboxApp, create_sandbox, service_account_info
from hub.connector import Change, ConnectorContext, Stream
from hub.errors import ConnectorConfigError, ErrorKind
from hub.http import forget_limiters
from hub.sandbox import serve_sandbox
from hub.testing.contract import ConnectorContract
from tests.connectors.gmail_kit import (
    METADATA,
    MessageSamples,
    deliver,
    pull_all,
    subset,
    user_connector,
)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[GmailSandboxApp, str]]:
    app = create_sandbox(seed=5, size=0, contacts=0)
    url, server = serve_sandbox(app)
    try:
        yield app, url
    finally:
        server.stop()


@pytest.fixture
def sandbox(served: tuple[GmailSandboxApp, str]) -> GmailSandboxApp:
    app, _ = served
    app.reset()
    return app


class TestGmailContactsContract(ConnectorContract):
    stream_name = "contacts"

    @pytest.fixture
    async def connector(
        self, served: tuple[GmailSandboxApp, str], sandbox: GmailSandboxApp, tmp_path: Path
    ) -> AsyncIterator[GmailConnector]:
        connector = user_connector(sandbox, served[1], tmp_path)
        connector.book = sandbox.provider.book(MAILBOX)  # type: ignore[attr-defined]
        yield connector
        await connector.aclose()

    async def seed(self, connector: Any, records: list[dict[str, Any]]) -> None:
        for record in records:
            connector.book.create(record)

    async def remote_records(self, connector: Any) -> list[dict[str, Any]]:
        return [p.render({"names", "emailAddresses"}) for p in connector.book.listing(None)]

    async def edit_remotely(self, connector: Any, identity: str, changes: dict[str, Any]) -> None:
        found = connector.book.find_email(identity)
        connector.book.edit(found.resource, changes)

    def sample(self, stream: Stream, i: int) -> dict[str, Any]:
        return {
            "names": [{"givenName": f"First{i}", "familyName": "Doe"}],
            "emailAddresses": [{"value": f"contract{i}@example.com"}],
        }

    def identity(self, stream: Stream, data: dict[str, Any]) -> str:
        emails = data.get("emailAddresses") or [{}]
        return str(emails[0].get("value") or "").strip().lower()

    def edit(self, stream: Stream, data: dict[str, Any]) -> dict[str, Any]:
        given = data["names"][0]["givenName"]
        return {"names": [{"givenName": f"{given} Changed", "familyName": "Doe"}]}

    def matches(self, pulled: dict[str, Any], expected: dict[str, Any]) -> bool:
        return subset(pulled, expected)


class TestGmailMessagesContract(MessageSamples, ConnectorContract):
    source = "gmail"
    stream_name = "messages"
    remote_edits = False  # mail is not edited

    @pytest.fixture
    async def connector(
        self, served: tuple[GmailSandboxApp, str], sandbox: GmailSandboxApp, tmp_path: Path
    ) -> AsyncIterator[GmailConnector]:
        connector = user_connector(sandbox, served[1], tmp_path, create_contacts="never")
        connector.app = sandbox  # type: ignore[attr-defined]
        yield connector
        await connector.aclose()

    async def seed(self, connector: Any, records: list[dict[str, Any]]) -> None:
        for record in records:
            await deliver(
                connector.app,
                sender=record["from"],
                to=MAILBOX,
                subject=record["subject"],
                message_id=f"<{record['message_id']}>",
            )

    async def remote_records(self, connector: Any) -> list[dict[str, Any]]:
        box = connector.app.provider.mailbox(MAILBOX)
        return [
            {"message_id": m.header("Message-ID").strip("<>").lower()}
            for m in box.messages.values()
        ]


# -- messages ---------------------------------------------------------------------------


@pytest.fixture
def mail() -> Iterator[tuple[GmailSandboxApp, str]]:
    app = create_sandbox(seed=2, size=140, contacts=6)
    url, server = serve_sandbox(app)
    try:
        yield app, url
    finally:
        server.stop()


async def test_first_sync_reads_the_window_in_batches_then_history(
    mail: tuple[GmailSandboxApp, str], tmp_path: Path
) -> None:
    app, url = mail
    connector = user_connector(app, url, tmp_path, page_size=60, create_contacts="never")
    try:
        records, deleted, cursor = await pull_all(connector, MESSAGES)
        assert len(records) == 140 and len({r.id for r in records}) == 140 and deleted == []
        first = records[0].data
        assert first["kind"] == "email" and first["source"] == "gmail"
        assert first["message_id"].endswith("@mail.crmhub-sandbox.example")
        assert not first["message_id"].startswith("<")
        assert {r.data["direction"] for r in records} == {"in", "out"}
        assert all(MAILBOX not in r.data["participant_emails"] for r in records)
        # 3 listing pages, 140 reads in batches of at most 50 (one call each), one profile
        log = app.log
        assert log.count("GET", "/gmail/v1/users/me/messages") == 3
        assert log.count("POST", "/batch") == 5  # 50 + 10, 50 + 10, 20: per listing page
        assert app.provider.batch_items == 140
        # profile (the history id, then the own address), lists, gets, history
        assert app.provider.units == 2 + 3 * 5 + 140 * 5 + 2

        sent = await deliver(app, sender="Dana <dana@client.example>", to=MAILBOX, subject="Hi")
        again, _, cursor = await pull_all(connector, MESSAGES, cursor)
        assert [r.id for r in again] == [sent["id"]]
        assert again[0].data["participant_emails"] == ["dana@client.example"]
        assert again[0].data["participant_names"] == ["Dana"]
        assert (await pull_all(connector, MESSAGES, cursor))[0] == []
    finally:
        await connector.aclose()


async def test_a_stale_history_id_starts_a_new_window_with_the_same_ids(
    mail: tuple[GmailSandboxApp, str], tmp_path: Path
) -> None:
    app, url = mail
    connector = user_connector(app, url, tmp_path, create_contacts="never")
    try:
        records, _, cursor = await pull_all(connector, MESSAGES)
        await deliver(app, sender="x@client.example", to=MAILBOX, subject="while away")
        app.provider.mailbox(MAILBOX).expire_history()
        again, _, cursor = await pull_all(connector, MESSAGES, cursor)
        assert app.log.count("GET", "/gmail/v1/users/me/history", status=404) == 1
        # the resync lists everything again: same ids (the engine links them, no duplicates)
        assert {r.id for r in records} < {r.id for r in again}
        assert len(again) == len(records) + 1
        assert (await pull_all(connector, MESSAGES, cursor))[0] == []
    finally:
        await connector.aclose()


async def test_deleted_messages_are_reported(
    mail: tuple[GmailSandboxApp, str], tmp_path: Path
) -> None:
    app, url = mail
    connector = user_connector(app, url, tmp_path, create_contacts="never")
    try:
        records, _, cursor = await pull_all(connector, MESSAGES)
        app.provider.mailbox(MAILBOX).delete(records[3].id)
        again, deleted, _ = await pull_all(connector, MESSAGES, cursor)
        assert again == [] and deleted == [records[3].id]
    finally:
        await connector.aclose()


async def test_quota_and_throttled_batch_calls_are_retried_alone(
    mail: tuple[GmailSandboxApp, str], tmp_path: Path
) -> None:
    app, url = mail
    # 400 units a second: a page of 140 reads (700 units) cannot pass at once
    with app.provider.lock:
        app.provider.quota_units, app.provider.quota_window = 400, 1.0
    connector = user_connector(app, url, tmp_path, create_contacts="never", units_per_second=10_000)
    try:
        records, _, _ = await pull_all(connector, MESSAGES)
        assert len({r.id for r in records}) == 140
        assert app.provider.units == 2 + 5 + 140 * 5 + 2  # each call charged once it passed
        assert connector.context.counters.throttled == 0  # refusals were inside batches
    finally:
        await connector.aclose()


async def test_user_rate_limit_403_is_throttling_not_a_failure(
    mail: tuple[GmailSandboxApp, str], tmp_path: Path
) -> None:
    app, url = mail
    with app.provider.lock:
        app.provider.quota_units, app.provider.quota_window = 6, 1.0  # one list a second
    connector = user_connector(app, url, tmp_path, create_contacts="never", page_size=10)
    try:
        api = await connector.api("me")
        gmail = await api.service("gmail")
        for _ in range(2):
            await api.execute(gmail.users().messages().list(userId="me"), "list")
        assert app.log.count("GET", "/gmail/v1/users/me/messages", status=403) >= 1
        assert connector.context.counters.throttled >= 1
    finally:
        await connector.aclose()


async def test_metadata_scope_lists_without_a_query(
    mail: tuple[GmailSandboxApp, str], tmp_path: Path
) -> None:
    app, url = mail
    connector = user_connector(
        app, url, tmp_path, scope=METADATA, create_contacts="never", window_days=1
    )
    try:
        records, _, _ = await pull_all(connector, MESSAGES)
        # the sandbox's mail spans 3.5 hours: all inside a one-day window, read newest first
        assert len(records) == 140
        assert all("q=" not in e.query for e in app.log.entries() if "/messages" in e.path)
        full = user_connector(app, url, tmp_path, scope=METADATA, body="text")
        with pytest.raises(ConnectorConfigError, match=r"gmail\.readonly"):
            await full.api("me")
    finally:
        await connector.aclose()


async def test_bodies_are_read_in_full_and_cut(
    mail: tuple[GmailSandboxApp, str], tmp_path: Path
) -> None:
    app, url = mail
    connector = user_connector(
        app, url, tmp_path, create_contacts="never", body="text", max_body_bytes=12
    )
    try:
        records, _, _ = await pull_all(connector, MESSAGES)
        assert all(len(r.data["body"].encode()) <= 12 for r in records)
        assert records[0].data["body"].startswith("Hello")
        assert records[0].data["snippet"].startswith("Hello about") is False
    finally:
        await connector.aclose()


async def test_participants_are_the_people_the_mailbox_wrote_to(
    mail: tuple[GmailSandboxApp, str], tmp_path: Path
) -> None:
    app, url = mail
    connector = user_connector(app, url, tmp_path)
    everyone = user_connector(app, url, tmp_path, create_contacts="all")
    try:
        outgoing, _, cursor = await pull_all(connector, PARTICIPANTS)
        box = app.provider.mailbox(MAILBOX)
        wrote_to = {
            a for m in box.messages.values() if "SENT" in m.labels for a in m.addresses("To", "Cc")
        }
        assert {r.id for r in outgoing} == wrote_to
        assert all(r.data["name"] for r in outgoing)
        assert all(
            "labelIds=SENT" in e.query or "in%3Asent" in e.query
            for e in app.log.entries()
            if e.path.endswith("/messages")
        )
        await deliver(app, sender=MAILBOX, to="New Client <new@client.example>", sent=True)
        await deliver(app, sender="stranger@elsewhere.example", to=MAILBOX)
        later, _, _ = await pull_all(connector, PARTICIPANTS, cursor)
        assert [(r.id, r.data.get("name")) for r in later] == [("new@client.example", "New Client")]
        all_people, _, _ = await pull_all(everyone, PARTICIPANTS)
        assert {r.id for r in outgoing} | {"new@client.example"} < {r.id for r in all_people}
        assert "stranger@elsewhere.example" in {r.id for r in all_people}
        assert MAILBOX not in {r.id for r in all_people}
    finally:
        await connector.aclose()
        await everyone.aclose()


async def test_a_service_account_reads_several_mailboxes(
    mail: tuple[GmailSandboxApp, str], tmp_path: Path
) -> None:
    app, url = mail
    other = "sales@crmhub-sandbox.example"
    await deliver(app, sender="Ann <ann@x.example>", to=other, mailbox=other, subject="Hi")
    key = tmp_path / "key.json"
    key.write_text(json.dumps(service_account_info(app, url)))
    forget_limiters()
    settings = GmailSettings(
        api_root=url,
        service_account_file="key.json",
        mailboxes=[MAILBOX, other],
        create_contacts="never",
        units_per_second=100_000,
    )
    connector = GmailConnector(settings, ConnectorContext("gm", tmp_path))
    try:
        assert [s.name for s in connector.streams()] == ["messages"]  # contacts: one mailbox
        records, _, cursor = await pull_all(connector, MESSAGES)
        assert len(records) == 141
        assert sum(r.id.startswith(f"{other}/") for r in records) == 1
        assert set(cursor["boxes"]) == {MAILBOX, other}
        assert app.provider.oauth.token_requests >= 2  # one assertion per mailbox
    finally:
        await connector.aclose()


# -- contacts ---------------------------------------------------------------------------


async def test_expired_sync_token_lists_every_contact_again(
    mail: tuple[GmailSandboxApp, str], tmp_path: Path
) -> None:
    app, url = mail
    connector = user_connector(app, url, tmp_path)
    book = app.provider.book(MAILBOX)
    try:
        records, _, cursor = await pull_all(connector, CONTACTS)
        assert len(records) == 6
        book.expire_sync_tokens()
        again, deleted, cursor = await pull_all(connector, CONTACTS, cursor)
        assert app.log.count("GET", "/v1/people/me/connections", status=410) == 1
        assert sorted(r.id for r in again) == sorted(r.id for r in records) and deleted == []
        gone = records[0].id
        book.delete(gone)
        _, deleted, _ = await pull_all(connector, CONTACTS, cursor)
        assert deleted == [gone]
    finally:
        await connector.aclose()


async def test_a_stale_etag_is_refused_as_stale_and_fetch_reads_the_new_one(
    mail: tuple[GmailSandboxApp, str], tmp_path: Path
) -> None:
    app, url = mail
    connector = user_connector(app, url, tmp_path)
    book = app.provider.book(MAILBOX)
    try:
        records, _, _ = await pull_all(connector, CONTACTS)
        target = records[1]
        book.edit(target.id, {"names": [{"givenName": "Remote", "familyName": "Edit"}]})
        change = Change(
            key="k",
            op="update",
            data={"names": [{"givenName": "Hub", "familyName": "Edit"}]},
            idempotency_key="i",
            remote_id=target.id,
            version=target.version,
        )
        (result,) = await connector.push(CONTACTS, [change])
        assert result.stale and result.error == ErrorKind.TRANSIENT
        (fresh,) = await connector.fetch(CONTACTS, [target.id])
        assert fresh.data["names"][0]["givenName"] == "Remote" and fresh.version != target.version
        retry = Change(**{**change.__dict__, "version": fresh.version})
        (result,) = await connector.push(CONTACTS, [retry])
        assert result.ok and result.version not in (None, fresh.version)
    finally:
        await connector.aclose()


async def test_updates_keep_the_values_crmhub_does_not_map(
    mail: tuple[GmailSandboxApp, str], tmp_path: Path
) -> None:
    app, url = mail
    connector = user_connector(app, url, tmp_path)
    book = app.provider.book(MAILBOX)
    try:
        records, _, _ = await pull_all(connector, CONTACTS)
        target = records[0]
        book.edit(
            target.id,
            {"phoneNumbers": [{"value": "+14155550100"}, {"value": "+14155550199"}]},
        )
        (fresh,) = await connector.fetch(CONTACTS, [target.id])
        change = Change(
            key="k",
            op="update",
            data={"phoneNumbers": [{"value": "+14155550111"}]},
            idempotency_key="i",
            remote_id=target.id,
            version=fresh.version,
            record={**fresh.data, "phoneNumbers": [{"value": "+14155550111"}]},
        )
        (result,) = await connector.push(CONTACTS, [change])
        assert result.ok, result.message
        person = book.get(target.id)
        assert person is not None
        assert [p["value"] for p in person.fields["phoneNumbers"]] == [
            "+14155550111",
            "+14155550199",
        ]
    finally:
        await connector.aclose()


async def test_a_thousand_updates_take_five_batch_calls(
    tmp_path: Path,
) -> None:
    app = create_sandbox(seed=3, size=0, contacts=1000, validate=False)
    url, server = serve_sandbox(app)
    connector = user_connector(app, url, tmp_path)
    try:
        records, _, _ = await pull_all(connector, CONTACTS)
        before = len(app.log)
        changes = [
            Change(
                key=str(i),
                op="update",
                data={"names": [{"familyName": "Changed"}]},
                idempotency_key=str(i),
                remote_id=r.id,
                version=r.version,
                record={**r.data, "names": [{**r.data["names"][0], "familyName": "Changed"}]},
            )
            for i, r in enumerate(records)
        ]
        results = await connector.push(CONTACTS, changes)
        assert all(r.ok for r in results)
        calls = [e.path for e in app.log.entries(before)]
        assert calls == ["/v1/people:batchUpdateContacts"] * 5
        given = {
            p.fields["names"][0]["givenName"] for p in app.provider.book(MAILBOX).listing(None)
        }
        assert len(given) > 1  # first names kept: the record carried them
    finally:
        await connector.aclose()
        server.stop()
