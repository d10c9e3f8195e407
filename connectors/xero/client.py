"""The Xero API as the connector uses it: the organisation, its limits, a few calls.

Tokens come from the vault (``context.credentials.auth()``: refreshed before their 30
minutes run out, rotated refresh tokens saved before use). The organisation (tenant) is
chosen from ``GET /connections``, the organisations the grant reaches: the one named by the
``tenant`` setting (id or name), else the only one. Every Accounting API call carries its
``xero-tenant-id`` and goes through one limiter per organisation (60 a minute, 5 in flight,
5,000 a day), one for the app (10,000 a minute) and the hub's retrying client with
:class:`XeroClassifier`.
"""

from __future__ import annotations

from typing import Any

import httpx

from connectors.xero.classify import XeroClassifier
from connectors.xero.settings import XeroSettings
from hub.connector import ConnectorContext
from hub.errors import ConnectorConfigError, NeedsReauth, TransientError
from hub.http import (
    HttpCounters,
    HubTransport,
    RateLimit,
    RetryingClient,
    limiter_for,
    make_client,
)

__all__ = [
    "API_PATH",
    "APP_LIMIT",
    "PAGE_SIZE",
    "TENANT_LIMIT",
    "XeroApi",
    "choose_tenant",
    "open_api",
]

API_PATH = "/api.xro/2.0"
PAGE_SIZE = 100
"""Records per page of ``GET /Contacts`` and ``GET /Invoices`` (Xero's fixed page)."""
TENANT_LIMIT = RateLimit(rate=60, per_seconds=60, concurrency=5, daily=5000)
"""Xero's published limits per organisation."""
APP_LIMIT = RateLimit(rate=10_000, per_seconds=60, burst=10)
"""Xero's limit per app, over all its organisations: one limiter for every Xero connection
of the process (connections of different apps share it; they are far below it)."""
APP_KEY = "xero:app"


def choose_tenant(tenants: list[dict[str, Any]], wanted: str | None, connection: str) -> dict:
    """The organisation named by ``wanted`` (tenant id or name, any case), else the only
    one; a configuration error listing them otherwise."""
    orgs = [t for t in tenants if str(t.get("tenantType", "ORGANISATION")) == "ORGANISATION"]
    listed = ", ".join(f"{t.get('tenantName')!r} ({t.get('tenantId')})" for t in orgs) or "none"
    if wanted:
        key = wanted.strip().lower()
        for tenant in orgs:
            if key in (
                str(tenant.get("tenantId", "")).lower(),
                str(tenant.get("tenantName", "")).lower(),
            ):
                return tenant
        raise ConnectorConfigError(
            f"the Xero grant does not reach the organisation {wanted!r} (it reaches: {listed}); "
            f"set tenant to one of them, or run `crmhub connect {connection}` and choose it",
            connection=connection,
        )
    if len(orgs) == 1:
        return orgs[0]
    if not orgs:
        raise NeedsReauth(
            "the Xero grant reaches no organisation (it was disconnected in Xero); "
            f"run `crmhub connect {connection}`",
            connection=connection,
        )
    raise ConnectorConfigError(
        f"the Xero grant reaches {len(orgs)} organisations ({listed}); set tenant = "
        f'"<name or id>" in [connections.{connection}] (one connection per organisation)',
        connection=connection,
    )


