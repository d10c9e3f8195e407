"""google-api-python-client on the hub's HTTP layer.

The client library is blocking: its calls (building requests, batches, parsing answers) run
in worker threads. It sends through :class:`HubHttp`, an ``httplib2.Http`` stand-in that
hands every request to the hub's async client on the event loop, so Gmail traffic gets the
hub's auth flow, retries (:class:`~connectors.gmail.classify.GoogleClassifier`), counters
and rate limit like any other connector's. The limit is Gmail's per-user quota in units per
second: each request weighs its units (list 5, get 5, history 2, profile 1, watch 100, a
batch the sum of its calls); People calls weigh one each against their own limit.

``api_root`` (a sandbox, a proxy) makes the library read the discovery documents from
``<api_root>/discovery/v1/apis/{api}/{apiVersion}/rest``; without it the documents shipped
with the library are used and requests go to Google.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httplib2
import httpx
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from connectors.gmail.classify import GoogleClassifier, GoogleError, google_error, throttling
from hub.connector import ConnectorContext
from hub.errors import ConnectorError, RateLimited, TransientError
from hub.http import COST, RateLimit, RetryingClient, RetryPolicy, make_client

__all__ = ["BATCH_MAX", "GmailApi", "GoogleError", "HubHttp", "gmail_cost"]

BATCH_MAX = 100
"""Google's most calls in one batch (50 is what Gmail recommends, the default)."""
GMAIL_UNITS = (
    (re.compile(r"/users/[^/]+/messages/[^/]+$"), 5),
    (re.compile(r"/users/[^/]+/messages$"), 5),
    (re.compile(r"/users/[^/]+/history$"), 2),
    (re.compile(r"/users/[^/]+/profile$"), 1),
    (re.compile(r"/users/[^/]+/watch$"), 100),
    (re.compile(r"/users/[^/]+/stop$"), 50),
)
_PART = re.compile(rb"^(GET|POST|PUT|PATCH|DELETE) (\S+) HTTP/1\.1", re.MULTILINE)
DISCOVERY = "/discovery/v1/apis/{api}/{apiVersion}/rest"


def gmail_cost(method: str, url: str, body: bytes | None) -> int:
    """Gmail quota units of one request (a batch: the sum of its calls)."""
    path = urlsplit(url).path
    if path.startswith("/batch"):
        return sum(gmail_cost(m.decode(), t.decode(), None) for m, t in _PART.findall(body or b""))
    for pattern, units in GMAIL_UNITS:
        if pattern.search(path):
            return units
    return 1


def _safe_to_repeat(method: str, url: str, body: bytes | None) -> bool:
    """GETs, and batches of GETs only."""
    if method == "GET":
        return True
    if urlsplit(url).path.startswith("/batch"):
        parts = _PART.findall(body or b"")
        return bool(parts) and all(m == b"GET" for m, _ in parts)
    return False


class HubHttp:
    """The ``httplib2.Http`` interface google-api-python-client calls, in a worker thread,
    sending each request with the hub's client on the event loop."""

    def __init__(
        self,
        client: RetryingClient,
        loop: asyncio.AbstractEventLoop,
        cost: Callable[[str, str, bytes | None], int],
    ) -> None:
        self.client = client
        self.loop = loop
        self.cost = cost
        self._pending: set[concurrent.futures.Future[httpx.Response]] = set()

    def request(
        self,
        uri: str,
        method: str = "GET",
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        redirections: int = 5,
        connection_type: Any = None,
    ) -> tuple[httplib2.Response, bytes]:
        content = body.encode() if isinstance(body, str) else body
        future = asyncio.run_coroutine_threadsafe(
            self._send(method.upper(), uri, content, dict(headers or {})), self.loop
        )
        self._pending.add(future)
        try:
            response = future.result()
        finally:
            self._pending.discard(future)
        info = {k.lower(): v for k, v in response.headers.items()}
        info["status"] = str(response.status_code)
        result = httplib2.Response(info)
        result.reason = response.reason_phrase
        return result, response.content

    async def _send(
        self, method: str, uri: str, body: bytes | None, headers: dict[str, str]
    ) -> httpx.Response:
        headers.pop("content-length", None)
        return await self.client.request(
            method,
            uri,
            content=body,
            headers=headers,
            idempotent=_safe_to_repeat(method, uri, body),
            extensions={COST: self.cost(method, uri, body)},
        )

    def cancel(self) -> None:
        """Give up every request in flight (their worker threads raise at once)."""
        for future in list(self._pending):
            future.cancel()


