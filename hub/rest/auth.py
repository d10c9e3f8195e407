"""``[client] auth``: how a declared connector authenticates, by ``kind``.

=========== ===================================================== ====================
kind        sends                                                 ``crmhub connect``
=========== ===================================================== ====================
``none``    nothing                                               nothing to store
``api_key`` the stored API key in ``header`` (or ``query``),      prompts for the key
            after ``prefix``
``bearer``  ``Authorization: Bearer <stored API key or token>``   prompts for the token
``basic``   HTTP Basic from the stored user name and password     prompts for both
            (``username``/``password`` templates may reshape
            them: ``"{secret.username}/token"``)
``oauth2``  an OAuth2 access token, refreshed through the vault   the browser flow
            (``authorize_url``, ``token_url``, ``scopes``, ...)
=========== ===================================================== ====================
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Annotated, Any, Literal

import httpx
from pydantic import Field, model_validator

from hub.authspec import OAuthSettings
from hub.connector import Credentials
from hub.errors import NeedsReauth
from hub.rest.base import KindSpec
from hub.rest.template import Template

__all__ = [
    "AUTH_KINDS",
    "ApiKeyAuth",
    "AuthSpec",
    "BasicAuth",
    "BearerAuth",
    "NoAuth",
    "OAuth2Auth",
    "build_auth",
]


class NoAuth(KindSpec):
    kind: Literal["none"] = "none"


class ApiKeyAuth(KindSpec):
    kind: Literal["api_key"]
    header: str | None = None
    """Header that carries the key (``X-API-Key``); or set ``query``."""
    query: str | None = None
    """Query parameter that carries the key (``api_key``)."""
    prefix: str = ""
    """Text before the key (``"Token "``)."""

    @model_validator(mode="after")
    def _one_place(self) -> ApiKeyAuth:
        if (self.header is None) == (self.query is None):
            raise ValueError("set exactly one of 'header' or 'query'")
        return self


class BearerAuth(KindSpec):
    kind: Literal["bearer"]
    header: str = "Authorization"
    prefix: str = "Bearer "


class BasicAuth(KindSpec):
    kind: Literal["basic"]
    username: str = "{secret.username}"
    """Template of the user name (Zendesk: ``"{secret.username}/token"``)."""
    password: str = "{secret.password}"


class OAuth2Auth(KindSpec):
    kind: Literal["oauth2"]
    authorize_url: str
    token_url: str
    revocation_url: str | None = None
    scopes: list[str] = []
    pkce: bool = True
    rotates_refresh_tokens: bool = False
    client_auth: Literal["body", "basic"] = "body"
    authorize_params: dict[str, str] = {}

    def settings(self) -> OAuthSettings:
        return OAuthSettings(
            authorize_url=self.authorize_url,
            token_url=self.token_url,
            revocation_url=self.revocation_url,
            scopes=self.scopes,
            pkce=self.pkce,
            rotates_refresh_tokens=self.rotates_refresh_tokens,
            client_auth=self.client_auth,
            authorize_params=self.authorize_params,
        )


AuthSpec = Annotated[
    NoAuth | ApiKeyAuth | BearerAuth | BasicAuth | OAuth2Auth, Field(discriminator="kind")
]
AUTH_KINDS = ("none", "api_key", "bearer", "basic", "oauth2")

CONNECT_KIND = {"none": "none", "api_key": "api_key", "bearer": "api_key", "basic": "basic"}
"""What ``crmhub connect`` asks for (``auth.providers.AuthKind``), by declared kind."""


class _HeaderAuth(httpx.Auth):
    def __init__(self, header: str, value: str) -> None:
        self.header = header
        self.value = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self.header] = self.value
        yield request


class _QueryAuth(httpx.Auth):
    def __init__(self, param: str, value: str) -> None:
        self.param = param
        self.value = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.url = request.url.copy_merge_params({self.param: self.value})
        yield request


async def build_auth(
    spec: NoAuth | ApiKeyAuth | BearerAuth | BasicAuth | OAuth2Auth,
    credentials: Credentials | None,
    connection: str,
    settings: dict[str, Any],
    oauth: OAuth2Auth | None = None,
) -> httpx.Auth | None:
    """The httpx auth of one connection, from its stored credential (OAuth tokens go the
    ``oauth`` way when the declaration offers it beside ``spec``)."""
    if isinstance(spec, NoAuth):
        return None
    if credentials is None:
        raise NeedsReauth(
            f"not connected; run `crmhub connect {connection}`", connection=connection
        )
    if isinstance(spec, OAuth2Auth):
        return credentials.auth()
    secret = await credentials.secret()
    if oauth is not None and secret.get("access_token"):
        return credentials.auth()
    if isinstance(spec, BasicAuth):
        values = {"secret": secret, "settings": settings}
        try:
            user = Template(spec.username).render(values)
            password = Template(spec.password).render(values)
        except KeyError as exc:
            raise NeedsReauth(
                f"the stored credential has no {exc.args[0]}; run `crmhub connect {connection}`",
                connection=connection,
            ) from None
        return httpx.BasicAuth(user, password)
    key = secret.get("api_key") or secret.get("access_token")
    if not key:
        raise NeedsReauth(
            f"no API key is stored; run `crmhub connect {connection}`", connection=connection
        )
    if isinstance(spec, BearerAuth):
        return _HeaderAuth(spec.header, f"{spec.prefix}{key}")
    if spec.header is not None:
        return _HeaderAuth(spec.header, f"{spec.prefix}{key}")
    assert spec.query is not None
    return _QueryAuth(spec.query, f"{spec.prefix}{key}")
