"""Test controls of the Outlook sandbox, over HTTP (outside Graph's description):

=================================  ==========================================================
``POST /_outlook/deliver``         a message arrives in (or is sent from) a folder (JSON:
                                   ``mailbox``, ``folder``, ``from``, ``to``, ``cc``,
                                   ``subject``, ``body``, ``internet_message_id``); change
                                   notifications follow
``POST /_outlook/remove``          a message or contact is deleted (``mailbox``, ``id``)
``POST /_outlook/expire_tokens``   every delta token handed out so far is gone (410)
``POST /_outlook/throttle``        the next ``batch`` requests inside ``$batch`` calls get 429
``POST /_outlook/lifecycle``       a lifecycle ``event`` for ``subscription`` (default: all)
``POST /_outlook/contact_edit``    a contact changed "in Outlook" (``email``, ``changes``)
``GET /_outlook/stats``            subscriptions, notifications sent, batch items, throttles
``GET /_outlook/contacts``         every contact of a mailbox
=================================  ==========================================================
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import make_msgid
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.outlook.sandbox_store import CONTACTS, message, recipient

if TYPE_CHECKING:
    from connectors.outlook.sandbox import OutlookSandbox

__all__ = ["control_routes"]


def _party(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return recipient(str(value.get("name", "")), str(value.get("address", "")))
    text = str(value)
    if "<" in text:
        name, _, address = text.partition("<")
        return recipient(name.strip().strip('"'), address.strip(" >"))
    return recipient("", text)


def control_routes(state: OutlookSandbox) -> list[Route]:
    from connectors.outlook.sandbox import MAILBOX

    async def body(request: Request) -> dict[str, Any]:
        data = await request.json() if await request.body() else {}
        return data if isinstance(data, dict) else {}

    async def deliver(request: Request) -> Response:
        data = await body(request)
        box = state.mailbox(str(data.get("mailbox") or MAILBOX))
        folder = str(data.get("folder") or "inbox").lower()
        own = recipient("Sandbox User", box.address)
        sender = _party(data["from"]) if data.get("from") else own
        to = [_party(v) for v in (data.get("to") or [box.address])]
        cc = [_party(v) for v in (data.get("cc") or [])]
        item = box.put(
            folder,
            message(
                sender=sender,
                to=to,
                cc=cc,
                subject=str(data.get("subject") or ""),
                body=str(data.get("body") or ""),
                when=datetime.now(UTC),
                internet_id=str(data.get("internet_message_id") or make_msgid("sandbox.example")),
                conversation=str(data.get("conversation") or box.new_id("AAQk")),
            ),
        )
        sent = await state.notify(box, item, "created")
        return JSONResponse({"id": item.id, "notifications": sent})

    async def remove(request: Request) -> Response:
        data = await body(request)
        box = state.mailbox(str(data.get("mailbox") or MAILBOX))
        item = box.get(str(data.get("id")))
        gone = box.remove(str(data.get("id")))
        if gone and item is not None:
            await state.notify(box, item, "deleted")
        return JSONResponse({"removed": gone})

    async def expire(request: Request) -> Response:
        data = await body(request)
        state.mailbox(str(data.get("mailbox") or MAILBOX)).expire_tokens()
        return JSONResponse({"expired": True})

    async def throttle(request: Request) -> Response:
        data = await body(request)
        with state.lock:
            state.batch_throttle = int(data.get("batch", 0))
        return JSONResponse({"batch": state.batch_throttle})

    async def lifecycle(request: Request) -> Response:
        data = await body(request)
        event = str(data.get("event") or "reauthorizationRequired")
        with state.lock:
            wanted = (
                [str(data["subscription"])]
                if data.get("subscription")
                else list(state.subscriptions)
            )
        sent = [s for s in wanted if await state.lifecycle(s, event)]
        return JSONResponse({"sent": sent})

    async def contact_edit(request: Request) -> Response:
        data = await body(request)
        box = state.mailbox(str(data.get("mailbox") or MAILBOX))
        email = str(data.get("email", "")).lower()
        for item in box.live(CONTACTS):
            addresses = [a.get("address", "").lower() for a in item.data.get("emailAddresses", [])]
            if email in addresses:
                updated = box.update(item.id, dict(data.get("changes") or {}))
                assert updated is not None
                await state.notify(box, updated, "updated")
                return JSONResponse(updated.render(None))
        return JSONResponse({"error": "no contact with that address"}, status_code=404)

    async def stats(request: Request) -> Response:
        with state.lock:
            return JSONResponse(
                {
                    "subscriptions": list(state.subscriptions.values()),
                    "notifications": state.notifications,
                    "batch_items": state.batch_items,
                    "throttled": state.throttled,
                    "max_in_flight": state.max_in_flight,
                    "conflicts": state.conflicts,
                    "renewals": state.renewals,
                }
            )

    async def contacts(request: Request) -> Response:
        box = state.mailbox(request.query_params.get("mailbox") or MAILBOX)
        return JSONResponse([i.render(None) for i in box.live(CONTACTS)])

    return [
        Route("/_outlook/deliver", deliver, methods=["POST"]),
        Route("/_outlook/remove", remove, methods=["POST"]),
        Route("/_outlook/expire_tokens", expire, methods=["POST"]),
        Route("/_outlook/throttle", throttle, methods=["POST"]),
        Route("/_outlook/lifecycle", lifecycle, methods=["POST"]),
        Route("/_outlook/contact_edit", contact_edit, methods=["POST"]),
        Route("/_outlook/stats", stats, methods=["GET"]),
        Route("/_outlook/contacts", contacts, methods=["GET"]),
    ]
