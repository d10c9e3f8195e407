"""Test controls of the Gmail sandbox, over HTTP so a sandbox in another process can be
steered (outside the descriptions, so never checked against them):

=================================  ==========================================================
``POST /_gmail/deliver``           a message arrives or is sent (JSON: ``mailbox``, ``from``,
                                   ``to``, ``cc``, ``subject``, ``body``, ``message_id``,
                                   ``sent``, ``thread_id``); the watch pushes it
``POST /_gmail/delete``            a message is deleted for good (``mailbox``, ``id``)
``POST /_gmail/expire_history``    every history id handed out so far is stale (404)
``POST /_gmail/quota``             ``units`` per ``window`` seconds, answered with ``status``
``POST /_gmail/push``              OIDC ``audience`` of push tokens (null: none),
                                   ``subscription``
``POST /_gmail/service_account``   a service-account key file the sandbox trusts (JSON)
``GET /_gmail/stats``              quota units and batch items used, pushes sent, watches
``POST /_people/edit``             a contact changed "in Google Contacts" (``email``,
                                   ``changes``: person fields)
``POST /_people/expire_sync_tokens``  every sync token handed out so far expires
``GET /_people/contacts``          every live contact, all fields
=================================  ==========================================================
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.gmail.sandbox_people import PEOPLE_FIELDS

if TYPE_CHECKING:
    from connectors.gmail.sandbox import GmailSandbox

__all__ = ["control_routes"]


def control_routes(state: GmailSandbox) -> list[Route]:
    from connectors.gmail.sandbox import MAILBOX

    async def body(request: Request) -> dict[str, Any]:
        data = await request.json() if await request.body() else {}
        return data if isinstance(data, dict) else {}

    async def deliver(request: Request) -> Response:
        data = await body(request)
        mailbox = str(data.get("mailbox") or MAILBOX)
        when = datetime.now(UTC)
        sent = bool(data.get("sent"))
        headers = [
            ("From", str(data.get("from") or (mailbox if sent else "someone@example.com"))),
            ("To", str(data.get("to") or mailbox)),
            ("Subject", str(data.get("subject") or "")),
            ("Date", format_datetime(when)),
            ("Message-ID", str(data.get("message_id") or make_msgid(domain="sandbox.example"))),
        ]
        if data.get("cc"):
            headers.insert(2, ("Cc", str(data["cc"])))
        labels = {"SENT"} if sent else {"INBOX", "UNREAD", "CATEGORY_PERSONAL"}
        labels.update(data.get("labels") or [])
        added = await state.deliver(
            mailbox,
            headers=headers,
            internal_ms=int(when.timestamp() * 1000),
            labels=labels,
            body=str(data.get("body") or ""),
            thread_id=data.get("thread_id"),
        )
        return JSONResponse(added)

    async def delete(request: Request) -> Response:
        data = await body(request)
        box = state.mailbox(str(data.get("mailbox") or MAILBOX))
        gone = box.delete(str(data.get("id")))
        return JSONResponse({"deleted": gone is not None})

    async def expire_history(request: Request) -> Response:
        data = await body(request)
        state.mailbox(str(data.get("mailbox") or MAILBOX)).expire_history()
        return JSONResponse({"expired": True})

    async def quota(request: Request) -> Response:
        data = await body(request)
        with state.lock:
            state.quota_units = int(data.get("units", state.quota_units))
            state.quota_window = float(data.get("window", state.quota_window))
            state.quota_status = int(data.get("status", state.quota_status))
            state.spent.clear()
        return JSONResponse({"units": state.quota_units, "window": state.quota_window})

    async def push(request: Request) -> Response:
        data = await body(request)
        state.push_audience = data.get("audience")
        state.push_subscription = str(data.get("subscription") or state.push_subscription)
        return JSONResponse({"audience": state.push_audience})

    async def service_account(request: Request) -> Response:
        from connectors.gmail.sandbox import service_account_info

        assert state.app is not None
        base = f"{request.url.scheme}://{request.url.netloc}"
        return JSONResponse(service_account_info(state.app, base))  # type: ignore[arg-type]

    async def stats(request: Request) -> Response:
        with state.lock:
            return JSONResponse(
                {
                    "units": state.units,
                    "batch_items": state.batch_items,
                    "pushes": state.pushes,
                    "messages": {a: len(b.messages) for a, b in state.mailboxes.items()},
                    "watches": {a: w[1] for a, w in state.watches.items()},
                }
            )

    async def edit_person(request: Request) -> Response:
        data = await body(request)
        book = state.book(str(data.get("mailbox") or MAILBOX))
        found = book.find_email(str(data.get("email", "")))
        if found is None:
            return JSONResponse({"error": "no contact with that address"}, status_code=404)
        book.edit(found.resource, dict(data.get("changes") or {}))
        return JSONResponse(found.render(set(PEOPLE_FIELDS)))

    async def expire_tokens(request: Request) -> Response:
        data = await body(request)
        state.book(str(data.get("mailbox") or MAILBOX)).expire_sync_tokens()
        return JSONResponse({"expired": True})

    async def contacts(request: Request) -> Response:
        book = state.book(request.query_params.get("mailbox") or MAILBOX)
        return JSONResponse([p.render(set(PEOPLE_FIELDS)) for p in book.listing(None)])

    return [
        Route("/_gmail/deliver", deliver, methods=["POST"]),
        Route("/_gmail/delete", delete, methods=["POST"]),
        Route("/_gmail/expire_history", expire_history, methods=["POST"]),
        Route("/_gmail/quota", quota, methods=["POST"]),
        Route("/_gmail/push", push, methods=["POST"]),
        Route("/_gmail/service_account", service_account, methods=["POST"]),
        Route("/_gmail/stats", stats, methods=["GET"]),
        Route("/_people/edit", edit_person, methods=["POST"]),
        Route("/_people/expire_sync_tokens", expire_tokens, methods=["POST"]),
        Route("/_people/contacts", contacts, methods=["GET"]),
    ]
