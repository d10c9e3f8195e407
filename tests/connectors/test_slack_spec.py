"""Slack held to its published descriptions: the copied files, the subset, the defects, and
a few unit checks of the client (classification, Retry-After, token refresh, paging) with
respx."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from connectors.slack.client import SlackApi, SlackClassifier
from connectors.slack.events_format import problems
from connectors.slack.sandbox_spec import OPERATIONS, SLACK_API, SPEC_DIR
from connectors.slack.settings import SlackSettings
from hub.connector import ConnectorContext
from hub.errors import (
    ConnectorConfigError,
    ErrorKind,
    NeedsReauth,
    PermanentError,
    RateLimited,
)
from hub.http import forget_limiters
from hub.sandbox.subset import subset_text
from hub.testing import static_credentials

FULL = SPEC_DIR / "slack_web_apisguru_oas3.json"
API = "https://slack.test/api"


def test_the_subset_is_the_published_description_cut_reproducibly() -> None:
    committed = (SPEC_DIR / "web_subset.json").read_text(encoding="utf-8")
    assert subset_text(FULL, OPERATIONS) == committed
    source = json.loads(committed)["info"]["x-subset-of"]
    assert source["sha256"] == hashlib.sha256(FULL.read_bytes()).hexdigest()
    readme = (SPEC_DIR / "README.md").read_text()
    assert source["sha256"] in readme
    events = SPEC_DIR / "slack_events_api_async_v1.json"
    assert hashlib.sha256(events.read_bytes()).hexdigest() in readme


def test_the_description_has_no_errors_and_each_defect_is_needed() -> None:
    assert SLACK_API.spec_errors() == []
    bare = replace(SLACK_API, defects=())
    history = "/api/conversations.history"
    quiet = json.dumps(
        {
            "ok": True,
            "messages": [],
            "has_more": False,
            "pin_count": 0,
            "channel_actions_ts": None,
            "channel_actions_count": 0,
        }
    ).encode()
    kind = {"content-type": "application/json"}
    args = ("GET", history, "channel=C1", {}, b"", 200, kind, quiet)
    assert bare.check_response(*args) is not None
    assert SLACK_API.check_response(*args) is None
    no_token = ("GET", "/api/users.info", "user=U1", {}, b"")
    assert bare.check_request(*no_token) is not None
    assert SLACK_API.check_request(*no_token) is None


def test_documented_events_pass_and_broken_ones_are_named() -> None:
    signed = {"X-Slack-Signature": "v0=0", "X-Slack-Request-Timestamp": "1"}
    challenge = {"token": "t", "challenge": "c", "type": "url_verification"}
    assert problems(json.dumps(challenge).encode(), signed) == []
    callback = {
        "token": "t",
        "team_id": "T1",
        "api_app_id": "A1",
        "type": "event_callback",
        "event_id": "Ev1",
        "event_time": 1,
        "authed_users": ["U1"],
        "event": {"type": "user_change", "user": {"id": "U1"}, "event_ts": "1.0"},
    }
    assert problems(json.dumps(callback).encode(), signed) == []
    del callback["event_id"]
    assert problems(json.dumps(callback).encode(), {}) == [
        "header x-slack-signature missing",
        "header x-slack-request-timestamp missing",
        ".: 'event_id' is a required property",
    ]


def answer(status: int = 200, **body: Any) -> httpx.Response:
    return httpx.Response(status, json=body)


@pytest.mark.parametrize(
    ("response", "kind"),
    [
        (answer(ok=True), None),
        (answer(ok=False, error="ratelimited"), ErrorKind.RATE_LIMITED),
        (answer(429, ok=False, error="ratelimited"), ErrorKind.RATE_LIMITED),
        (answer(ok=False, error="invalid_auth"), ErrorKind.NEEDS_REAUTH),
        (answer(ok=False, error="token_revoked"), ErrorKind.NEEDS_REAUTH),
        (answer(ok=False, error="missing_scope", needed="users:read.email"), ErrorKind.CONFIG),
        (answer(ok=False, error="not_in_channel"), ErrorKind.CONFIG),
        (answer(ok=False, error="internal_error"), ErrorKind.TRANSIENT),
        (answer(503), ErrorKind.TRANSIENT),
        (answer(ok=False, error="msg_too_long"), ErrorKind.PERMANENT),
    ],
)
def test_answers_are_classified_in_one_place(response: httpx.Response, kind: Any) -> None:
    assert SlackClassifier().classify(response) == kind


def api(**kw: Any) -> SlackApi:
    forget_limiters()
    context = ConnectorContext("team", credentials=static_credentials(access_token="xoxb-1"))
    return SlackApi(
        context,
        context.credentials.auth(),  # type: ignore[union-attr]
        api_url=API,
        workspace="T1",
        per_minute={2: 6000, 3: 6000, 4: 6000},
        **kw,
    )


@respx.mock
async def test_retry_after_is_obeyed_and_a_long_one_ends_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr("hub.http.retry.asyncio.sleep", sleep)
    route = respx.get(f"{API}/users.list").mock(
        side_effect=[
            httpx.Response(
                429, headers={"Retry-After": "7"}, json={"ok": False, "error": "ratelimited"}
            ),
            answer(ok=True, members=[], response_metadata={"next_cursor": ""}),
        ]
    )
    slack = api()
    body = await slack.call("users.list", limit=200)
    assert body["ok"] is True and route.call_count == 2
    assert 7 in waits
    assert route.calls[0].request.headers["Authorization"] == "Bearer xoxb-1"
    respx.get(f"{API}/conversations.history").mock(
        return_value=httpx.Response(429, headers={"Retry-After": "3600"})
    )
    with pytest.raises(RateLimited) as raised:
        await slack.call("conversations.history", channel="C1")
    assert raised.value.retry_after == 3600
    await slack.aclose()


@respx.mock
async def test_slack_errors_say_what_to_do() -> None:
    respx.get(f"{API}/users.list").mock(
        return_value=answer(ok=False, error="missing_scope", needed="users:read")
    )
    respx.get(f"{API}/auth.test").mock(return_value=answer(ok=False, error="invalid_auth"))
    respx.get(f"{API}/users.info").mock(return_value=answer(ok=False, error="user_not_found"))
    slack = api()
    with pytest.raises(ConnectorConfigError, match="needs the scope users:read"):
        await slack.call("users.list")
    with pytest.raises(NeedsReauth):
        await slack.call("auth.test")
    with pytest.raises(PermanentError, match="user_not_found"):
        await slack.call("users.info", user="U404")
    await slack.aclose()


@respx.mock
async def test_cursor_paging_stops_on_an_empty_or_repeated_cursor() -> None:
    route = respx.get(f"{API}/users.list").mock(
        side_effect=[
            answer(ok=True, members=[{"id": "U1"}], response_metadata={"next_cursor": "b"}),
            answer(ok=True, members=[{"id": "U2"}], response_metadata={"next_cursor": "c"}),
            answer(ok=True, members=[{"id": "U3"}], response_metadata={"next_cursor": "b"}),
        ]
    )
    slack = api()
    pages = [p async for p in slack.pages("users.list", "members", limit=1)]
    assert [p["members"][0]["id"] for p in pages] == ["U1", "U2", "U3"]
    assert [c.request.url.params.get("cursor") for c in route.calls] == [None, "b", "c"]
    assert all(c.request.url.params["limit"] == "1" for c in route.calls)
    await slack.aclose()


@respx.mock
async def test_a_listing_resumed_from_an_expired_cursor_starts_again() -> None:
    route = respx.get(f"{API}/users.list").mock(
        side_effect=[
            answer(ok=False, error="invalid_cursor"),
            answer(ok=True, members=[{"id": "U1"}], response_metadata={"next_cursor": ""}),
        ]
    )
    slack = api()
    pages = [p async for p in slack.pages("users.list", "members", cursor="old")]
    assert [p["members"][0]["id"] for p in pages] == ["U1"]
    assert [c.request.url.params.get("cursor") for c in route.calls] == ["old", None]
    await slack.aclose()


class Rotating:
    """A token manager stand-in: a token that Slack calls expired, then a fresh one."""

    def __init__(self) -> None:
        self.token = "xoxe.xoxb-old"
        self.refreshed: list[str] = []

    async def access_token(self) -> str:
        return self.token

    async def refresh(self, *, rejected: str | None = None, force: bool = False) -> str:
        self.refreshed.append(str(rejected))
        self.token = "xoxe.xoxb-new"
        return self.token


@respx.mock
async def test_an_expired_rotated_token_is_refreshed_once_and_the_call_repeated() -> None:
    class Auth(httpx.Auth):
        manager = Rotating()

    def reply(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] == "Bearer xoxe.xoxb-old":
            return answer(ok=False, error="token_expired")
        return answer(ok=True, team_id="T1")

    forget_limiters()
    context = ConnectorContext("team")
    slack = SlackApi(context, Auth(), api_url=API, workspace="T1", per_minute={4: 6000})
    respx.get(f"{API}/auth.test").mock(side_effect=reply)
    assert (await slack.call("auth.test"))["team_id"] == "T1"
    assert Auth.manager.refreshed == ["xoxe.xoxb-old"]
    await slack.aclose()


def test_settings_name_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="is not a Slack channel id"):
        SlackSettings(channels=["#customers"])
    with pytest.raises(ValueError, match="page_size"):
        SlackSettings(page_size=500)
    with pytest.raises(ValueError, match="must be unique: leads"):
        SlackSettings(
            notify=[
                {"name": "leads", "on": "new_contact", "channel": "C0123ABCD"},
                {"name": "leads", "on": "conflict", "channel": "C0123ABCD"},
            ]
        )
    assert SlackSettings(api_url="http://127.0.0.1:1/api/").api_url == "http://127.0.0.1:1/api"


def test_the_readme_example_is_valid_settings() -> None:
    import tomllib

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Slack") :]
    block = section[section.index("```toml\n") + 8 : section.index("```\n", 8)]
    table = tomllib.loads(block)["connections"]["team"]
    hub_keys = {"connector", "schedule"}
    settings = SlackSettings(**{k: v for k, v in table.items() if k not in hub_keys})
    assert settings.channels == ["C0123ABCD"]
    assert [(r.name, r.on, r.connections) for r in settings.notify] == [
        ("new-leads", "new_contact", ["contact-form"])
    ]
