"""A connection's credentials as a connector sees them: read from the vault when needed.

A hub opened with ``VaultAuth()`` hands every connector a ``VaultCredentials`` in its
``ConnectorContext``; the connector never touches keys, the vault or refresh logic itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from hub.runtime import Hub


class VaultCredentials:
    """Credentials of one connection, stored by ``crmhub connect``."""

    def __init__(self, hub: Hub, connection: str) -> None:
        self.hub = hub
        self.connection = connection
        self._auth: httpx.Auth | None = None

    async def secret(self) -> dict[str, Any]:
        """The stored credential data (``api_key``, ``username``/``password``, token data)."""
        from auth.flows import open_vault
        from auth.tokens import reconnect_error

        token = await open_vault(self.hub).get(self.connection)
        if token is None or token.status == "needs_reauth":
            raise reconnect_error(self.connection, token)
        return token.data

    def auth(self) -> httpx.Auth:
        """An httpx auth flow for OAuth2 connections: bearer token, refreshed ahead of
        expiry (once across processes), one refresh and one repeat on a 401."""
        if self._auth is None:
            from auth.flows import open_vault, resolve, token_manager
            from auth.tokens import OAuth2Auth

            resolved = resolve(self.hub, self.connection)
            if resolved.kind == "msal":  # msal keeps and refreshes its own tokens
                from auth.microsoft import MicrosoftAdapter

                # an application acting for itself keeps nothing in the vault
                app_only = resolved.settings.client_credentials
                vault = None if app_only else open_vault(self.hub)
                self._auth = MicrosoftAdapter(resolved).auth(vault)
            else:
                self._auth = OAuth2Auth(token_manager(open_vault(self.hub), resolved))
        return self._auth


class VaultAuth:
    """The vault as a hub's credential store (``Hub.open(config, auth=VaultAuth())``)."""

    def credentials(self, hub: Hub, connection: str) -> VaultCredentials:
        return VaultCredentials(hub, connection)

    async def complete_authorization(self, hub: Hub, params: Mapping[str, str]) -> str:
        from auth.flows import complete_authorization

        return (await complete_authorization(hub, params)).connection

    async def keep_alive(self, hub: Hub) -> list[str]:
        from auth.keepalive import keep_alive_all

        return await keep_alive_all(hub)
