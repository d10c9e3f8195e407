"""Xero held to its published descriptions: the copied Accounting subset is reproducible and
sound, what the sandbox refuses as Xero does, and the keep-alive of an idle Xero grant."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from connectors.xero.sandbox import TENANTS, XeroSandboxApp, create_sandbox
from connectors.xero.sandbox_spec import OPERATIONS, SPEC_DIR, XERO_API
from hub.sandbox import serve_sandbox
from hub.sandbox.subset import subset_text
from tests.connectors.xero_kit import Folder


@pytest.fixture
def served() -> Iterator[tuple[XeroSandboxApp, str]]:
    app = create_sandbox(seed=2, size=3)
    url, server = serve_sandbox(app)
    try:
        yield app, url
    finally:
        server.stop()


@pytest.mark.slow
def test_the_subset_is_cut_from_the_published_description() -> None:
    committed = (SPEC_DIR / "accounting_subset.json").read_text(encoding="utf-8")
    assert subset_text(SPEC_DIR / "xero_accounting.yaml", OPERATIONS) == committed


def test_the_description_has_no_errors_of_its_own() -> None:
    assert XERO_API.spec_errors() == []


def test_requests_the_description_refuses_are_answered_as_xero_does(
    served: tuple[XeroSandboxApp, str],
) -> None:
    app, url = served
    token = app.provider.oauth.issue_grant()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    missing = httpx.get(f"{url}/api.xro/2.0/Contacts", headers=headers)
    assert missing.status_code == 400 and "xero-tenant-id" in missing.text
    bad = httpx.get(
        f"{url}/api.xro/2.0/Contacts",
        params={"IDs": "not-a-uuid"},
        headers={**headers, "xero-tenant-id": TENANTS[0][0]},
    )
    assert bad.status_code == 400 and bad.json()["Type"] == "PostDataInvalidException"
    assert len(app.violations.take()) == 2
    good = httpx.get(
        f"{url}/api.xro/2.0/Contacts",
        params={"page": 1},
        headers={**headers, "xero-tenant-id": TENANTS[0][0]},
    )
    assert good.status_code == 200 and len(good.json()["Contacts"]) == 3
    assert good.headers["X-DayLimit-Remaining"] == "4999"
    assert httpx.get(f"{url}/connections").status_code == 401


async def test_an_idle_grant_is_refreshed_before_its_60_days_run_out(
    tmp_path: Path, served: tuple[XeroSandboxApp, str]
) -> None:
    from auth.keepalive import keep_alive_all
    from hub.store.schema import tokens

    app, url = served
    folder = Folder(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}", app, url)
    hub = await folder.open()
    try:
        assert await keep_alive_all(hub) == []  # refreshed (connected) just now
        async with hub.store.begin() as db:
            long_ago = datetime.now(UTC) - timedelta(days=31)
            await db.execute(
                tokens.update()
                .where(tokens.c.connection == "xe")
                .values(refreshed_at=long_ago, updated_at=long_ago)
            )
        assert await keep_alive_all(hub) == ["xe"]
        assert app.provider.oauth.refresh_requests == 1
        assert app.provider.oauth.reused_refresh_tokens == []
    finally:
        await hub.close()
    await folder.sync()  # the rotated refresh token and its access token work


async def test_connecting_is_the_code_flow_with_pkce_and_xeros_scopes(
    tmp_path: Path, served: tuple[XeroSandboxApp, str]
) -> None:
    from urllib.parse import parse_qs, urlsplit

    from auth.flows import complete_authorization, open_vault, start_authorization

    app, url = served
    folder = Folder(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}", app, url)
    folder.connected = True  # no grant yet: the browser flow makes it
    hub = await folder.open()
    try:
        start = await start_authorization(hub, "xe")
        query = parse_qs(urlsplit(start.url).query)
        assert query["code_challenge_method"] == ["S256"] and query["code_challenge"]
        assert query["scope"] == [
            "openid offline_access accounting.contacts accounting.transactions"
        ]
        async with httpx.AsyncClient() as browser:  # the sandbox approves at once
            redirect = (await browser.get(start.url)).headers["location"]
        info = await complete_authorization(hub, redirect)
        assert info.connection == "xe" and info.expires_at is not None
        stored = await open_vault(hub).get("xe")
        assert stored is not None and stored.data["refresh_token"]
    finally:
        await hub.close()
    report = await folder.sync()
    assert report.counts["created"] > 0
