"""The Slack Web API as the connector uses it: auth, method tiers, classification, paging.

Every method is called as ``GET <api_url>/<method>?...`` (``chat.postMessage``: a form POST)
with the bot token as ``Authorization: Bearer``. Slack answers most failures with HTTP 200
and ``{"ok": false, "error": "..."}``; :class:`SlackClassifier` reads both the status and
that body in one place. Limits are Slack's per method and workspace: each tier has its own
pacer (tier 2: 20 a minute, tier 3: 50, tier 4: 100), and ``chat.postMessage`` one message
a second per channel; a 429 is retried after its ``Retry-After``.

With token rotation the access token lives 12 hours: the vault refreshes it before it
expires, and an answer ``token_expired`` (a clock ahead of ours) refreshes once and repeats
the call (:class:`SlackAuth`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx

from hub.connector import ConnectorContext
from hub.errors import ErrorKind, NeedsReauth, PermanentError, TransientError
from hub.http import HubClient, RateLimit, ResponseClassifier, make_client, send_with_retry

__all__ = ["TIERS", "SlackApi", "SlackAuth", "SlackClassifier", "slack_error"]

TIERS: dict[str, int] = {
    "users.list": 2,
    "conversations.history": 3,
    "conversations.replies": 3,
    "auth.test": 4,
    "users.info": 4,
}
"""Each Web API method the connector calls, and Slack's rate-limit tier for it."""

REAUTH = frozenset(
    {
        "not_authed",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission_for_token",
        "org_login_required",
    }
)
CONFIG = frozenset(
    {
        "missing_scope",
        "not_in_channel",
        "channel_not_found",
        "no_permission",
        "not_allowed_token_type",
        "team_access_not_granted",
        "ekm_access_denied",
    }
)
TRANSIENT = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "team_added_to_org"}
)


def slack_error(response: httpx.Response) -> str | None:
    """The ``error`` of an ``ok: false`` answer, or None (a success, or not Slack's JSON)."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and body.get("ok") is False:
        return str(body.get("error") or "unknown_error")
    return None


class SlackClassifier(ResponseClassifier):
    """HTTP 429 and ``ratelimited`` are throttles; token errors need re-auth; scope and channel
    errors are configuration; Slack's server errors are transient; other errors permanent."""

    def classify(self, response: httpx.Response) -> ErrorKind | None:
        kind = super().classify(response)
        if kind is not None:
            return kind
        error = slack_error(response)
        if error is None:
            return None
        if error == "ratelimited":
            return ErrorKind.RATE_LIMITED
        if error in REAUTH:
            return ErrorKind.NEEDS_REAUTH
        if error in CONFIG:
            return ErrorKind.CONFIG
        if error in TRANSIENT:
            return ErrorKind.TRANSIENT
        return ErrorKind.PERMANENT

    def describe(self, response: httpx.Response) -> str:
        error = slack_error(response)
        head = super().describe(response)
        if error is None:
            return head
        try:
            needed = response.json().get("needed")
        except ValueError:
            needed = None
        hint = f" (the app needs the scope {needed})" if needed else ""
        return f"Slack error {error}{hint}"


class SlackAuth(httpx.Auth):
    """The bot token as ``Authorization: Bearer``; a rotated token that Slack calls expired
    (HTTP 401 or ``token_expired``) is refreshed through the vault once and the call sent
    again."""

    requires_request_body = True

    def __init__(self, inner: httpx.Auth) -> None:
        self.inner = inner
        self.manager = getattr(inner, "manager", None)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self.manager is None:
            flow = self.inner.async_auth_flow(request)
            response = yield await flow.__anext__()
            with contextlib.suppress(StopAsyncIteration):
                yield await flow.asend(response)
            return
        token = await self.manager.access_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        await response.aread()  # Slack tells of an expired token in the body
        if response.status_code == 401 or slack_error(response) == "token_expired":
            token = await self.manager.refresh(rejected=token)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request


