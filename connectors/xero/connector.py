"""Connector ``xero``: one Xero organisation's contacts, companies and invoices.

Settings (``[connections.NAME]`` in ``crmhub.toml``, see :class:`XeroSettings`)::

    connector = "xero"
    tenant = "Demo Company (Global)"   # when the grant reaches several organisations
    webhook_key = "env:XERO_WEBHOOK_KEY"
    push_invoices = false

Credentials: OAuth 2.0 with PKCE (``crmhub connect NAME``); access tokens last 30 minutes,
refresh tokens rotate on every refresh and die after 60 days unused, so the daemon's
keep-alive refreshes an idle connection before that. Streams:

- ``contacts`` (contact): people, both ways; an organisation's contact persons included.
- ``companies`` (company): organisations, both ways.
- ``invoices`` (invoice): pulled; with ``push_invoices`` invoices made in the hub are
  created in Xero as drafts. Payments and credit notes change an invoice's amount due
  and its ``UpdatedDateUTC``, so they arrive with the invoice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from pydantic import BaseModel

from connectors.xero.classify import validation_messages
from connectors.xero.client import XeroApi, open_api
from connectors.xero.pull import ListingCache, StreamPull, companies_of, invoices_of, people_of
from connectors.xero.push import ContactPush, batch_key
from connectors.xero.records import XERO_ID
from connectors.xero.settings import XeroSettings
from connectors.xero.webhook import TENANT_STATE, XeroReceiver, take_hints
from hub.authspec import AuthKind, OAuthSettings
from hub.connector import (
    Change,
    Connector,
    ConnectorContext,
    Cursor,
    Page,
    PushResult,
    RemoteRecord,
    Stream,
)
from hub.errors import ConnectorError, ErrorKind
from hub.rest.window import parse_iso
from hub.webhooks import WebhookReceiver

__all__ = ["SCOPES", "XeroConnector"]

SCOPES = ["openid", "offline_access", "accounting.contacts", "accounting.transactions"]
CONVERT = {"contacts": people_of, "companies": companies_of, "invoices": invoices_of}
KIND = {"contacts": "Contacts", "companies": "Contacts", "invoices": "Invoices"}


class XeroConnector(Connector):
    """Contacts and companies both ways, invoices in (drafts out), webhooks as hints."""

    name = "xero"
    description = "Xero: contacts and companies both ways, invoices with what is unpaid."
    Settings = XeroSettings
    settings: XeroSettings
    push_batch_size = 500
    auth_kind: ClassVar[AuthKind] = "oauth2"
    oauth: ClassVar[OAuthSettings | None] = OAuthSettings(
        authorize_url="https://login.xero.com/identity/connect/authorize",
        token_url="https://identity.xero.com/connect/token",
        revocation_url="https://identity.xero.com/connect/revocation",
        scopes=SCOPES,
        pkce=True,
        rotates_refresh_tokens=True,
        refresh_token_max_idle_days=60,
    )
    webhook: ClassVar[type[WebhookReceiver] | None] = XeroReceiver

    def __init__(self, settings: BaseModel, context: ConnectorContext) -> None:
        super().__init__(settings, context)
        self._api: XeroApi | None = None
        self._cache = ListingCache()
        self._taken: dict[str, list[str]] | None = None

    async def api(self) -> XeroApi:
        if self._api is None:
            self._api = await open_api(self.context, self.settings)
            await self._remember_tenant(self._api)
        return self._api

    def streams(self) -> list[Stream]:
        both = {"can_create": True, "can_update": True, "can_delete": True}
        return [
            Stream("contacts", "contact", incremental=True, webhooks=True, **both),
            Stream("companies", "company", incremental=True, webhooks=True, **both),
            Stream(
                "invoices",
                "invoice",
                incremental=True,
                webhooks=True,
                can_create=self.settings.push_invoices,
            ),
        ]

    def _puller(self, api: XeroApi, stream: Stream) -> StreamPull:
        overlap = timedelta(seconds=self.settings.overlap_seconds)
        kind = KIND[stream.name]
        return StreamPull(api, kind, CONVERT[stream.name], overlap, self._cache, stream.name)

    async def pull(self, stream: Stream, cursor: Cursor | None) -> AsyncIterator[Page]:
        api = await self.api()
        puller = self._puller(api, stream)
        hints = await self._hints()
        if hints and isinstance(cursor, dict) and self._listed_lately(cursor):
            # a webhook named the records: read them, list nothing, keep the cursor
            ids = await self._hinted(api, KIND[stream.name], hints)
            if ids:
                page = await puller.fetch(ids)
                page.cursor = cursor
                yield page
            return
        async for page in puller.pages(cursor):
            yield page

    def _listed_lately(self, cursor: dict[str, Any]) -> bool:
        listed = parse_iso(cursor.get("listed_at"))
        limit = timedelta(minutes=self.settings.reconcile_minutes)
        return listed is not None and datetime.now(UTC) - listed < limit

    async def _hints(self) -> dict[str, list[str]]:
        if self._taken is None:
            services = self.context.services
            self._taken = await take_hints(services) if services else {}
        return self._taken

    async def _hinted(self, api: XeroApi, kind: str, hints: dict[str, list[str]]) -> list[str]:
        ids = set(hints.get(kind) or [])
        if kind == "Invoices":
            for note_id in hints.get("CreditNotes") or []:
                note = await api.credit_note(note_id)
                for allocation in (note or {}).get("Allocations") or []:
                    invoice = allocation.get("Invoice") or {}
                    if invoice.get("InvoiceID"):
                        ids.add(str(invoice["InvoiceID"]))
        return sorted(ids)

    async def fetch(self, stream: Stream, remote_ids: list[str]) -> list[RemoteRecord]:
        base = sorted({i.split("#")[0] for i in remote_ids if XERO_ID.match(i)})
        if not base:
            return []
        wanted = set(remote_ids)
        found = await self._puller(await self.api(), stream).fetch(base)
        return [r for r in found.records if r.id in wanted]

    async def push(self, stream: Stream, changes: list[Change]) -> list[PushResult]:
        if not changes:
            return []
        api = await self.api()
        self._cache.clear()  # what was listed before the writes is out of date
        if stream.name == "invoices":
            return await self._push_invoices(api, changes)
        return await ContactPush(api, self.settings.batch_size).push(changes)

    async def _push_invoices(self, api: XeroApi, changes: list[Change]) -> list[PushResult]:
        """Invoices made in the hub, created in Xero as DRAFT sales invoices."""
        results: dict[str, PushResult] = {}
        sending: list[tuple[dict[str, Any], Change]] = []
        for change in changes:
            data = change.data
            if change.op != "create" or not self.settings.push_invoices:
                message = "only new invoices are written to Xero, as drafts (push_invoices)"
                results[change.key] = PushResult(
                    change.key, error=ErrorKind.PERMANENT, message=message
                )
                continue
            contact_id = data.get("CompanyID") or data.get("ContactID")
            if not contact_id:
                message = "the invoice names no Xero contact (ContactID)"
                results[change.key] = PushResult(
                    change.key, error=ErrorKind.PERMANENT, message=message
                )
                continue
            body: dict[str, Any] = {
                "Type": "ACCREC",
                "Status": "DRAFT",
                "Contact": {"ContactID": contact_id},
                "LineItems": [
                    {
                        "Description": str(
                            data.get("LineItems") or data.get("InvoiceNumber") or "Invoice"
                        ),
                        "Quantity": 1,
                        "UnitAmount": float(data.get("Total") or 0),
                    }
                ],
            }
            for key in ("InvoiceNumber", "Reference", "Date", "DueDate", "CurrencyCode"):
                if data.get(key):
                    body[key] = data[key]
            sending.append((body, change))
        for start in range(0, len(sending), 50):
            batch = sending[start : start + 50]
            answered = await api.post(
                "Invoices", [b for b, _ in batch], batch_key([(b, [c]) for b, c in batch])
            )
            for (_, change), item in zip(batch, answered, strict=True):
                errors = validation_messages(item)
                if errors or item.get("HasErrors"):
                    text = "Xero: " + ("; ".join(errors) or "the invoice was refused")
                    results[change.key] = PushResult(
                        change.key, error=ErrorKind.PERMANENT, message=text
                    )
                else:
                    results[change.key] = PushResult(change.key, remote_id=str(item["InvoiceID"]))
        return [results[c.key] for c in changes]

    async def _remember_tenant(self, api: XeroApi) -> None:
        """The organisation in the store, for the webhook receiver (events name tenants)."""
        services = self.context.services
        if services is None:
            return
        value = {"tenant_id": api.tenant_id, "tenant_name": api.tenant_name}
        await services.update_state(TENANT_STATE, lambda _: value)

    async def aclose(self) -> None:
        self._cache.clear()
        if self._api is None:
            return
        api, self._api = self._api, None
        try:
            services = self.context.services
            if services is not None and api.classifier.usage.at is not None:
                await services.report_usage(api.classifier.usage.as_state())
        except ConnectorError:
            pass
        finally:
            await asyncio.shield(api.aclose())
