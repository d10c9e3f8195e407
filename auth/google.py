"""Google accounts through google-auth, with the tokens kept in the vault.

Google's authorization is a standard code flow with PKCE (``auth.flows`` does it, with
``access_type=offline`` and ``prompt=consent`` so a refresh token comes back). This adapter
turns the stored token into ``google.oauth2.credentials.Credentials`` for Google's client
libraries and refreshes it with google-auth. google-auth is blocking: refreshes run in a
worker thread. ``token_uri`` comes from the connection's settings, so a sandbox can stand in.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import google.auth.exceptions
import requests
from google.auth.transport.requests import Request
from google.oauth2.credentials import Credentials

from auth.bearer import TokenBearer
from auth.providers import ResolvedOAuth, requests_session
from auth.tokens import InvalidGrant, Refresher, TokenManager
from auth.vault import TokenVault
from hub.authspec import OAuthSettings
from hub.errors import ConnectorConfigError, NeedsReauth, TransientError

GOOGLE_OAUTH = OAuthSettings(
    authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
    token_url="https://oauth2.googleapis.com/token",
    revocation_url="https://oauth2.googleapis.com/revoke",
    authorize_params={"access_type": "offline", "prompt": "consent"},
)
"""Endpoints a Google connector sets as its ``oauth`` (scopes are per connector)."""


def credentials_from(data: dict[str, Any], resolved: ResolvedOAuth) -> Credentials:
    """google-auth credentials for stored ``oauth2`` data (google-auth wants naive UTC)."""
    expiry = None
    if data.get("expires_at"):
        expiry = datetime.fromtimestamp(int(data["expires_at"]), UTC).replace(tzinfo=None)
    scope = data.get("scope")
    scopes = scope.split() if isinstance(scope, str) else (resolved.settings.scopes or None)
    return Credentials(
        token=data.get("access_token"),
        refresh_token=data.get("refresh_token"),
        token_uri=resolved.token_url,
        client_id=resolved.client_id,
        client_secret=resolved.client_secret,
        scopes=scopes,
        expiry=expiry,
    )


def google_refresher(resolved: ResolvedOAuth) -> Refresher:
    """A ``TokenManager`` refresher that refreshes through google-auth in a worker thread.

    A refusal raises ``InvalidGrant`` (the manager marks the connection ``needs_reauth``); an
    unreachable or failing token endpoint raises ``TransientError``.
    """
    request_name = f"POST {resolved.token_url}"

    async def refresh(data: dict[str, Any]) -> dict[str, Any]:
        creds = credentials_from(data, resolved)
        session = requests_session(resolved)
        try:
            await asyncio.to_thread(creds.refresh, Request(session=session))
        except google.auth.exceptions.RefreshError as exc:
            # args are (message, response body): only the message, never the body
            detail = str(exc.args[0]).strip() if exc.args else "refused"
            if getattr(exc, "retryable", False):
                raise TransientError(
                    f"Google token refresh failed: {detail}", request=request_name
                ) from None
            error, _, description = detail.partition(":")
            raise InvalidGrant(
                error.strip() or "invalid_grant", description.strip() or None, request=request_name
            ) from None
        except google.auth.exceptions.TransportError as exc:
            raise TransientError(
                f"cannot reach Google's token endpoint ({type(exc).__name__})",
                request=request_name,
            ) from None
        finally:
            session.close()
        expires_in = None
        if creds.expiry is not None:
            expiry = creds.expiry.replace(tzinfo=UTC)
            expires_in = max(int((expiry - datetime.now(UTC)).total_seconds()), 1)
        scopes = creds.granted_scopes or creds.scopes
        return {
            "access_token": creds.token,
            "refresh_token": creds.refresh_token,
            "expires_in": expires_in,
            "scope": " ".join(scopes) if scopes else None,
            "token_type": "Bearer",
        }

    return refresh


class GoogleAdapter:
    """google-auth credentials for one connection, kept valid by a ``TokenManager``.

    The manager gives the hub's guarantees (one refresh per connection across workers and
    hosts, rotated tokens saved before use, a refusal marks ``needs_reauth``).
    """

    def __init__(self, resolved: ResolvedOAuth, vault: TokenVault) -> None:
        self.resolved = resolved
        self.manager = TokenManager(
            vault, google_refresher(resolved), connection=resolved.connection
        )

    async def credentials(self, *, force_refresh: bool = False) -> Credentials:
        """Credentials whose access token is valid now (refreshed first when needed)."""
        if force_refresh:
            await self.manager.refresh(force=True)
        token = await self.manager.token()
        return credentials_from(token.data, self.resolved)


class ServiceAccountAuth(TokenBearer):
    """Bearer tokens of a Google service account acting for ``subject`` (domain-wide
    delegation: a Workspace administrator lets the account read users' mailboxes).

    The key file is the JSON Google gives for the service account; its ``token_uri`` is
    where tokens come from (a sandbox's key file names the sandbox). google-auth signs the
    assertion and redeems it in a worker thread; the token is kept in memory until shortly
    before it expires (service-account tokens are never stored: a new one is a signature
    away), and renewed once on a 401.
    """

    def __init__(self, info: dict[str, Any], scopes: list[str], subject: str | None) -> None:
        from google.oauth2 import service_account

        try:
            self.credentials = service_account.Credentials.from_service_account_info(
                info, scopes=scopes, subject=subject
            )
        except (ValueError, KeyError) as exc:
            raise ConnectorConfigError(
                f"the service account key is not usable: {type(exc).__name__}: {exc}"
            ) from None
        self._lock = asyncio.Lock()

    async def token(self, *, force: bool = False) -> str:
        async with self._lock:
            if force or not self.credentials.valid:
                await asyncio.to_thread(self._refresh)
            return str(self.credentials.token)

    def _refresh(self) -> None:
        session = requests.Session()
        try:
            self.credentials.refresh(Request(session=session))
        except google.auth.exceptions.RefreshError as exc:
            detail = str(exc.args[0]).strip() if exc.args else "refused"
            if getattr(exc, "retryable", False):
                raise TransientError(f"Google token request failed: {detail}") from None
            raise NeedsReauth(
                f"Google refused the service account's assertion: {detail}; check the key "
                "and the domain-wide delegation of its scopes"
            ) from None
        except google.auth.exceptions.TransportError as exc:
            raise TransientError(
                f"cannot reach Google's token endpoint ({type(exc).__name__})"
            ) from None
        finally:
            session.close()
