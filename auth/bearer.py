"""``TokenBearer``: an httpx auth flow for tokens a client library obtains (google-auth's
service accounts, msal): the token on every request, one forced renewal on a 401."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Generator

import httpx

__all__ = ["TokenBearer"]


class TokenBearer(httpx.Auth, ABC):
    @abstractmethod
    async def token(self, *, force: bool = False) -> str:
        """A valid access token; ``force``: a new one (the last was refused)."""

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise RuntimeError(f"{type(self).__name__} works with httpx.AsyncClient only")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {await self.token()}"
        response = yield request
        if response.status_code == 401:
            await response.aread()
            request.headers["Authorization"] = f"Bearer {await self.token(force=True)}"
            yield request
