"""How errors read: one context in parentheses at most, no prefix that says the wrong thing."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import httpx
import pytest

from hub.errors import ConfigError, ConnectorConfigError, Problem, TransientError
from hub.http import HttpCounters, make_client, send_with_retry


def test_a_plain_message_has_no_prefix() -> None:
    assert str(ConfigError("no run with id 'x'")) == "no run with id 'x'"
    assert str(Problem("", "must be a table", key="connections.x.oauth")) == (
        "[connections.x.oauth]: must be a table"
    )
    assert str(Problem("crmhub.toml", "bad", line=3, key="hub.database")) == (
        "crmhub.toml:3 [hub.database]: bad"
    )


def test_wrapping_keeps_the_reason_and_fills_in_context() -> None:
    inner = ConnectorConfigError(
        "token endpoint refused the request: invalid_client", request="POST https://id/token"
    )
    outer = TransientError(inner, connection="crm", request="GET https://api/contacts")
    assert outer.reason == inner.reason
    assert str(outer) == (
        "token endpoint refused the request: invalid_client "
        "(connection 'crm', request POST https://id/token)"
    )


class RefusingAuth(httpx.Auth):
    """An auth flow whose token refresh fails, as ``OAuth2Auth`` does with a bad client."""

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, None, None]:
        raise NotImplementedError

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        raise ConnectorConfigError(
            "token endpoint refused the request: invalid_client; check the client id and secret",
            request="POST https://id.example.test/token",
        )
        yield request  # pragma: no cover


async def test_an_auth_failure_inside_a_call_is_not_wrapped_twice() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    async with make_client(
        base_url="https://api.example.test",
        auth=RefusingAuth(),
        counters=HttpCounters(),
        transport=transport,
    ) as client:
        with pytest.raises(ConnectorConfigError) as caught:
            await send_with_retry(client, "GET", "/contacts", connection="crm")
    assert str(caught.value) == (
        "token endpoint refused the request: invalid_client; check the client id and secret "
        "(connection 'crm', request POST https://id.example.test/token)"
    )
