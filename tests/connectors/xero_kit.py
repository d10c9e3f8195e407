"""Helpers for the Xero connector's tests: a served sandbox, connectors on it, and crmhub
folders whose Xero connection holds a grant of the sandbox's authorization server in the
vault (so tokens refresh and rotate as they would against Xero)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from connectors.xero import XeroConnector, XeroSettings
from connectors.xero.sandbox import WEBHOOK_KEY, XeroSandboxApp
from hub.connector import ConnectorContext
from hub.http import forget_limiters
from hub.testing import static_credentials


def connector(
    app: XeroSandboxApp, url: str, tmp_path: Path, name: str = "xe", **settings: Any
) -> XeroConnector:
    """A connector with a fresh access token of the sandbox (no vault)."""
    forget_limiters()
    token = app.provider.oauth.issue_grant(scope="accounting.contacts")["access_token"]
    context = ConnectorContext(name, tmp_path, credentials=static_credentials(access_token=token))
    return XeroConnector(XeroSettings(api_base=url, **settings), context)


def config_text(db_url: str, url: str, name: str = "xe", **settings: Any) -> str:
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
    return (
        f'[hub]\ndatabase = "{db_url}"\nphone_region = "NZ"\n\n'
        f'[connections.{name}]\nconnector = "xero"\napi_base = "{url}"\n'
        f'webhook_key = "{WEBHOOK_KEY}"\n{extra}\n'
        f"[connections.{name}.oauth]\n"
        f'authorize_url = "{url}/oauth/authorize"\ntoken_url = "{url}/oauth/token"\n'
        f'revocation_url = "{url}/oauth/revoke"\n'
        'client_id = "sandbox-client"\nclient_secret = "sandbox-secret"\n'
    )


class Folder:
    """A crmhub folder with one Xero connection; ``open()`` starts a hub on it as a new
    ``crmhub`` process would. The first ``open`` stores a grant in the vault."""

    def __init__(
        self, path: Path, db_url: str, app: XeroSandboxApp, url: str, **settings: Any
    ) -> None:
        self.path = path
        self.app = app
        (path / "crmhub.toml").write_text(config_text(db_url, url, **settings))
        (path / "crmhub.key").write_text(_key() + "\n")
        (path / "crmhub.key").chmod(0o600)
        self.connected = False

    async def open(self) -> Any:
        from auth.credentials import VaultAuth
        from auth.flows import open_vault, resolve, store_oauth_token
        from hub.config import load_config
        from hub.runtime import Hub

        forget_limiters()
        hub = await Hub.open(load_config(self.path / "crmhub.toml"), auth=VaultAuth())
        if not self.connected:
            grant = self.app.provider.oauth.issue_grant(scope="accounting.contacts offline_access")
            await store_oauth_token(open_vault(hub), resolve(hub, "xe"), grant)
            self.connected = True
        return hub

    async def sync(self, name: str = "xe", expect: str = "ok") -> Any:
        from hub.engine import sync_connection

        hub = await self.open()
        try:
            report = await sync_connection(hub, name)
        finally:
            await hub.close()
        assert report.status == expect, (report.status, report.error, report.errors)
        return report

    async def entities(self, kind: str) -> list[dict[str, Any]]:
        from sqlalchemy import select

        from hub.store.schema import entities

        hub = await self.open()
        try:
            async with hub.store.connect() as db:
                rows = await db.execute(
                    select(entities.c.fields).where(
                        entities.c.type == kind, entities.c.deleted_at.is_(None)
                    )
                )
                found = [json.loads(f) if isinstance(f, str) else dict(f) for (f,) in rows]
        finally:
            await hub.close()
        return found


def _key() -> str:
    import auth

    return auth.generate_key()
