"""``/hooks/{connection}``: verify, store in the inbox, answer. Processing comes later.

Answers:

=====  ======================================================================
200    stored (or a duplicate of a stored delivery, which is ignored), or a
       handshake answered by the receiver (nothing stored)
400    authentic but malformed: kept in the inbox as ``malformed``
401    bad or missing signature, stale timestamp: nothing stored
404    no such connection, or it takes no webhooks
405    method the receiver does not accept
413    body over the limit (``hub.web.limits``)
503    the inbox could not be written: the provider should retry
=====  ======================================================================

The inbox row is committed before the answer is sent, so an acknowledged delivery is never
lost. ``/hooks/{connection}/{subpath}`` reaches the same receiver with ``subpath`` set (secret
form paths, several endpoints of one provider).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import ClientDisconnect

from hub import metrics
from hub.errors import CrmhubError
from hub.inbox import Inbox
from hub.runtime import Hub
from hub.store.status import InboxStatus
from hub.webhooks import (
    Delivery,
    MalformedDelivery,
    RequestInfo,
    WebhookReceiver,
    WebhookRejected,
    WebhookResponse,
    body_id,
    receiver_for,
)

log = logging.getLogger("hub.web.intake")
router = APIRouter()
METHODS = ["GET", "POST", "PUT"]


class Receivers:
    """One receiver per connection, built on first use and kept for the app's life."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._built: dict[str, WebhookReceiver] = {}

    def get(self, connection: str) -> WebhookReceiver:
        found = self._built.get(connection)
        if found is not None:
            return found
        try:
            receiver = receiver_for(self.hub, connection)
        except CrmhubError as exc:  # settings that no longer validate, a broken plugin
            log.error("cannot build the webhook receiver of %r: %s", connection, exc)
            raise WebhookRejected(404, f"connection {connection!r} cannot take webhooks") from None
        if receiver is None:
            raise WebhookRejected(404, f"connection {connection!r} takes no webhooks")
        self._built[connection] = receiver
        return receiver

    async def aclose(self) -> None:
        built, self._built = list(self._built.values()), {}
        for receiver in built:
            try:
                await receiver.connector.aclose()
            except Exception:  # closing must go on for the others
                log.exception("closing connector of %r failed", receiver.connection)


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


def _answer(response: WebhookResponse | None) -> Response:
    if response is None:
        return Response(status_code=200)
    return Response(response.body, status_code=response.status, media_type=response.content_type)


async def _store(
    inbox: Inbox, connection: str, delivery: Delivery, body: bytes, headers: dict[str, str]
) -> tuple[int, bool]:
    return await inbox.add(
        connection, delivery.delivery_id, body, delivery.headers or headers, kind=delivery.kind
    )


async def receive_webhook(request: Request) -> Response:
    connection: str = request.path_params["connection"]
    subpath: str = request.path_params.get("subpath", "")
    receivers: Receivers = request.app.state.receivers
    inbox: Inbox = request.app.state.inbox
    try:
        receiver = receivers.get(connection)
    except WebhookRejected as exc:
        return _error(exc.status, exc.reason)
    if request.method not in receiver.methods:
        return _error(405, f"{request.method} is not accepted here")
    try:
        body = await request.body()
    except ClientDisconnect:  # the sender gave up; nothing was stored, nobody to answer
        return Response(status_code=400)
    headers = dict(request.headers)
    info = RequestInfo(
        method=request.method,
        path=request.url.path,
        subpath=subpath,
        query=dict(request.query_params),
        headers=headers,
        client=request.client.host if request.client else None,
    )
    try:
        delivery = await receiver.verify(info, body)
    except MalformedDelivery as exc:
        delivery_id = exc.delivery_id or body_id(body)
        try:
            await inbox.add(
                connection,
                delivery_id,
                body,
                receiver.kept_headers(headers),
                status=InboxStatus.MALFORMED,
                error=exc.reason,
            )
        except (CrmhubError, SQLAlchemyError):
            log.exception("could not keep a malformed delivery for %r", connection)
        metrics.WEBHOOKS.inc(connection=connection, outcome="malformed")
        log.warning("malformed delivery", extra={"connection": connection, "reason": exc.reason})
        return _error(400, exc.reason)
    except WebhookRejected as exc:
        metrics.WEBHOOKS.inc(connection=connection, outcome="rejected")
        log.warning(
            "delivery rejected",
            extra={"connection": connection, "status": exc.status, "reason": exc.reason},
        )
        return _error(exc.status, exc.reason)
    if not delivery.store:
        metrics.WEBHOOKS.inc(connection=connection, outcome="handshake")
        return _answer(delivery.response)
    try:
        kept = receiver.kept_headers(headers)
        item_id, duplicate = await _store(inbox, connection, delivery, body, kept)
    except (CrmhubError, SQLAlchemyError, OSError) as exc:
        log.error("inbox write failed for %r: %s", connection, exc)
        return _error(503, "the delivery could not be stored; retry later")
    outcome = "duplicate" if duplicate else "accepted"
    metrics.WEBHOOKS.inc(connection=connection, outcome=outcome)
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "delivery %s",
            outcome,
            extra={"connection": connection, "item": item_id, "delivery_id": delivery.delivery_id},
        )
    return _answer(delivery.response)


# Plain Starlette routes: the endpoint reads the raw request itself, so FastAPI's parameter
# handling would only add time to a path that must answer fast.
router.add_route("/hooks/{connection}", receive_webhook, methods=METHODS, include_in_schema=False)
router.add_route(
    "/hooks/{connection}/{subpath:path}", receive_webhook, methods=METHODS, include_in_schema=False
)
