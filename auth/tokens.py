"""Access tokens that stay valid: one refresh per connection, however many workers ask.

``TokenManager.access_token()`` returns a token that is valid for at least ``margin`` (or
half its lifetime, for short-lived tokens). When it is not, exactly one caller refreshes:

* in one process, callers queue on an asyncio lock per connection; the first refreshes,
  the others find the new token when their turn comes;
* across processes and hosts, the refresher first claims the row in the store by
  compare-and-swap (status ``refreshing``, version + 1, ``claimed_by`` its ``host:pid:tag``);
  the others poll the row until the claim ends. A claim whose holder's process is gone from
  this host is taken over at once (as run leases are, ``hub.store.lease``); a claim older
  than ``claim_timeout`` (a holder on another host that died, or hangs) is taken over then.

The rotated refresh token is saved (compare-and-swap on the claim) before the new access token
is handed out. What no client can prevent: a holder killed after the server answered and
before the save leaves only the rotated-out refresh token; the taker's refresh with it is
refused by a strict rotating server (which may revoke the whole grant), and the connection
then needs ``crmhub connect NAME``; the error says that an interrupted refresh was the cause.

A refused refresh (``invalid_grant``) marks the connection ``needs_reauth`` and every later
call raises ``NeedsReauth`` without contacting the provider. Tokens without an
expiry (Mailchimp's ``expires_in: 0``) are never refreshed.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

import httpx

from auth.vault import NEEDS_REAUTH, REFRESHING, StoredToken, TokenVault
from hub.errors import (
    ConnectorConfigError,
    ConnectorError,
    NeedsReauth,
    PermanentError,
    RateLimited,
    TransientError,
)
from hub.store.lease import _holder_is_dead as holder_is_dead
from hub.store.lease import make_holder

log = logging.getLogger("crmhub.auth")

Refresher = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""Performs the token request for the current token data; returns the token response."""

REFUSED_GRANT_ERRORS = frozenset(
    {"invalid_grant", "invalid_refresh_token", "token_revoked", "token_expired", "invalid_token"}
)


class InvalidGrant(NeedsReauth):
    """The authorization server refused the grant (RFC 6749 ``invalid_grant``)."""

    def __init__(self, error: str = "invalid_grant", description: str | None = None, **kw: Any):
        self.error = error
        text = f"the authorization server refused the refresh with {error}"
        super().__init__(f"{text}: {description}" if description else text, **kw)


def reconnect_error(connection: str, token: StoredToken | None) -> NeedsReauth:
    """Why stored credentials cannot be used (none, or refused) and the fix."""
    if token is None:
        why = "no credentials are stored"
    else:
        why = "the credentials were refused"
        if token.last_error:
            why += f": {token.last_error}"
    return NeedsReauth(
        f"{why}; reconnect with `crmhub connect {connection}`", connection=connection
    )


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _secret_values(*datas: dict[str, Any]) -> list[str]:
    # Every longish string in a token is treated as secret: ids are harmless to hide.
    return [v for data in datas for v in data.values() if isinstance(v, str) and len(v) >= 8]