class GmailApi:
    """The Gmail and People services of one connection, with the calls' error handling."""

    def __init__(
        self,
        context: ConnectorContext,
        auth: httpx.Auth,
        *,
        api_root: str | None,
        limit_key: str,
        units_per_second: float,
        people_per_minute: float,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.connection = context.connection
        self.api_root = api_root.rstrip("/") if api_root else None
        self.policy = policy or RetryPolicy()
        classifier = GoogleClassifier()

        def client(base: str, limit: RateLimit, key: str) -> RetryingClient:
            hub_client = make_client(
                base_url=base,
                counters=context.counters,
                auth=auth,
                rate_limit=limit,
                limit_key=key,
            )
            return RetryingClient(
                hub_client, connection=self.connection, classifier=classifier, policy=self.policy
            )

        units = RateLimit(rate=units_per_second, burst=max(2, int(units_per_second)))
        people = RateLimit(rate=people_per_minute, per_seconds=60, burst=10)
        self._gmail_client = client(
            self.api_root or "https://gmail.googleapis.com", units, f"gmail:{limit_key}"
        )
        self._people_client = client(
            self.api_root or "https://people.googleapis.com", people, f"people:{limit_key}"
        )
        self._services: dict[str, Any] = {}
        self._bridges: list[HubHttp] = []

    async def service(self, name: str) -> Any:
        """The built ``gmail`` or ``people`` service (discovery read once per connector)."""
        if name not in self._services:
            loop = asyncio.get_running_loop()
            client = self._gmail_client if name == "gmail" else self._people_client
            cost = gmail_cost if name == "gmail" else (lambda m, u, b: 1)
            bridge = HubHttp(client, loop, cost)
            self._bridges.append(bridge)
            options: dict[str, Any] = {"http": bridge, "cache_discovery": False}
            if self.api_root:
                options.update(
                    discoveryServiceUrl=self.api_root + DISCOVERY, static_discovery=False
                )
            try:
                self._services[name] = await asyncio.to_thread(build, name, "v1", **options)
            except HttpError as exc:
                raise google_error(exc, self.connection, f"discovery of {name}") from None
        return self._services[name]

    async def execute(self, request: Any, what: str) -> Any:
        """Run one library request in a worker thread; library errors become crmhub ones."""
        try:
            return await asyncio.to_thread(request.execute, num_retries=0)
        except HttpError as exc:
            raise google_error(exc, self.connection, what) from None

    async def batch(
        self, service: Any, calls: dict[str, Any], what: str, size: int = 50
    ) -> dict[str, Any]:
        """Run ``calls`` (key -> library request) in batches of ``size``; the answers by key.

        A call refused with 404 answers ``None``; throttled or failing calls are sent again,
        alone in a later batch, after a backoff (a batch does not bypass the quota: each
        call counts); any other refusal raises :class:`GoogleError`.
        """
        results: dict[str, Any] = {}
        pending = dict(calls)
        for attempt in range(1, self.policy.attempts + 1):
            chunks = [list(pending.items())[i : i + size] for i in range(0, len(pending), size)]
            outcomes = await asyncio.gather(*(self._one_batch(service, c, what) for c in chunks))
            retry: dict[str, Any] = {}
            for outcome in outcomes:
                for key, (answer, again) in outcome.items():
                    if again:
                        retry[key] = pending[key]
                    else:
                        results[key] = answer
            if not retry:
                return results
            pending = retry
            if attempt < self.policy.attempts:
                await asyncio.sleep(self.policy.backoff(attempt))
        raise RateLimited(
            f"{len(pending)} calls of {what} were still throttled after "
            f"{self.policy.attempts} attempts",
            connection=self.connection,
        )

    async def _one_batch(
        self, service: Any, chunk: list[tuple[str, Any]], what: str
    ) -> dict[str, tuple[Any, bool]]:
        found: dict[str, tuple[Any, bool]] = {}
        failures: list[ConnectorError] = []

        def done(key: str, answer: Any, exc: Exception | None) -> None:
            if exc is None:
                found[key] = (answer, False)
                return
            if not isinstance(exc, HttpError):
                failures.append(TransientError(f"{what}: {exc}", connection=self.connection))
                return
            status = int(exc.resp.status)
            if status == 404:
                found[key] = (None, False)
            elif status >= 500 or throttling(status, exc.content):
                found[key] = (None, True)
            else:
                failures.append(google_error(exc, self.connection, what))

        batch = service.new_batch_http_request(callback=done)
        for key, request in chunk:
            batch.add(request, request_id=key)
        try:
            await asyncio.to_thread(batch.execute)
        except HttpError as exc:
            raise google_error(exc, self.connection, f"batch of {what}") from None
        if failures:
            raise failures[0]
        return found

    async def aclose(self) -> None:
        for bridge in self._bridges:
            bridge.cancel()
        await self._gmail_client.aclose()
        await self._people_client.aclose()
