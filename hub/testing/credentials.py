"""Credentials for tests: what ``crmhub connect`` would have stored, without a vault."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import httpx

from hub.errors import NeedsReauth

__all__ = ["StaticCredentials", "static_credentials"]


class _Bearer(httpx.Auth):
    def __init__(self, token: str) -> None:
        self.header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self.header
        yield request


class StaticCredentials:
    """A ``hub.connector.Credentials`` holding fixed data: ``secret()`` returns it,
    ``auth()`` sends its ``access_token`` as a bearer token. ``revoke()`` makes both raise
    ``NeedsReauth``, as a connection whose grant was withdrawn."""

    def __init__(self, data: dict[str, Any] | None = None, **values: Any) -> None:
        self.data = {**(data or {}), **values}
        self.revoked = False
        self.asked = 0

    async def secret(self) -> dict[str, Any]:
        self.asked += 1
        if self.revoked:
            raise NeedsReauth("test credentials revoked")
        return dict(self.data)

    def auth(self) -> httpx.Auth:
        token = self.data.get("access_token")
        if self.revoked or not token:
            raise NeedsReauth("test credentials hold no access token")
        return _Bearer(str(token))

    def revoke(self) -> None:
        self.revoked = True


def static_credentials(
    *,
    api_key: str | None = None,
    username: str | None = None,
    password: str | None = None,
    access_token: str | None = None,
) -> StaticCredentials:
    """Test credentials of one kind: an API key, a user name and password, or a token."""
    values = {
        "api_key": api_key,
        "username": username,
        "password": password,
        "access_token": access_token,
    }
    return StaticCredentials({k: v for k, v in values.items() if v is not None})
