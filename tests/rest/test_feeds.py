"""The kit's parts for change feeds and their kin, on a small declaration: a feed that goes
on from where its last page pointed (cursor or next URL, ended by an ``end`` flag), a
stream's own rate limit answered with 429s, partial PUTs, fields set from the hub's id,
sandbox defaults and write-only fields, ISO webhook timestamps and event patterns, and OAuth
offered beside another auth."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from hub.connector import Change
from hub.rest.auth import BasicAuth, OAuth2Auth, build_auth
from hub.rest.sandbox import SANDBOX_WEBHOOK_SECRET
from hub.rest.webhooks import HmacSignature, sign
from hub.testing.credentials import StaticCredentials
from hub.webhooks import WebhookRejected
from tests.rest.kit import connect, cursor_of, declaration, pull, records, served
from tests.rest.test_webhooks import receiver, request

FEEDS: dict[str, dict[str, Any]] = {
    "cursor": {"kind": "cursor", "cursor": "$.next", "param": "pos", "end": "$.done"},
    "next_url": {"kind": "next_url", "next": "$.next", "end": "$.done"},
}


@pytest.mark.parametrize("kind", sorted(FEEDS))
async def test_a_feed_goes_on_from_where_its_last_page_pointed(kind: str) -> None:
    spec = declaration(
        {
            "paginator": FEEDS[kind],
            "incremental": {"param": "updated_since", "resume": "next_page"},
            "deletes": {"kind": "status", "field": "state", "values": ["gone"]},
        },
        sandbox={"streams": {"contacts": {"cursor_param": "pos", "size_param": "n"}}},
    )
    with served(spec, size=5) as (cls, app, url):
        connector = connect(cls, app, url)
        first = await pull(connector)
        assert sorted(int(r.id) for r in records(first)) == [1, 2, 3, 4, 5]
        assert "next" in (cursor_of(first) or {})
        quiet = await pull(connector, cursor_of(first))
        assert records(quiet) == [] and app.log.entries()[-1].query.startswith("pos=")
        app.provider.edit("contacts", 2, {"first_name": "Changed"})
        app.provider.remove("contacts", 4)
        changed = await pull(connector, cursor_of(quiet))
        assert [r.id for r in records(changed)] == ["2"]
        assert [d for p in changed for d in p.deleted] == ["4"]
        assert "updated_since" not in app.log.entries()[-1].query
        await connector.aclose()


def test_a_streams_own_limit_is_answered_with_429_once_spent() -> None:
    limit = {"rate": 3, "per_seconds": 60}
    spec = declaration({"rate_limit": limit, "paginator": "none", "incremental": None})
    with served(spec, size=1) as (_, _app, url):
        auth = {"Authorization": "Bearer sandbox-api-key"}
        codes = [httpx.get(f"{url}/contacts", headers=auth) for _ in range(4)]
    assert [c.status_code for c in codes] == [200, 200, 200, 429]
    assert 1 <= int(codes[-1].headers["Retry-After"]) <= 60


async def test_partial_puts_and_fields_set_from_the_hub_id() -> None:
    spec = declaration(
        {
            "create": {"set": {"external_id": "{hub.id}", "note": "{data.last_name}"}},
            "update": {"method": "PUT", "partial": True},
            "version": None,
            "delete": {},
        },
        sandbox={"streams": {"contacts": {"defaults": {"kind": "person"}}}},
    )
    with served(spec) as (cls, app, url):
        connector = connect(cls, app, url)
        stream = connector.streams()[0]
        made = Change("c", "create", {"email": "a@example.com", "last_name": "Lee"}, "k-1")
        made.entity_id = "hub-7"
        [created] = await connector.push(stream, [made])
        rid = created.remote_id
        assert rid is not None
        change = Change("u", "update", {"first_name": "Ann"}, "k-2", remote_id=rid)
        [updated] = await connector.push(stream, [change])
        assert updated.ok, updated.message
        [record] = app.provider.records("contacts")
        assert record["external_id"] == "hub-7" and record["note"] == "Lee"
        assert (record["email"], record["first_name"], record["kind"]) == (
            "a@example.com",
            "Ann",
            "person",
        )
        await connector.aclose()


async def test_write_only_fields_are_kept_where_the_api_keeps_them() -> None:
    spec = declaration(
        {"version": None, "delete": {}, "update": {}},
        sandbox={"streams": {"contacts": {"moved": {"note.text": "first_note"}}}},
    )
    with served(spec) as (cls, app, url):
        connector = connect(cls, app, url)
        data = {"email": "b@example.com", "note": {"text": "hello"}}
        [made] = await connector.push(connector.streams()[0], [Change("c", "create", data, "k")])
        assert made.ok
        [record] = app.provider.records("contacts")
        assert record["first_note"] == "hello" and "note" not in record
        await connector.aclose()


async def test_iso_timestamps_and_event_patterns() -> None:
    signature = {
        "kind": "hmac",
        "header": "X-Sig",
        "encoding": "base64",
        "signed": "timestamp+body",
        "timestamp_header": "X-Ts",
        "timestamp_format": "iso",
    }
    hooks = receiver({"signature": signature, "events": {"contact.*": "contacts"}})
    body = json.dumps({"type": "contact.merged", "data": {"id": 3}}).encode()
    spec = HmacSignature.model_validate(signature)
    headers = sign(spec, SANDBOX_WEBHOOK_SECRET, body)
    assert headers["X-Ts"].endswith("Z")
    await hooks.verify(request(headers), body)
    assert hooks.targets(json.loads(body)) == {"contacts": ["3"]}
    assert hooks.targets({"type": "company.merged", "data": {"id": 3}}) == {}
    old = sign(spec, SANDBOX_WEBHOOK_SECRET, body, now=time.time() - 3600)
    with pytest.raises(WebhookRejected, match="window"):
        await hooks.verify(request(old), body)


async def test_oauth_offered_beside_another_auth_takes_stored_tokens() -> None:
    oauth = OAuth2Auth(kind="oauth2", authorize_url="https://a/authorize", token_url="https://a/t")
    basic = BasicAuth(kind="basic")
    tokens = StaticCredentials({"access_token": "tok"})
    made = await build_auth(basic, tokens, "c", {}, oauth)
    assert not isinstance(made, httpx.BasicAuth)
    password = StaticCredentials(username="u", password="p")
    assert isinstance(await build_auth(basic, password, "c", {}, oauth), httpx.BasicAuth)


def test_the_account_limit_is_told_in_headers_and_answered_with_429_once_spent() -> None:
    spec = declaration(
        {"paginator": "none", "incremental": None},
        client={
            "base_url": "https://people.example/api",
            "auth": "bearer",
            "rate_limit": {"rate": 3, "per_seconds": 60},
        },
        sandbox={"limit_headers": {"limit": "X-Limit", "remaining": "X-Left"}},
    )
    with served(spec, size=1) as (_, _app, url):
        auth = {"Authorization": "Bearer sandbox-api-key"}
        answers = [httpx.get(f"{url}/contacts", headers=auth) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["X-Left"] for a in answers] == ["2", "1", "0", "0"]
    assert answers[0].headers["X-Limit"] == "3" and "Retry-After" in answers[-1].headers


def test_oauth_endpoints_may_only_name_declared_settings() -> None:
    from hub.rest.load import DeclarationError, load_declaration

    oauth = {"kind": "oauth2", "authorize_url": "https://{settings.host}/a", "token_url": "t"}
    client = {"base_url": "https://people.example/api", "auth": "bearer", "oauth": oauth}
    with pytest.raises(DeclarationError, match=r"client.oauth.authorize_url.*no settings 'host'"):
        load_declaration(declaration(client=client))
    load_declaration(declaration(client=client, settings={"host": {}}))
