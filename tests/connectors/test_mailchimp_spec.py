"""Mailchimp held to its published API description and its documented webhooks: the copied
description and its defects, what the sandbox refuses as Mailchimp does, the writes the
connector sends, batching from a fresh process, and consent that stays unknown."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest

from connectors.mailchimp import MailchimpConnector, MailchimpSettings, subscriber_hash
from connectors.mailchimp.sandbox import (
    LIST_ID,
    SANDBOX_API_KEY,
    MailchimpSandbox,
    MailchimpSandboxApp,
    create_sandbox,
)
from connectors.mailchimp.sandbox_spec import MAILCHIMP_API, OPERATIONS, SPEC_DIR
from connectors.mailchimp.webhook import MailchimpReceiver
from connectors.mailchimp.webhook_format import problems
from hub.connector import Change, ConnectorContext
from hub.sandbox import serve_sandbox
from hub.sandbox.subset import subset_text
from hub.webhooks import RequestInfo

FULL = SPEC_DIR / "mailchimp_marketing_apisguru.json"
MEMBER_PATH = f"/3.0/lists/{LIST_ID}/members/*"
BATCH_PATH = f"/3.0/lists/{LIST_ID}"


class Key:
    async def secret(self) -> dict[str, Any]:
        return {"api_key": SANDBOX_API_KEY}

    def auth(self) -> httpx.Auth:
        raise NotImplementedError


@pytest.fixture
def served() -> Iterator[tuple[MailchimpSandboxApp, str]]:
    app = create_sandbox(seed=5, size=0)
    url, server = serve_sandbox(app)
    try:
        yield app, url
    finally:
        server.stop()


@pytest.fixture
def sandbox(served: tuple[MailchimpSandboxApp, str]) -> MailchimpSandbox:
    return served[0].provider


@pytest.fixture
async def connector(
    served: tuple[MailchimpSandboxApp, str], tmp_path: Path
) -> AsyncIterator[MailchimpConnector]:
    settings = MailchimpSettings(list_id=LIST_ID, api_base=f"{served[1]}/3.0/")
    c = MailchimpConnector(settings, ConnectorContext("mc", tmp_path, credentials=Key()))
    try:
        yield c
    finally:
        await c.aclose()


def raw(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, auth=("any", SANDBOX_API_KEY), timeout=10)


def update(key: str, member: str, data: dict[str, Any], record: dict[str, Any] | None) -> Change:
    return Change(key, "update", data, key, remote_id=member, record=record)


# -- the description ------------------------------------------------------------------------


def test_the_subset_is_the_published_description_cut_to_the_served_operations() -> None:
    committed = (SPEC_DIR / "marketing_subset.json").read_text(encoding="utf-8")
    assert subset_text(FULL, OPERATIONS) == committed
    source = json.loads(committed)["info"]["x-subset-of"]
    assert source["sha256"] == hashlib.sha256(FULL.read_bytes()).hexdigest()
    assert source["sha256"] in (SPEC_DIR / "README.md").read_text()


def test_the_description_has_no_errors_but_its_listed_defects() -> None:
    assert MAILCHIMP_API.spec_errors() == []
    assert replace(MAILCHIMP_API, defects=()).spec_errors() != []


def test_every_listed_defect_is_needed(served: tuple[MailchimpSandboxApp, str]) -> None:
    """Without its defects, the description refuses what Mailchimp really does."""
    bare = replace(MAILCHIMP_API, defects=())
    never_opted = {"id": "x", "email_address": "a@x.example", "timestamp_opt": ""}
    answer = json.dumps(never_opted).encode()
    member = f"/3.0/lists/{LIST_ID}/members/x"
    basic, bearer = {"authorization": "Basic eDp5"}, {"authorization": "Bearer t0ken"}
    json_type = {"content-type": "application/json"}
    for description, excused in ((bare, False), (MAILCHIMP_API, True)):
        late = description.check_response("GET", member, "", basic, b"", 200, json_type, answer)
        oauth = description.check_request("GET", member, "", bearer, b"")
        assert (late is None, oauth is None) == (excused, excused)
    # the OAuth defect excuses OAuth only: a request without credentials breaks the description
    assert MAILCHIMP_API.check_request("GET", member, "", {}, b"") is not None


# -- what the sandbox refuses, as Mailchimp does ----------------------------------------------


def test_a_member_update_without_email_address_is_refused_and_recorded(
    served: tuple[MailchimpSandboxApp, str], sandbox: MailchimpSandbox
) -> None:
    app, url = served
    member = sandbox.add("ann@example.com")
    body = {"merge_fields": {"FNAME": "Ann"}, "status_if_new": "transactional"}  # as recorded
    with raw(url) as client:
        answer = client.put(f"/3.0/lists/{LIST_ID}/members/{member}", json=body)
    assert answer.status_code == 400 and answer.json()["title"] == "Invalid Resource"
    assert "'email_address' is a required property" in answer.text
    [violation] = app.violations.take()
    assert violation.operation == "PUT /lists/{list_id}/members/{subscriber_hash}"


def test_an_incomplete_address_is_refused_and_changes_nothing(
    served: tuple[MailchimpSandboxApp, str], sandbox: MailchimpSandbox
) -> None:
    _, url = served
    member = sandbox.add("ann@example.com", FNAME="Ann")
    partial = {"addr1": "1 Main St", "city": "Paris", "zip": "75001", "country": "FR"}
    body = {
        "email_address": "ann@example.com",
        "status_if_new": "transactional",
        "merge_fields": {"FNAME": "Anne", "ADDRESS": partial},
    }
    with raw(url) as client:
        answer = client.put(f"/3.0/lists/{LIST_ID}/members/{member}", json=body)
    assert answer.status_code == 400
    assert answer.json()["errors"] == [
        {"field": "ADDRESS", "message": "Please enter a complete address"}
    ]
    assert sandbox.audience.get(member).merge_fields["FNAME"] == "Ann"  # type: ignore[union-attr]


# -- what the connector sends ------------------------------------------------------------------


async def test_an_update_names_the_member_from_its_record_without_reading_it(
    served: tuple[MailchimpSandboxApp, str],
    sandbox: MailchimpSandbox,
    connector: MailchimpConnector,
) -> None:
    app, _ = served
    member = sandbox.add("ann@example.com", FNAME="Ann")
    record = {"email_address": "ann@example.com", "merge_fields": {"FNAME": "Anne"}}
    change = update("u1", member, {"merge_fields": {"FNAME": "Anne"}}, record)
    [result] = await connector.push(connector.streams()[0], [change])
    assert result.ok, result.message
    assert sandbox.audience.get(member).merge_fields["FNAME"] == "Anne"  # type: ignore[union-attr]
    assert app.log.count("GET") == 0 and app.log.count("PUT", MEMBER_PATH) == 1

    # a record whose address is not the member's (changed since): the member is read first
    stale = {"email_address": "someone@else.example"}
    change = update("u2", member, {"merge_fields": {"LNAME": "Lee"}}, stale)
    [result] = await connector.push(connector.streams()[0], [change])
    assert result.ok, result.message
    assert sandbox.audience.get(member).email == "ann@example.com"  # type: ignore[union-attr]
    assert app.log.count("GET", MEMBER_PATH) == 1


async def test_a_new_member_gets_a_complete_address_or_none(
    sandbox: MailchimpSandbox, connector: MailchimpConnector
) -> None:
    partial = {"addr1": "1 Main St", "city": "Paris", "zip": "75001", "country": "FR"}
    whole = {**partial, "state": "IDF"}
    changes = [
        Change(key, "create", data, key, record=data)
        for key, data in (
            ("p", {"email_address": "p@example.com", "merge_fields": {"ADDRESS": partial}}),
            ("w", {"email_address": "w@example.com", "merge_fields": {"ADDRESS": whole}}),
        )
    ]
    results = await connector.push(connector.streams()[0], changes)
    assert all(r.ok for r in results), [r.message for r in results]
    assert sandbox.audience.get("p@example.com").merge_fields["ADDRESS"] == ""  # type: ignore[union-attr]
    held = sandbox.audience.get("w@example.com").merge_fields["ADDRESS"]  # type: ignore[union-attr]
    assert {k: held[k] for k in whole} == whole


async def test_a_fresh_connector_batches_updates_from_their_records(
    served: tuple[MailchimpSandboxApp, str],
    sandbox: MailchimpSandbox,
    connector: MailchimpConnector,
) -> None:
    app, _ = served
    emails = [f"p{i}@example.com" for i in range(600)]
    members = [sandbox.add(e, LNAME="Old") for e in emails]
    changes = [
        update(f"c{i}", m, {"merge_fields": {"LNAME": "New"}}, {"email_address": e})
        for i, (e, m) in enumerate(zip(emails, members, strict=True))
    ]
    results = await connector.push(connector.streams()[0], changes)
    assert all(r.ok for r in results), {r.message for r in results if not r.ok}
    assert app.log.count("POST", BATCH_PATH) == 2  # 500 a call
    assert app.log.count("PUT") == 0 and app.log.count("GET") == 0
    assert {sandbox.audience.get(e).merge_fields["LNAME"] for e in emails} == {"New"}  # type: ignore[union-attr]


# -- webhooks as documented --------------------------------------------------------------------

# Mailchimp's documented sample payloads ("Sync audience data with webhooks").
DOCUMENTED = {
    "subscribe": {
        "type": "subscribe", "fired_at": "2009-03-26 21:35:57", "data[id]": "8a25ff1d98",
        "data[list_id]": "L1", "data[email]": "api@mailchimp.com", "data[email_type]": "html",
        "data[merges][EMAIL]": "api@mailchimp.com", "data[merges][FNAME]": "Mailchimp",
        "data[merges][LNAME]": "API", "data[merges][INTERESTS]": "Group1,Group2",
        "data[ip_opt]": "10.20.10.30", "data[ip_signup]": "10.20.10.30",
    },
    "unsubscribe": {
        "type": "unsubscribe", "fired_at": "2009-03-26 21:40:57", "data[action]": "unsub",
        "data[reason]": "manual", "data[id]": "8a25ff1d98", "data[list_id]": "L1",
        "data[email]": "api+unsub@mailchimp.com", "data[email_type]": "html",
        "data[merges][EMAIL]": "api+unsub@mailchimp.com", "data[merges][FNAME]": "Mailchimp",
        "data[merges][LNAME]": "API", "data[merges][INTERESTS]": "Group1,Group2",
        "data[ip_opt]": "10.20.10.30", "data[campaign_id]": "cb398d21d2",
    },
    "profile": {
        "type": "profile", "fired_at": "2009-03-26 21:31:21", "data[id]": "8a25ff1d98",
        "data[list_id]": "L1", "data[email]": "api@mailchimp.com", "data[email_type]": "html",
        "data[merges][EMAIL]": "api@mailchimp.com", "data[merges][FNAME]": "Mailchimp",
        "data[merges][LNAME]": "API", "data[merges][INTERESTS]": "Group1,Group2",
        "data[ip_opt]": "10.20.10.30",
    },
    "upemail": {
        "type": "upemail", "fired_at": "2009-03-26 22:15:09", "data[list_id]": "L1",
        "data[new_id]": "51da8c3259", "data[new_email]": "api+new@mailchimp.com",
        "data[old_email]": "api+old@mailchimp.com",
    },
    "cleaned": {
        "type": "cleaned", "fired_at": "2009-03-26 22:01:00", "data[list_id]": "L1",
        "data[campaign_id]": "4fjk2ma9xd", "data[reason]": "hard",
        "data[email]": "api+cleaned@mailchimp.com",
    },
    "campaign": {
        "type": "campaign", "fired_at": "2009-03-26 21:31:21", "data[id]": "5aa2102003",
        "data[subject]": "Test Campaign Subject", "data[status]": "sent", "data[reason]": "",
        "data[list_id]": "L1",
    },
}  # fmt: skip
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize("kind", sorted(DOCUMENTED))
async def test_documented_payloads_are_taken_by_the_receiver(kind: str, tmp_path: Path) -> None:
    body = urlencode(DOCUMENTED[kind]).encode()
    assert problems(body, FORM) == []
    settings = MailchimpSettings(list_id="L1", webhook_secret="s3cret")  # type: ignore[arg-type]
    receiver = MailchimpReceiver(MailchimpConnector(settings, ConnectorContext("mc", tmp_path)))
    info = RequestInfo("POST", "/hooks/mc", "", {"secret": "s3cret"}, FORM)
    delivery = await receiver.verify(info, body)
    assert delivery.kind == kind and delivery.store


def test_the_format_check_names_what_differs() -> None:
    old = {**DOCUMENTED["upemail"], "data[id]": "x"}
    del old["data[new_id]"]
    found = problems(urlencode(old).encode(), FORM)
    assert found == ["upemail: data[new_id] missing", "upemail: data[id] is not a documented field"]
    unsub = {k: v for k, v in DOCUMENTED["unsubscribe"].items() if "merges" not in k}
    assert "unsubscribe: data[merges][EMAIL] missing" in problems(urlencode(unsub).encode(), FORM)


def test_every_webhook_the_sandbox_fires_follows_the_documented_format(
    sandbox: MailchimpSandbox,
) -> None:
    address = {"addr1": "1 Main St", "city": "Austin", "state": "TX", "zip": "78701"}
    sandbox.add("ann@example.com", status="transactional", FNAME="Ann", ADDRESS=address)
    forms = [
        sandbox.edit("ann@example.com", {"merge_fields": {"FNAME": "Anne"}}),
        sandbox.edit("ann@example.com", {"status": "subscribed"}),
        sandbox.unsubscribe("ann@example.com"),
        sandbox.edit("ann@example.com", {"email_address": "anne@example.com"}),
        sandbox.clean("anne@example.com"),
    ]
    kinds = [f["type"] for f in forms if f is not None]
    assert kinds == ["profile", "subscribe", "unsubscribe", "upemail", "cleaned"]
    for form in forms:
        assert form is not None
        assert problems(urlencode(form).encode(), FORM) == [], form
    moved = dict(parse_qsl(urlencode(forms[3])))
    assert moved["data[old_email]"] == "ann@example.com"
    assert moved["data[new_email]"] == "anne@example.com"
    assert forms[0]["data[merges][EMAIL]"] == "ann@example.com"  # type: ignore[index]
    assert subscriber_hash("anne@example.com").startswith(moved["data[new_id]"])
