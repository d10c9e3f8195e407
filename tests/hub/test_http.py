"""The client factory, response classification and error messages."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

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
    USER_AGENT,
    HttpCounters,
    ResponseClassifier,
    RetryPolicy,
    error_for_exception,
    make_client,
    raise_for,
    redact_url,
    send_with_retry,
)

BASE = "https://api.example.test"
SECRET = "sk_live_abc123SECRET"


async def _noop_sleep(seconds: float) -> None:
    return None


def mock_client(router: respx.Router, **kw: object) -> httpx.AsyncClient:
    return make_client(
        base_url=BASE,
        counters=kw.pop("counters", HttpCounters()),  # type: ignore[arg-type]
        transport=httpx.MockTransport(router.async_handler),
        **kw,  # type: ignore[arg-type]
    )


async def test_client_sends_user_agent_headers_and_base_url() -> None:
    router = respx.Router(base_url=BASE)
    route = router.get("/v1/ping").respond(200)
    async with mock_client(router, headers={"Accept": "application/json"}) as client:
        await client.get("/v1/ping")
    sent = route.calls.last.request
    assert sent.headers["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("crmhub/")
    assert sent.headers["Accept"] == "application/json"
    assert str(sent.url) == f"{BASE}/v1/ping"


async def test_client_timeouts_and_pool_follow_configuration() -> None:
    from hub.http import RateLimit

    client = make_client(
        base_url=BASE,
        counters=HttpCounters(),
        timeout=httpx.Timeout(5.0, connect=2.0),
        rate_limit=RateLimit(concurrency=4),
        limit_key="timeouts-test",
    )
    async with client:
        assert client.timeout == httpx.Timeout(5.0, connect=2.0)
        pool = client._transport.inner._pool  # type: ignore[attr-defined]
        assert pool._max_connections == 4


async def test_counters_count_calls_and_body_bytes() -> None:
    router = respx.Router(base_url=BASE)
    router.post("/echo").mock(side_effect=lambda r: httpx.Response(200, content=r.content * 2))
    counters = HttpCounters()
    async with mock_client(router, counters=counters) as client:
        await client.post("/echo", content=b"12345")
        await client.post("/echo", json={"a": 1})
    assert counters.calls == 2
    assert counters.bytes_sent == 5 + len(b'{"a":1}')
    assert counters.bytes_received == 2 * counters.bytes_sent
    merged = HttpCounters(calls=1, errors=2)
    merged.add(counters)
    assert merged.as_dict()["calls"] == 3
    assert merged.as_dict()["errors"] == 2


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, None),
        (204, None),
        (304, None),
        (429, ErrorKind.RATE_LIMITED),
        (401, ErrorKind.NEEDS_REAUTH),
        (403, ErrorKind.PERMANENT),
        (404, ErrorKind.PERMANENT),
        (422, ErrorKind.PERMANENT),
        (408, ErrorKind.TRANSIENT),
        (425, ErrorKind.TRANSIENT),
        (500, ErrorKind.TRANSIENT),
        (502, ErrorKind.TRANSIENT),
        (503, ErrorKind.TRANSIENT),
        (504, ErrorKind.TRANSIENT),
        (507, ErrorKind.TRANSIENT),
    ],
)
def test_default_classification(status: int, kind: ErrorKind | None) -> None:
    response = httpx.Response(status, request=httpx.Request("GET", BASE))
    assert ResponseClassifier().classify(response) is kind


@pytest.mark.parametrize(
    ("kind", "error_class"),
    [
        (ErrorKind.TRANSIENT, TransientError),
        (ErrorKind.RATE_LIMITED, RateLimited),
        (ErrorKind.NEEDS_REAUTH, NeedsReauth),
        (ErrorKind.PERMANENT, PermanentError),
        (ErrorKind.CONFIG, ConnectorConfigError),
    ],
)
def test_raise_for_names_connection_and_request(
    kind: ErrorKind, error_class: type[ConnectorError]
) -> None:
    request = httpx.Request("GET", f"{BASE}/lists?api_key={SECRET}&page=2")
    response = httpx.Response(418, request=request)
    with pytest.raises(error_class) as info:
        raise_for(kind, response, "mailchimp-main", retry_after=3.0)
    error = info.value
    assert error.connection == "mailchimp-main"
    assert error.request == f"GET {BASE}/lists?api_key=***&page=2"
    assert error.retry_after == 3.0
    assert "HTTP 418" in str(error)
    assert SECRET not in str(error)


@pytest.mark.parametrize(
    "query",
    [
        f"apikey={SECRET}",
        f"access_token={SECRET}",
        f"%24deltatoken={SECRET}",
        f"client_secret={SECRET}",
        f"code={SECRET}",
        f"sig={SECRET}",
    ],
)
def test_redact_url_hides_secret_parameters(query: str) -> None:
    redacted = redact_url(f"https://user:{SECRET}@host.test/p?{query}&page=3#frag")
    assert SECRET not in redacted
    assert "page=3" in redacted
    assert "frag" not in redacted


async def test_no_secret_in_errors_from_query_or_authorization_header() -> None:
    router = respx.Router(base_url=BASE)
    router.get("/members").respond(404)
    router.get("/down").mock(side_effect=httpx.ConnectError(f"failed {BASE}/down?key={SECRET}"))
    async with mock_client(router, headers={"Authorization": f"Bearer {SECRET}"}) as client:
        for path in ("/members", "/down"):
            with pytest.raises((PermanentError, TransientError)) as info:
                await send_with_retry(
                    client,
                    "GET",
                    path,
                    params={"apikey": SECRET, "count": "10"},
                    connection="mc",
                    policy=RetryPolicy(attempts=2, base=0.01),
                    sleep=_noop_sleep,
                )
            text = f"{info.value} {info.value.request} {info.value.args}"
            assert SECRET not in text
            assert "count=10" in text


def test_httpx_exceptions_map_to_hub_errors() -> None:
    request = httpx.Request("GET", f"{BASE}/x")
    cases = {
        httpx.ConnectError("refused"): TransientError,
        httpx.ConnectTimeout("t"): TransientError,
        httpx.ReadTimeout("t"): TransientError,
        httpx.WriteTimeout("t"): TransientError,
        httpx.PoolTimeout("t"): TransientError,
        httpx.RemoteProtocolError("peer closed"): TransientError,
        httpx.ReadError("reset"): TransientError,
        httpx.DecodingError("bad gzip"): TransientError,
        httpx.UnsupportedProtocol("ftp"): ConnectorConfigError,
        httpx.LocalProtocolError("bad header"): PermanentError,
        httpx.TooManyRedirects("loop"): PermanentError,
    }
    for exc, error_class in cases.items():
        error = error_for_exception(exc, request, "c")
        assert type(error) is error_class, exc
        assert type(exc).__name__ in str(error)


class RefreshOnce(httpx.Auth):
    """Like the token refresher: on 401, refresh once and repeat the request once."""

    def __init__(self, fresh_token_works: bool) -> None:
        self.token = "old"
        self.fresh_token_works = fresh_token_works
        self.refreshes = 0

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise NotImplementedError  # async only

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        response = yield request
        if response.status_code == 401:
            self.refreshes += 1
            self.token = "new" if self.fresh_token_works else "still-bad"
            request.headers["Authorization"] = f"Bearer {self.token}"
            yield request


def _auth_router() -> tuple[respx.Router, respx.Route]:
    router = respx.Router(base_url=BASE)
    route = router.get("/me").mock(
        side_effect=lambda r: httpx.Response(
            200 if r.headers["Authorization"] == "Bearer new" else 401
        )
    )
    return router, route


async def test_auth_refresh_then_success_is_not_an_error() -> None:
    router, route = _auth_router()
    auth = RefreshOnce(fresh_token_works=True)
    counters = HttpCounters()
    async with mock_client(router, auth=auth, counters=counters) as client:
        response = await send_with_retry(client, "GET", "/me", connection="c", sleep=_noop_sleep)
    assert response.status_code == 200
    assert auth.refreshes == 1
    assert route.call_count == 2
    assert counters.calls == 2
    assert counters.errors == 0


async def test_401_after_auth_refresh_is_needs_reauth_without_retry() -> None:
    router, route = _auth_router()
    auth = RefreshOnce(fresh_token_works=False)
    async with mock_client(router, auth=auth) as client:
        with pytest.raises(NeedsReauth) as info:
            await send_with_retry(client, "GET", "/me", connection="c", sleep=_noop_sleep)
    assert auth.refreshes == 1
    assert route.call_count == 2
    assert "still-bad" not in str(info.value)


async def test_errors_raised_by_the_auth_flow_get_connection_context() -> None:
    class BrokenAuth(httpx.Auth):
        async def async_auth_flow(
            self, request: httpx.Request
        ) -> AsyncGenerator[httpx.Request, httpx.Response]:
            raise NeedsReauth("refresh token was revoked; reconnect the account")
            yield request  # pragma: no cover

    router = respx.Router(base_url=BASE)
    route = router.get("/me").respond(200)
    async with mock_client(router, auth=BrokenAuth()) as client:
        with pytest.raises(NeedsReauth) as info:
            await send_with_retry(client, "GET", "/me", connection="gmail", sleep=_noop_sleep)
    assert info.value.connection == "gmail"
    assert info.value.request == f"GET {BASE}/me"
    assert route.call_count == 0