class SlackApi:
    """The calls of one connection's workspace, each paced by its method's tier."""

    def __init__(
        self,
        context: ConnectorContext,
        auth: httpx.Auth,
        *,
        api_url: str,
        workspace: str,
        per_minute: dict[int, float],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.context = context
        self.connection = context.connection
        self.auth = SlackAuth(auth)
        self.base = api_url.rstrip("/") + "/"
        self.workspace = workspace
        self.per_minute = per_minute
        self.transport = transport
        self.classifier = SlackClassifier()
        self._clients: dict[str, HubClient] = {}

    def _client(self, key: str, limit: RateLimit) -> HubClient:
        client = self._clients.get(key)
        if client is None:
            client = make_client(
                base_url=self.base,
                counters=self.context.counters,
                auth=self.auth,
                rate_limit=limit,
                limit_key=f"slack:{self.workspace}:{key}",
                transport=self.transport,
            )
            self._clients[key] = client
        return client

    def _tier_client(self, method: str) -> HubClient:
        tier = TIERS.get(method, 3)
        rate = self.per_minute.get(tier, 50.0)
        return self._client(f"tier{tier}", RateLimit(rate=rate, per_seconds=60, burst=2))

    def _body(self, response: httpx.Response, method: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise TransientError(
                f"Slack answered {method} with a body that is not a JSON object",
                connection=self.connection,
                request=f"{response.request.method} {method}",
            )
        return body

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """``GET <method>`` with ``params`` (None left out); the answer's JSON body."""
        query = {k: _text(v) for k, v in params.items() if v is not None}
        response = await send_with_retry(
            self._tier_client(method),
            "GET",
            method,
            connection=self.connection,
            classifier=self.classifier,
            params=query,
        )
        return self._body(response, method)

    async def pages(self, method: str, key: str, **params: Any) -> AsyncIterator[dict[str, Any]]:
        """Each answer of a cursor-paged listing (``response_metadata.next_cursor``); stops on
        an empty or repeated cursor. ``key`` names the list that must be in every answer.

        A ``cursor`` given to resume a listing that Slack no longer knows (``invalid_cursor``:
        cursors expire) starts the listing again from its beginning."""
        cursor = params.pop("cursor", None)
        resumed = bool(cursor)
        seen: set[str] = set()
        while True:
            try:
                body = await self.call(method, **params, cursor=cursor or None)
            except PermanentError as exc:
                if not (resumed and "invalid_cursor" in str(exc)):
                    raise
                resumed, cursor = False, None
                continue
            resumed = False
            if not isinstance(body.get(key), list):
                raise TransientError(
                    f"Slack's {method} answer has no '{key}' list", connection=self.connection
                )
            yield body
            cursor = next_cursor(body)
            if not cursor or cursor in seen:
                return
            seen.add(cursor)

    async def post_message(self, channel: str, text: str, blocks: list[Any]) -> dict[str, Any]:
        """``chat.postMessage`` to ``channel``, at most one a second per channel. A message
        is sent again only when the first try never left (Slack has no idempotency key)."""
        # a little under Slack's one a second: a message that leaves a few milliseconds
        # early still arrives after the last one's second is over
        per_channel = RateLimit(rate=1, per_seconds=1.05, burst=1)
        client = self._client(f"post:{channel}", per_channel)
        data = {"channel": channel, "text": text, "blocks": json.dumps(blocks)}
        response = await send_with_retry(
            client,
            "POST",
            "chat.postMessage",
            connection=self.connection,
            classifier=self.classifier,
            data=data,
            idempotent=False,
        )
        return self._body(response, "chat.postMessage")

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


def next_cursor(body: dict[str, Any]) -> str | None:
    meta = body.get("response_metadata")
    value = meta.get("next_cursor") if isinstance(meta, dict) else None
    return str(value) if value else None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def require_credentials(context: ConnectorContext) -> httpx.Auth:
    if context.credentials is None:
        raise NeedsReauth(
            f"not connected; run `crmhub connect {context.connection}`",
            connection=context.connection,
        )
    return context.credentials.auth()
