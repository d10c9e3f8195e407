"""Microsoft Graph over the hub's HTTP layer: msal tokens, Outlook's limits, JSON batching.

Every request goes through the hub's retrying client with :class:`GraphClassifier` and a
limiter per mailbox: at most 4 requests in flight and 10,000 in 10 minutes (Outlook's
limits per app and mailbox). ``$batch`` carries up to 20 requests; Graph evaluates each on
its own, so each can be throttled on its own: those come back 429 and are sent again, in a
later batch, once their ``Retry-After`` has passed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx

from connectors.outlook.classify import GraphClassifier, graph_error
from hub.connector import ConnectorContext
from hub.errors import RateLimited
from hub.http import DEFAULT_TIMEOUT, RateLimit, RetryingClient, RetryPolicy, make_client

__all__ = ["BATCH_MAX", "CONCURRENCY", "GraphApi", "user_path"]

BATCH_MAX = 20
CONCURRENCY = 4


class GraphApi:
    def __init__(
        self,
        context: ConnectorContext,
        auth: httpx.Auth,
        *,
        graph_url: str,
        user: str,
        limit_key: str,
        per_10_minutes: int,
        verify: Any = True,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.connection = context.connection
        self.base = graph_url.rstrip("/")
        self.user = user
        """``me`` or ``users/<address>``: the path of the mailbox."""
        self.policy = policy or RetryPolicy()
        limit = RateLimit(rate=per_10_minutes, per_seconds=600, burst=20, concurrency=CONCURRENCY)
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        client = make_client(
            base_url=self.base + "/",
            counters=context.counters,
            auth=auth,
            rate_limit=limit,
            limit_key=f"graph:{limit_key}",
            transport=httpx.AsyncHTTPTransport(verify=verify, limits=limits),
            timeout=DEFAULT_TIMEOUT,
        )
        self.http = RetryingClient(
            client, connection=self.connection, classifier=GraphClassifier(), policy=self.policy
        )

    def path(self, tail: str) -> str:
        """A path of the mailbox, relative to the Graph root (``/users/x/contacts``)."""
        return f"/{self.user}/{tail.lstrip('/')}"

    def url(self, tail: str) -> str:
        return self.base + self.path(tail)

    async def call(
        self,
        method: str,
        url: str,
        what: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        missing_ok: bool = False,
    ) -> Any:
        """One request; its JSON answer (``None`` for no body, or a 404 with ``missing_ok``)."""
        response = await self.http.request(
            method, url, json=json, params=params, headers=headers, idempotent=method != "POST"
        )
        body = _json(response)
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 400:
            raise graph_error(response.status_code, body, self.connection, what)
        return body

    async def rounds(
        self, url: str, what: str, *, prefer: list[str], params: dict[str, Any] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """The pages of a delta round (or any paged listing) from ``url``: the preferences
        are sent with every page, as Graph forgets them across pages."""
        headers = {"Prefer": ", ".join(prefer)} if prefer else None
        next_url: str | None = url
        first = True
        while next_url:
            page = await self.call(
                "GET", next_url, what, params=params if first else None, headers=headers
            )
            first = False
            yield page
            next_url = page.get("@odata.nextLink")

    async def batch(self, requests: list[dict[str, Any]], what: str) -> dict[str, tuple[int, Any]]:
        """Send ``requests`` (``id``, ``method``, ``url`` relative to the Graph root,
        optional ``headers`` and ``body``) in ``$batch`` calls of 20, a few at once; their
        (status, body) by id. A request throttled inside a batch is sent again, alone in a
        later batch, after its ``Retry-After``."""
        results: dict[str, tuple[int, Any]] = {}
        pending = {r["id"]: r for r in requests}
        for attempt in range(1, self.policy.attempts + 1):
            items = list(pending.values())
            chunks = [items[i : i + BATCH_MAX] for i in range(0, len(items), BATCH_MAX)]
            answers = await asyncio.gather(*(self._one_batch(c, what) for c in chunks))
            retry: dict[str, Any] = {}
            wait = 0.0
            for answer in answers:
                for rid, (status, headers, body) in answer.items():
                    if status == 429 or status == 503 or status >= 500:
                        retry[rid] = pending[rid]
                        wait = max(wait, _retry_after(headers) or self.policy.backoff(attempt))
                    else:
                        results[rid] = (status, body)
            if not retry:
                return results
            pending = retry
            if attempt < self.policy.attempts:
                await asyncio.sleep(wait)
        raise RateLimited(
            f"{len(pending)} requests of {what} were still throttled after "
            f"{self.policy.attempts} attempts",
            connection=self.connection,
        )

    async def _one_batch(
        self, chunk: list[dict[str, Any]], what: str
    ) -> dict[str, tuple[int, dict[str, str], Any]]:
        body = await self.call(
            "POST", self.base + "/$batch", f"$batch of {what}", json={"requests": chunk}
        )
        found: dict[str, tuple[int, dict[str, str], Any]] = {}
        for answer in (body or {}).get("responses") or []:
            headers = {str(k).lower(): str(v) for k, v in (answer.get("headers") or {}).items()}
            found[str(answer.get("id"))] = (
                int(answer.get("status", 500)),
                headers,
                answer.get("body"),
            )
        for request in chunk:
            found.setdefault(request["id"], (503, {}, None))  # no answer: try again
        return found

    async def aclose(self) -> None:
        await self.http.aclose()


def _json(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _retry_after(headers: dict[str, str]) -> float | None:
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def user_path(mailbox: str, application: bool) -> str:
    """``users/<mailbox>`` for application permissions, ``me`` for a signed-in user."""
    return f"users/{quote(mailbox, safe='@')}" if application else "me"
