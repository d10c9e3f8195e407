"""Gmail push notifications: Pub/Sub push deliveries to ``/hooks/<connection>?token=...``.

Gmail publishes ``{"emailAddress", "historyId"}`` to the connection's Pub/Sub topic; the
topic's push subscription posts it to the hub (:mod:`connectors.gmail.pubsub_format`). A
delivery is accepted only when:

- the URL's ``token`` equals the connection's ``push_token`` (constant-time compare);
- with ``push_audience`` set, it carries Pub/Sub's OIDC token (``Authorization: Bearer``),
  verified with google-auth against Google's certificates (``push_certs_url``, cached for an
  hour): signature, expiry, audience, issuer ``accounts.google.com`` and, with
  ``push_service_account``, the ``email`` claim;
- it comes from ``push_subscription`` when that is set, and names one of the connection's
  mailboxes (when it lists any).

Anything else is refused (401 or 404) and nothing is stored. An accepted delivery goes to
the inbox (its Pub/Sub message id dedupes redeliveries) and is answered 200; handling it
runs a sync of the connection, whose history pull reads the new mail (skipped when a run
started after the delivery arrived already covered it).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx

from connectors.gmail import pubsub_format
from hub.webhooks import (
    Delivery,
    MalformedDelivery,
    RequestInfo,
    WebhookReceiver,
    WebhookRejected,
    body_id,
    verify_url_secret,
)

if TYPE_CHECKING:
    from hub.inbox import InboxItem
    from hub.services import ConnectionServices

__all__ = ["PubSubReceiver"]

ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
CERTS_TTL = 3600.0
_certs: dict[str, tuple[float, dict[str, str]]] = {}
_certs_lock = threading.Lock()


async def google_certs(url: str) -> dict[str, str]:
    """Google's (or a sandbox's) signing certificates, kept for an hour."""
    with _certs_lock:
        cached = _certs.get(url)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(url)
            response.raise_for_status()
            certs = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        # without the certificates nothing can be verified: the push is retried by Pub/Sub
        raise WebhookRejected(503, f"cannot read the signing certificates: {exc}") from None
    if not isinstance(certs, dict):
        raise WebhookRejected(503, "the signing certificates are not a JSON object")
    with _certs_lock:
        _certs[url] = (time.monotonic() + CERTS_TTL, certs)
    return certs


def _decode(token: str, certs: dict[str, str], audience: str) -> dict[str, Any]:
    import google.auth.exceptions
    from google.auth import jwt

    try:
        claims: dict[str, Any] = jwt.decode(token, certs=certs, audience=audience)
    except (google.auth.exceptions.GoogleAuthError, ValueError) as exc:
        raise WebhookRejected(401, f"push token refused: {str(exc)[:120]}") from None
    return claims


class PubSubReceiver(WebhookReceiver):
    """The receiver of a Gmail connection (``GmailConnector.webhook``)."""

    async def verify(self, request: RequestInfo, body: bytes) -> Delivery:
        settings: Any = self.settings
        if request.subpath:
            raise WebhookRejected(404, "no such webhook path")
        verify_url_secret(self.secret("push_token"), request.query.get("token"))
        if settings.push_audience:
            await self._check_oidc(request, settings)
        try:
            note = pubsub_format.parse(body)
        except pubsub_format.PushFormatError as exc:
            raise MalformedDelivery(str(exc), body_id(body)) from None
        if settings.push_subscription and note.subscription != settings.push_subscription:
            raise WebhookRejected(401, "the push comes from another subscription")
        if settings.mailboxes and note.email not in settings.mailboxes:
            raise WebhookRejected(404, "the push names a mailbox this connection does not read")
        return Delivery(delivery_id=f"pubsub:{note.message_id}", kind="gmail.history")

    async def _check_oidc(self, request: RequestInfo, settings: Any) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise WebhookRejected(401, "the push carries no OIDC token")
        certs = await google_certs(settings.push_certs_url)
        claims = await asyncio.to_thread(_decode, token.strip(), certs, settings.push_audience)
        if claims.get("iss") not in ISSUERS:
            raise WebhookRejected(401, "the push token was not issued by Google")
        if settings.push_service_account and (
            claims.get("email") != settings.push_service_account
            or claims.get("email_verified") is not True
        ):
            raise WebhookRejected(401, "the push token is not the subscription's account")

    async def handle(self, services: ConnectionServices, item: InboxItem) -> None:
        # LeaseHeld (a run is going) fails the item; the inbox tries again after that run.
        await services.catch_up(item.received_at)
