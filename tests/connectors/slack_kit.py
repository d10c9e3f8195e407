"""A crmhub folder with a Slack connection on the Slack sandbox, connected the way a person
connects it (the OAuth v2 flow through ``oauth.v2.access``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.slack.sandbox import SANDBOX_SIGNING_SECRET, SlackSandboxApp, create_sandbox
from hub.sandbox import serve_sandbox

CHANNEL = "C0SHARED01"
LEADS = "C0LEADS001"
OPS = "C0OPSTEAM1"


@pytest.fixture
def served() -> Iterator[tuple[SlackSandboxApp, str]]:
    app = create_sandbox(
        seed=3, size=12, customers=3, rotation=True, channels=(CHANNEL, LEADS, OPS)
    )
    url, server = serve_sandbox(app)
    try:
        yield app, url
    finally:
        server.stop()


def slack_toml(db_url: str, url: str, extra: str = "") -> str:
    return (
        f'[hub]\ndatabase = "{db_url}"\n\n'
        f'[connections.team]\nconnector = "slack"\napi_url = "{url}/api"\n'
        f'channels = ["{CHANNEL}"]\ntier2_per_minute = 600\n'
        f'signing_secret = "{SANDBOX_SIGNING_SECRET}"\n{extra}\n'
        "[connections.team.oauth]\n"
        'client_id = "sandbox-client"\nclient_secret = "sandbox-secret"\n'
        f'authorize_url = "{url}/oauth/authorize"\ntoken_url = "{url}/api/oauth.v2.access"\n'
    )


async def open_hub(folder: Path) -> Any:
    from auth.credentials import VaultAuth
    from hub.config import load_config
    from hub.runtime import Hub

    return await Hub.open(load_config(folder / "crmhub.toml"), auth=VaultAuth())


async def connect(folder: Path, name: str = "team") -> None:
    """``crmhub connect``: the browser's part played by following the sandbox's redirect."""
    from auth.flows import complete_authorization, start_authorization

    hub = await open_hub(folder)
    try:
        start = await start_authorization(hub, name)
        async with httpx.AsyncClient() as browser:
            answer = await browser.get(start.url)
        assert answer.status_code == 302, answer.text
        await complete_authorization(hub, answer.headers["location"])
    finally:
        await hub.close()


async def sync(folder: Path, name: str = "team") -> Any:
    from hub.engine import sync_connection

    hub = await open_hub(folder)
    try:
        report = await sync_connection(hub, name)
        assert report.status == "ok", (report.error, report.errors)
        return report
    finally:
        await hub.close()


async def entities(folder: Path, kind: str) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from hub.store.schema import entities as table

    hub = await open_hub(folder)
    try:
        async with hub.store.connect() as db:
            rows = await db.execute(
                select(table.c.fields).where(table.c.type == kind, table.c.deleted_at.is_(None))
            )
            return [json.loads(f) if isinstance(f, str) else dict(f) for (f,) in rows]
    finally:
        await hub.close()


async def contact_ids(folder: Path) -> dict[str, str]:
    """The hub id of each contact, by e-mail address."""
    from sqlalchemy import select

    from hub.store.schema import entities as table

    hub = await open_hub(folder)
    try:
        async with hub.store.connect() as db:
            rows = await db.execute(
                select(table.c.id, table.c.fields).where(table.c.type == "contact")
            )
            found = {}
            for eid, fields in rows:
                values = json.loads(fields) if isinstance(fields, str) else dict(fields)
                found[str(values.get("email"))] = str(eid)
            return found
    finally:
        await hub.close()
