"""The Mailchimp connector against its sandbox over real HTTP: the contract, and the
behaviours Mailchimp is known for (archives, consent, address changes, limits, OAuth)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from auth.credentials import VaultAuth
from connectors.mailchimp import MailchimpConnector, MailchimpSettings, subscriber_hash
from connectors.mailchimp.sandbox import (
    LIST_ID,
    SANDBOX_API_KEY,
    MailchimpSandbox,
    MailchimpSandboxApp,
    create_sandbox,
)
from hub.connector import Change, ConnectorContext, Stream
from hub.errors import ErrorKind, NeedsReauth
from hub.sandbox import serve_sandbox
from hub.testing.contract import ConnectorContract, last_cursor, pull_pages, records_of


class StaticCredentials:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    async def secret(self) -> dict[str, Any]:
        return self.data

    def auth(self) -> httpx.Auth:
        raise NotImplementedError


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[MailchimpSandboxApp, str]]:
    app = create_sandbox(seed=3, size=0)
    url, server = serve_sandbox(app)
    try:
        yield app, url
    finally:
        server.stop()


@pytest.fixture
def sandbox(served: tuple[MailchimpSandboxApp, str]) -> MailchimpSandbox:
    app, _ = served
    app.reset()
    app.provider.service_time = 0.0
    return app.provider


def make_connector(
    url: str, tmp_path: Path, secret: dict[str, Any] | None = None, **settings: Any
) -> MailchimpConnector:
    config = MailchimpSettings(list_id=LIST_ID, api_base=f"{url}/3.0/", **settings)
    credentials = StaticCredentials(secret or {"api_key": SANDBOX_API_KEY})
    return MailchimpConnector(config, ConnectorContext("mc", tmp_path, credentials=credentials))


def member_sample(i: int) -> dict[str, Any]:
    return {
        "email_address": f"contract{i}@example.com",
        "status": "subscribed",
        "merge_fields": {"FNAME": f"First{i}", "LNAME": "Doe"},
    }


def subset(pulled: Any, expected: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(pulled, dict) and all(
            subset(pulled.get(k), v) for k, v in expected.items()
        )
    return bool(pulled == expected)


class _MailchimpContract(ConnectorContract):
    seed_count = 12
    threshold = 20
    stale_versions = False  # Mailchimp's member writes are unconditional

    @pytest.fixture
    async def connector(
        self, served: tuple[MailchimpSandboxApp, str], sandbox: MailchimpSandbox, tmp_path: Path
    ) -> AsyncIterator[MailchimpConnector]:
        connector = make_connector(served[1], tmp_path, batch_threshold=self.threshold)
        connector.sandbox = sandbox  # type: ignore[attr-defined]
        connector.served = served[0]  # type: ignore[attr-defined]
        yield connector
        await connector.aclose()

    async def seed(self, connector: Any, records: list[dict[str, Any]]) -> None:
        for record in records:
            connector.sandbox.add(
                record["email_address"],
                record.get("status", "subscribed"),
                **record["merge_fields"],
            )

    async def remote_records(self, connector: Any) -> list[dict[str, Any]]:
        return [m.render(LIST_ID) for m in connector.sandbox.audience.listing()]

    async def edit_remotely(self, connector: Any, identity: str, changes: dict[str, Any]) -> None:
        connector.sandbox.edit(identity, changes)

    async def delete_remotely(self, connector: Any, identity: str) -> None:
        connector.sandbox.archive(identity)

    async def throttle(self, connector: Any, times: int) -> float | None:
        async def no_wait(seconds: float) -> None:
            del seconds  # the backoff is the hub's; the test need not sit through it

        (await connector.api()).http.sleep = no_wait
        connector.served.set_faults(burst_429=times)
        return None  # Mailchimp's 429 names no wait

    def sample(self, stream: Stream, i: int) -> dict[str, Any]:
        return member_sample(i)

    def identity(self, stream: Stream, data: dict[str, Any]) -> str:
        return str(data.get("email_address") or "").strip().lower()

    def edit(self, stream: Stream, data: dict[str, Any]) -> dict[str, Any]:
        return {"merge_fields": {"FNAME": f"{data['merge_fields']['FNAME']} Changed"}}

    def matches(self, pulled: dict[str, Any], expected: dict[str, Any]) -> bool:
        return subset(pulled, expected)


class TestMailchimpContract(_MailchimpContract):
    """One PUT per member (pushes of up to 20 upserts)."""


class TestMailchimpContractBatched(_MailchimpContract):
    """Every upsert that can goes through batch subscribe."""

    threshold = 0


# ---- Mailchimp's own behaviours ---------------------------------------------------------------


@pytest.fixture
async def connector(
    served: tuple[MailchimpSandboxApp, str], sandbox: MailchimpSandbox, tmp_path: Path
) -> AsyncIterator[MailchimpConnector]:
    connector = make_connector(served[1], tmp_path, page_size=10)
    yield connector
    await connector.aclose()


def stream_of(connector: MailchimpConnector) -> Stream:
    return connector.streams()[0]


async def full_pull(connector: MailchimpConnector) -> tuple[list[Any], list[str], dict[str, Any]]:
    pages = await pull_pages(connector, stream_of(connector), None)
    cursor = last_cursor(pages, None)
    assert cursor is not None
    return records_of(pages), [d for p in pages for d in p.deleted], cursor


def change(key: str, op: str, data: dict[str, Any], remote_id: str | None = None) -> Change:
    return Change(key=key, op=op, data=data, idempotency_key=key, remote_id=remote_id)  # type: ignore[arg-type]


async def test_full_pull_pages_and_reports_archived_and_cleaned_as_deleted(
    served: tuple[MailchimpSandboxApp, str],
    connector: MailchimpConnector,
    sandbox: MailchimpSandbox,
) -> None:
    for i in range(25):
        sandbox.add(f"p{i}@example.com", FNAME=f"P{i}")
    sandbox.archive("p3@example.com")
    sandbox.clean("p4@example.com")
    sandbox.unsubscribe("p5@example.com")
    pages = await pull_pages(connector, stream_of(connector), None)
    records = records_of(pages)
    assert all(p.full_scan for p in pages)
    assert len(records) == 23 and len({r.id for r in records}) == 23
    deleted = sorted(d for p in pages for d in p.deleted)
    assert deleted == sorted(subscriber_hash(f"p{i}@example.com") for i in (3, 4))
    by_email = {r.data["email_address"]: r for r in records}
    assert by_email["p5@example.com"].data["status"] == "unsubscribed"
    assert by_email["p0@example.com"].data["merge_fields"]["FNAME"] == "P0"
    queries = [e.query for e in served[0].log.entries() if e.path.endswith("/members")]
    assert any("status=archived" in q for q in queries), "archived members are asked for"


async def test_incremental_pull_sees_edits_unsubscribes_archives_and_bounces(
    connector: MailchimpConnector, sandbox: MailchimpSandbox
) -> None:
    for i in range(15):
        sandbox.add(f"q{i}@example.com", FNAME=f"Q{i}")
    _, _, cursor = await full_pull(connector)
    sandbox.edit("q1@example.com", {"merge_fields": {"LNAME": "Edited"}})
    sandbox.unsubscribe("q2@example.com")
    sandbox.archive("q3@example.com")
    sandbox.clean("q4@example.com")
    pages = await pull_pages(connector, stream_of(connector), cursor)
    got = {r.data["email_address"]: r.data for r in records_of(pages)}
    assert set(got) == {"q1@example.com", "q2@example.com"}
    assert got["q1@example.com"]["merge_fields"]["LNAME"] == "Edited"
    assert got["q2@example.com"]["status"] == "unsubscribed"
    assert sorted(d for p in pages for d in p.deleted) == sorted(
        subscriber_hash(f"q{i}@example.com") for i in (3, 4)
    )
    assert not any(p.full_scan for p in pages)
    again = await pull_pages(connector, stream_of(connector), last_cursor(pages, cursor))
    assert records_of(again) == [] and [d for p in again for d in p.deleted] == []


async def test_incremental_pull_pages_through_many_changes_in_one_second(
    connector: MailchimpConnector, sandbox: MailchimpSandbox
) -> None:
    sandbox.add("first@example.com")
    _, _, cursor = await full_pull(connector)
    clock = sandbox.audience.clock
    sandbox.audience.clock = lambda: 4_000_000_000.0  # every change lands in the same second
    try:
        for i in range(35):
            sandbox.add(f"same{i}@example.com")
    finally:
        sandbox.audience.clock = clock
    pages = await pull_pages(connector, stream_of(connector), cursor)
    emails = [r.data["email_address"] for r in records_of(pages)]
    assert sorted(emails) == sorted(f"same{i}@example.com" for i in range(35))


async def test_an_unsubscribed_member_is_never_subscribed_again(
    served: tuple[MailchimpSandboxApp, str], sandbox: MailchimpSandbox, tmp_path: Path
) -> None:
    for threshold in (20, 0):  # one PUT each, then batch subscribe
        sandbox.audience.reset()
        connector = make_connector(served[1], tmp_path, batch_threshold=threshold)
        try:
            left = sandbox.add("left@example.com")
            sandbox.unsubscribe("left@example.com")
            quiet = sandbox.add("quiet@example.com", status="transactional")
            await full_pull(connector)  # the connector learns the addresses
            results = await connector.push(
                stream_of(connector),
                [
                    change(
                        "u",
                        "update",
                        {"status": "subscribed", "merge_fields": {"FNAME": "L"}},
                        left,
                    ),
                    change(
                        "c", "create", {"email_address": "left@example.com", "status": "subscribed"}
                    ),
                    change("t", "update", {"status": "subscribed"}, quiet),
                ],
            )
            assert all(r.ok for r in results), [r.message for r in results]
            left_member = sandbox.audience.get("left@example.com")
            assert left_member is not None
            assert left_member.status == "unsubscribed"
            assert left_member.merge_fields["FNAME"] == "L", "the rest of the change is written"
            quiet_member = sandbox.audience.get("quiet@example.com")
            assert quiet_member is not None and quiet_member.status == "subscribed"
        finally:
            await connector.aclose()


async def test_new_members_get_status_by_consent(
    connector: MailchimpConnector, sandbox: MailchimpSandbox
) -> None:
    results = await connector.push(
        stream_of(connector),
        [
            change("yes", "create", {"email_address": "yes@example.com", "status": "subscribed"}),
            change("no", "create", {"email_address": "no@example.com", "status": "unsubscribed"}),
            change("unknown", "create", {"email_address": "unknown@example.com"}),
        ],
    )
    assert all(r.ok for r in results)
    status = {e: sandbox.audience.get(f"{e}@example.com").status for e in ("yes", "no", "unknown")}  # type: ignore[union-attr]
    assert status == {"yes": "subscribed", "no": "unsubscribed", "unknown": "transactional"}


async def test_an_opt_out_is_pushed(
    connector: MailchimpConnector, sandbox: MailchimpSandbox
) -> None:
    member = sandbox.add("out@example.com")
    [result] = await connector.push(
        stream_of(connector), [change("o", "update", {"status": "unsubscribed"}, member)]
    )
    assert result.ok
    assert sandbox.audience.get(member).status == "unsubscribed"  # type: ignore[union-attr]


async def test_an_address_change_keeps_the_member_and_returns_its_new_id(
    connector: MailchimpConnector, sandbox: MailchimpSandbox
) -> None:
    old = sandbox.add("old@example.com", FNAME="Kept")
    web_id = sandbox.audience.get(old).render(LIST_ID)["web_id"]  # type: ignore[union-attr]
    [result] = await connector.push(
        stream_of(connector), [change("e", "update", {"email_address": "New@Example.com"}, old)]
    )
    assert result.ok, result.message
    assert result.remote_id == subscriber_hash("new@example.com") != old
    members = sandbox.audience.listing()
    assert [m.email for m in members] == ["New@Example.com"]
    assert members[0].render(LIST_ID)["web_id"] == web_id
    assert members[0].merge_fields["FNAME"] == "Kept"
    records, _, _ = await full_pull(connector)
    assert [r.id for r in records] == [result.remote_id]
    assert records[0].version == result.version


async def test_batch_subscribe_reports_each_refused_member(
    served: tuple[MailchimpSandboxApp, str], sandbox: MailchimpSandbox, tmp_path: Path
) -> None:
    app = served[0]
    connector = make_connector(served[1], tmp_path)
    try:
        creates = [
            change(f"k{i}", "create", {"email_address": f"b{i}@example.com", "status": "subscribed",
                                        "merge_fields": {"FNAME": f"B{i}"}})
            for i in range(30)
        ]  # fmt: skip
        creates[4].data["email_address"] = "not-an-address"
        creates[9].data["merge_fields"] = {"NOSUCH": "x"}
        before = len(app.log)
        results = {r.key: r for r in await connector.push(stream_of(connector), creates)}
        calls = [e for e in app.log.entries(before)]
        assert [(e.method, e.path) for e in calls] == [("POST", f"/3.0/lists/{LIST_ID}")]
        failed = {k: r for k, r in results.items() if not r.ok}
        assert set(failed) == {"k4", "k9"}
        assert all(r.error is ErrorKind.PERMANENT for r in failed.values())
        assert "looks fake or invalid" in (failed["k4"].message or "")
        assert "NOSUCH" in (failed["k9"].message or "")
        assert results["k0"].remote_id == subscriber_hash("b0@example.com")
        assert len(sandbox.audience.listing()) == 28
    finally:
        await connector.aclose()


async def test_more_than_500_members_take_several_batch_calls(
    served: tuple[MailchimpSandboxApp, str], sandbox: MailchimpSandbox, tmp_path: Path
) -> None:
    app = served[0]
    connector = make_connector(served[1], tmp_path)
    try:
        creates = [
            change(
                f"k{i}", "create", {"email_address": f"m{i}@example.com", "status": "subscribed"}
            )
            for i in range(1001)
        ]
        before = len(app.log)
        results = await connector.push(stream_of(connector), creates)
        assert all(r.ok for r in results)
        assert app.log.count("POST", f"/3.0/lists/{LIST_ID}") == 3
        assert len(app.log) - before == 3
    finally:
        await connector.aclose()


async def test_partial_address_is_completed_from_the_member(
    connector: MailchimpConnector, sandbox: MailchimpSandbox
) -> None:
    address = {
        "addr1": "1 Main St",
        "addr2": "",
        "city": "Paris",
        "state": "IDF",
        "zip": "75001",
        "country": "FR",
    }
    member = sandbox.add("addr@example.com", ADDRESS=address)
    [result] = await connector.push(
        stream_of(connector),
        [change("a", "update", {"merge_fields": {"ADDRESS": {"city": "Lyon"}}}, member)],
    )
    assert result.ok
    held = sandbox.audience.get(member).merge_fields["ADDRESS"]  # type: ignore[union-attr]
    assert held == {**address, "city": "Lyon"}


async def test_tags_are_set_and_removed(
    connector: MailchimpConnector, sandbox: MailchimpSandbox
) -> None:
    member = sandbox.add("tags@example.com")
    push = connector.push
    await push(stream_of(connector), [change("t1", "update", {"tags": ["vip", "lead"]}, member)])
    assert sandbox.audience.get(member).tags == ["vip", "lead"]  # type: ignore[union-attr]
    await push(stream_of(connector), [change("t2", "update", {"tags": ["lead"]}, member)])
    records, _, _ = await full_pull(connector)
    assert records[0].data["tags"] == ["lead"]


async def test_never_more_than_ten_requests_in_flight(
    served: tuple[MailchimpSandboxApp, str], sandbox: MailchimpSandbox, tmp_path: Path
) -> None:
    app, url = served
    sandbox.service_time = 0.05
    auth = httpx.BasicAuth("any", SANDBOX_API_KEY)
    async with httpx.AsyncClient(base_url=url, auth=auth) as raw:
        answers = await asyncio.gather(
            *(raw.get(f"/3.0/lists/{LIST_ID}/members") for _ in range(15))
        )
    refused = [a for a in answers if a.status_code == 429]
    assert refused, "the sandbox refuses the 11th simultaneous request"
    assert "Retry-After" not in refused[0].headers
    assert refused[0].json()["title"] == "Too Many Requests"
    sandbox.max_in_flight = 0
    before = len(app.log)
    connector = make_connector(url, tmp_path, batch_threshold=100)
    try:
        results = await connector.push(
            stream_of(connector),
            [change(f"c{i}", "create", {"email_address": f"c{i}@example.com"}) for i in range(40)],
        )
    finally:
        await connector.aclose()
    assert all(r.ok for r in results)
    assert 1 < sandbox.max_in_flight <= 10
    assert all(e.status == 200 for e in app.log.entries(before))


async def test_throttle_bursts_are_waited_out(
    served: tuple[MailchimpSandboxApp, str],
    connector: MailchimpConnector,
    sandbox: MailchimpSandbox,
) -> None:
    for i in range(5):
        sandbox.add(f"t{i}@example.com")
    served[0].set_faults(burst_429=2)
    records, _, _ = await full_pull(connector)
    assert len(records) == 5
    assert connector.context.counters.throttled == 2


async def test_a_wrong_api_key_needs_reauth(
    served: tuple[MailchimpSandboxApp, str], sandbox: MailchimpSandbox, tmp_path: Path
) -> None:
    connector = make_connector(served[1], tmp_path, {"api_key": "wrong0000-us1"})
    try:
        with pytest.raises(NeedsReauth):
            await full_pull(connector)
    finally:
        await connector.aclose()


async def test_oauth_token_and_metadata_give_the_endpoint(
    served: tuple[MailchimpSandboxApp, str], sandbox: MailchimpSandbox, tmp_path: Path
) -> None:
    _, url = served
    token = sandbox.oauth.issue_grant()["access_token"]
    async with httpx.AsyncClient() as client:
        meta = (
            await client.get(f"{url}/oauth2/metadata", headers={"Authorization": f"OAuth {token}"})
        ).json()
    assert meta["dc"] == "us1" and meta["api_endpoint"] == url
    sandbox.add("oauth@example.com")
    context = ConnectorContext(
        "mc", tmp_path, credentials=StaticCredentials({"access_token": token, "metadata": meta})
    )
    connector = MailchimpConnector(MailchimpSettings(list_id=LIST_ID), context)
    try:
        records, _, _ = await full_pull(connector)
    finally:
        await connector.aclose()
    assert [r.data["email_address"] for r in records] == ["oauth@example.com"]


# ---- end to end: a hub with a CSV file and a Mailchimp audience ------------------------------

CSV_HEADER = "id,email,first_name,last_name,phone,company,city,consent\n"
PEOPLE = (
    "1,ann@example.com,Ann,Lee,+14155550100,Acme,Paris,yes\n"
    "2,bob@example.com,Bob,Stone,,Initech,Oslo,no\n"
    "3,cy@example.com,Cy,Park,,,Lima,\n"
)
HOOK_SECRET = "hook-secret-0123456789"


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    import csv

    with path.open(newline="") as f:
        return {row["email"]: row for row in csv.DictReader(f)}


@pytest.fixture
async def hub_setup(
    served: tuple[MailchimpSandboxApp, str], sandbox: MailchimpSandbox, tmp_path: Path
) -> AsyncIterator[Any]:
    from auth.flows import store_api_key
    from hub.config import load_config
    from hub.runtime import Hub

    (tmp_path / "people.csv").write_text(CSV_HEADER + PEOPLE)
    (tmp_path / "crmhub.toml").write_text(
        '[hub]\ndatabase = "hub.db"\nphone_region = "US"\n\n'
        '[connections.people]\nconnector = "csv"\npath = "people.csv"\nkey = "id"\n\n'
        f'[connections.mc]\nconnector = "mailchimp"\nlist_id = "{LIST_ID}"\n'
        f'api_base = "{served[1]}/3.0/"\nwebhook_secret = "{HOOK_SECRET}"\n'
    )
    hub = await Hub.open(load_config(tmp_path / "crmhub.toml"), auth=VaultAuth())
    await store_api_key(hub, "mc", SANDBOX_API_KEY)
    try:
        yield hub
    finally:
        await hub.close()


async def sync(hub: Any, *names: str) -> None:
    from hub.engine import sync_connection

    for name in names:
        report = await sync_connection(hub, name)
        assert report.status == "ok", (name, report.error, report.errors)


async def test_end_to_end_with_a_csv_file(
    hub_setup: Any, sandbox: MailchimpSandbox, tmp_path: Path
) -> None:
    hub, csv_path = hub_setup, tmp_path / "people.csv"
    await sync(hub, "people", "mc")
    ann = sandbox.audience.get("ann@example.com")
    assert ann is not None and ann.status == "subscribed"
    assert ann.merge_fields["FNAME"] == "Ann" and ann.merge_fields["PHONE"] == "+14155550100"
    assert ann.merge_fields["COMPANY"] == "Acme"
    # the file's address has no state: Mailchimp takes complete addresses only, so none is
    # sent, and the empty address pulled back leaves the file's address alone
    assert ann.merge_fields["ADDRESS"] == ""
    statuses = {m.email: m.status for m in sandbox.audience.listing()}
    assert statuses == {
        "ann@example.com": "subscribed",
        "bob@example.com": "unsubscribed",
        "cy@example.com": "transactional",
    }

    # an edit in Mailchimp reaches the file
    sandbox.edit("bob@example.com", {"merge_fields": {"FNAME": "Robert"}})
    await sync(hub, "mc", "people")
    assert read_csv(csv_path)["bob@example.com"]["first_name"] == "Robert"
    assert read_csv(csv_path)["ann@example.com"]["city"] == "Paris"

    # an unsubscribe in Mailchimp sticks, whatever the file says afterwards
    sandbox.unsubscribe("ann@example.com")
    await sync(hub, "mc", "people")
    assert read_csv(csv_path)["ann@example.com"]["consent"] == "no"
    csv_path.write_text(csv_path.read_text().replace("Acme,Paris,no", "Acme,Paris,yes"))
    for _ in range(3):
        await sync(hub, "people", "mc")
    assert sandbox.audience.get("ann@example.com").status == "unsubscribed"  # type: ignore[union-attr]

    # an address change in the file keeps one member
    csv_path.write_text(csv_path.read_text().replace("cy@example.com", "cyrus@example.com"))
    await sync(hub, "people", "mc", "mc")
    emails = sorted(m.email for m in sandbox.audience.listing())
    assert emails == ["ann@example.com", "bob@example.com", "cyrus@example.com"]
    assert sandbox.audience.get(subscriber_hash("cy@example.com")) is None


async def test_webhooks_bring_changes_in(
    hub_setup: Any, sandbox: MailchimpSandbox, tmp_path: Path
) -> None:
    from urllib.parse import urlencode

    from hub.inbox import InboxProcessor
    from hub.web import create_app

    hub = hub_setup
    await sync(hub, "people", "mc")
    app = create_app(hub)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        url = f"/hooks/mc?secret={HOOK_SECRET}"
        assert (await client.get(url)).status_code == 200, "Mailchimp's validation GET"
        assert (await client.get("/hooks/mc?secret=wrong")).status_code == 401
        form = sandbox.edit("cy@example.com", {"email_address": "cy.new@example.com"})
        assert form is not None and form["type"] == "upemail"
        headers = {"content-type": "application/x-www-form-urlencoded"}
        answer = await client.post(url, content=urlencode(form), headers=headers)
        assert answer.status_code == 200
        bad = await client.post("/hooks/mc?secret=nope", content=urlencode(form), headers=headers)
        assert bad.status_code == 401
    processor = InboxProcessor(hub)
    try:
        assert await processor.run_once() == 1
    finally:
        await processor.aclose()
    [item] = await processor.inbox.list(source="mc")
    assert (item.kind, item.status) == ("upemail", "done"), item.error
    await sync(hub, "people")
    rows = read_csv(tmp_path / "people.csv")
    assert "cy.new@example.com" in rows and "cy@example.com" not in rows
    assert len(rows) == 3, "the changed address is the same contact"


def test_the_banner_says_what_lets_a_first_request_in(
    served: tuple[MailchimpSandboxApp, str],
) -> None:
    app, url = served
    assert app.credentials == [
        f"credentials: HTTP Basic, any user and the API key {SANDBOX_API_KEY} as password"
    ]
    members = f"{url}/3.0/lists/{LIST_ID}/members"
    assert httpx.get(members, auth=("anyone", SANDBOX_API_KEY)).status_code == 200