async def open_api(context: ConnectorContext, settings: XeroSettings) -> XeroApi:
    """A client of the connection's organisation, from its stored OAuth2 grant."""
    connection = context.connection
    if context.credentials is None:
        raise NeedsReauth(
            f"not connected; run `crmhub connect {connection}`", connection=connection
        )
    auth = context.credentials.auth()
    identity = RetryingClient(
        make_client(base_url=settings.api_base, counters=context.counters, auth=auth),
        connection=connection,
        classifier=XeroClassifier(),
    )
    try:
        answer = await identity.get("/connections")
        tenants = answer.json()
    except ValueError:
        raise TransientError(
            "Xero's /connections answer is not JSON", connection=connection
        ) from None
    finally:
        await identity.aclose()
    if not isinstance(tenants, list):
        raise TransientError("Xero's /connections answer is not a list", connection=connection)
    tenant = choose_tenant(tenants, settings.tenant, connection)
    tenant_id = str(tenant["tenantId"])
    classifier = XeroClassifier()
    # each call waits for its organisation's limiter, then for the app's
    per_app = HubTransport(
        httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=5)),
        counters=HttpCounters(),  # the organisation's client counts the calls
        limiter=limiter_for(APP_KEY, APP_LIMIT),
    )
    client = make_client(
        base_url=settings.api_base + API_PATH,
        counters=context.counters,
        auth=auth,
        headers={"xero-tenant-id": tenant_id, "Accept": "application/json"},
        rate_limit=TENANT_LIMIT,
        limit_key=f"xero:{tenant_id}",
        transport=per_app,
    )
    http = RetryingClient(client, connection=connection, classifier=classifier)
    return XeroApi(http, classifier, tenant_id, str(tenant.get("tenantName") or ""))


class XeroApi:
    """The calls the connector makes, on one organisation."""

    def __init__(
        self, http: RetryingClient, classifier: XeroClassifier, tenant_id: str, tenant_name: str
    ) -> None:
        self.http = http
        self.classifier = classifier
        self.tenant_id = tenant_id
        self.tenant_name = tenant_name
        self.page_count: int | None = None
        """``pagination.pageCount`` of the last listing answer, when Xero gave one."""

    @property
    def connection(self) -> str:
        return self.http.connection

    def _json(self, response: httpx.Response, key: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get(key), list):
            raise TransientError(
                f"Xero answered HTTP {response.status_code} without a {key!r} list",
                connection=self.connection,
                request=f"{response.request.method} {response.request.url.path}",
            )
        return body

    async def listing(
        self,
        kind: str,
        *,
        page: int | None = None,
        since: str | None = None,
        ids: list[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """One page of ``GET /Contacts`` or ``GET /Invoices`` (archived contacts, voided
        and deleted invoices included), or the records with these ``ids``."""
        params: dict[str, Any] = dict(extra or {})
        if kind == "Contacts":
            params["includeArchived"] = "true"
        if page is not None:
            params["page"] = page
        if ids:
            params["IDs"] = ",".join(ids)
        headers = {"If-Modified-Since": since} if since else None
        response = await self.http.get(f"/{kind}", params=params, headers=headers)
        body = self._json(response, kind)
        pagination = body.get("pagination")
        count = pagination.get("pageCount") if isinstance(pagination, dict) else None
        self.page_count = count if isinstance(count, int) else None
        found: list[dict[str, Any]] = body[kind]
        return found

    async def post(
        self, kind: str, items: list[dict[str, Any]], idempotency_key: str
    ) -> list[dict[str, Any]]:
        """``POST /Contacts`` or ``/Invoices`` (update or create) with ``summarizeErrors=false``:
        one answered item per item sent, in order, each with its own validation errors."""
        response = await self.http.post(
            f"/{kind}",
            params={"summarizeErrors": "false"},
            json={kind: items},
            headers={"Idempotency-Key": idempotency_key[:128]},
        )
        answered: list[dict[str, Any]] = self._json(response, kind)[kind]
        if len(answered) != len(items):
            raise TransientError(
                f"Xero answered {len(answered)} {kind} for {len(items)} sent",
                connection=self.connection,
            )
        return answered

    async def credit_note(self, credit_note_id: str) -> dict[str, Any] | None:
        response = await self.http.get(f"/CreditNotes/{credit_note_id}")
        notes = self._json(response, "CreditNotes")["CreditNotes"]
        return notes[0] if notes else None

    async def aclose(self) -> None:
        await self.http.aclose()
