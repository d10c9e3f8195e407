"""Zendesk's declaration and sandbox: the copied description and its defects, the
incremental exports' own limit (10 a minute, answered with 429 and Retry-After) and the
account's rate-limit headers, cursor exports that resume where Zendesk's after_url points,
comments out of ticket events, and OAuth beside API tokens."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from connectors.zendesk.api import OPERATIONS, SPEC_DIR, ZENDESK_API
from connectors.zendesk.hooks import comment, end_users
from hub.connector import ConnectorContext
from hub.rest import create_sandbox, declared
from hub.rest.connector import RestConnector
from hub.rest.reader import Reader
from hub.rest.sandbox import SANDBOX_PASSWORD, SANDBOX_USER, sandbox_settings
from hub.sandbox import serve_sandbox
from hub.sandbox.subset import subset_text
from hub.testing import static_credentials
from hub.testing.contract import pull_pages
from hub.testing.credentials import StaticCredentials
from tests.connectors.zendesk_kit import DECLARATION, fast_loaded, fast_zendesk

AUTH = ("sandbox-user/token", "sandbox-password")


def test_the_subset_is_cut_from_the_copied_description() -> None:
    made = subset_text(SPEC_DIR / "zendesk_support_oas.yaml", OPERATIONS)
    assert (SPEC_DIR / "support_subset.json").read_text(encoding="utf-8") == made
    assert ZENDESK_API.spec_errors() == []


def connect(cls: type[RestConnector], url: str, credentials: StaticCredentials) -> RestConnector:
    settings = cls.Settings.model_validate({**sandbox_settings(cls.declaration), "base_url": url})
    return cls(settings, ConnectorContext("zd", Path("."), credentials=credentials))


def test_incremental_exports_allow_ten_a_minute_and_every_answer_tells_the_limit() -> None:
    app = create_sandbox(DECLARATION, size=2)
    url, server = serve_sandbox(app)
    try:
        paths = ["users/cursor", "organizations", "tickets/cursor"] * 4
        answers = [
            httpx.get(f"{url}/api/v2/incremental/{p}", params={"start_time": 0}, auth=AUTH)
            for p in paths[:11]
        ]
    finally:
        server.stop()
    assert [a.status_code for a in answers] == [200] * 10 + [429]  # shared by every export
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
    assert answers[0].headers["X-Rate-Limit"] == "200"
    assert [int(a.headers["X-Rate-Limit-Remaining"]) for a in answers[:3]] == [199, 198, 197]


async def test_the_connector_paces_every_export_under_one_limit() -> None:
    basic = static_credentials(username=SANDBOX_USER, password=SANDBOX_PASSWORD)
    made = connect(declared(DECLARATION), "http://127.0.0.1:9", basic)
    http = await made.http()
    users, tickets = (Reader(http, made.compiled(made.stream(n))) for n in ("users", "tickets"))
    assert users.limiter is not None and users.limiter is tickets.limiter
    assert (users.limiter.limit.rate, users.limiter.limit.per_seconds) == (10, 60)
    await made.aclose()


async def test_a_cursor_export_goes_on_from_where_its_last_page_pointed() -> None:
    cls = fast_zendesk()
    app = create_sandbox(fast_loaded(), size=3)
    url, server = serve_sandbox(app)
    made = connect(cls, url, static_credentials(username=SANDBOX_USER, password=SANDBOX_PASSWORD))
    try:
        stream = made.stream("users")
        first = await pull_pages(made, stream, None)
        assert sorted(r.id for p in first for r in p.records) == ["1", "2", "3"]
        cursor = first[-1].cursor
        assert cursor is not None and "cursor=" in cursor["next"]["url"]
        assert not any(p.records for p in await pull_pages(made, stream, cursor))
        app.provider.edit("users", 2, {"name": "Changed Name"})
        app.provider.remove("users", 3)  # Zendesk deactivates: active = false
        later = await pull_pages(made, stream, cursor)
        assert [r.id for p in later for r in p.records] == ["2"]
        assert [d for p in later for d in p.deleted] == ["3"]
        last = app.log.entries()[-1]
        assert last.query.startswith("cursor=") and "start_time" not in last.query
    finally:
        await made.aclose()
        server.stop()


async def test_oauth_tokens_are_sent_as_bearer_tokens_beside_api_tokens() -> None:
    cls = fast_zendesk()
    assert cls.auth_kind == "basic" and cls.oauth is not None  # oauth.kind picks OAuth
    app = create_sandbox(fast_loaded(), size=2)
    url, server = serve_sandbox(app)
    assert app.oauth is not None
    made = connect(cls, url, StaticCredentials(app.oauth.issue_grant()))
    try:
        pages = await pull_pages(made, made.stream("organizations"), None)
        assert len([r for p in pages for r in p.records]) == 2
    finally:
        await made.aclose()
        server.stop()


def test_hooks_keep_end_users_and_take_comments_out_of_ticket_events() -> None:
    assert end_users({"id": 1, "role": "end-user"}) == {"id": 1, "role": "end-user"}
    assert end_users({"id": 2, "role": "agent"}) is None
    event = {
        "id": 9,
        "ticket_id": 5,
        "created_at": "2024-05-01T12:00:00Z",
        "child_events": [
            {"id": 70, "event_type": "Change", "field_name": "status"},
            {"id": 71, "event_type": "Comment", "author_id": 3, "body": "Hi", "public": True},
        ],
    }
    made = comment(event)
    assert made is not None
    assert (made["id"], made["ticket_id"], made["author_id"], made["body"]) == (71, 5, 3, "Hi")
    assert made["created_at"] == "2024-05-01T12:00:00Z"
    assert comment({"id": 10, "ticket_id": 5, "child_events": []}) is None


def test_oauth_endpoints_are_the_accounts_own() -> None:
    from auth.providers import resolve_oauth
    from hub.errors import ConfigError

    cls = declared(DECLARATION)
    table = {"kind": "oauth2", "client_id": "crmhub"}
    resolved = resolve_oauth(cls, {"subdomain": "acme", "oauth": table}, connection="support")
    assert resolved.settings.authorize_url == "https://acme.zendesk.com/oauth/authorizations/new"
    assert resolved.settings.token_url == "https://acme.zendesk.com/oauth/tokens"
    assert resolved.settings.rotates_refresh_tokens
    with pytest.raises(ConfigError, match="needs the setting 'subdomain'"):
        resolve_oauth(cls, {"oauth": table}, connection="support")
