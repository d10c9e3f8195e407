"""The Xero sandbox's controls: changes made "in Xero" by tests and the demo, and the
webhooks they fire, shaped like Xero's documented examples and signed with the app's key.

A change returns its delivery (one event, as Xero posts it); :meth:`XeroControls.notify`
posts it to the configured URL. :meth:`XeroControls.intent_to_receive` is Xero's check of a
new webhook URL. Over HTTP: ``POST /_xero/edit``, ``/_xero/pay``, ``/_xero/credit``,
``/_xero/limits``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from connectors.xero import webhook_format

if TYPE_CHECKING:
    from connectors.xero.sandbox_limits import Limits
    from connectors.xero.sandbox_org import Organisation
    from hub.sandbox import WebhookSender

__all__ = ["XeroControls"]

API = "/api.xro/2.0"


class XeroControls:
    """Mixed into :class:`~connectors.xero.sandbox.XeroSandbox`."""

    webhooks: WebhookSender
    webhook_key: str
    sequence: int
    limits: Limits

    org: Callable[..., Organisation]
    """An organisation by position or tenant id: ``XeroSandbox.org``."""

    def event(
        self,
        org: Organisation,
        category: str,
        resource_id: str,
        kind: str = "UPDATE",
        data: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One delivery with one event, as Xero posts it."""
        path = {"CONTACT": "Contacts", "INVOICE": "Invoices", "CREDITNOTE": "CreditNotes"}[category]
        self.sequence += 1
        event: dict[str, Any] = {
            "resourceUrl": f"https://api.xero.com{API}/{path}/{resource_id}",
            "resourceId": resource_id,
            "eventDateUtc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
            "eventType": kind,
            "eventCategory": category,
            "tenantId": org.tenant_id,
            "tenantType": "ORGANISATION",
        }
        if data is not None:
            event["data"] = data
        return {
            "events": [event],
            "firstEventSequence": self.sequence,
            "lastEventSequence": self.sequence,
            "entropy": hashlib.sha1(str(self.sequence).encode()).hexdigest()[:20].upper(),
        }

    def sign(self, body: bytes) -> dict[str, str]:
        return {webhook_format.SIGNATURE_HEADER: webhook_format.sign(self.webhook_key, body)}

    async def notify(self, payload: dict[str, Any] | None) -> int | None:
        """Post a delivery to the configured URL; its status (``None``: no URL set)."""
        if payload is None or not self.webhooks.url:
            return None
        return (await self.webhooks.send(payload)).status

    async def intent_to_receive(self) -> list[tuple[bool, int | None]]:
        """Xero's check of a new webhook URL: deliveries without events, signed and
        wrongly signed; ``(signed correctly, status answered)`` for each."""
        results = []
        for good in (True, False, True, False):
            payload = {
                "events": [],
                "firstEventSequence": 0,
                "lastEventSequence": 0,
                "entropy": hashlib.sha1(str(time.time()).encode()).hexdigest()[:20].upper(),
            }
            headers = (
                None
                if good
                else {webhook_format.SIGNATURE_HEADER: webhook_format.sign("wrong", b"x")}
            )
            body, all_headers = self.webhooks.prepare(payload)
            if headers:
                all_headers.update(headers)
            delivery = await self.webhooks.send(body, headers=all_headers)
            results.append((good, delivery.status))
        return results

    def edit(self, which: int | str, contact_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """A contact changed in Xero's web app; returns the webhook it fires."""
        org = self.org(which)
        org.edit_contact(contact_id, changes)
        return self.event(org, "CONTACT", contact_id)

    def archive(self, which: int | str, contact_id: str) -> dict[str, Any]:
        return self.edit(which, contact_id, {"ContactStatus": "ARCHIVED"})

    def pay(self, which: int | str, invoice_id: str, amount: float) -> dict[str, Any]:
        org = self.org(which)
        org.pay(invoice_id, amount)
        return self.event(org, "INVOICE", invoice_id)

    def credit(self, which: int | str, invoice_id: str, amount: float) -> dict[str, Any]:
        org = self.org(which)
        note = org.credit(invoice_id, amount)
        data = {"Type": note["Type"], "Status": note["Status"]}
        return self.event(org, "CREDITNOTE", note["CreditNoteID"], "CREATE", data)

    async def _control_edit(self, request: Request) -> Response:
        body = await request.json()
        try:
            payload = self.edit(
                body.get("tenant", 0), str(body["id"]), dict(body.get("changes") or {})
            )
        except KeyError as exc:
            return JSONResponse({"error": f"unknown {exc}"}, status_code=404)
        return JSONResponse({"webhook": payload, "webhook_status": await self.notify(payload)})

    async def _control_pay(self, request: Request) -> Response:
        body = await request.json()
        payload = self.pay(body.get("tenant", 0), str(body["id"]), float(body["amount"]))
        return JSONResponse({"webhook": payload, "webhook_status": await self.notify(payload)})

    async def _control_credit(self, request: Request) -> Response:
        body = await request.json()
        payload = self.credit(body.get("tenant", 0), str(body["id"]), float(body["amount"]))
        return JSONResponse({"webhook": payload, "webhook_status": await self.notify(payload)})

    async def _control_limits(self, request: Request) -> Response:
        body = await request.json()
        for key in ("minute", "concurrent", "day", "app_minute"):
            if key in body:
                setattr(self.limits, key, int(body[key]))
        return JSONResponse(
            {k: getattr(self.limits, k) for k in ("minute", "concurrent", "day", "app_minute")}
        )
