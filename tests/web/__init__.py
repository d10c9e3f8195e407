"""Helpers for the web tests: a connector with a Slack-style receiver, and a hub over it."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, SecretStr

from hub.config import load_config
from hub.connector import Connector, Cursor, Page, Stream
from hub.inbox import InboxItem
from hub.registry import Registry
from hub.runtime import Hub
from hub.services import ConnectionServices
from hub.store import Store
from hub.webhooks import (
    Delivery,
    RequestInfo,
    WebhookReceiver,
    WebhookResponse,
    check_timestamp,
    hmac_sha256,
    parse_json,
    verify_signature,
)

SECRET = "whsec-test-0123456789"


class HookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signing_secret: SecretStr | None = None


class SlackStyleReceiver(WebhookReceiver):
    """Signs ``v0:{timestamp}:{body}`` (hex) like Slack; answers url_verification itself."""

    handled: ClassVar[list[int]] = []
    headers = ("x-slack-signature", "x-slack-request-timestamp", "x-delivery-id")

    async def verify(self, request: RequestInfo, body: bytes) -> Delivery:
        ts = request.headers.get("x-slack-request-timestamp")
        check_timestamp(ts, 300)
        secret = self.secret("signing_secret") or ""
        expected = "v0=" + hmac_sha256(secret, f"v0:{ts}:".encode() + body)
        verify_signature(expected, request.headers.get("x-slack-signature"))
        payload = parse_json(body, request.headers.get("x-delivery-id"))
        if payload.get("type") == "url_verification":
            return Delivery(
                delivery_id="handshake",
                store=False,
                response=WebhookResponse(200, payload["challenge"], "text/plain"),
            )
        return Delivery(delivery_id=str(payload["event_id"]), kind=str(payload.get("type")))

    async def handle(self, services: ConnectionServices, item: InboxItem) -> None:
        type(self).handled.append(item.id)


class HookConnector(Connector):
    name = "hooktest"
    Settings = HookSettings
    webhook: ClassVar[type[WebhookReceiver] | None] = SlackStyleReceiver

    def streams(self) -> list[Stream]:
        return [Stream(name="events", entity="activity")]

    async def pull(self, stream: Stream, cursor: Cursor | None) -> AsyncIterator[Page]:
        return
        yield Page()  # an async generator that yields nothing


class PlainConnector(HookConnector):
    """A connector without a receiver of its own."""

    name = "plain"
    webhook = None


def write_config(tmp_path: Path, database: str | None = None, extra: str = "") -> Path:
    path = tmp_path / "crmhub.toml"
    db = database or str(tmp_path / "crmhub.db")
    path.write_text(
        f"""
[hub]
database = "{db}"

[connections.shop]
connector = "hooktest"
signing_secret = "{SECRET}"

[connections.quiet]
connector = "plain"
{extra}
"""
    )
    return path


async def open_hub(tmp_path: Path, database: str | None = None) -> Hub:
    config = load_config(write_config(tmp_path, database))
    registry = Registry.discover(extra={"hooktest": HookConnector, "plain": PlainConnector})
    registry.validate(config)
    store = await Store.open(config.database_url)
    return Hub(config=config, store=store, registry=registry)


def signed(payload: Any, *, secret: str = SECRET, ts: float | None = None) -> tuple[bytes, dict]:
    """A body and the headers a Slack-style sender would send with it."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    stamp = str(int(time.time() if ts is None else ts))
    signature = "v0=" + hmac_sha256(secret, f"v0:{stamp}:".encode() + body)
    headers = {
        "content-type": "application/json",
        "x-slack-request-timestamp": stamp,
        "x-slack-signature": signature,
    }
    return body, headers
