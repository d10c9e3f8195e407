"""Connecting a connection: the OAuth2 authorization-code flow, API keys and passwords.

``start_authorization`` makes a single-use ``state`` (random, valid 10 minutes) and a PKCE
(S256) verifier, keeps both encrypted in ``oauth_states`` and returns the URL to open.
``complete_authorization`` takes the redirect back (the full URL or its query parameters),
consumes the state (a wrong, expired or reused state is refused), exchanges the code and
stores the tokens in the vault. API keys and basic credentials go through the same vault.
Nothing here logs or returns a secret.
"""

from __future__ import annotations

import json
import secrets
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import sqlalchemy as sa
from authlib.common.security import generate_token
from authlib.deprecate import AuthlibDeprecationWarning

from auth.keys import load_keyring
from auth.providers import (
    ResolvedOAuth,
    auth_kind,
    connection_auth_settings,
    resolve_for_config,
)
from auth.tokens import TokenManager, refresh_with_httpx
from auth.vault import TokenVault
from hub.authspec import OAUTH_KINDS, AuthKind
from hub.errors import ConfigError, NeedsReauth, TransientError
from hub.runtime import Hub
from hub.store import as_utc, utcnow
from hub.store.schema import oauth_states

with warnings.catch_warnings():
    # authlib nudges towards the separate ``httpx2`` package on import; crmhub uses httpx.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

STATE_TTL = timedelta(minutes=10)
HTTP_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class AuthorizationError(NeedsReauth):
    """An authorization could not be completed; start it again with ``crmhub connect``."""


@dataclass(frozen=True)
class AuthorizationStart:
    """Where to send the person who approves access, and the state that comes back."""

    connection: str
    url: str
    state: str
    redirect_uri: str
    expires_at: datetime


@dataclass(frozen=True)
class TokenInfo:
    """What was stored for a connection, without any secret."""

    connection: str
    kind: str
    version: int
    expires_at: datetime | None = None
    scope: str | None = None


def open_vault(hub: Hub, *, create_key: bool = False) -> TokenVault:
    """The hub's token vault, keyed from ``CRMHUB_SECRET_KEY`` or the key file.

    ``create_key`` makes the key file on the first credential a fresh hub stores.
    """
    return TokenVault(hub.store, load_keyring(hub.config.base_dir, create=create_key))


def connection_kind(hub: Hub, connection: str) -> AuthKind:
    conn = hub.config.connection(connection)
    cls = hub.registry.get(conn.hub.connector)
    try:
        return auth_kind(cls, connection_auth_settings(hub.config, connection))
    except ConfigError as exc:  # name the configuration's file, line and full key
        where = ["connections", connection]
        raise ConfigError(
            [
                hub.config.problem(p.message, where, p.key)
                if p.key and p.key.startswith("oauth.") and not p.file
                else p
                for p in exc.problems
            ]
        ) from None


def resolve(hub: Hub, connection: str) -> ResolvedOAuth:
    """The merged OAuth settings of a configured connection (``ConfigError`` when incomplete)."""
    conn = hub.config.connection(connection)
    cls = hub.registry.get(conn.hub.connector)
    return resolve_for_config(hub.config, cls, connection)


def oauth_client(resolved: ResolvedOAuth) -> AsyncOAuth2Client:
    """An authlib httpx client for one provider (PKCE S256 when the provider takes it)."""
    if resolved.client_secret is None:
        method = "none"
    else:
        method = (
            "client_secret_basic"
            if resolved.settings.client_auth == "basic"
            else ("client_secret_post")
        )
    return AsyncOAuth2Client(
        client_id=resolved.client_id,
        client_secret=resolved.client_secret,
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
        scope=" ".join(resolved.settings.scopes) or None,
        redirect_uri=resolved.redirect_uri,
        code_challenge_method="S256" if resolved.settings.pkce else None,
        timeout=HTTP_TIMEOUT,
        verify=resolved.ssl_context(),
    )


# -- pending authorizations ---------------------------------------------------------------


