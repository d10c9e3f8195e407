"""send_with_retry: what is retried, how long it waits, when it gives up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import respx

from hub.errors import (
    ConnectorConfigError,
    ConnectorError,
    ErrorKind,
    NeedsReauth,
    PermanentError,
    RateLimited,
    TransientError,
)
from hub.http import (
    HttpCounters,
    HubClient,
    ResponseClassifier,
    RetryingClient,
    RetryPolicy,
    make_client,
    parse_retry_after,
    send_with_retry,
)

BASE = "https://api.example.test"


class Sleeps:
    """An injected sleep that records the waits and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def router() -> respx.Router:
    return respx.Router(base_url=BASE, assert_all_called=False)


@pytest.fixture
async def client(router: respx.Router) -> AsyncIterator[HubClient]:
    c = make_client(
        base_url=BASE,
        counters=HttpCounters(),
        transport=httpx.MockTransport(router.async_handler),
    )
    async with c:
        yield c


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


async def send(client: HubClient, sleeps: Sleeps, method: str = "GET", **kw: object):
    kw.setdefault("policy", RetryPolicy(attempts=4, base=1.0, cap=8.0, max_wait=60.0))
    return await send_with_retry(
        client,
        method,
        "/items",
        connection="shop",
        sleep=sleeps,
        **kw,  # type: ignore[arg-type]
    )


async def test_retry_after_seconds_is_honoured_exactly(client, router, sleeps) -> None:
    route = router.get("/items").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "7"}),
            httpx.Response(200, json={"ok": True}),
        ]
    )
    response = await send(client, sleeps)
    assert response.json() == {"ok": True}
    assert sleeps.waits == [7.0]
    assert route.call_count == 2
    assert client.counters.throttled == 1
    assert client.counters.retries == 1


async def test_retry_after_http_date_is_honoured(client, router, sleeps) -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    router.get("/items").mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": format_datetime(when, usegmt=True)}),
            httpx.Response(200),
        ]
    )
    await send(client, sleeps)
    assert len(sleeps.waits) == 1
    assert 28.0 <= sleeps.waits[0] <= 30.0


def test_parse_retry_after_forms() -> None:
    now = datetime(2026, 11, 5, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after(" 1.5 ", now=now) == 1.5
    assert parse_retry_after("-3", now=now) == 0.0
    assert parse_retry_after("Thu, 05 Nov 2026 12:01:30 GMT", now=now) == 90.0
    assert parse_retry_after("Thu, 05 Nov 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 425, 599])
async def test_transient_statuses_are_retried(client, router, sleeps, status: int) -> None:
    route = router.get("/items").mock(
        side_effect=[httpx.Response(status), httpx.Response(status), httpx.Response(200)]
    )
    response = await send(client, sleeps)
    assert response.status_code == 200
    assert route.call_count == 3
    assert len(sleeps.waits) == 2


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("cut")],
)
async def test_network_failures_are_retried(client, router, sleeps, exc: Exception) -> None:
    route = router.get("/items").mock(side_effect=[exc, httpx.Response(200)])
    response = await send(client, sleeps)
    assert response.status_code == 200
    assert route.call_count == 2
    assert client.counters.errors == 1
    assert client.counters.retries == 1


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422])
async def test_client_errors_are_permanent_and_not_retried(
    client, router, sleeps, status: int
) -> None:
    route = router.get("/items").mock(return_value=httpx.Response(status))
    with pytest.raises(PermanentError) as info:
        await send(client, sleeps)
    assert route.call_count == 1
    assert sleeps.waits == []
    assert f"HTTP {status}" in str(info.value)
    assert info.value.connection == "shop"
    assert info.value.request == f"GET {BASE}/items"


async def test_401_is_needs_reauth_and_not_retried(client, router, sleeps) -> None:
    route = router.get("/items").mock(return_value=httpx.Response(401))
    with pytest.raises(NeedsReauth):
        await send(client, sleeps)
    assert route.call_count == 1
    assert sleeps.waits == []


async def test_429_without_retry_after_uses_capped_jittered_backoff(client, router, sleeps) -> None:
    router.get("/items").mock(return_value=httpx.Response(429))
    policy = RetryPolicy(attempts=6, base=1.0, cap=4.0, max_wait=60.0)
    with pytest.raises(RateLimited) as info:
        await send(client, sleeps, policy=policy)
    assert len(sleeps.waits) == 5
    ceilings = [1.0, 2.0, 4.0, 4.0, 4.0]
    assert all(0 <= w <= c for w, c in zip(sleeps.waits, ceilings, strict=True))
    assert len(set(sleeps.waits)) > 1  # jittered, not a fixed schedule
    assert "gave up after 6 attempts" in str(info.value)
    assert client.counters.throttled == 6


async def test_budget_exhaustion_raises_the_last_error_with_attempts(
    client, router, sleeps
) -> None:
    route = router.get("/items").mock(return_value=httpx.Response(503))
    with pytest.raises(TransientError) as info:
        await send(client, sleeps, policy=RetryPolicy(attempts=3, base=0.1, cap=1.0))
    assert not isinstance(info.value, RateLimited)
    assert route.call_count == 3
    assert "gave up after 3 attempts: HTTP 503 Service Unavailable" in str(info.value)
    assert client.counters.as_dict() == {
        "calls": 3,
        "retries": 2,
        "throttled": 0,
        "bytes_sent": 0,
        "bytes_received": 0,
        "errors": 3,
    }


