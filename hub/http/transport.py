"""The transport wrapper every hub client sends through: pacing and counting on the wire.

It sits under httpx's auth and redirect handling, so each request that actually leaves
(including a token refresh or the auth flow's replay after a 401) takes a rate-limit slot
and is counted. The slot is held until the response body is closed. A request may weigh
more than one against the limiter's window: its ``COST`` extension (provider quota units).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from hub.http.counters import HttpCounters
from hub.http.ratelimit import RateLimiter, Slot

COST = "crmhub.cost"
"""Request extension: what the request weighs against the rate limit's window (default 1)."""


class _CountingRequestStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, counters: HttpCounters) -> None:
        self._inner = inner
        self._counters = counters

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._counters.bytes_sent += len(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class _CountingResponseStream(httpx.AsyncByteStream):
    """Counts body bytes and frees the rate-limit slot when the body is closed."""

    def __init__(
        self, inner: httpx.AsyncByteStream, counters: HttpCounters, slot: Slot | None
    ) -> None:
        self._inner = inner
        self._counters = counters
        self._slot = slot

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._counters.bytes_received += len(chunk)
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if self._slot is not None:
                self._slot.release()


class HubTransport(httpx.AsyncBaseTransport):
    """Wraps a transport with a shared ``RateLimiter`` (optional) and ``HttpCounters``."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        counters: HttpCounters,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.inner = inner
        self.counters = counters
        self.limiter = limiter

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        limiter = self.limiter
        slot = None
        if limiter is not None:
            slot = await limiter.acquire(float(request.extensions.get(COST, 1)))
        try:
            self._count_request_body(request)
            self.counters.calls += 1
            response = await self.inner.handle_async_request(request)
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        try:
            # in-memory transports (tests, mocks) hand back bodies already read
            self.counters.bytes_received += len(response.content)
        except httpx.ResponseNotRead:
            if isinstance(response.stream, httpx.AsyncByteStream):
                response.stream = _CountingResponseStream(response.stream, self.counters, slot)
                return response
        if slot is not None:
            slot.release()
        return response

    def _count_request_body(self, request: httpx.Request) -> None:
        try:
            self.counters.bytes_sent += len(request.content)
        except httpx.RequestNotRead:
            if isinstance(request.stream, httpx.AsyncByteStream):
                request.stream = _CountingRequestStream(request.stream, self.counters)

    async def aclose(self) -> None:
        await self.inner.aclose()