def _context(state: str) -> bytes:
    # Binds the ciphertext to its row: copied under another state, it does not decrypt.
    return b"oauth_state:" + state.encode()


async def _save_state(hub: Hub, vault: TokenVault, state: str, pending: dict[str, Any]) -> datetime:
    expires_at = utcnow() + STATE_TTL
    _, sealed = vault.keyring.encrypt(json.dumps(pending).encode(), context=_context(state))
    async with hub.store.begin() as db:
        await db.execute(sa.delete(oauth_states).where(oauth_states.c.expires_at < utcnow()))
        await db.execute(
            sa.insert(oauth_states).values(
                state=state,
                connection=pending["connection"],
                ciphertext=sealed,
                expires_at=expires_at,
            )
        )
    return expires_at


async def _take_state(hub: Hub, vault: TokenVault, state: str) -> dict[str, Any]:
    """Consume ``state``: it is deleted whatever the outcome, so it works at most once."""
    async with hub.store.begin() as db:
        row = (
            await db.execute(sa.select(oauth_states).where(oauth_states.c.state == state))
        ).first()
        deleted = (
            await db.execute(sa.delete(oauth_states).where(oauth_states.c.state == state))
        ).rowcount
    if row is None or deleted != 1:
        raise AuthorizationError(
            "the authorization state is unknown or was already used; "
            "start again with 'crmhub connect CONNECTION'"
        )
    expires_at = as_utc(row.expires_at)
    if expires_at is None or expires_at <= utcnow():
        raise AuthorizationError(
            "the authorization expired (it is valid for 10 minutes); "
            f"start again with 'crmhub connect {row.connection}'",
            connection=row.connection,
        )
    plain = vault.keyring.decrypt(
        row.ciphertext, context=_context(state), what="a pending authorization"
    )
    pending: dict[str, Any] = json.loads(plain)
    if pending.get("connection") != row.connection:
        raise AuthorizationError("the authorization state does not match its connection")
    return pending


async def pending_exists(hub: Hub, state: str) -> bool:
    """Whether ``state`` still waits for its callback (the CLI polls this)."""
    async with hub.store.connect() as db:
        row = (
            await db.execute(sa.select(oauth_states.c.state).where(oauth_states.c.state == state))
        ).first()
    return row is not None


# -- the flow ------------------------------------------------------------------------------


async def start_authorization(hub: Hub, connection: str) -> AuthorizationStart:
    """Begin connecting ``connection``: the URL to open in a browser, and its state."""
    resolved = resolve(hub, connection)
    vault = open_vault(hub, create_key=True)
    state = secrets.token_urlsafe(32)
    pending: dict[str, Any] = {
        "connection": connection,
        "kind": resolved.kind,
        "redirect_uri": resolved.redirect_uri,
    }
    if resolved.kind == "msal":
        from auth.microsoft import MicrosoftAdapter

        flow = await MicrosoftAdapter(resolved).initiate(state)
        url = flow["auth_uri"]
        pending["msal_flow"] = flow
    else:
        verifier = generate_token(64) if resolved.settings.pkce else None
        async with oauth_client(resolved) as client:
            url, _ = client.create_authorization_url(
                resolved.authorize_url,
                state=state,
                code_verifier=verifier,
                **resolved.settings.authorize_params,
            )
        pending["code_verifier"] = verifier
    expires_at = await _save_state(hub, vault, state, pending)
    return AuthorizationStart(
        connection=connection,
        url=url,
        state=state,
        redirect_uri=resolved.redirect_uri,
        expires_at=expires_at,
    )


def callback_params(callback: str | Mapping[str, str]) -> dict[str, str]:
    """Query parameters of a pasted redirect URL (or a bare query string), or a mapping."""
    if isinstance(callback, Mapping):
        return {str(k): str(v) for k, v in callback.items()}
    text = callback.strip()
    parts = urlsplit(text)
    query = parts.query or (text.lstrip("?") if "=" in text and "://" not in text else "")
    if not query and parts.fragment:
        query = parts.fragment  # some providers answer in the fragment
    return dict(parse_qsl(query, keep_blank_values=True))


