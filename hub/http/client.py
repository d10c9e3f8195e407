"""The one HTTP client factory: every connector's client is made here."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx

from hub.http.counters import HttpCounters
from hub.http.ratelimit import RateLimit, RateLimiter, limiter_for
from hub.http.transport import HubTransport

try:
    __version__ = version("crmhub")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0"

USER_AGENT = f"crmhub/{__version__}"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
"""Connect 10 s; read, write and waiting for a pooled connection 30 s each."""
DEFAULT_LIMITS = httpx.Limits(max_connections=20, max_keepalive_connections=10)


class HubClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` that also carries its counters and rate limiter."""

    def __init__(
        self,
        *,
        counters: HttpCounters,
        rate_limiter: RateLimiter | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.counters = counters
        self.rate_limiter = rate_limiter


def make_client(
    *,
    base_url: str,
    counters: HttpCounters,
    auth: httpx.Auth | None = None,
    headers: dict[str, str] | None = None,
    timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
    limits: httpx.Limits | None = None,
    rate_limit: RateLimit | None = None,
    limit_key: str | None = None,
    user_agent: str = USER_AGENT,
    transport: httpx.AsyncBaseTransport | None = None,
    follow_redirects: bool = True,
) -> HubClient:
    """A client for one connection: timeouts, pooled connections, auth, pacing, counters.

    ``rate_limit`` paces every request through the process-wide limiter of ``limit_key``
    (default: ``base_url``). Pass the connection name, or the provider's unit of limiting
    (e.g. ``f"xero:{tenant_id}"``), so every client of that account shares one limiter.
    The connection pool is sized to ``rate_limit.concurrency`` unless ``limits`` is given.
    ``auth`` is any ``httpx.Auth``; its flow runs under the limiter like other requests.
    ``transport`` replaces the network (respx, ``httpx.ASGITransport`` in tests); ``limits``
    then has no effect. Retries are not done here: see ``send_with_retry``.
    """
    limiter = None
    if rate_limit is not None:
        limiter = limiter_for(limit_key or base_url, rate_limit)
    if limits is None:
        limits = DEFAULT_LIMITS
        if rate_limit is not None and rate_limit.concurrency is not None:
            n = rate_limit.concurrency
            limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    inner = transport or httpx.AsyncHTTPTransport(limits=limits)
    all_headers = {"User-Agent": user_agent, **(headers or {})}
    return HubClient(
        counters=counters,
        rate_limiter=limiter,
        base_url=base_url,
        auth=auth,
        headers=all_headers,
        timeout=timeout,
        transport=HubTransport(inner, counters=counters, limiter=limiter),
        follow_redirects=follow_redirects,
    )
