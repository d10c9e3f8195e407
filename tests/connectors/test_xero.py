"""Unit tests of the Xero connector's parts: the client and its classification against a
mocked Xero (respx), records, the webhook receiver, the README's settings, keep-alive."""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr

from connectors.xero import XeroConnector, XeroSettings
from connectors.xero.classify import XeroClassifier
from connectors.xero.records import (
    company_record,
    invoice_record,
    is_organisation,
    ms_date,
    person_records,
)
from connectors.xero.webhook import XeroReceiver
from connectors.xero.webhook_format import problems, sign
from hub.connector import Change, ConnectorContext
from hub.errors import ConnectorConfigError, NeedsReauth, PermanentError, RateLimited
from hub.http import forget_limiters
from hub.testing import static_credentials
from hub.webhooks import RequestInfo, WebhookRejected

ROOT = Path(__file__).resolve().parents[2]
HOST = "https://api.xero.com"
API = f"{HOST}/api.xro/2.0"
TENANT = "11111111-2222-4333-8444-555555555555"
CONNECTIONS = [{"tenantId": TENANT, "tenantType": "ORGANISATION", "tenantName": "Org"}]
ANN = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"


def connector(tmp_path: Path, **settings: Any) -> XeroConnector:
    forget_limiters()
    context = ConnectorContext("xe", tmp_path, credentials=static_credentials(access_token="t"))
    return XeroConnector(XeroSettings(**settings), context)


async def no_sleep(_: float) -> None:
    return None


def contact(**fields: Any) -> dict[str, Any]:
    return {
        "ContactID": ANN,
        "ContactStatus": "ACTIVE",
        "Name": "Ann Lee",
        "FirstName": "Ann",
        "LastName": "Lee",
        "EmailAddress": "ann@example.com",
        "UpdatedDateUTC": "/Date(1714564800000+0000)/",
        **fields,
    }


@respx.mock
async def test_tenant_header_bearer_token_pages_and_if_modified_since(tmp_path: Path) -> None:
    respx.get(f"{HOST}/connections").respond(json=CONNECTIONS)
    listing = respx.get(f"{API}/Contacts").respond(json={"Contacts": [contact()]})
    made = connector(tmp_path)
    stream = made.stream("contacts")
    pages = [p async for p in made.pull(stream, {"since": "2024-05-01T12:00:00+00:00"})]
    await made.aclose()
    from connectors.xero.client import APP_LIMIT, TENANT_LIMIT
    from hub.http.ratelimit import _registry

    assert _registry[f"xero:{TENANT}"].limit == TENANT_LIMIT  # the organisation's limits
    assert _registry["xero:app"].limit == APP_LIMIT  # and the app's 10,000 a minute
    request = listing.calls.last.request
    assert request.headers["xero-tenant-id"] == TENANT
    assert request.headers["authorization"] == "Bearer t"
    assert request.headers["if-modified-since"] == "2024-05-01T11:59:59Z"
    assert request.url.params["page"] == "1" and request.url.params["includeArchived"] == "true"
    assert request.url.params["order"] == "UpdatedDateUTC ASC"
    [record] = pages[0].records
    assert record.id == ANN and record.modified_at == datetime(2024, 5, 1, 12, tzinfo=UTC)


@respx.mock
async def test_several_organisations_without_a_tenant_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    other = {"tenantId": "x", "tenantType": "ORGANISATION", "tenantName": "Other"}
    respx.get(f"{HOST}/connections").respond(json=[*CONNECTIONS, other])
    made = connector(tmp_path)
    with pytest.raises(ConnectorConfigError, match="tenant"):
        await made.api()
    respx.get(f"{HOST}/connections").respond(json=[])
    with pytest.raises(NeedsReauth, match="no organisation"):
        await connector(tmp_path).api()


@respx.mock
async def test_the_daily_limit_waits_until_the_next_day_and_the_minute_one_is_retried(
    tmp_path: Path,
) -> None:
    respx.get(f"{HOST}/connections").respond(json=CONNECTIONS)
    route = respx.get(f"{API}/Invoices")
    route.side_effect = [
        httpx.Response(429, headers={"Retry-After": "3", "X-Rate-Limit-Problem": "minute"}),
        httpx.Response(200, json={"Invoices": []}, headers={"X-DayLimit-Remaining": "12"}),
    ]
    made = connector(tmp_path)
    api = await made.api()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    api.http.sleep = sleep
    assert await api.listing("Invoices", page=1) == []
    assert waits == [3.0] and api.classifier.usage.day_remaining == 12
    route.side_effect = None
    route.respond(429, headers={"X-Rate-Limit-Problem": "day"})
    with pytest.raises(RateLimited) as raised:
        await api.listing("Invoices", page=1)
    assert "daily limit of 5,000 calls is spent" in str(raised.value)
    assert raised.value.retry_after is not None and raised.value.retry_after > 0
    assert waits == [3.0], "a daily limit is not slept"
    await made.aclose()


def test_classifier_describes_validation_errors_without_addresses() -> None:
    body = {
        "ErrorNumber": 10,
        "Type": "ValidationException",
        "Message": "A validation exception occurred",
        "Elements": [{"ValidationErrors": [{"Message": "ann@example.com is taken"}]}],
    }
    request = httpx.Request("POST", f"{API}/Contacts")
    response = httpx.Response(400, json=body, request=request)
    text = XeroClassifier().describe(response)
    assert "A validation exception occurred; <email> is taken" in text


