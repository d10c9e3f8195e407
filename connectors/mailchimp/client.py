"""The Mailchimp Marketing API v3 as the connector uses it: auth, base URL, a few calls.

An API key (``<key>-<dc>``) is sent with HTTP Basic (any user name) to
``https://<dc>.api.mailchimp.com/3.0/``. An OAuth2 token never expires; its data centre and
API endpoint come from the metadata Mailchimp returns after the code exchange (kept with
the token). ``api_base`` in the settings overrides the base URL (a sandbox, a proxy).

Every request goes through the hub's retrying client with :class:`MailchimpClassifier`,
at most 10 in flight per account (Mailchimp's limit of simultaneous connections).
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator
from typing import Any
from urllib.parse import quote

import httpx

from connectors.mailchimp.classify import MailchimpClassifier
from hub.connector import ConnectorContext
from hub.errors import ConnectorConfigError, ErrorKind, NeedsReauth, TransientError
from hub.http import RateLimit, RetryingClient, make_client, send_with_retry

CONNECTIONS = 10
"""Mailchimp's limit of simultaneous connections per account."""
BATCH_MAX = 500
"""Most members one batch-subscribe call takes."""


class BearerToken(httpx.Auth):
    """A static OAuth2 access token (Mailchimp's never expire; a 401 means re-connect)."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


def data_centre(api_key: str, connection: str) -> str:
    """The ``dc`` suffix of an API key (``…-us6`` -> ``us6``)."""
    _, dash, dc = api_key.strip().rpartition("-")
    if not dash or not dc.isalnum():
        raise ConnectorConfigError(
            "the stored Mailchimp API key has no data-centre suffix (it ends like '-us6'); "
            f"store the whole key with `crmhub connect {connection}`",
            connection=connection,
        )
    return dc


def _account(secret: str) -> str:
    # the limiter key names the account without revealing its credential
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


async def open_client(context: ConnectorContext, api_base: str | None) -> RetryingClient:
    """A retrying client for the connection's Mailchimp account, from its stored credentials."""
    connection = context.connection
    if context.credentials is None:
        raise NeedsReauth(
            f"not connected; run `crmhub connect {connection}`", connection=connection
        )
    secret = await context.credentials.secret()
    auth: httpx.Auth
    if secret.get("api_key"):
        key = str(secret["api_key"])
        auth = httpx.BasicAuth("crmhub", key)
        base = api_base or f"https://{data_centre(key, connection)}.api.mailchimp.com/3.0/"
        account = _account(key)
    elif secret.get("access_token"):
        token = str(secret["access_token"])
        auth = BearerToken(token)
        metadata = secret.get("metadata") or {}
        endpoint = metadata.get("api_endpoint") if isinstance(metadata, dict) else None
        if not api_base and not endpoint:
            raise NeedsReauth(
                "the stored OAuth token has no Mailchimp API endpoint (metadata missing); "
                f"run `crmhub connect {connection}` again",
                connection=connection,
            )
        base = api_base or f"{str(endpoint).rstrip('/')}/3.0/"
        account = _account(token)
    else:
        raise NeedsReauth(
            f"no Mailchimp API key or token is stored; run `crmhub connect {connection}`",
            connection=connection,
        )
    client = make_client(
        base_url=base,
        counters=context.counters,
        auth=auth,
        rate_limit=RateLimit(concurrency=CONNECTIONS),
        limit_key=f"mailchimp:{account}",
    )
    return RetryingClient(client, connection=connection, classifier=MailchimpClassifier())


class MailchimpApi:
    """The calls the connector makes, on one audience (``list_id``)."""

    def __init__(self, http: RetryingClient, list_id: str) -> None:
        self.http = http
        self.list_path = f"lists/{quote(list_id, safe='')}"

    @property
    def connection(self) -> str:
        return self.http.connection

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise TransientError(
                f"Mailchimp answered HTTP {response.status_code} with a body that is not a "
                "JSON object",
                connection=self.connection,
                request=f"{response.request.method} {response.request.url.path}",
            )
        return body

    def member_path(self, member_hash: str) -> str:
        return f"{self.list_path}/members/{quote(member_hash, safe='')}"

    async def _lenient(self, method: str, path: str) -> httpx.Response:
        """A request whose 404 answer is returned rather than raised."""
        return await send_with_retry(
            self.http.client,
            method,
            path,
            connection=self.connection,
            classifier=_NOT_FOUND_OK,
            policy=self.http.policy,
            sleep=self.http.sleep,
        )

    async def list_members(self, params: dict[str, Any]) -> dict[str, Any]:
        """One page of ``GET /lists/{id}/members`` (``members``, ``total_items``)."""
        response = await self.http.get(f"{self.list_path}/members", params=params)
        body = self._json(response)
        if not isinstance(body.get("members"), list):
            raise TransientError(
                "Mailchimp's member listing has no 'members' list", connection=self.connection
            )
        return body

    async def get_member(self, member_hash: str) -> dict[str, Any] | None:
        """The member, or ``None`` when the audience has no member with this hash."""
        response = await self._lenient("GET", self.member_path(member_hash))
        return None if response.status_code == 404 else self._json(response)

    async def put_member(self, member_hash: str, body: dict[str, Any]) -> dict[str, Any]:
        """``PUT`` (add or update) the member; returns it as Mailchimp now holds it."""
        return self._json(await self.http.put(self.member_path(member_hash), json=body))

    async def archive_member(self, member_hash: str) -> bool:
        """Archive (Mailchimp's delete); ``False`` when there was no such member."""
        response = await self._lenient("DELETE", self.member_path(member_hash))
        return response.status_code != 404

    async def set_tags(self, member_hash: str, tags: list[dict[str, str]]) -> None:
        """Activate or deactivate tags (``[{"name": ..., "status": "active"|"inactive"}]``)."""
        await self.http.post(
            f"{self.member_path(member_hash)}/tags", json={"tags": tags}, idempotent=True
        )

    async def batch_subscribe(
        self, members: list[dict[str, Any]], *, update_existing: bool
    ) -> dict[str, Any]:
        """``POST /lists/{id}`` with up to 500 members; per-member failures are in ``errors``.

        Sending the same batch twice ends in the same state, so it may be retried.
        """
        body = {"members": members, "update_existing": update_existing}
        return self._json(await self.http.post(self.list_path, json=body, idempotent=True))

    async def aclose(self) -> None:
        await self.http.aclose()


class _NotFoundOk(MailchimpClassifier):
    """404 is an answer, not a failure, for look-ups and deletes."""

    def classify(self, response: httpx.Response) -> ErrorKind | None:
        return None if response.status_code == 404 else super().classify(response)


_NOT_FOUND_OK = _NotFoundOk()
