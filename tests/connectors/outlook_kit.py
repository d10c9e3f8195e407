"""Helpers for the Outlook connector's tests: a served sandbox and connectors on it, whose
tokens come from msal (application permissions) against the sandbox's identity platform."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from auth.microsoft import MicrosoftAdapter
from auth.providers import ResolvedOAuth
from connectors.outlook import OutlookConnector, OutlookSettings
from connectors.outlook.sandbox import MAILBOX, TENANT, OutlookSandboxApp
from hub.authspec import OAuthSettings
from hub.connector import ConnectorContext
from hub.http import forget_limiters


class AppCredentials:
    """What the vault's credentials give an msal connection with application permissions."""

    def __init__(self, resolved: ResolvedOAuth) -> None:
        self.resolved = resolved

    async def secret(self) -> dict[str, Any]:
        return {}

    def auth(self) -> httpx.Auth:
        return MicrosoftAdapter(self.resolved).auth(None)


def resolved_for(app: OutlookSandboxApp, url: str, connection: str = "ol") -> ResolvedOAuth:
    settings = OAuthSettings(
        authority=f"{url}/oauth/{TENANT}",
        scopes=["https://graph.microsoft.com/.default"],
        ca_bundle=app.tls[0] if app.tls else None,
        client_credentials=True,
    )
    return ResolvedOAuth(
        connection=connection,
        kind="msal",
        settings=settings,
        client_id="sandbox-client",
        client_secret="sandbox-secret",
        redirect_uri="http://127.0.0.1/oauth/callback",
    )


def app_connector(
    app: OutlookSandboxApp, url: str, tmp_path: Path, name: str = "ol", **settings: Any
) -> OutlookConnector:
    forget_limiters()
    options: dict[str, Any] = {"mailbox": MAILBOX, "graph_url": f"{url}/v1.0", **settings}
    credentials = AppCredentials(resolved_for(app, url, name))
    context = ConnectorContext(name, tmp_path, credentials=credentials)
    return OutlookConnector(OutlookSettings(**options), context)