async def test_wait_beyond_max_wait_raises_rate_limited_without_sleeping(
    client, router, sleeps
) -> None:
    route = router.get("/items").mock(
        return_value=httpx.Response(429, headers={"Retry-After": "7200"})
    )
    with pytest.raises(RateLimited) as info:
        await send(client, sleeps, policy=RetryPolicy(max_wait=300.0))
    assert info.value.retry_after == 7200.0
    assert sleeps.waits == []
    assert route.call_count == 1
    assert "throttled until" in str(info.value)
    assert "not waiting" in str(info.value)


class XeroLikeClassifier(ResponseClassifier):
    """Xero names the spent limit; a daily one resets hours away."""

    def retry_after(self, response: httpx.Response) -> float | None:
        after = super().retry_after(response)
        if response.headers.get("X-Rate-Limit-Problem") == "day" and after is None:
            return 86_400.0
        return after


async def test_provider_classifier_turns_daily_limit_into_throttled_until(
    client, router, sleeps
) -> None:
    router.get("/items").mock(
        return_value=httpx.Response(429, headers={"X-Rate-Limit-Problem": "day"})
    )
    with pytest.raises(RateLimited) as info:
        await send(client, sleeps, classifier=XeroLikeClassifier())
    assert info.value.retry_after == 86_400.0
    assert sleeps.waits == []


class OkFalseClassifier(ResponseClassifier):
    """A provider that answers 200 with ``ok: false`` on errors."""

    def classify(self, response: httpx.Response) -> ErrorKind | None:
        if response.status_code == 200 and response.json().get("ok") is False:
            return ErrorKind.TRANSIENT
        return super().classify(response)


async def test_connector_classifier_decides_what_fails(client, router, sleeps) -> None:
    router.get("/items").mock(
        side_effect=[
            httpx.Response(200, json={"ok": False}),
            httpx.Response(200, json={"ok": True}),
        ]
    )
    response = await send(client, sleeps, classifier=OkFalseClassifier())
    assert response.json() == {"ok": True}
    assert len(sleeps.waits) == 1


async def test_post_is_not_retried_by_default(client, router, sleeps) -> None:
    route = router.post("/items").mock(return_value=httpx.Response(503))
    with pytest.raises(TransientError) as info:
        await send(client, sleeps, "POST", json={"a": 1})
    assert route.call_count == 1
    assert sleeps.waits == []
    assert "gave up" not in str(info.value)


async def test_post_read_timeout_is_not_retried(client, router, sleeps) -> None:
    route = router.post("/items").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(TransientError):
        await send(client, sleeps, "POST", json={"a": 1})
    assert route.call_count == 1


async def test_post_is_retried_when_caller_says_idempotent(client, router, sleeps) -> None:
    route = router.post("/items").mock(side_effect=[httpx.Response(503), httpx.Response(201)])
    response = await send(client, sleeps, "POST", json={"a": 1}, idempotent=True)
    assert response.status_code == 201
    assert route.call_count == 2


async def test_post_with_idempotency_key_is_retried(client, router, sleeps) -> None:
    route = router.post("/items").mock(side_effect=[httpx.Response(502), httpx.Response(200)])
    await send(client, sleeps, "POST", headers={"Idempotency-Key": "k-1"}, json={})
    assert route.call_count == 2


async def test_post_is_retried_when_connect_failed(client, router, sleeps) -> None:
    route = router.post("/items").mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(201)]
    )
    response = await send(client, sleeps, "POST", json={"a": 1})
    assert response.status_code == 201
    assert route.call_count == 2


async def test_put_is_idempotent_and_retried(client, router, sleeps) -> None:
    route = router.put("/items").mock(side_effect=[httpx.Response(500), httpx.Response(200)])
    await send(client, sleeps, "PUT", json={"a": 1})
    assert route.call_count == 2


async def test_counters_count_bytes_retries_and_throttles(client, router, sleeps) -> None:
    router.put("/items").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "1"}, content=b"slow down"),
            httpx.Response(500, content=b"oops"),
            httpx.Response(200, content=b'{"id": 1}'),
        ]
    )
    await send(client, sleeps, "PUT", content=b"0123456789")
    assert client.counters.as_dict() == {
        "calls": 3,
        "retries": 2,
        "throttled": 1,
        "bytes_sent": 30,
        "bytes_received": len(b"slow down") + len(b"oops") + len(b'{"id": 1}'),
        "errors": 2,
    }


async def test_retrying_client_methods_use_one_mechanism(client, router, sleeps) -> None:
    router.get("/items").mock(side_effect=[httpx.Response(503), httpx.Response(200)])
    router.delete("/items").mock(return_value=httpx.Response(404))
    http = RetryingClient(client, connection="shop", sleep=sleeps, policy=RetryPolicy(base=0.1))
    assert (await http.get("/items")).status_code == 200
    with pytest.raises(PermanentError):
        await http.delete("/items")
    assert http.counters.retries == 1


async def test_library_exceptions_never_leak(client, router, sleeps) -> None:
    router.get("/items").mock(side_effect=httpx.TooManyRedirects("loop"))
    with pytest.raises(ConnectorError) as info:
        await send(client, sleeps)
    assert isinstance(info.value, PermanentError)
    assert isinstance(info.value.__cause__, httpx.TooManyRedirects)


async def test_a_malformed_url_is_a_configuration_error(client, sleeps) -> None:
    with pytest.raises(ConnectorConfigError) as info:
        await send_with_retry(client, "GET", "http://[::1", connection="shop", sleep=sleeps)
    assert info.value.connection == "shop"
    assert sleeps.waits == []