@respx.mock
async def test_a_batch_sends_its_key_and_a_refused_call_is_an_exception_not_a_result(
    tmp_path: Path,
) -> None:
    respx.get(f"{HOST}/connections").respond(json=CONNECTIONS)
    post = respx.post(f"{API}/Contacts").respond(
        json={"Contacts": [{**contact(), "StatusAttributeString": "OK"}]}
    )
    made = connector(tmp_path)
    stream = made.stream("contacts")
    change = Change("c", "update", {"EmailAddress": "ann@new.example"}, "key-1", ANN)
    [result] = await made.push(stream, [change])
    assert result.ok and result.remote_id == ANN
    sent = post.calls.last.request
    key = sent.headers["idempotency-key"]
    assert key.startswith("crmhub-")
    await made.push(stream, [change])  # the same write retried: the same key
    assert post.calls.last.request.headers["idempotency-key"] == key
    edited = Change("c", "update", {"EmailAddress": "ann@newer.example"}, "key-1", ANN)
    await made.push(stream, [edited])  # other values under the same owed row: another key
    assert post.calls.last.request.headers["idempotency-key"] != key
    create = Change("n", "create", {"FirstName": "New", "LastName": "One"}, "key-2")
    await made.push(stream, [create])
    assert post.calls.last.request.headers["idempotency-key"] == "key-2"
    assert sent.url.params["summarizeErrors"] == "false"
    post.respond(403, json={"Title": "Forbidden"})
    with pytest.raises(PermanentError):
        await made.push(stream, [change])
    await made.aclose()


def test_people_organisations_and_invoices_as_records() -> None:
    person = contact(
        Phones=[
            {
                "PhoneType": "DEFAULT",
                "PhoneNumber": "555 0100",
                "PhoneAreaCode": "9",
                "PhoneCountryCode": "64",
            }
        ]
    )
    assert not is_organisation(person)
    [record] = person_records(person)
    assert record.data["Phone"] == "+64 9 555 0100" and record.version == "1714564800000"
    org = contact(
        Name="Acme Ltd",
        FirstName="",
        LastName="",
        Website="https://www.acme.example/x",
        ContactPersons=[{"FirstName": "Cy", "EmailAddress": "Cy@Acme.example"}, {}],
    )
    assert is_organisation(org) and company_record(org).data["Domain"] == "acme.example"
    ids = [r.id for r in person_records(org)]
    assert ids == [f"{ANN}#cy@acme.example", f"{ANN}#1"]
    assert person_records(org)[0].data["Company"] == "Acme Ltd"
    invoice = invoice_record(
        {
            "InvoiceID": ANN,
            "InvoiceNumber": "INV-1",
            "Status": "AUTHORISED",
            "Contact": {"ContactID": ANN, "Name": "Acme Ltd"},
            "Date": "/Date(1714521600000+0000)/",
            "Total": 115.0,
            "AmountDue": 65.5,
            "CurrencyCode": "NZD",
            "LineItems": [{"Description": "Widgets\nblue", "Quantity": 2.0, "LineAmount": 100.0}],
        }
    )
    assert invoice.data["Date"] == "2024-05-01" and invoice.data["AmountDue"] == "65.50"
    assert invoice.data["LineItems"] == "2 x Widgets (100.00)"
    assert ms_date("2024-05-01T12:00:00") == datetime(2024, 5, 1, 12, tzinfo=UTC)


def receiver(tmp_path: Path, key: str | None = "k") -> XeroReceiver:
    made = connector(tmp_path, webhook_key=SecretStr(key) if key else None)
    return XeroReceiver(made)


def hook(body: bytes, signature: str | None) -> RequestInfo:
    headers = {"x-xero-signature": signature} if signature is not None else {}
    return RequestInfo("POST", "/hooks/xe", "", {}, headers)


async def test_the_receiver_answers_200_to_a_good_signature_and_401_to_others(
    tmp_path: Path,
) -> None:
    empty = b'{"events":[],"firstEventSequence":0,"lastEventSequence":0,"entropy":"E"}'
    made = receiver(tmp_path)
    answered = await made.verify(hook(empty, sign("k", empty)), empty)
    assert not answered.store and answered.response and answered.response.status == 200
    for wrong in (sign("other", empty), None, ""):
        with pytest.raises(WebhookRejected) as refused:
            await made.verify(hook(empty, wrong), empty)
        assert refused.value.status == 401
    with pytest.raises(WebhookRejected, match="no webhook_key"):
        await receiver(tmp_path, None).verify(hook(empty, sign("k", empty)), empty)
    event = (
        b'{"events":[{"resourceUrl":"https://api.xero.com/api.xro/2.0/Contacts/'
        + ANN.encode()
        + b'","resourceId":"'
        + ANN.encode()
        + b'","eventDateUtc":"2024-05-01T12:00:00.000",'
        b'"eventType":"UPDATE","eventCategory":"CONTACT","tenantId":"'
        + TENANT.encode()
        + b'","tenantType":"ORGANISATION"}],"firstEventSequence":1,"lastEventSequence":1,'
        b'"entropy":"E"}'
    )
    stored = await made.verify(hook(event, sign("k", event)), event)
    assert stored.store and stored.kind == "xero.events"
    assert problems(event, {"x-xero-signature": "x"}) == []
    assert problems(event.replace(b'"UPDATE"', b'"DELETE"'), {"x-xero-signature": "x"})


def test_the_readme_settings_load() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Xero", 1)[1].split("\n### ", 1)[0]
    block = re.search(r"```toml\n(.*?)```", section, re.S)
    assert block is not None
    table = tomllib.loads(block.group(1))["connections"]["books"]
    settings = {k: v for k, v in table.items() if k not in ("connector", "schedule", "oauth")}
    settings["webhook_key"] = "key"  # the env: reference is read by the configuration loader
    XeroSettings(**settings)
    assert XeroConnector.oauth is not None and XeroConnector.oauth.refresh_token_max_idle_days == 60
    assert XeroConnector.oauth.rotates_refresh_tokens and XeroConnector.oauth.pkce
