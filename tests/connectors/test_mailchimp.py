"""Unit tests of the Mailchimp connector's parts: classification and retries (respx), batch
answers, cursors, member records and the webhook receiver."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import respx
from pydantic import SecretStr

from connectors.mailchimp import MailchimpConnector, MailchimpSettings, subscriber_hash
from connectors.mailchimp.classify import MailchimpClassifier
from connectors.mailchimp.client import data_centre
from connectors.mailchimp.members import member_version, to_record
from connectors.mailchimp.webhook import MailchimpReceiver
from hub.connector import Change, ConnectorContext
from hub.errors import ConnectorConfigError, ErrorKind, NeedsReauth, PermanentError, RateLimited
from hub.http import forget_limiters
from hub.webhooks import MalformedDelivery, RequestInfo, WebhookRejected

BASE = "https://us6.api.mailchimp.com/3.0/"
MEMBERS = f"{BASE}lists/L1/members"


class Key:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    async def secret(self) -> dict[str, Any]:
        return self.data

    def auth(self) -> httpx.Auth:
        raise NotImplementedError


def connector(tmp_path: Path, **settings: Any) -> MailchimpConnector:
    forget_limiters()
    context = ConnectorContext("mc", tmp_path, credentials=Key({"api_key": "abc123-us6"}))
    return MailchimpConnector(MailchimpSettings(list_id="L1", **settings), context)


async def no_sleep(_: float) -> None:
    return None


def member(email: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": subscriber_hash(email),
        "email_address": email,
        "status": "subscribed",
        "merge_fields": {"FNAME": "A", "ADDRESS": ""},
        "last_changed": "2024-05-01T12:30:00+00:00",
        "timestamp_opt": "2024-04-01T08:00:00+00:00",
        "tags": [{"id": 1, "name": "vip"}],
        "stats": {"avg_open_rate": 0.5},
        **extra,
    }


def problem(status: int, title: str, detail: str) -> httpx.Response:
    body = {"type": "x", "title": title, "status": status, "detail": detail}
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


# ---- the pieces ---------------------------------------------------------------------------


def test_subscriber_hash_is_md5_of_the_trimmed_lower_case_address() -> None:
    assert subscriber_hash(" Ann@Example.COM ") == subscriber_hash("ann@example.com")
    import hashlib

    assert subscriber_hash("Ann@Example.com") == hashlib.md5(b"ann@example.com").hexdigest()


def test_data_centre_comes_from_the_key_suffix() -> None:
    assert data_centre("0123abc-us6", "mc") == "us6"
    with pytest.raises(ConnectorConfigError, match="data-centre suffix"):
        data_centre("0123abc", "mc")


def test_records_flatten_tags_and_empty_addresses_and_date_consent() -> None:
    record = to_record(member("a@example.com"))
    assert record.id == subscriber_hash("a@example.com")
    assert record.data["tags"] == ["vip"]
    # an empty address is unknown (Mailchimp drops partial ones), other empty fields empty
    assert "ADDRESS" not in record.data["merge_fields"]
    assert to_record(member("a@example.com", merge_fields={"LNAME": ""})).data["merge_fields"] == {
        "LNAME": None
    }
    assert record.data["consent_updated_at"] == "2024-04-01T08:00:00+00:00"
    assert "stats" not in record.data
    assert record.modified_at is not None and record.modified_at.tzinfo is not None
    # not subscribed: no consent time (last_changed moves on any edit)
    gone = to_record(member("a@example.com", status="unsubscribed"))
    assert gone.data["consent_updated_at"] is None


def test_version_changes_with_data_within_the_same_second_but_not_with_stats() -> None:
    base = member("a@example.com")
    assert member_version(base) == member_version({**base, "stats": {"avg_open_rate": 0.9}})
    edited = {**base, "merge_fields": {"FNAME": "B", "ADDRESS": ""}}
    assert member_version(edited) != member_version(base)
    assert member_version(base).startswith("2024-05-01T12:30:00+00:00#")


@pytest.mark.parametrize(
    ("response", "kind"),
    [
        (httpx.Response(429, json={"title": "Too Many Requests"}), ErrorKind.RATE_LIMITED),
        (httpx.Response(403, text="<html>Access Denied</html>"), ErrorKind.RATE_LIMITED),
        (httpx.Response(403), ErrorKind.RATE_LIMITED),
        (problem(403, "Forbidden", "You have made too many requests"), ErrorKind.RATE_LIMITED),
        (problem(403, "User Disabled", "This account has been disabled."), ErrorKind.PERMANENT),
        (problem(401, "API Key Invalid", "Your API key may be invalid"), ErrorKind.NEEDS_REAUTH),
        (problem(400, "Invalid Resource", "bad"), ErrorKind.PERMANENT),
        (httpx.Response(503), ErrorKind.TRANSIENT),
        (httpx.Response(200, json={}), None),
    ],
)
def test_classification(response: httpx.Response, kind: ErrorKind | None) -> None:
    response.request = httpx.Request("GET", MEMBERS)
    assert MailchimpClassifier().classify(response) == kind


def test_messages_carry_the_problem_without_addresses() -> None:
    response = problem(400, "Member Exists", "ann@example.com is already a list member.")
    response.request = httpx.Request("PUT", MEMBERS)
    text = MailchimpClassifier().describe(response)
    assert "Member Exists" in text and "already a list member" in text
    assert "ann@example.com" not in text


# ---- the client under respx ------------------------------------------------------------------


@respx.mock
async def test_throttled_listing_is_retried_with_backoff(tmp_path: Path) -> None:
    route = respx.get(MEMBERS).mock(
        side_effect=[
            problem(429, "Too Many Requests", "You have exceeded the limit of 10 simultaneous"),
            httpx.Response(403, text="Access Denied"),
            httpx.Response(200, json={"members": [member("a@example.com")], "total_items": 1}),
            httpx.Response(200, json={"members": [], "total_items": 0}),
        ]
    )
    c = connector(tmp_path)
    api = await c.api()
    api.http.sleep = no_sleep
    try:
        pages = [p async for p in c.pull(c.streams()[0], None)]
    finally:
        await c.aclose()
    assert [r.data["email_address"] for p in pages for r in p.records] == ["a@example.com"]
    assert route.call_count == 4
    assert c.context.counters.throttled == 2 and c.context.counters.retries == 2
    sent = route.calls[0].request
    assert sent.headers["authorization"].startswith("Basic ")
    assert sent.url.params["count"] == "1000"


@respx.mock
async def test_throttling_that_does_not_stop_raises_rate_limited(tmp_path: Path) -> None:
    respx.get(MEMBERS).mock(return_value=problem(429, "Too Many Requests", "slow down"))
    c = connector(tmp_path)
    (await c.api()).http.sleep = no_sleep
    try:
        with pytest.raises(RateLimited, match="gave up after 5 attempts"):
            [p async for p in c.pull(c.streams()[0], None)]
    finally:
        await c.aclose()


@respx.mock
async def test_a_refused_key_needs_reauth(tmp_path: Path) -> None:
    respx.get(MEMBERS).mock(return_value=problem(401, "API Key Invalid", "invalid"))
    c = connector(tmp_path)
    try:
        with pytest.raises(NeedsReauth):
            [p async for p in c.pull(c.streams()[0], None)]
    finally:
        await c.aclose()


@respx.mock
async def test_batch_errors_become_permanent_results_and_existing_members_fall_back(
    tmp_path: Path,
) -> None:
    emails = [f"p{i}@example.com" for i in range(25)]
    answer = {
        "new_members": [member(e) for e in emails[2:]],
        "updated_members": [],
        "errors": [
            {"email_address": emails[0], "error": f"{emails[0]} looks fake or invalid",
             "error_code": "ERROR_GENERIC"},
            {"email_address": emails[1], "error": "already a list member",
             "error_code": "ERROR_CONTACT_EXISTS"},
        ],
    }  # fmt: skip
    batch = respx.post(f"{BASE}lists/L1").mock(return_value=httpx.Response(200, json=answer))
    put = respx.put(f"{MEMBERS}/{subscriber_hash(emails[1])}").mock(
        return_value=httpx.Response(200, json=member(emails[1], status="unsubscribed"))
    )
    c = connector(tmp_path)
    changes = [
        Change(
            key=e, op="create", idempotency_key=e, data={"email_address": e, "status": "subscribed"}
        )
        for e in emails
    ]
    try:
        results = {r.key: r for r in await c.push(c.streams()[0], changes)}
    finally:
        await c.aclose()
    sent = batch.calls[0].request
    import json

    body = json.loads(sent.content)
    assert body["update_existing"] is False and len(body["members"]) == 25
    assert body["members"][0]["status"] == "subscribed"
    assert results[emails[0]].error is ErrorKind.PERMANENT
    assert "looks fake" in (results[emails[0]].message or "")
    assert emails[0] not in (results[emails[0]].message or "")
    fallback = json.loads(put.calls[0].request.content)
    assert "status" not in fallback and fallback["status_if_new"] == "subscribed"
    assert results[emails[1]].ok and results[emails[1]].remote_id == subscriber_hash(emails[1])
    assert all(results[e].ok for e in emails[2:])


@respx.mock
async def test_a_failed_batch_fails_its_members_only(tmp_path: Path) -> None:
    respx.post(f"{BASE}lists/L1").mock(return_value=problem(400, "Invalid Resource", "nope"))
    c = connector(tmp_path)
    changes = [
        Change(key=str(i), op="create", idempotency_key=str(i),
               data={"email_address": f"x{i}@example.com"})
        for i in range(21)
    ] + [Change(key="bad", op="update", idempotency_key="bad", data={"status": "x"})]  # fmt: skip
    try:
        results = await c.push(c.streams()[0], changes)
    finally:
        await c.aclose()
    assert len(results) == 22
    assert {r.error for r in results[:21]} == {ErrorKind.PERMANENT}
    assert "Invalid Resource; nope" in (results[0].message or "")
    assert "needs the member's id" in (results[21].message or "")


@respx.mock
async def test_garbage_cursors_start_a_full_listing(tmp_path: Path) -> None:
    route = respx.get(MEMBERS).mock(
        return_value=httpx.Response(200, json={"members": [], "total_items": 0})
    )
    c = connector(tmp_path)
    try:
        for cursor in ({"since": "yesterday", "recent": [1]}, {"since": 5}, {}):
            pages = [p async for p in c.pull(c.streams()[0], cursor)]
            assert pages[-1].full_scan and pages[-1].cursor == {"since": None, "recent": {}}
    finally:
        await c.aclose()
    assert all("since_last_changed" not in str(call.request.url) for call in route.calls)


async def test_not_connected_needs_reauth(tmp_path: Path) -> None:
    c = MailchimpConnector(MailchimpSettings(list_id="L1"), ConnectorContext("mc", tmp_path))
    with pytest.raises(NeedsReauth, match="crmhub connect mc"):
        await c.api()


def test_settings_refuse_a_base_that_is_not_a_url() -> None:
    with pytest.raises(ValueError, match="api_base"):
        MailchimpSettings(list_id="L1", api_base="us6.api.mailchimp.com")


# ---- the webhook receiver ------------------------------------------------------------------


def receiver(tmp_path: Path, secret: str | None = "s3cret") -> MailchimpReceiver:
    settings = MailchimpSettings(list_id="L1", webhook_secret=SecretStr(secret) if secret else None)
    return MailchimpReceiver(MailchimpConnector(settings, ConnectorContext("mc", tmp_path)))


def request(method: str, secret: str | None, subpath: str = "") -> RequestInfo:
    query = {"secret": secret} if secret is not None else {}
    headers = {"content-type": "application/x-www-form-urlencoded"}
    return RequestInfo(method, "/hooks/mc", subpath, query, headers)


FORM = urlencode(
    {
        "type": "unsubscribe",
        "fired_at": "2024-05-01 12:30:00",
        "data[email]": "a@example.com",
        "data[list_id]": "L1",
        "data[id]": "abc",
    }
).encode()


async def test_validation_get_is_answered_and_not_stored(tmp_path: Path) -> None:
    delivery = await receiver(tmp_path).verify(request("GET", "s3cret"), b"")
    assert delivery.store is False and delivery.response is not None
    assert delivery.response.status == 200


async def test_deliveries_are_kept_by_body_hash_with_their_type(tmp_path: Path) -> None:
    r = receiver(tmp_path)
    first = await r.verify(request("POST", "s3cret"), FORM)
    again = await r.verify(request("POST", "s3cret"), FORM)
    assert first.kind == "unsubscribe" and first.store
    assert first.delivery_id == again.delivery_id


@pytest.mark.parametrize("given", [None, "", "s3cre", "s3cret!", "S3CRET"])
async def test_a_wrong_or_missing_secret_is_refused(tmp_path: Path, given: str | None) -> None:
    with pytest.raises(WebhookRejected) as refused:
        await receiver(tmp_path).verify(request("POST", given), FORM)
    assert refused.value.status == 401


async def test_without_a_configured_secret_nothing_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(WebhookRejected, match="no webhook secret"):
        await receiver(tmp_path, None).verify(request("POST", "anything"), FORM)


async def test_unknown_event_types_are_malformed(tmp_path: Path) -> None:
    body = urlencode({"type": "party", "data[email]": "a@example.com"}).encode()
    with pytest.raises(MalformedDelivery, match="not a Mailchimp event"):
        await receiver(tmp_path).verify(request("POST", "s3cret"), body)


async def test_subpaths_are_not_found(tmp_path: Path) -> None:
    with pytest.raises(WebhookRejected) as refused:
        await receiver(tmp_path).verify(request("POST", "s3cret", "other"), FORM)
    assert refused.value.status == 404


def test_permanent_error_type_is_the_hub_one() -> None:
    assert PermanentError.kind is ErrorKind.PERMANENT
