"""The webhook route and the verification helpers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from sqlalchemy.exc import OperationalError
from starlette.types import Message, Receive, Scope, Send

from hub.connector import ConnectorContext
from hub.inbox import Inbox
from hub.runtime import Hub
from hub.web import create_app
from hub.webhooks import (
    Delivery,
    GenericReceiver,
    RequestInfo,
    WebhookReceiver,
    WebhookRejected,
    WebhookSettings,
    check_timestamp,
    hmac_sha256,
    parse_form,
    verify_signature,
    verify_url_secret,
)
from tests.web import SECRET, HookConnector, HookSettings, SlackStyleReceiver, open_hub, signed


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    h = await open_hub(tmp_path)
    SlackStyleReceiver.handled.clear()
    try:
        yield h
    finally:
        await h.close()


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub")


def rows(tmp_path: Path) -> list[tuple[Any, ...]]:
    """The inbox as a separate plain sqlite3 connection sees it (committed rows only)."""
    with sqlite3.connect(tmp_path / "crmhub.db") as db:
        return db.execute(
            "SELECT source, delivery_id, kind, status, error FROM inbox ORDER BY id"
        ).fetchall()


# ---- the route -----------------------------------------------------------------------------


async def test_valid_delivery_is_committed_before_the_answer(hub: Hub, tmp_path: Path) -> None:
    app = create_app(hub)
    seen_at_answer: list[list[tuple[Any, ...]]] = []

    async def watching(scope: Scope, receive: Receive, send: Send) -> None:
        async def spy(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen_at_answer.append(rows(tmp_path))
            await send(message)

        await app(scope, receive, spy)

    body, headers = signed({"type": "event_callback", "event_id": "Ev1"})
    async with client_for(watching) as client:
        answer = await client.post("/hooks/shop", content=body, headers=headers)
    assert answer.status_code == 200
    assert seen_at_answer == [[("shop", "Ev1", "event_callback", "pending", None)]]
    item = (await Inbox(hub.store).list())[0]
    assert item.body == body
    assert item.headers["x-slack-signature"] == headers["x-slack-signature"]
    assert SlackStyleReceiver.handled == []  # nothing processed inline


CREDENTIALS = {
    "authorization": "Bearer leaked-bearer",
    "x-api-key": "leaked-api-key",
    "x-auth-token": "leaked-auth-token",
    "cookie": "session=leaked-cookie",
    "x-forwarded-for": "203.0.113.9",
}


async def test_only_the_receivers_headers_are_stored(hub: Hub) -> None:
    body, headers = signed({"type": "event_callback", "event_id": "EvH"})
    malformed, _ = signed(b'{"type": ')
    sent = {**headers, **CREDENTIALS, "user-agent": "Slackbot 1.0"}
    async with client_for(create_app(hub)) as client:
        assert (await client.post("/hooks/shop", content=body, headers=sent)).status_code == 200
        bad = await client.post(
            "/hooks/shop", content=malformed, headers={**sent, **signed(malformed)[1]}
        )
        assert bad.status_code == 400
    stored = {item.delivery_id: item.headers for item in await Inbox(hub.store).list()}
    assert set(stored["EvH"]) == {
        "content-type",
        "user-agent",
        "x-slack-signature",
        "x-slack-request-timestamp",
    }
    [kept] = [h for d, h in stored.items() if d != "EvH"]
    assert set(kept) == set(stored["EvH"])


async def test_duplicate_delivery_is_acknowledged_and_stored_once(hub: Hub, tmp_path: Path) -> None:
    body, headers = signed({"type": "event_callback", "event_id": "Ev2"})
    async with client_for(create_app(hub)) as client:
        first = await client.post("/hooks/shop", content=body, headers=headers)
        again = await client.post("/hooks/shop", content=body, headers=headers)
    assert (first.status_code, again.status_code) == (200, 200)
    assert [r[1] for r in rows(tmp_path)] == ["Ev2"]


async def test_bad_signature_is_401_and_not_stored(hub: Hub, tmp_path: Path) -> None:
    body, headers = signed({"type": "event_callback", "event_id": "Ev3"}, secret="wrong-secret")
    async with client_for(create_app(hub)) as client:
        answer = await client.post("/hooks/shop", content=body, headers=headers)
        missing = await client.post(
            "/hooks/shop",
            content=body,
            headers={k: v for k, v in headers.items() if k != "x-slack-signature"},
        )
    assert answer.status_code == 401
    assert answer.json() == {"error": "signature does not match"}
    assert missing.status_code == 401
    assert rows(tmp_path) == []


async def test_stale_timestamp_is_401_and_not_stored(hub: Hub, tmp_path: Path) -> None:
    # correctly signed, but ten minutes old: a replay
    body, headers = signed({"type": "event_callback", "event_id": "Ev4"}, ts=time.time() - 600)
    async with client_for(create_app(hub)) as client:
        answer = await client.post("/hooks/shop", content=body, headers=headers)
    assert answer.status_code == 401
    assert "window" in answer.json()["error"]
    assert rows(tmp_path) == []


async def test_malformed_json_is_400_and_kept(hub: Hub, tmp_path: Path) -> None:
    body, headers = signed(b'{"type": "event_callback", "event_id": ')
    async with client_for(create_app(hub)) as client:
        answer = await client.post("/hooks/shop", content=body, headers=headers)
    assert answer.status_code == 400
    assert "not valid JSON" in answer.json()["error"]
    [(source, delivery_id, _kind, status, error)] = rows(tmp_path)
    assert (source, status) == ("shop", "malformed")
    assert delivery_id == "sha256:" + hashlib.sha256(body).hexdigest()
    assert "not valid JSON" in error
    async with Inbox(hub.store).claim() as claim:
        assert claim.items == []  # nothing will try to process it


async def test_body_over_the_limit_is_413(hub: Hub, tmp_path: Path) -> None:
    app = create_app(hub, max_body=1000)
    body, headers = signed({"type": "event_callback", "event_id": "Ev5", "pad": "x" * 2000})

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 100):
            yield body[start : start + 100]

    async with client_for(app) as client:
        declared = await client.post("/hooks/shop", content=body, headers=headers)
        streamed = await client.post("/hooks/shop", content=chunks(), headers=headers)
        small_body, small_headers = signed({"type": "event_callback", "event_id": "Ev6"})
        fits = await client.post("/hooks/shop", content=small_body, headers=small_headers)
    assert declared.status_code == 413
    assert streamed.status_code == 413
    assert "1000 bytes" in streamed.json()["error"]
    assert fits.status_code == 200
    assert [r[1] for r in rows(tmp_path)] == ["Ev6"]


async def test_streamed_body_is_cut_off_without_reading_it_all(hub: Hub) -> None:
    app = create_app(hub, max_body=1000)
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(10_000):
            sent += 100
            yield b"x" * 100

    async with client_for(app) as client:
        answer = await client.post(
            "/hooks/shop", content=endless(), headers={"content-type": "application/json"}
        )
    assert answer.status_code == 413
    assert sent < 10_000 * 100


async def test_unknown_connection_and_no_receiver_are_404(hub: Hub) -> None:
    body, headers = signed({"type": "event_callback", "event_id": "Ev7"})
    async with client_for(create_app(hub)) as client:
        unknown = await client.post("/hooks/nobody", content=body, headers=headers)
        quiet = await client.post("/hooks/quiet", content=body, headers=headers)
        wrong_method = await client.get("/hooks/shop")
    assert unknown.status_code == 404
    assert "nobody" in unknown.json()["error"]
    assert quiet.status_code == 404
    assert "takes no webhooks" in quiet.json()["error"]
    assert wrong_method.status_code == 405


async def test_handshake_is_answered_and_not_stored(hub: Hub, tmp_path: Path) -> None:
    body, headers = signed({"type": "url_verification", "challenge": "abc123", "token": "t"})
    async with client_for(create_app(hub)) as client:
        answer = await client.post("/hooks/shop", content=body, headers=headers)
    assert answer.status_code == 200
    assert answer.text == "abc123"
    assert rows(tmp_path) == []


async def test_store_failure_is_503(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: Any, **kwargs: Any) -> tuple[int, bool]:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    app = create_app(hub)
    monkeypatch.setattr(app.state.inbox, "add", broken)
    body, headers = signed({"type": "event_callback", "event_id": "Ev8"})
    async with client_for(app) as client:
        answer = await client.post("/hooks/shop", content=body, headers=headers)
    assert answer.status_code == 503


async def test_generic_receiver_from_configuration(hub: Hub, tmp_path: Path) -> None:
    conn = hub.config.connections["quiet"]
    settings = WebhookSettings(
        secret=SecretStr("generic-secret-42"),
        header="X-Hub-Signature",
        prefix="sha256=",
        encoding="base64",
        id_header="X-Delivery",
    )
    conn.hub = conn.hub.model_copy(update={"webhook": settings})
    body = b'{"contact": 7}'
    signature = (
        "sha256="
        + base64.b64encode(hmac.new(b"generic-secret-42", body, hashlib.sha256).digest()).decode()
    )
    async with client_for(create_app(hub)) as client:
        good = await client.post(
            "/hooks/quiet",
            content=body,
            headers={"x-hub-signature": signature, "x-delivery": "d1", **CREDENTIALS},
        )
        bad = await client.post(
            "/hooks/quiet", content=body, headers={"x-hub-signature": "sha256=AAAA"}
        )
    assert (good.status_code, bad.status_code) == (200, 401)
    assert rows(tmp_path) == [("quiet", "d1", "event", "pending", None)]
    [item] = await Inbox(hub.store).list()
    assert set(item.headers) == {"user-agent", "x-hub-signature", "x-delivery"}


async def test_through_uvicorn_on_loopback(hub: Hub, tmp_path: Path) -> None:
    config = uvicorn.Config(create_app(hub), host="127.0.0.1", port=0, log_config=None)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        body, headers = signed({"type": "event_callback", "event_id": "EvU"})
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            answer = await client.post("/hooks/shop", content=body, headers=headers)
            big = await client.post("/hooks/shop", content=b"x" * (2 * 1024 * 1024))
        assert answer.status_code == 200
        assert big.status_code == 413
        assert rows(tmp_path) == [("shop", "EvU", "event_callback", "pending", None)]
    finally:
        server.should_exit = True
        await task


# ---- helpers -------------------------------------------------------------------------------


def test_hmac_sha256_known_vector() -> None:
    # RFC 4231, test case 2
    digest = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert hmac_sha256("Jefe", b"what do ya want for nothing?") == digest
    assert hmac_sha256(b"Jefe", b"what do ya want for nothing?", "base64") == (
        base64.b64encode(bytes.fromhex(digest)).decode()
    )


def test_verify_signature_rejects_missing_and_different() -> None:
    verify_signature("abc", "abc")
    for given in (None, "", "abd", "ab"):
        with pytest.raises(WebhookRejected) as err:
            verify_signature("abc", given)
        assert err.value.status == 401


def test_check_timestamp_window() -> None:
    assert check_timestamp("1000", 300, now=1300) == 1000
    assert check_timestamp(1600, 300, now=1300) == 1600
    for ts in ("999", "1601.5", "soon", None, ""):
        with pytest.raises(WebhookRejected):
            check_timestamp(ts, 300, now=1300)


def test_verify_url_secret() -> None:
    verify_url_secret(SecretStr("k3y-value"), "k3y-value")
    for expected, given in (
        (SecretStr("k3y-value"), "other"),
        ("k3y", None),
        (None, "x"),
        ("", ""),
    ):
        with pytest.raises(WebhookRejected):
            verify_url_secret(expected, given)


async def test_generic_receiver_zendesk_style_timestamp_and_body() -> None:
    """Zendesk: base64(HMAC(secret, timestamp + body)), timestamp in its own header."""
    connector = HookConnector(HookSettings(), ConnectorContext("desk"))
    receiver = GenericReceiver(
        connector,
        WebhookSettings(
            secret=SecretStr("zd-secret"),
            header="X-Zendesk-Webhook-Signature",
            timestamp_header="X-Zendesk-Webhook-Signature-Timestamp",
            encoding="base64",
        ),
    )
    body = b'{"ticket": 1}'
    ts = str(int(time.time()))
    sig = base64.b64encode(hmac.new(b"zd-secret", ts.encode() + body, hashlib.sha256).digest())
    headers = {
        "x-zendesk-webhook-signature": sig.decode(),
        "x-zendesk-webhook-signature-timestamp": ts,
    }
    info = RequestInfo("POST", "/hooks/desk", "", {}, headers)
    delivery = await receiver.verify(info, body)
    assert delivery.delivery_id.startswith("sha256:")
    later = {**headers, "x-zendesk-webhook-signature-timestamp": str(int(ts) + 1)}
    tampered = RequestInfo("POST", "/hooks/desk", "", {}, later)
    with pytest.raises(WebhookRejected):
        await receiver.verify(tampered, body)
    assert SECRET not in repr(receiver.config)


class _UrlSecretReceiver(WebhookReceiver):
    """Mailchimp's way: a secret in the URL, a GET to validate, form-encoded deliveries."""

    methods = ("GET", "POST")

    async def verify(self, request: RequestInfo, body: bytes) -> Delivery:
        verify_url_secret(self.secret("signing_secret"), request.query.get("secret"))
        if request.method == "GET":
            return Delivery(delivery_id="validation", store=False)
        form = parse_form(body)
        return Delivery(delivery_id=f"{form['type']}:{form['fired_at']}", kind=form["type"])


async def test_url_secret_receiver_with_get_validation(hub: Hub, tmp_path: Path) -> None:
    app = create_app(hub)
    connector = HookConnector(
        HookSettings(signing_secret=SecretStr(SECRET)), ConnectorContext("shop")
    )
    app.state.receivers._built["shop"] = _UrlSecretReceiver(connector)
    form = {"type": "subscribe", "fired_at": "2026-11-24 09:00:00", "data[email]": "a@b.example"}
    async with client_for(app) as client:
        validation = await client.get(f"/hooks/shop?secret={SECRET}")
        delivered = await client.post(f"/hooks/shop?secret={SECRET}", data=form)
        wrong = await client.post("/hooks/shop?secret=guess", data=form)
    assert (validation.status_code, delivered.status_code, wrong.status_code) == (200, 200, 401)
    assert rows(tmp_path) == [
        ("shop", "subscribe:2026-11-24 09:00:00", "subscribe", "pending", None)
    ]
