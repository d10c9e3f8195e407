"""The Xero connector against its sandbox over HTTP: the contract for contacts and
companies, tenants, paging, If-Modified-Since, batches of 50 with per-item validation
errors, idempotency keys, the three limits and their headers, credit notes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.xero import XeroConnector
from connectors.xero.client import choose_tenant
from connectors.xero.records import GONE_CONTACT
from connectors.xero.sandbox import TENANTS, XeroSandbox, XeroSandboxApp, create_sandbox
from hub.connector import Change, Stream
from hub.errors import ConnectorConfigError, RateLimited
from hub.sandbox import serve_sandbox
from hub.testing.contract import ConnectorContract
from hub.testing.contract_base import last_cursor, pull_pages, records_of
from tests.connectors.xero_kit import connector as make_connector


@pytest.fixture
def served() -> Iterator[tuple[XeroSandboxApp, str]]:
    app = create_sandbox(seed=3, size=0, tenants=2)
    url, server = serve_sandbox(app)
    try:
        yield app, url
    finally:
        server.stop()


@pytest.fixture
def sandbox(served: tuple[XeroSandboxApp, str]) -> XeroSandbox:
    return served[0].provider


async def no_wait(seconds: float) -> None:
    del seconds  # the backoff is the hub's; the test need not sit through it


class _XeroContract(ConnectorContract):
    seed_count = 12
    stale_versions = False  # Xero's writes are unconditional

    @pytest.fixture
    async def connector(
        self, served: tuple[XeroSandboxApp, str], tmp_path: Path
    ) -> AsyncIterator[XeroConnector]:
        made = make_connector(served[0], served[1], tmp_path, tenant=TENANTS[0][1])
        made.served = served[0]  # type: ignore[attr-defined]
        yield made
        await made.aclose()

    def org(self, connector: Any) -> Any:
        return connector.served.provider.org(0)

    async def remote_records(self, connector: Any) -> list[dict[str, Any]]:
        contacts = self.org(connector).contacts.values()
        return [c for c in contacts if c["ContactStatus"] not in GONE_CONTACT]

    async def throttle(self, connector: Any, times: int) -> float | None:
        (await connector.api()).http.sleep = no_wait
        connector.served.set_faults(burst_429=times)
        return 1.0

    def _find(self, connector: Any, identity: str) -> dict[str, Any]:
        for contact in self.org(connector).contacts.values():
            if str(contact.get("EmailAddress")).lower() == identity:
                return dict(contact)
        raise KeyError(identity)

    async def delete_remotely(self, connector: Any, identity: str) -> None:
        contact = self._find(connector, identity)
        connector.served.provider.archive(0, contact["ContactID"])

    def matches(self, pulled: dict[str, Any], expected: dict[str, Any]) -> bool:
        return all(pulled.get(k) == v for k, v in expected.items() if k != "Name")

    def invalid_create(self, stream: Stream) -> Change | None:
        data = {**self.sample(stream, 99), "EmailAddress": "not an address"}
        return Change("invalid", "create", data, "contract-invalid")


class TestXeroContactsContract(_XeroContract):
    stream_name = "contacts"

    async def seed(self, connector: Any, records: list[dict[str, Any]]) -> None:
        for record in records:
            self.org(connector).add_contact(**record)

    def sample(self, stream: Stream, i: int) -> dict[str, Any]:
        first = f"First{i}"
        return {
            "Name": f"{first} Doe",
            "FirstName": first,
            "LastName": "Doe",
            "EmailAddress": f"contract{i}@example.com",
        }

    def identity(self, stream: Stream, data: dict[str, Any]) -> str:
        return str(data.get("EmailAddress") or "").strip().lower()

    def edit(self, stream: Stream, data: dict[str, Any]) -> dict[str, Any]:
        return {"FirstName": f"{data['FirstName']} Changed"}

    async def edit_remotely(self, connector: Any, identity: str, changes: dict[str, Any]) -> None:
        contact = self._find(connector, identity)
        merged = {**contact, **changes}
        name = f"{merged['FirstName']} {merged['LastName']}"
        connector.served.provider.edit(0, contact["ContactID"], {**changes, "Name": name})


class TestXeroCompaniesContract(_XeroContract):
    stream_name = "companies"

    async def seed(self, connector: Any, records: list[dict[str, Any]]) -> None:
        for record in records:
            self.org(connector).add_contact(**record)

    def sample(self, stream: Stream, i: int) -> dict[str, Any]:
        return {"Name": f"Contract Company {i}", "EmailAddress": f"accounts{i}@company.example"}

    def identity(self, stream: Stream, data: dict[str, Any]) -> str:
        return str(data.get("EmailAddress") or "").strip().lower()

    def edit(self, stream: Stream, data: dict[str, Any]) -> dict[str, Any]:
        return {"Name": f"{data['Name']} Changed"}

    async def edit_remotely(self, connector: Any, identity: str, changes: dict[str, Any]) -> None:
        contact = self._find(connector, identity)
        connector.served.provider.edit(0, contact["ContactID"], changes)


# ---- Xero's own behaviours ----------------------------------------------------------------


@pytest.fixture
async def connector(
    served: tuple[XeroSandboxApp, str], tmp_path: Path
) -> AsyncIterator[XeroConnector]:
    made = make_connector(served[0], served[1], tmp_path, tenant=TENANTS[0][0])
    yield made
    await made.aclose()


def test_the_tenant_is_named_or_the_only_one() -> None:
    tenants = [{"tenantId": t, "tenantName": n, "tenantType": "ORGANISATION"} for t, n in TENANTS]
    assert choose_tenant(tenants, "demo company (uk)", "xe")["tenantId"] == TENANTS[1][0]
    assert choose_tenant(tenants[:1], None, "xe")["tenantId"] == TENANTS[0][0]
    with pytest.raises(ConnectorConfigError, match=r"reaches 3 organisations.*Demo Company"):
        choose_tenant(tenants, None, "xe")
    with pytest.raises(ConnectorConfigError, match="does not reach the organisation 'Nope'"):
        choose_tenant(tenants, "Nope", "xe")


async def test_every_call_names_the_chosen_tenant(
    served: tuple[XeroSandboxApp, str], sandbox: XeroSandbox, tmp_path: Path
) -> None:
    sandbox.org(1).add_contact(Name="Only In UK", FirstName="Only", LastName="In UK")
    made = make_connector(served[0], served[1], tmp_path, tenant="Demo Company (UK)")
    try:
        pages = await pull_pages(made, made.stream("contacts"), None)
    finally:
        await made.aclose()
    assert [r.data["Name"] for r in records_of(pages)] == ["Only In UK"]
    assert sandbox.requests and all(r["tenant"] == TENANTS[1][0] for r in sandbox.requests)


async def test_pages_of_100_then_if_modified_since_with_archived_as_deletions(
    served: tuple[XeroSandboxApp, str], sandbox: XeroSandbox, connector: XeroConnector
) -> None:
    org = sandbox.org(0)
    made = iter(range(int(time.time()) - 7200, int(time.time()), 10))
    org.clock = lambda: float(next(made))  # made over the last two hours, 10 s apart
    org.seed_records(230, 0)  # every fourth an organisation with two contact persons
    org.clock = time.time
    stream = connector.stream("contacts")
    pages = await pull_pages(connector, stream, None)
    assert len(pages) == 3  # 100 + 100 + 30 contacts
    people = records_of(pages)
    assert len(people) == 230 - 57 + 2 * 57
    cursor = last_cursor(pages, None)
    # companies read the same listing: no second call
    before = served[0].log.count("GET", "/api.xro/2.0/Contacts")
    companies = records_of(await pull_pages(connector, connector.stream("companies"), None))
    assert len(companies) == 57
    assert served[0].log.count("GET", "/api.xro/2.0/Contacts") == before
    await connector.aclose()

    person = next(c for c in org.contacts.values() if c["FirstName"])
    sandbox.archive(0, person["ContactID"])
    organisation = next(c for c in org.contacts.values() if c["ContactPersons"])
    sandbox.edit(0, organisation["ContactID"], {"Name": "Renamed Ltd"})
    sandbox.requests.clear()
    pages = await pull_pages(connector, stream, cursor)
    assert [d for p in pages for d in p.deleted] == [person["ContactID"]]
    assert {r.data["Company"] for r in records_of(pages)} == {"Renamed Ltd"}
    [asked] = sandbox.requests
    assert asked["if_modified_since"] and "page=1" in str(asked["query"])
    again = await pull_pages(connector, stream, last_cursor(pages, cursor))
    assert records_of(again) == [] and [d for p in again for d in p.deleted] == []


async def test_a_batch_writes_50_and_fails_only_the_bad_item_with_its_reason(
    served: tuple[XeroSandboxApp, str], sandbox: XeroSandbox, connector: XeroConnector
) -> None:
    stream = connector.stream("contacts")
    changes = [
        Change(
            f"c{i}",
            "create",
            {"FirstName": f"P{i}", "LastName": "Batch", "EmailAddress": f"p{i}@example.com"},
            f"key-{i}",
        )
        for i in range(120)
    ]
    changes[7] = Change(
        "bad",
        "create",
        {"FirstName": "Bad", "LastName": "Mail", "EmailAddress": "no-at-sign"},
        "key-bad",
    )
    results = await connector.push(stream, changes)
    assert sandbox.batch_sizes == [50, 50, 20]
    by_key = {r.key: r for r in results}
    assert by_key["bad"].error is not None and "Email address must be valid" in str(
        by_key["bad"].message
    )
    assert sum(1 for r in results if r.ok) == 119
    posts = [r for r in sandbox.requests if r["method"] == "POST"]
    assert len(posts) == 3 and all(r["idempotency_key"] for r in posts)
    assert all("summarizeErrors=false" in str(r["query"]) for r in posts)


async def test_a_retried_batch_is_answered_once_and_a_changed_one_adopts_by_name(
    sandbox: XeroSandbox, connector: XeroConnector
) -> None:
    stream = connector.stream("contacts")
    ann = Change(
        "a",
        "create",
        {"FirstName": "Ann", "LastName": "Lee", "EmailAddress": "ann@example.com"},
        "key-ann",
    )
    bob = Change(
        "b",
        "create",
        {"FirstName": "Bob", "LastName": "Ray", "EmailAddress": "bob@example.com"},
        "key-bob",
    )
    first = await connector.push(stream, [ann, bob])
    again = await connector.push(stream, [ann, bob])  # the same key: Xero's first answer
    assert [r.remote_id for r in again] == [r.remote_id for r in first]
    alone = await connector.push(stream, [ann])  # another batch: the name is taken
    assert alone[0].ok and alone[0].remote_id == first[0].remote_id
    assert len(sandbox.org(0).contacts) == 2


async def test_an_owed_update_changed_after_its_answer_was_lost_is_written_again(
    sandbox: XeroSandbox, connector: XeroConnector
) -> None:
    # The hub keeps one owed row per contact and computes its values when it pushes, so a
    # push whose answer was lost is retried under the same keys with the values of now.
    org = sandbox.org(0)
    ann = org.add_contact(Name="Ann Lee", FirstName="Ann", LastName="Lee")["ContactID"]
    bob = org.add_contact(Name="Bob Ray", FirstName="Bob", LastName="Ray")["ContactID"]
    stream = connector.stream("contacts")

    def owed(last: str) -> list[Change]:
        return [
            Change(
                "a", "update", {"LastName": f"{last}A"}, "row-a", ann, record={"FirstName": "Ann"}
            ),
            Change(
                "b", "update", {"LastName": f"{last}B"}, "row-b", bob, record={"FirstName": "Bob"}
            ),
        ]

    for batch in (owed("Edited"), owed("Edited")[:1]):
        await connector.push(stream, batch)  # written; say the answers were lost
        written = len(sandbox.batch_sizes)
        assert all(r.ok for r in await connector.push(stream, batch))
        assert len(sandbox.batch_sizes) == written  # the same writes: the first answer again
        final = [
            Change(
                c.key,
                c.op,
                {"LastName": "Final" + c.data["LastName"][-1]},
                c.idempotency_key,
                c.remote_id,
                record=c.record,
            )
            for c in batch
        ]
        assert all(r.ok for r in await connector.push(stream, final))
        assert [org.contacts[c.remote_id]["Name"] for c in final] == [
            f"{n} Final{n[0]}" for n in ("Ann", "Bob")[: len(final)]
        ]
        assert len(sandbox.batch_sizes) == written + 1
        for c in final:  # as before, for the next round (a batch of one)
            org.edit_contact(str(c.remote_id), {"LastName": "Lee"})
    assert len(org.contacts) == 2


async def test_contact_persons_are_changed_through_their_organisation(
    sandbox: XeroSandbox, connector: XeroConnector
) -> None:
    org = sandbox.org(0)
    company = org.add_contact(
        Name="Acme Ltd",
        ContactPersons=[
            {"FirstName": "Cy", "LastName": "One", "EmailAddress": "cy@acme.example"},
            {"FirstName": "Di", "LastName": "Two", "EmailAddress": "di@acme.example"},
        ],
    )
    cid = company["ContactID"]
    stream = connector.stream("contacts")
    results = await connector.push(
        stream,
        [
            Change("u", "update", {"LastName": "Renamed"}, "k-u", f"{cid}#cy@acme.example"),
            Change("d", "delete", {}, "k-d", f"{cid}#di@acme.example"),
        ],
    )
    assert all(r.ok for r in results), [r.message for r in results]
    assert org.contacts[cid]["ContactPersons"] == [
        {"FirstName": "Cy", "LastName": "Renamed", "EmailAddress": "cy@acme.example"}
    ]


async def test_the_three_limits_answer_with_their_problem_and_headers(
    served: tuple[XeroSandboxApp, str], sandbox: XeroSandbox, connector: XeroConnector
) -> None:
    api = await connector.api()
    api.http.sleep = no_wait
    await api.listing("Contacts", page=1)
    usage = api.classifier.usage
    assert usage.day_remaining == 4999 and usage.minute_remaining == 59
    assert usage.app_minute_remaining == 9999

    sandbox.limits.minute = 1  # the minute is spent: Retry-After, then RateLimited
    with pytest.raises(RateLimited) as minute:
        await api.listing("Contacts", page=1)
    assert "60 calls a minute" in str(minute.value) and minute.value.retry_after
    sandbox.limits.minute, sandbox.limits.app_minute = 60, 1
    with pytest.raises(RateLimited, match="app's limit of 10,000"):
        await api.listing("Contacts", page=1)
    sandbox.limits.app_minute, sandbox.limits.day = 10_000, 1
    with pytest.raises(RateLimited) as day:
        await api.listing("Contacts", page=1)
    assert "daily limit" in str(day.value) and "throttled until" in str(day.value)
    assert day.value.retry_after and day.value.retry_after > 120
    assert usage.problem == "day" and usage.day_remaining == 0
    assert "daily limit spent, waiting until" in usage.summary()
    assert sandbox.limits.refused == {"minute": 5, "appminute": 5, "day": 1}


def test_a_sixth_call_in_flight_is_refused_and_the_client_holds_five() -> None:
    from connectors.xero.client import TENANT_LIMIT
    from connectors.xero.sandbox_limits import Limits

    limits = Limits()
    assert all(limits.enter("t") is None for _ in range(5))
    refusal = limits.enter("t")
    assert refusal is not None and refusal.problem == "concurrent"
    limits.leave("t")
    assert limits.enter("t") is None
    assert limits.headers("t")["X-MinLimit-Remaining"] == "54"
    assert TENANT_LIMIT.concurrency == 5 and TENANT_LIMIT.rate == 60
    assert TENANT_LIMIT.daily == 5000


async def test_credit_notes_and_payments_lower_the_amount_due(
    sandbox: XeroSandbox, connector: XeroConnector
) -> None:
    org = sandbox.org(0)
    person = org.add_contact(Name="Eve Ng", FirstName="Eve", LastName="Ng")
    invoice = org.add_invoice(person["ContactID"], amount=200.0)
    stream = connector.stream("invoices")
    pages = await pull_pages(connector, stream, None)
    [record] = records_of(pages)
    assert record.data["AmountDue"] == "230.00" and record.data["ContactName"] == "Eve Ng"
    sandbox.pay(0, invoice["InvoiceID"], 30.0)
    note = sandbox.credit(0, invoice["InvoiceID"], 50.0)
    [fetched] = await connector.fetch(stream, [invoice["InvoiceID"]])
    assert fetched.data["AmountDue"] == "150.00"
    assert fetched.data["AmountPaid"] == "30.00" and fetched.data["AmountCredited"] == "50.00"
    hinted = await connector._hinted(
        await connector.api(), "Invoices", {"CreditNotes": [note["events"][0]["resourceId"]]}
    )
    assert hinted == [invoice["InvoiceID"]]


async def test_new_invoices_are_pushed_as_drafts_only_when_asked(
    served: tuple[XeroSandboxApp, str], sandbox: XeroSandbox, tmp_path: Path
) -> None:
    org = sandbox.org(0)
    person = org.add_contact(Name="Flo Ray", FirstName="Flo", LastName="Ray")
    plain = make_connector(served[0], served[1], tmp_path, tenant=TENANTS[0][0])
    assert not plain.stream("invoices").can_create
    made = make_connector(served[0], served[1], tmp_path, tenant=TENANTS[0][0], push_invoices=True)
    try:
        stream = made.stream("invoices")
        assert stream.can_create and not stream.can_update
        data = {
            "ContactID": person["ContactID"],
            "InvoiceNumber": "HUB-1",
            "Total": "80.00",
            "LineItems": "Onboarding",
            "Date": "2026-05-01",
            "CurrencyCode": "NZD",
        }
        results = await made.push(
            stream,
            [
                Change("new", "create", data, "key-inv"),
                Change("orphan", "create", {"InvoiceNumber": "HUB-2"}, "key-orphan"),
            ],
        )
    finally:
        await made.aclose()
        await plain.aclose()
    assert results[0].ok and results[1].error is not None
    assert "names no Xero contact" in str(results[1].message)
    invoice = org.invoices[str(results[0].remote_id)]
    assert invoice["Status"] == "DRAFT" and invoice["InvoiceNumber"] == "HUB-1"
    assert invoice["SubTotal"] == 80.0 and invoice["LineItems"][0]["Description"] == "Onboarding"