async def complete_authorization(hub: Hub, callback: str | Mapping[str, str]) -> TokenInfo:
    """Finish an authorization from its redirect and store the tokens in the vault."""
    params = callback_params(callback)
    state = params.get("state")
    if not state:
        raise AuthorizationError(
            "the redirect carries no 'state' parameter; paste the full URL the browser was "
            "sent to after approving access"
        )
    vault = open_vault(hub)
    pending = await _take_state(hub, vault, state)
    connection = pending["connection"]
    if "error" in params:
        detail = params.get("error_description") or params["error"]
        raise AuthorizationError(f"the provider refused access: {detail}", connection=connection)
    code = params.get("code")
    if not code:
        raise AuthorizationError("the redirect carries no 'code'", connection=connection)
    # The code is bound to the redirect URI the authorization was started with.
    resolved = replace(resolve(hub, connection), redirect_uri=pending["redirect_uri"])
    if resolved.kind != pending["kind"]:
        raise AuthorizationError(
            "the connection's auth settings changed during the authorization; start again",
            connection=connection,
        )
    if resolved.kind == "msal":
        from auth.microsoft import MicrosoftAdapter

        return await MicrosoftAdapter(resolved).complete(vault, pending["msal_flow"], params)
    token = await exchange_code(resolved, code, pending.get("code_verifier"))
    return await store_oauth_token(vault, resolved, token)


async def exchange_code(
    resolved: ResolvedOAuth, code: str, code_verifier: str | None
) -> dict[str, Any]:
    """Trade the authorization code for tokens; the provider's refusal is an AuthorizationError."""
    connection = resolved.connection
    extra: dict[str, Any] = {"code_verifier": code_verifier} if code_verifier else {}
    try:
        async with oauth_client(resolved) as client:
            token = await client.fetch_token(
                resolved.token_url,
                grant_type="authorization_code",
                code=code,
                redirect_uri=resolved.redirect_uri,
                **extra,
            )
            result: dict[str, Any] = dict(token)
            if resolved.settings.metadata_url:
                result["metadata"] = await _fetch_metadata(resolved, result)
    except OAuthError as exc:
        detail = exc.description or exc.error
        raise AuthorizationError(
            f"the token endpoint refused the authorization code: {detail}",
            connection=connection,
            request=f"POST {resolved.token_url}",
        ) from None
    except httpx.HTTPStatusError as exc:
        raise TransientError(
            f"the token endpoint answered HTTP {exc.response.status_code}",
            connection=connection,
            request=f"POST {resolved.token_url}",
        ) from None
    except httpx.HTTPError as exc:
        raise TransientError(
            f"cannot reach the token endpoint: {type(exc).__name__}",
            connection=connection,
            request=f"POST {resolved.token_url}",
        ) from None
    if not result.get("access_token"):
        raise AuthorizationError(
            "the token endpoint returned no access_token", connection=connection
        )
    return result


async def _fetch_metadata(resolved: ResolvedOAuth, token: dict[str, Any]) -> dict[str, Any]:
    url = resolved.settings.metadata_url or ""
    scheme = resolved.settings.metadata_auth_scheme
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, verify=resolved.ssl_context()) as client:
        response = await client.get(
            url, headers={"Authorization": f"{scheme} {token['access_token']}"}
        )
    if response.status_code >= 400:
        raise AuthorizationError(
            f"the provider's metadata endpoint answered HTTP {response.status_code}",
            connection=resolved.connection,
            request=f"GET {url}",
        )
    body = response.json()
    if not isinstance(body, dict):
        raise AuthorizationError("the provider's metadata is not a JSON object")
    return body


