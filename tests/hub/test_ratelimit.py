"""Rate limits: concurrency cap, request window, daily quota, shared limiters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
import respx
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hub.errors import RateLimited
from hub.http import (
    COST,
    HttpCounters,
    HubClient,
    RateLimit,
    RateLimiter,
    RetryPolicy,
    forget_limiters,
    limiter_for,
    make_client,
    send_with_retry,
)

BASE = "http://sandbox.test"


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    forget_limiters()
    yield
    forget_limiters()


class SlowServer:
    """An ASGI app that holds each request a while and records what it saw."""

    def __init__(self, hold: float = 0.02) -> None:
        self.hold = hold
        self.in_flight = 0
        self.max_in_flight = 0
        self.arrivals: list[float] = []
        self.app = Starlette(routes=[Route("/slow", self.slow)])

    async def slow(self, request: Request) -> JSONResponse:
        self.arrivals.append(time.monotonic())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.hold)
        finally:
            self.in_flight -= 1
        return JSONResponse({"ok": True})


def asgi_client(server: SlowServer, limit: RateLimit, key: str = "conn") -> HubClient:
    return make_client(
        base_url=BASE,
        counters=HttpCounters(),
        rate_limit=limit,
        limit_key=key,
        transport=httpx.ASGITransport(app=server.app),
    )


async def test_concurrency_cap_bounds_requests_in_flight() -> None:
    server = SlowServer()
    async with asgi_client(server, RateLimit(concurrency=3)) as client:
        responses = await asyncio.gather(*(client.get("/slow") for _ in range(20)))
        assert all(r.status_code == 200 for r in responses)
        assert client.rate_limiter is not None
        assert client.rate_limiter.in_flight == 0
    assert server.max_in_flight == 3  # reached, never exceeded


async def test_without_a_cap_requests_overlap() -> None:
    server = SlowServer()
    async with asgi_client(server, RateLimit()) as client:
        await asyncio.gather(*(client.get("/slow") for _ in range(10)))
    assert server.max_in_flight > 3  # the cap above is what held it down


async def test_clients_of_one_key_share_the_cap() -> None:
    server = SlowServer()
    limit = RateLimit(concurrency=2)
    async with asgi_client(server, limit) as a, asgi_client(server, limit) as b:
        await asyncio.gather(*(c.get("/slow") for c in (a, b) for _ in range(8)))
    assert server.max_in_flight == 2


async def test_rate_spaces_requests_evenly() -> None:
    server = SlowServer(hold=0.0)
    async with asgi_client(server, RateLimit(rate=40, per_seconds=1, burst=1)) as client:
        started = time.monotonic()
        await asyncio.gather(*(client.get("/slow") for _ in range(9)))
        elapsed = time.monotonic() - started
    gaps = [b - a for a, b in zip(server.arrivals, server.arrivals[1:], strict=False)]
    assert elapsed >= 8 / 40 * 0.95
    assert min(gaps) >= 1 / 40 * 0.8


async def test_burst_lets_a_few_go_at_once_then_paces() -> None:
    server = SlowServer(hold=0.0)
    async with asgi_client(server, RateLimit(rate=20, per_seconds=1, burst=4)) as client:
        await asyncio.gather(*(client.get("/slow") for _ in range(6)))
    first = server.arrivals[0]
    assert server.arrivals[3] - first < 0.03  # the burst
    assert server.arrivals[5] - first >= 2 / 20 * 0.8  # then one per 50 ms


async def test_requests_weigh_their_cost_in_provider_units() -> None:
    # Gmail-like: 100 units a second, a read 5 units, a batch of 10 reads 50
    server = SlowServer(hold=0.0)
    limit = RateLimit(rate=100, per_seconds=1, burst=100)
    async with asgi_client(server, limit) as client:
        await client.get("/slow", extensions={COST: 100})  # the whole bucket at once
        await client.get("/slow", extensions={COST: 50})  # waits for half of it to drain
        await client.get("/slow")  # a plain request weighs one unit
        await client.get("/slow", extensions={COST: 500})  # more than the bucket: a full one
    first, second, third, fourth = server.arrivals
    assert second - first >= 0.5 * 0.8
    assert third - second < 0.1
    assert fourth - third >= 1.0 * 0.8


async def test_burst_never_exceeds_the_rate() -> None:
    limiter = limiter_for("slack:tier1", RateLimit(rate=1, per_seconds=60))
    (await limiter.acquire()).release()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(limiter.acquire(), timeout=0.1)


async def test_slot_is_released_when_the_transport_fails() -> None:
    router = respx.Router(base_url=BASE)
    router.get("/x").mock(side_effect=[httpx.ConnectError("refused"), httpx.Response(200)])
    client = make_client(
        base_url=BASE,
        counters=HttpCounters(),
        rate_limit=RateLimit(concurrency=1),
        limit_key="fails",
        transport=httpx.MockTransport(router.async_handler),
    )
    async with client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/x")
        response = await asyncio.wait_for(client.get("/x"), timeout=2)
    assert response.status_code == 200


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_daily_quota_refuses_at_once_with_the_wait() -> None:
    clock = FakeClock()
    limiter = RateLimiter("xero:tenant", RateLimit(daily=3), clock=clock)
    for _ in range(3):
        (await limiter.acquire()).release()
        clock.now += 600
    assert limiter.daily_remaining == 0
    with pytest.raises(RateLimited) as info:
        await limiter.acquire()
    # the first request (1800 s ago, rounded down to its minute) leaves the window first
    assert info.value.retry_after is not None
    assert 86_400 - 1800 - 60 < info.value.retry_after <= 86_400 - 1800
    clock.now += info.value.retry_after
    (await limiter.acquire()).release()
    assert limiter.in_flight == 0


async def test_spent_daily_quota_ends_the_call_as_throttled_without_sending() -> None:
    router = respx.Router(base_url=BASE)
    route = router.get("/x").respond(200)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    client = make_client(
        base_url=BASE,
        counters=HttpCounters(),
        rate_limit=RateLimit(daily=2),
        limit_key="daily",
        transport=httpx.MockTransport(router.async_handler),
    )
    async with client:
        for _ in range(2):
            await send_with_retry(client, "GET", "/x", connection="xero", sleep=sleep)
        with pytest.raises(RateLimited) as info:
            await send_with_retry(
                client, "POST", "/x", connection="xero", sleep=sleep, policy=RetryPolicy()
            )
    assert route.call_count == 2
    assert waits == []
    assert info.value.retry_after is not None and info.value.retry_after > 80_000
    assert info.value.connection == "xero"
    assert "daily quota of 2 requests" in str(info.value)


def test_registry_shares_and_updates_limiters() -> None:
    first = limiter_for("mailchimp:acct", RateLimit(concurrency=10))
    assert limiter_for("mailchimp:acct", RateLimit(concurrency=10)) is first
    updated = limiter_for("mailchimp:acct", RateLimit(concurrency=5))
    assert updated is first
    assert first.limit.concurrency == 5
    assert limiter_for("mailchimp:other", RateLimit(concurrency=10)) is not first


def test_a_limiter_works_on_successive_event_loops() -> None:
    limiter = limiter_for("loops", RateLimit(rate=100, concurrency=1))

    async def use() -> int:
        slot = await limiter.acquire()
        slot.release()
        slot.release()  # releasing twice is harmless
        return limiter.in_flight

    assert asyncio.run(use()) == 0
    assert asyncio.run(use()) == 0


def test_scaled_paces_below_the_published_limit() -> None:
    xero = RateLimit(rate=60, per_seconds=60, concurrency=5, daily=5000)
    paced = xero.scaled(0.8)
    assert (paced.rate, paced.per_seconds, paced.concurrency, paced.daily) == (48, 60, 5, 4000)
    with pytest.raises(ValueError, match="share"):
        xero.scaled(1.5)


def test_rate_limit_validation() -> None:
    with pytest.raises(ValidationError):
        RateLimit(rate=0)
    with pytest.raises(ValidationError):
        RateLimit(concurrency=0)
    with pytest.raises(ValidationError):
        RateLimit(rate=5, burst=0)
    with pytest.raises(ValidationError):
        RateLimit(rate=5, typo=1)  # type: ignore[call-arg]