def merge_token_response(old: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """The new token data: the response over the old data, keeping the old refresh token
    when the response has none (providers that do not rotate)."""
    merged = {**old, **{k: v for k, v in response.items() if v is not None}}
    if not response.get("refresh_token") and old.get("refresh_token"):
        merged["refresh_token"] = old["refresh_token"]
    return merged


def expiry_from_response(response: dict[str, Any], now: datetime) -> datetime | None:
    """When the access token expires; None for tokens that never do (``expires_in`` 0/absent)."""
    try:
        expires_in = float(response.get("expires_in") or 0)
    except (TypeError, ValueError):
        expires_in = 0
    if expires_in > 0:
        return now + timedelta(seconds=expires_in)
    expires_at = response.get("expires_at")
    if isinstance(expires_at, int | float) and expires_at > 0:
        return datetime.fromtimestamp(expires_at, UTC)
    return None


@dataclass(eq=False)
class _Shared:
    """What every manager of one connection shares within one event loop."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    token: StoredToken | None = None
    failures: int = 0
    last_failure: TransientError | None = None


_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], _Shared]] = (
    weakref.WeakKeyDictionary()
)


class TokenManager:
    """Valid access tokens for one connection (see the module docstring for the guarantees)."""

    def __init__(
        self,
        vault: TokenVault,
        refresher: Refresher,
        *,
        connection: str,
        margin: timedelta = timedelta(minutes=5),
        clock: Callable[[], datetime] | None = None,
        claim_timeout: timedelta = timedelta(seconds=60),
        poll_interval: float = 0.05,
    ) -> None:
        self.vault = vault
        self.refresher = refresher
        self.connection = connection
        self.margin = margin
        self.clock = clock or vault.clock
        self.claim_timeout = claim_timeout
        self.poll_interval = poll_interval

    def __repr__(self) -> str:
        return f"TokenManager(connection={self.connection!r})"

    def _shared(self) -> _Shared:
        per_loop = _SHARED.setdefault(asyncio.get_running_loop(), {})
        return per_loop.setdefault((self.vault.store.url, self.connection), _Shared())

    def is_fresh(self, token: StoredToken) -> bool:
        """Valid for longer than the margin (capped at half the token's lifetime)."""
        if token.expires_at is None:
            return True
        margin = self.margin
        if token.refreshed_at is not None:
            margin = max(min(margin, (token.expires_at - token.refreshed_at) / 2), timedelta(0))
        return self.clock() < token.expires_at - margin

    async def access_token(self) -> str:
        """A valid access token, refreshed first when it is about to expire."""
        return _access(await self.token())

    async def token(self) -> StoredToken:
        """The current, valid credentials (refreshed first when needed)."""
        cached = self._shared().token
        if cached is not None and self.is_fresh(cached):
            return cached
        return await self._obtain(force=False, rejected=None)

    async def refresh(self, *, force: bool = False, rejected: str | None = None) -> str:
        """Refresh unless someone already did; returns the access token to use.

        ``rejected``: the access token the provider just refused (a 401); a different valid
        token in the store is used as it is. ``force``: refresh even if the token is still
        valid (keep-alive), unless a refresh completed after this call began.
        """
        return _access(await self._obtain(force=force, rejected=rejected))

    async def keep_alive_due(self, max_idle: timedelta = timedelta(days=30)) -> bool:
        """Whether the refresh token has gone unused for ``max_idle`` (Xero's die after 60
        days unused): the scheduler then calls ``refresh(force=True)``."""
        token = await self.vault.get(self.connection)
        if token is None or token.status == NEEDS_REAUTH or not token.data.get("refresh_token"):
            return False
        last = token.refreshed_at or token.updated_at
        return self.clock() - last >= max_idle

    async def _obtain(self, *, force: bool, rejected: str | None) -> StoredToken:
        shared = self._shared()
        started = self.vault.clock()
        failures_seen = shared.failures
        async with shared.lock:
            # A refresh that failed while we queued would fail for us too: report, don't repeat.
            if shared.failures != failures_seen and shared.last_failure is not None:
                raise TransientError(shared.last_failure)
            cached = shared.token
            if (
                cached is not None
                and not force
                and self._satisfies(cached, False, rejected, started)
            ):
                return cached  # refreshed by the caller ahead of us in the queue
            while True:
                token = await self._current(shared)
                interrupted: str | None = None
                if token.status == REFRESHING:
                    interrupted = self._interrupted(token)
                    if interrupted is None:
                        await asyncio.sleep(self.poll_interval)
                        continue
                    log.warning(
                        "taking over the token refresh of %r: %s", self.connection, interrupted
                    )
                elif self._satisfies(token, force, rejected, started):
                    shared.token = token
                    return token
                elif not token.data.get("refresh_token"):
                    if rejected is None and self.is_fresh(token):
                        return token  # forced, but there is nothing to refresh with
                    reason = "the access token was refused or expired and there is no refresh token"
                    await self._refused(shared, token.version, reason)
                    continue
                claim = await self.vault.claim_refresh(
                    self.connection, token.version, make_holder()
                )
                if claim is None:
                    continue  # someone else claimed it first: wait for their result
                result = await self._refresh_claimed(shared, token, claim, interrupted)
                if result is not None:
                    return result

    def _interrupted(self, token: StoredToken) -> str | None:
        """Why the claim on ``token`` is to be taken over, or None while its holder may
        still finish: its process is gone from this host, or it is older than the timeout."""
        holder = token.claimed_by or "a process that did not sign its claim"
        if token.claimed_by and holder_is_dead(token.claimed_by):
            return f"the refresh by {holder} was interrupted: its process is gone"
        age = self.vault.clock() - token.updated_at
        if age >= self.claim_timeout:
            return f"the refresh by {holder} has not finished in {age.total_seconds():.0f} s"
        return None

    async def _current(self, shared: _Shared) -> StoredToken:
        token = await self.vault.get(self.connection)
        if token is None or token.status == NEEDS_REAUTH:
            shared.token = None
            raise reconnect_error(self.connection, token)
        return token

    def _satisfies(
        self, token: StoredToken, force: bool, rejected: str | None, started: datetime
    ) -> bool:
        if rejected is not None:
            return token.data.get("access_token") != rejected and self.is_fresh(token)
        if force:
            return token.refreshed_at is not None and token.refreshed_at >= started
        return self.is_fresh(token)

    async def _refused(self, shared: _Shared, version: int, reason: str) -> None:
        """Mark needs_reauth (if the row is still at ``version``) and raise NeedsReauth."""
        shared.token = None
        if await self.vault.mark_needs_reauth(self.connection, reason, expected_version=version):
            log.warning("connection %r needs re-authorisation: %s", self.connection, reason)
            raise NeedsReauth(
                f"{reason}; reconnect with `crmhub connect {self.connection}`",
                connection=self.connection,
            )

    async def _refresh_claimed(
        self, shared: _Shared, token: StoredToken, claim: int, interrupted: str | None
    ) -> StoredToken | None:
        """Perform the claimed refresh. None: the row changed under us, decide again.

        ``interrupted``: why an earlier claim was taken over; a refused refresh then names
        it, since the earlier holder may have spent the refresh token before it died.
        """
        log.debug("refreshing the access token of %r (version %d)", self.connection, claim)
        secrets = _secret_values(token.data)
        try:
            response = await self.refresher(dict(token.data))
        except NeedsReauth as exc:
            reason = redact(exc.reason, secrets)
            if interrupted:
                reason += (
                    f"; {interrupted}, and the server may have rotated the refresh token "
                    "before the new one was saved"
                )
            await self._refused(shared, claim, reason)
            return None  # our claim was taken over and the row rewritten: look again
        except BaseException as exc:
            text = exc.reason if isinstance(exc, ConnectorError) else str(exc)
            reason = redact(text or type(exc).__name__, secrets)
            try:
                await self.vault.release_claim(self.connection, claim, reason)
            finally:
                if not isinstance(exc, asyncio.CancelledError):
                    request = exc.request if isinstance(exc, ConnectorError) else None
                    shared.failures += 1
                    shared.last_failure = TransientError(
                        f"token refresh failed: {reason}",
                        connection=self.connection,
                        request=request,
                    )
            if isinstance(exc, ConnectorError) and reason == exc.reason:
                raise
            if isinstance(exc, Exception) and shared.last_failure is not None:
                raise TransientError(shared.last_failure) from None
            raise
        data = merge_token_response(token.data, response)
        expires_at = expiry_from_response(response, self.clock())
        version = claim
        while not await self.vault.compare_and_swap(self.connection, version, data, expires_at):
            # Our claim was taken over; the taker's request uses a refresh token we may have
            # just rotated away, so ours is the one to keep unless the taker already finished.
            current = await self.vault.get(self.connection)
            if current is None or current.status != REFRESHING:
                return None
            version = current.version
        log.info("refreshed the access token of %r", self.connection)
        now = self.vault.clock()
        shared.token = StoredToken(
            connection=self.connection,
            kind=token.kind,
            data=data,
            version=version + 1,
            expires_at=expires_at,
            status="ok",
            last_error=None,
            refreshed_at=now,
            updated_at=now,
        )
        return shared.token


def _access(token: StoredToken) -> str:
    value = token.data.get("access_token")
    if not isinstance(value, str) or not value:
        raise NeedsReauth(
            f"stored credentials of {token.connection!r} have no access token; reconnect",
            connection=token.connection,
        )
    return value


class OAuth2Auth(httpx.Auth):
    """Bearer auth for ``httpx.AsyncClient``; on a 401, refresh once and send again once."""

    requires_request_body = True  # the request may be sent twice

    def __init__(self, manager: TokenManager) -> None:
        self.manager = manager

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("OAuth2Auth needs httpx.AsyncClient: token refresh is asynchronous")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self.requires_request_body:
            await request.aread()
        token = await self.manager.access_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            token = await self.manager.refresh(rejected=token)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request


def refresh_with_httpx(
    token_url: str,
    client_id: str,
    client_secret: str | None = None,
    *,
    client_auth: Literal["body", "basic"] = "body",
    client: httpx.AsyncClient | None = None,
    timeout: float = 30.0,
    extra: dict[str, str] | None = None,
) -> Refresher:
    """A refresher doing the standard ``refresh_token`` grant (RFC 6749 section 6).

    ``invalid_grant`` (and Slack's ``ok: false`` equivalents) raise ``InvalidGrant``;
    5xx, timeouts and network failures ``TransientError``; 429 ``RateLimited``;
    a refused client ``ConnectorConfigError``.
    """
    request_name = f"POST {token_url}"

    async def refresh(data: dict[str, Any]) -> dict[str, Any]:
        refresh_token = data.get("refresh_token")
        if not refresh_token:
            raise NeedsReauth("no refresh token is stored", request=request_name)
        form = {"grant_type": "refresh_token", "refresh_token": str(refresh_token), **(extra or {})}
        headers = {"Accept": "application/json"}
        if client_auth == "basic":
            pair = f"{quote(client_id)}:{quote(client_secret or '')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        else:
            form["client_id"] = client_id
            if client_secret:
                form["client_secret"] = client_secret
        started = time.monotonic()
        try:
            if client is not None:
                response = await client.post(token_url, data=form, headers=headers, timeout=timeout)
            else:
                async with httpx.AsyncClient(timeout=timeout) as own:
                    response = await own.post(token_url, data=form, headers=headers)
        except httpx.TimeoutException:
            waited = time.monotonic() - started
            raise TransientError(
                f"token endpoint timed out after {waited:.1f} s", request=request_name
            ) from None
        except httpx.HTTPError as exc:
            raise TransientError(
                f"cannot reach the token endpoint ({type(exc).__name__})", request=request_name
            ) from None
        secrets = [str(refresh_token), client_secret or ""]
        return _parse_token_response(response, request_name, secrets)

    return refresh


def _parse_token_response(
    response: httpx.Response, request_name: str, secrets: list[str]
) -> dict[str, Any]:
    status = response.status_code
    if status == 429:
        retry = response.headers.get("Retry-After", "")
        raise RateLimited(
            "token endpoint is rate limiting (429)",
            request=request_name,
            retry_after=float(retry) if retry.isdigit() else None,
        )
    if status >= 500:
        raise TransientError(f"token endpoint answered {status}", request=request_name)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise TransientError(
            f"token endpoint answered {status} without a JSON object", request=request_name
        )
    error = body.get("error") if (status >= 400 or body.get("ok") is False) else None
    if status >= 400 or error:
        code = str(error or f"http_{status}")
        described = redact(str(body.get("error_description") or ""), secrets)[:200] or None
        if code in REFUSED_GRANT_ERRORS:
            raise InvalidGrant(code, described, request=request_name)
        text = f"token endpoint refused the request ({code}{': ' + described if described else ''})"
        if code in ("invalid_client", "unauthorized_client") or status == 401:
            raise ConnectorConfigError(
                f"{text}; check the client id and secret", request=request_name
            )
        raise PermanentError(text, request=request_name)
    if not body.get("access_token"):
        raise TransientError("token response has no access_token", request=request_name)
    return body