def token_data(token: Mapping[str, Any]) -> tuple[dict[str, Any], datetime | None]:
    """The vault payload of a token response, and its expiry (``None``: never expires).

    ``expires_in`` of 0 or absent means a non-expiring token (Mailchimp).
    """
    expires_at = None
    raw_expires = token.get("expires_at")
    if raw_expires:
        expires_at = datetime.fromtimestamp(int(raw_expires), UTC)
    elif token.get("expires_in"):
        expires_at = utcnow() + timedelta(seconds=int(token["expires_in"]))
    data = {
        "access_token": token["access_token"],
        "refresh_token": token.get("refresh_token"),
        "token_type": token.get("token_type") or "Bearer",
        "scope": token.get("scope"),
        "expires_at": int(expires_at.timestamp()) if expires_at else None,
    }
    for key in ("id_token", "metadata"):
        if token.get(key) is not None:
            data[key] = token[key]
    return data, expires_at


async def store_oauth_token(
    vault: TokenVault, resolved: ResolvedOAuth, token: Mapping[str, Any]
) -> TokenInfo:
    data, expires_at = token_data(token)
    version = await vault.put(resolved.connection, "oauth2", data, expires_at)
    scope = data.get("scope")
    return TokenInfo(
        connection=resolved.connection,
        kind="oauth2",
        version=version,
        expires_at=expires_at,
        scope=scope if isinstance(scope, str) else None,
    )


# -- static credentials --------------------------------------------------------------------


def _require_kind(hub: Hub, connection: str, *wanted: str) -> None:
    kind = connection_kind(hub, connection)
    if kind not in wanted:
        hint = "run 'crmhub connect' to authorize it" if kind in OAUTH_KINDS else ""
        raise ConfigError(
            f"connection {connection!r} uses {kind!r} credentials, not {' or '.join(wanted)}"
            + (f"; {hint}" if hint else "")
        )


async def store_api_key(hub: Hub, connection: str, key: str) -> TokenInfo:
    """Keep an API key for ``connection`` in the vault (kind ``api_key``)."""
    _require_kind(hub, connection, "api_key")
    if not key.strip():
        raise ConfigError(f"the API key for connection {connection!r} is empty")
    vault = open_vault(hub, create_key=True)
    version = await vault.put(connection, "api_key", {"api_key": key.strip()}, None)
    return TokenInfo(connection=connection, kind="api_key", version=version)


async def store_basic(hub: Hub, connection: str, username: str, password: str) -> TokenInfo:
    """Keep a user name and password for ``connection`` in the vault (kind ``basic``)."""
    _require_kind(hub, connection, "basic")
    if not username or not password:
        raise ConfigError(f"connection {connection!r} needs both a user name and a password")
    data = {"username": username, "password": password}
    version = await open_vault(hub, create_key=True).put(connection, "basic", data, None)
    return TokenInfo(connection=connection, kind="basic", version=version)


async def disconnect(hub: Hub, connection: str) -> bool:
    """Revoke the refresh token where the provider allows, then forget the credentials.

    Revocation is best effort (the provider may be unreachable); the vault row is always
    deleted. Returns whether something was stored.
    """
    vault = open_vault(hub)
    stored = await vault.get(connection)
    if stored is None:
        return False
    if stored.kind == "oauth2":
        resolved = resolve(hub, connection)
        url = resolved.settings.revocation_url
        token = stored.data.get("refresh_token") or stored.data.get("access_token")
        if url and token:
            hint = "refresh_token" if stored.data.get("refresh_token") else "access_token"
            try:
                async with oauth_client(resolved) as client:
                    await client.revoke_token(url, token=token, token_type_hint=hint)
            except (httpx.HTTPError, OAuthError):
                pass  # the local copy goes anyway; the provider expires it in time
    await vault.delete(connection)
    return True


def token_manager(vault: TokenVault, resolved: ResolvedOAuth) -> TokenManager:
    """The ``TokenManager`` keeping an OAuth2 connection's access token valid.

    Google connections refresh through google-auth, the others with the standard
    ``refresh_token`` grant. (msal connections use ``MicrosoftAdapter.access_token``.)
    """
    if resolved.kind == "google":
        from auth.google import google_refresher

        refresher = google_refresher(resolved)
    else:
        refresher = refresh_with_httpx(
            resolved.token_url,
            resolved.client_id,
            resolved.client_secret,
            client_auth=resolved.settings.client_auth,
        )
    return TokenManager(vault, refresher, connection=resolved.connection)
