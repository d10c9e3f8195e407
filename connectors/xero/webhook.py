"""Xero webhooks: ``/hooks/<connection>``, the URL given to the Xero app.

``verify`` checks ``x-xero-signature`` (base64 HMAC-SHA256 of the raw body with the app's
webhook key, constant-time compare): a bad or missing signature is answered 401 and stored
nowhere, a good one 200 with an empty body, as Xero's intent-to-receive check requires
(its deliveries have no events and are not stored). Deliveries with events go to the inbox
first and are answered within Xero's 5 seconds.

``handle`` turns events into targeted fetches: the records named (contacts, invoices, the
invoices a credit note is allocated to) are noted for the connection of the event's
organisation (one Xero app sends every organisation's events to one URL, so a delivery may
concern several connections) and that connection syncs: its pull reads those records by
id instead of listing, while the last full listing is recent (``reconcile_minutes``).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from connectors.xero import webhook_format
from hub.errors import LeaseHeld
from hub.store.schema import cursors
from hub.webhooks import (
    Delivery,
    MalformedDelivery,
    RequestInfo,
    WebhookReceiver,
    WebhookRejected,
    WebhookResponse,
    body_id,
    verify_signature,
)

if TYPE_CHECKING:
    from hub.inbox import InboxItem
    from hub.runtime import Hub
    from hub.store import Store

__all__ = ["HINTS_STATE", "TENANT_STATE", "XeroReceiver", "add_hints", "take_hints"]

TENANT_STATE = "@tenant"
HINTS_STATE = "@events"
CATEGORIES = {"CONTACT": "Contacts", "INVOICE": "Invoices", "CREDITNOTE": "CreditNotes"}


async def _state(store: Store, connection: str, stream: str) -> dict[str, Any]:
    async with store.connect() as db:
        value = await db.scalar(
            select(cursors.c.value).where(
                cursors.c.connection == connection, cursors.c.stream == stream
            )
        )
    return dict(value) if isinstance(value, dict) else {}


async def add_hints(store: Store, connection: str, hints: dict[str, set[str]]) -> None:
    """Note records to fetch at the connection's next pull."""
    from hub.engine.writes import upsert_cursor

    async with store.begin() as db:
        value = await db.scalar(
            select(cursors.c.value).where(
                cursors.c.connection == connection, cursors.c.stream == HINTS_STATE
            )
        )
        current = dict(value) if isinstance(value, dict) else {}
        for kind, ids in hints.items():
            current[kind] = sorted(set(current.get(kind) or []) | ids)
        await upsert_cursor(db, connection, HINTS_STATE, current)


async def take_hints(store: Store, connection: str) -> dict[str, list[str]]:
    """The noted records, forgotten as they are taken (a lost hint costs nothing: the
    scheduled listing finds the change)."""
    from hub.engine.writes import upsert_cursor

    current = await _state(store, connection, HINTS_STATE)
    if current:
        async with store.begin() as db:
            await upsert_cursor(db, connection, HINTS_STATE, {})
    return {k: [str(i) for i in v] for k, v in current.items() if isinstance(v, list)}


class XeroReceiver(WebhookReceiver):
    """The receiver of a Xero connection (``XeroConnector.webhook``)."""

    headers = (webhook_format.SIGNATURE_HEADER,)

    async def verify(self, request: RequestInfo, body: bytes) -> Delivery:
        if request.subpath:
            raise WebhookRejected(404, "no such webhook path")
        key = self.secret("webhook_key")
        if not key:
            raise WebhookRejected(401, "no webhook_key is configured for this connection")
        given = request.headers.get(webhook_format.SIGNATURE_HEADER)
        verify_signature(webhook_format.sign(key, body), given)
        try:
            found = webhook_format.events(body)
        except ValueError as exc:
            raise MalformedDelivery(f"not a Xero webhook: {exc}") from None
        if not found:  # intent to receive: answered, nothing to keep
            return Delivery("intent-to-receive", store=False, response=WebhookResponse(200))
        return Delivery(body_id(body), kind="xero.events", response=WebhookResponse(200))

    async def handle(self, hub: Hub, item: InboxItem) -> None:
        from hub.engine import sync_connection

        try:
            found = webhook_format.events(item.body)
        except ValueError as exc:
            raise MalformedDelivery(str(exc)) from None
        tenants = await self._tenants(hub)
        targets: dict[str, dict[str, set[str]]] = {}
        for event in found:
            kind = CATEGORIES.get(str(event.get("eventCategory")))
            connection = tenants.get(str(event.get("tenantId")))
            if kind is None or connection is None:
                continue  # subscriptions, or an organisation no connection follows
            targets.setdefault(connection, {}).setdefault(kind, set()).add(str(event["resourceId"]))
        for connection, hints in targets.items():
            await add_hints(hub.store, connection, hints)
            with contextlib.suppress(LeaseHeld):  # a run is going: the hints wait for the next
                await sync_connection(hub, connection)

    async def _tenants(self, hub: Hub) -> dict[str, str]:
        """Organisation id -> the connection that follows it (this one first)."""
        names = [n for n, c in hub.config.connections.items() if c.hub.connector == "xero"]
        names.sort(key=lambda n: n != self.connection)
        found: dict[str, str] = {}
        for name in names:
            tenant = (await _state(hub.store, name, TENANT_STATE)).get("tenant_id")
            if tenant and str(tenant) not in found and hub.config.connections[name].hub.enabled:
                found[str(tenant)] = name
        return found
