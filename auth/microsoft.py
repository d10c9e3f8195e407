"""Microsoft identity platform through msal, with its token cache kept in the vault.

msal keeps refresh tokens inside its ``SerializableTokenCache`` and refreshes for us; the
serialised cache is stored encrypted in the vault (kind ``msal_cache``) and written back
whenever msal changed it. msal is blocking, so every call runs in a worker thread.

The authority is configuration (``oauth.authority``), so any server that publishes
``<authority>/v2.0/.well-known/openid-configuration`` over HTTPS can stand in for
``login.microsoftonline.com``; ``oauth.ca_bundle`` names the CA to trust for it.

With ``oauth.client_credentials`` the application acts for itself (application
permissions, an administrator's consent): msal's client-credentials grant gives the tokens,
kept in memory by one msal application per client for the life of the process; nothing is
stored and nobody connects. :meth:`MicrosoftAdapter.auth` is the httpx auth flow for either.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import msal
import requests

from auth.bearer import TokenBearer
from auth.providers import ResolvedOAuth, requests_session
from auth.tokens import reconnect_error
from auth.vault import TokenVault
from hub.errors import ConnectorConfigError, NeedsReauth, TransientError

T = TypeVar("T")
KIND = "msal_cache"
RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})
GRAPH_DEFAULT_SCOPE = "https://graph.microsoft.com/.default"
_locks: dict[str, asyncio.Lock] = {}
_apps: dict[tuple[str, str, str | None], Any] = {}  # application-permission apps by client
_apps_lock = threading.Lock()


class MicrosoftAdapter:
    """One connection's msal application. Create per use; the cache lives in the vault."""

    def __init__(self, resolved: ResolvedOAuth) -> None:
        self.resolved = resolved
        # msal adds openid/profile/offline_access itself and refuses them in the list
        self.scopes = [s for s in resolved.settings.scopes if s not in RESERVED_SCOPES]

    @property
    def connection(self) -> str:
        return self.resolved.connection

    def _run(self, cache: msal.SerializableTokenCache | None, action: Callable[[Any], T]) -> T:
        """Build the msal application and run ``action`` with it (in the calling thread)."""
        authority = self.resolved.settings.authority
        known = (authority or "").startswith("https://login.microsoftonline.com/")
        session = requests_session(self.resolved)
        try:
            try:
                app = msal.ConfidentialClientApplication(
                    self.resolved.client_id,
                    client_credential=self.resolved.client_secret,
                    authority=authority,
                    validate_authority=known,
                    instance_discovery=known,
                    token_cache=cache,
                    http_client=session,
                )
            except ValueError as exc:
                raise ConnectorConfigError(
                    f"the Microsoft authority is not usable: {_first_line(exc)}; "
                    "check oauth.authority",
                    connection=self.connection,
                ) from None
            return action(app)
        except requests.RequestException as exc:
            raise TransientError(
                f"cannot reach the Microsoft identity platform ({type(exc).__name__})",
                connection=self.connection,
                request=str(authority),
            ) from None
        finally:
            session.close()

    # -- application permissions ------------------------------------------------------------

    def _application(self) -> Any:
        """The process's msal application of this client (its token cache lives in it)."""
        resolved = self.resolved
        key = (str(resolved.settings.authority), resolved.client_id, resolved.settings.ca_bundle)
        with _apps_lock:
            app = _apps.get(key)
            if app is None:
                authority = resolved.settings.authority
                known = (authority or "").startswith("https://login.microsoftonline.com/")
                try:
                    app = msal.ConfidentialClientApplication(
                        resolved.client_id,
                        client_credential=resolved.client_secret,
                        authority=authority,
                        validate_authority=known,
                        instance_discovery=known,
                        http_client=requests_session(resolved),
                    )
                except ValueError as exc:
                    raise ConnectorConfigError(
                        f"the Microsoft authority is not usable: {_first_line(exc)}; "
                        "check oauth.authority",
                        connection=self.connection,
                    ) from None
                except requests.RequestException as exc:
                    raise TransientError(
                        f"cannot reach the Microsoft identity platform ({type(exc).__name__})",
                        connection=self.connection,
                        request=str(authority),
                    ) from None
                _apps[key] = app
            return app

    async def app_token(self, *, force_refresh: bool = False) -> str:
        """An application token (client-credentials grant), from msal's cache while valid."""
        scopes = [s for s in self.scopes if s.endswith("/.default")] or [GRAPH_DEFAULT_SCOPE]

        def acquire() -> dict[str, Any]:
            app = self._application()
            try:
                result: dict[str, Any] = app.acquire_token_for_client(
                    scopes, force_refresh=force_refresh
                )
            except requests.RequestException as exc:
                raise TransientError(
                    f"cannot reach the Microsoft identity platform ({type(exc).__name__})",
                    connection=self.connection,
                ) from None
            return result

        result = await asyncio.to_thread(acquire)
        if "access_token" not in result:
            detail = _first_line(result.get("error_description") or result.get("error"))
            if result.get("error") in ("invalid_client", "unauthorized_client"):
                raise NeedsReauth(
                    f"Microsoft refused the application's credentials: {detail}; check the "
                    "client id and secret",
                    connection=self.connection,
                )
            raise TransientError(
                f"Microsoft token request failed: {detail}", connection=self.connection
            )
        return str(result["access_token"])

    def auth(self, vault: TokenVault | None) -> httpx.Auth:
        """The httpx auth flow: a bearer token from msal (the user's, kept in the vault, or
        the application's own with ``client_credentials``), renewed once on a 401."""
        return MsalAuth(self, vault)

    # -- authorization ---------------------------------------------------------------------

    async def initiate(self, state: str) -> dict[str, Any]:
        """msal's auth-code flow (PKCE, nonce, our ``state``); ``auth_uri`` is the URL to open."""

        def start(app: Any) -> dict[str, Any]:
            with warnings.catch_warnings():
                # The redirect comes back as a query string so that it can be pasted
                # (``connect --paste``); PKCE, the nonce and the single-use state protect it.
                warnings.filterwarnings("ignore", message="response_mode='form_post'")
                flow: dict[str, Any] = app.initiate_auth_code_flow(
                    self.scopes, redirect_uri=self.resolved.redirect_uri, state=state
                )
            return flow

        return await asyncio.to_thread(self._run, None, start)

    async def complete(
        self, vault: TokenVault, flow: dict[str, Any], params: Mapping[str, str]
    ) -> Any:
        """Redeem the code with the saved flow; the new cache goes into the vault."""
        from auth.flows import AuthorizationError, TokenInfo

        cache = msal.SerializableTokenCache()

        def redeem(app: Any) -> dict[str, Any]:
            result: dict[str, Any] = app.acquire_token_by_auth_code_flow(
                flow, dict(params), scopes=self.scopes
            )
            return result

        try:
            result = await asyncio.to_thread(self._run, cache, redeem)
        except ValueError as exc:  # msal's state / flow mismatch
            raise AuthorizationError(str(exc), connection=self.connection) from None
        if "error" in result:
            detail = result.get("error_description") or result["error"]
            raise AuthorizationError(
                f"Microsoft refused the authorization code: {_first_line(detail)}",
                connection=self.connection,
            )
        expires_at = _expiry(result)
        version = await vault.put(self.connection, KIND, self._data(cache), expires_at)
        return TokenInfo(
            connection=self.connection,
            kind=KIND,
            version=version,
            expires_at=expires_at,
            scope=" ".join(self.scopes) or None,
        )

    # -- tokens ------------------------------------------------------------------------------

    def _data(self, cache: msal.SerializableTokenCache) -> dict[str, Any]:
        return {"cache": cache.serialize(), "scopes": self.scopes}

    async def access_token(self, vault: TokenVault, *, force_refresh: bool = False) -> str:
        """A valid access token: from the cache, else refreshed by msal (once at a time).

        A refused refresh marks the connection ``needs_reauth`` and raises ``NeedsReauth``.
        """
        lock = _locks.setdefault(self.connection, asyncio.Lock())
        async with lock:
            stored = await vault.get(self.connection)
            if stored is None or stored.kind != KIND or stored.status == "needs_reauth":
                usable = stored is not None and stored.kind == KIND
                raise reconnect_error(self.connection, stored if usable else None)
            cache = msal.SerializableTokenCache()
            cache.deserialize(stored.data["cache"])
            result = await asyncio.to_thread(
                self._run, cache, lambda app: self._acquire(app, cache, force_refresh)
            )
            if result is None or "access_token" not in result:
                detail = "no usable refresh token in the cache"
                if result:
                    detail = _first_line(result.get("error_description") or result.get("error"))
                if result and result.get("error") not in (
                    None,
                    "invalid_grant",
                    "interaction_required",
                    "invalid_client",
                    "unauthorized_client",
                ):
                    raise TransientError(
                        f"Microsoft token refresh failed: {detail}", connection=self.connection
                    )
                reason = f"Microsoft refused the refresh: {detail}"
                await vault.mark_needs_reauth(self.connection, reason)
                raise NeedsReauth(
                    f"{reason}; reconnect with `crmhub connect {self.connection}`",
                    connection=self.connection,
                )
            if cache.has_state_changed:
                # The rotated refresh token is saved before the access token is handed out.
                await vault.compare_and_swap(
                    self.connection,
                    stored.version,
                    self._data(cache),
                    _expiry(result),
                )
            return str(result["access_token"])

    def _acquire(
        self, app: Any, cache: msal.SerializableTokenCache, force_refresh: bool
    ) -> dict[str, Any] | None:
        accounts = app.get_accounts()
        if accounts:
            result: dict[str, Any] | None = app.acquire_token_silent(
                self.scopes, account=accounts[0], force_refresh=force_refresh
            )
            if result:
                return result
        # Identity servers that send no client_info give msal no account to look up: use the
        # cached access token while valid, else redeem the cached refresh token directly.
        if not force_refresh:
            now = datetime.now(UTC).timestamp() + 300
            for at in cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN):
                if int(at.get("expires_on", 0)) > now:
                    return {
                        "access_token": at["secret"],
                        "expires_in": int(at["expires_on"]) - int(now - 300),
                    }
        refresh_tokens = list(cache.search(msal.TokenCache.CredentialType.REFRESH_TOKEN))
        if not refresh_tokens:
            return None
        old = refresh_tokens[-1]
        result = app.acquire_token_by_refresh_token(old["secret"], self.scopes)
        if result and "access_token" in result:
            for item in list(cache.search(msal.TokenCache.CredentialType.REFRESH_TOKEN)):
                if item["secret"] == old["secret"] and result.get("refresh_token"):
                    cache.remove_rt(item)  # rotated: the old one is spent
            for at in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                if at["secret"] != result["access_token"]:
                    cache.remove_at(at)
        return result


class MsalAuth(TokenBearer):
    """Bearer tokens from a :class:`MicrosoftAdapter`; one forced refresh on a 401."""

    def __init__(self, adapter: MicrosoftAdapter, vault: TokenVault | None) -> None:
        self.adapter = adapter
        self.vault = vault

    async def token(self, *, force: bool = False) -> str:
        if self.adapter.resolved.settings.client_credentials:
            return await self.adapter.app_token(force_refresh=force)
        if self.vault is None:
            raise NeedsReauth(
                "a user's sign-in needs the token vault", connection=self.adapter.connection
            )
        return await self.adapter.access_token(self.vault, force_refresh=force)


def _expiry(result: Mapping[str, Any]) -> datetime | None:
    seconds = result.get("expires_in")
    return datetime.now(UTC) + timedelta(seconds=int(seconds)) if seconds else None


def _first_line(value: object) -> str:
    return str(value).strip().splitlines()[0] if str(value).strip() else "unknown error"
