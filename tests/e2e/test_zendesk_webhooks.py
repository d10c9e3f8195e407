"""Zendesk's webhooks through the hub's web app: a delivery the sandbox signs as Zendesk does
is stored and handled by reading the changed record; a forged signature and a stale
timestamp are refused before anything is stored."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from auth.credentials import VaultAuth
from auth.flows import store_basic
from connectors.zendesk.api import ZENDESK_API
from hub.config import load_config
from hub.engine import sync_connection
from hub.inbox import Inbox, InboxProcessor
from hub.registry import Registry
from hub.rest.sandbox import SANDBOX_PASSWORD, SANDBOX_USER, SANDBOX_WEBHOOK_SECRET, create_sandbox
from hub.runtime import Hub
from hub.sandbox import serve_sandbox
from hub.store.schema import runs
from hub.web import create_app
from tests.connectors.zendesk_kit import fast_loaded, fast_zendesk

pytestmark = pytest.mark.asyncio


async def test_signed_forged_and_stale_zendesk_webhooks(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRMHUB_SECRET_KEY_FILE", str(tmp_path / "crmhub.key"))
    app = create_sandbox(fast_loaded(), size=0)
    app.provider.add("users", {"name": "Ann Lee", "email": "ann@example.com"})
    url, server = serve_sandbox(app)
    (tmp_path / "crmhub.toml").write_text(
        f'[hub]\ndatabase = "{sqlite_url}"\n\n[connections.zd]\nconnector = "zendesk"\n'
        f'subdomain = "acme"\nbase_url = "{url}"\nwebhook_secret = "{SANDBOX_WEBHOOK_SECRET}"\n'
    )
    registry = Registry.discover(extra={"zendesk": fast_zendesk()})
    hub = await Hub.open(load_config(tmp_path / "crmhub.toml"), registry, auth=VaultAuth())
    web = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(hub)), base_url="http://h")
    sent: list[tuple[bytes, dict[str, str]]] = []

    class Catch:  # the sandbox's own delivery, shaped and signed as Zendesk's
        url = "http://h/hooks/zd"

        def send_sync(self, payload: Any) -> None:
            body, headers = app.webhooks.prepare(payload)  # type: ignore[union-attr]
            assert ZENDESK_API.webhooks is not None and not ZENDESK_API.webhooks(body, headers)
            sent.append((body, headers))

    try:
        await store_basic(hub, "zd", SANDBOX_USER, SANDBOX_PASSWORD)
        assert (await sync_connection(hub, "zd")).status == "ok"
        app.webhooks.url = "http://h/hooks/zd"  # type: ignore[union-attr]
        app.provider.webhooks = Catch()  # type: ignore[assignment]
        app.provider.edit("users", 1, {"name": "Ann Changed"})
        [(body, headers)] = sent
        payload = json.loads(body)
        assert payload["type"] == "zen:event-type:user.custom_field_changed"
        assert payload["detail"] == {"id": "1"} and payload["subject"] == "zen:users:1"
        assert "T" in headers["X-Zendesk-Webhook-Signature-Timestamp"]  # ISO 8601

        forged = {**headers, "X-Zendesk-Webhook-Signature": "AAAA" + headers[
            "X-Zendesk-Webhook-Signature"][4:]}  # fmt: skip
        assert (await web.post("/hooks/zd", content=body, headers=forged)).status_code == 401
        old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
        stale = {**headers, "X-Zendesk-Webhook-Signature-Timestamp": old}
        assert (await web.post("/hooks/zd", content=body, headers=stale)).status_code == 401
        assert sum((await Inbox.shared(hub.store).depth()).values()) == 0

        good = await web.post("/hooks/zd", content=body, headers=headers)
        assert good.status_code == 200
        processor = InboxProcessor(hub, inbox=Inbox.shared(hub.store))
        try:
            assert await processor.run_once() == 1
        finally:
            await processor.aclose()
        from tests.e2e.test_zendesk_sync import entities

        [ann] = await entities(hub, "contact")
        assert ann["last_name"] == "Changed"  # the webhook made the hub read the user ...
        async with hub.store.connect() as db:  # ... by id, not by another run
            assert await db.scalar(select(func.count()).select_from(runs)) == 1
    finally:
        await web.aclose()
        await hub.close()
        server.stop()
