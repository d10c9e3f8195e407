"""The Events API receiver in the hub's web app, over real HTTP, with deliveries from the
Slack sandbox: signed events stored once (retries too) and handled by a sync; forged,
replayed, stale and unsigned ones refused; the Request URL check answered."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from auth.sandbox import serve
from connectors.slack.sandbox import SANDBOX_SIGNING_SECRET, SlackSandboxApp
from connectors.slack.webhook import sign
from hub.inbox import InboxProcessor
from hub.web import create_app
from tests.connectors.slack_kit import CHANNEL, connect, entities, open_hub, slack_toml
from tests.connectors.slack_kit import served as served  # the fixture


@pytest.fixture
async def hooked(
    tmp_path: Path, served: tuple[SlackSandboxApp, str]
) -> AsyncIterator[tuple[SlackSandboxApp, str]]:
    """The sandbox sending its events to a hub web app served on loopback."""
    app, url = served
    db = f"sqlite+aiosqlite:///{tmp_path / 'crmhub.db'}"
    (tmp_path / "crmhub.toml").write_text(slack_toml(db, url))
    await connect(tmp_path)
    hub = await open_hub(tmp_path)
    try:
        with serve(create_app(hub)) as hub_url:
            app.provider.events.url = f"{hub_url}/hooks/team"
            yield app, hub_url
    finally:
        await hub.close()


def inbox(tmp_path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(tmp_path / "crmhub.db") as db:
        return db.execute("SELECT delivery_id, kind, status FROM inbox ORDER BY id").fetchall()


async def handle_inbox(tmp_path: Path) -> int:
    hub = await open_hub(tmp_path)
    try:
        return await InboxProcessor(hub).run_once()
    finally:
        await hub.close()


async def test_the_request_url_check_is_answered_with_its_challenge(
    hooked: tuple[SlackSandboxApp, str], tmp_path: Path
) -> None:
    app, _ = hooked
    delivery = app.provider.verify_url("abc123challenge")
    assert delivery.status == 200
    assert inbox(tmp_path) == []  # a handshake is not stored


async def test_events_are_stored_once_and_synced(
    hooked: tuple[SlackSandboxApp, str], tmp_path: Path
) -> None:
    app, _ = hooked
    slack = app.provider
    customer = sorted(slack.workspace.external)[0]
    # Slack retries a delivery it thinks was late: same event_id, X-Slack-Retry-Num 1, 2
    message = slack.workspace.post(CHANNEL, customer, "Is the invoice ready?")
    event = {**message, "channel": CHANNEL, "event_ts": message["ts"], "channel_type": "channel"}
    assert slack.deliver(slack._callback(event), retries=2) == [200, 200, 200]
    joined = slack.join("Nia", "Okafor", "nia@sandbox-company.example", notify=True)
    assert [row[1:] for row in inbox(tmp_path)] == [
        ("message", "pending"),
        ("team_join", "pending"),
    ]

    assert await handle_inbox(tmp_path) == 2

    assert [row[2] for row in inbox(tmp_path)] == ["done", "done"]
    bodies = [a["body"] for a in await entities(tmp_path, "activity")]
    assert bodies == ["Is the invoice ready?"]
    emails = {c["email"] for c in await entities(tmp_path, "contact")}
    assert joined["profile"]["email"] in emails


def post(hub_url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{hub_url}/hooks/team", content=body, headers=headers)


def signed(body: bytes, timestamp: int, secret: str = SANDBOX_SIGNING_SECRET) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": sign(secret, str(timestamp), body),
    }


async def test_forged_stale_and_unsigned_events_are_refused(
    hooked: tuple[SlackSandboxApp, str], tmp_path: Path
) -> None:
    _, hub_url = hooked
    body = json.dumps(
        {
            "type": "event_callback",
            "event_id": "Ev0FORGED01",
            "team_id": "T0SANDBOX1",
            "event": {"type": "user_change", "user": {"id": "U000000001"}},
        }
    ).encode()
    now = int(time.time())
    forged = post(hub_url, body, signed(body, now, secret="not-the-signing-secret"))
    stale = post(hub_url, body, signed(body, now - 301))  # an old delivery replayed
    future = post(hub_url, body, signed(body, now + 400))
    unsigned = post(
        hub_url, body, {"Content-Type": "application/json", "X-Slack-Request-Timestamp": str(now)}
    )
    # a captured signature does not carry over to another body
    tampered = post(hub_url, body.replace(b"U000000001", b"U000000002"), signed(body, now))
    assert [r.status_code for r in (forged, stale, future, unsigned, tampered)] == [401] * 5
    assert "window" in stale.text
    assert inbox(tmp_path) == []
    good = post(hub_url, body, signed(body, now))
    assert good.status_code == 200
    assert inbox(tmp_path) == [("slack:Ev0FORGED01", "user_change", "pending")]


async def test_a_minute_of_dropped_events_is_taken_and_synced(
    hooked: tuple[SlackSandboxApp, str], tmp_path: Path
) -> None:
    _, hub_url = hooked
    body = json.dumps(
        {
            "token": "sandboxverificationtoken",
            "type": "app_rate_limited",
            "team_id": "T0SANDBOX1",
            "minute_rate_limited": 1518467820,
            "api_app_id": "A0CRMHUB01",
        }
    ).encode()
    assert post(hub_url, body, signed(body, int(time.time()))).status_code == 200
    assert inbox(tmp_path) == [("slack:rate_limited:1518467820", "app_rate_limited", "pending")]
    assert await handle_inbox(tmp_path) == 1
    assert len(await entities(tmp_path, "contact")) == 12  # the sync read the workspace
