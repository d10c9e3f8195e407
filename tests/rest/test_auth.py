"""Every declared auth kind against the sandbox, which checks credentials the same way."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from hub.connector import ConnectorContext
from hub.errors import NeedsReauth
from hub.rest.sandbox import SANDBOX_KEY
from hub.testing.credentials import StaticCredentials, static_credentials
from tests.rest.kit import connect, declaration, pull, records, served

KINDS: dict[str, Any] = {
    "none": "none",
    "api_key in a header": {"kind": "api_key", "header": "X-Api-Key", "prefix": "Key "},
    "api_key in the query": {"kind": "api_key", "query": "api_key"},
    "bearer": "bearer",
    "basic": {"kind": "basic"},
    "basic, reshaped": {
        "kind": "basic",
        "username": "{secret.username}/token",
        "password": "{secret.api_key}",
    },
    "oauth2": {
        "kind": "oauth2",
        "authorize_url": "https://id.example/authorize",
        "token_url": "https://id.example/token",
        "scopes": ["contacts"],
    },
}


@pytest.mark.parametrize("kind", list(KINDS))
async def test_each_auth_kind_is_accepted_with_the_right_credentials(kind: str) -> None:
    spec = declaration({"incremental": None}, client={"base_url": "x", "auth": KINDS[kind]})
    with served(spec, size=3) as (cls, app, url):
        connector = connect(cls, app, url)
        assert len(records(await pull(connector))) == 3
        await connector.aclose()
        connect_kind = {"none": "none", "bearer": "api_key", "oauth2": "oauth2"}
        expected = connect_kind.get(kind, "basic" if "basic" in kind else "api_key")
        assert cls.auth_kind == expected
        if kind == "oauth2":
            assert cls.oauth is not None and cls.oauth.scopes == ["contacts"]
        if kind != "none":
            wrong = cls(connector.settings, ConnectorContext("p", credentials=StaticCredentials(
                api_key="wrong", username="x", password="y", access_token="wrong")))  # fmt: skip
            with pytest.raises(NeedsReauth):
                await pull(wrong)
            await wrong.aclose()


async def test_a_connection_without_credentials_needs_reauth() -> None:
    with served(declaration(), size=1) as (cls, _app, url):
        connector = cls(cls.Settings(base_url=url), ConnectorContext("people"))
        with pytest.raises(NeedsReauth, match="crmhub connect people"):
            await pull(connector)
        revoked = static_credentials(api_key=SANDBOX_KEY)
        revoked.revoke()
        connector = cls(cls.Settings(base_url=url), ConnectorContext("people", credentials=revoked))
        with pytest.raises(NeedsReauth):
            await pull(connector)


def test_the_query_key_never_shows_in_messages() -> None:
    from hub.http import redact_url

    assert "sandbox" not in redact_url(httpx.URL("http://h/contacts?api_key=sandbox-api-key"))
