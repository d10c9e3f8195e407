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

from connectors.xero import webhook_format
from hub.errors import LeaseHeld
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
    from hub.services import ConnectionServices

__all__ = ["HINTS_STATE", "TENANT_STATE", "XeroReceiver", "add_hints", "take_hints"]

TENANT_STATE = "tenant"
HINTS_STATE = "events"
CATEGORIES = {"CONTACT": "Contacts", "INVOICE": "Invoices", "CREDITNOTE": "CreditNotes"}


async def add_hints(services: ConnectionServices, hints: dict[str, set[str]]) -> None:
    """Note records to fetch at the connection's next pull."""

    def noted(current: dict[str, Any]) -> dict[str, Any]:
        for kind, ids in hints.items():
            current[kind] = sorted(set(current.get(kind) or []) | ids)
        return current

    await services.update_state(HINTS_STATE, noted)


async def take_hints(services: ConnectionServices) -> dict[str, list[str]]:
    """The noted records, forgotten as they are taken (a lost hint costs nothing: the
    scheduled listing finds the change)."""
    current = await services.update_state(HINTS_STATE, lambda _: {})
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

    async def handle(self, services: ConnectionServices, item: InboxItem) -> None:
        try:
            found = webhook_format.events(item.body)
        except ValueError as exc:
            raise MalformedDelivery(str(exc)) from None
        tenants = await self._tenants(services)
        targets: dict[str, dict[str, set[str]]] = {}
        for event in found:
            kind = CATEGORIES.get(str(event.get("eventCategory")))
            connection = tenants.get(str(event.get("tenantId")))
            if kind is None or connection is None:
                continue  # subscriptions, or an organisation no connection follows
            targets.setdefault(connection.connection, {}).setdefault(kind, set()).add(
                str(event["resourceId"])
            )
        by_name = {s.connection: s for s in tenants.values()}
        for name, hints in targets.items():
            await add_hints(by_name[name], hints)
            with contextlib.suppress(LeaseHeld):  # a run is going: the hints wait for the next
                await by_name[name].sync()

    async def _tenants(self, services: ConnectionServices) -> dict[str, ConnectionServices]:
        """Organisation id -> the connection that follows it (this one first)."""
        found: dict[str, ConnectionServices] = {}
        for each in [services, *services.peers()]:
            tenant = (await each.state(TENANT_STATE)).get("tenant_id")
            if tenant and str(tenant) not in found:
                found[str(tenant)] = each
        return found
