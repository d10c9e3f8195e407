"""Mailchimp webhooks: a secret in the URL, a GET to validate, form-encoded deliveries.

Mailchimp signs nothing, so the webhook URL carries a secret::

    https://hub.example.com/hooks/<connection>?secret=<webhook_secret>

compared in constant time with the connection's ``webhook_secret``. Mailchimp checks the URL
with a GET when the webhook is added: it is answered 200 and stored nowhere. Deliveries
(``type`` = subscribe, unsubscribe, profile, upemail, cleaned, campaign; ``fired_at``;
``data[...]`` as :mod:`connectors.mailchimp.webhook_format` documents) go to the inbox.
Handling one is a hint, not the data: it moves the link of an ``upemail`` (``data[old_email]``
-> ``data[new_email]``) to the member's new id, then runs an incremental sync of the
connection (unless a run started since the delivery arrived already saw the change).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from connectors.mailchimp.members import subscriber_hash
from hub.webhooks import (
    Delivery,
    MalformedDelivery,
    RequestInfo,
    WebhookReceiver,
    WebhookRejected,
    WebhookResponse,
    parse_form,
    verify_url_secret,
)

if TYPE_CHECKING:
    from hub.inbox import InboxItem
    from hub.services import ConnectionServices

EVENTS = frozenset({"subscribe", "unsubscribe", "profile", "upemail", "cleaned", "campaign"})
STREAM = "members"


class MailchimpReceiver(WebhookReceiver):
    """The receiver of a Mailchimp connection (``MailchimpConnector.webhook``)."""

    methods = ("GET", "POST")

    async def verify(self, request: RequestInfo, body: bytes) -> Delivery:
        if request.subpath:
            raise WebhookRejected(404, "no such webhook path")
        verify_url_secret(self.secret("webhook_secret"), request.query.get("secret"))
        if request.method == "GET":
            return Delivery(delivery_id="validation", store=False, response=WebhookResponse())
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        form = parse_form(body, digest)
        kind = form.get("type", "")
        if kind not in EVENTS:
            raise MalformedDelivery(
                f"'type' is {kind!r}, not a Mailchimp event ({', '.join(sorted(EVENTS))})",
                digest,
            )
        # Mailchimp sends no delivery id; a redelivery has the same body, so the same hash.
        return Delivery(delivery_id=digest, kind=kind)

    async def handle(self, services: ConnectionServices, item: InboxItem) -> None:
        form = parse_form(item.body)
        old, new = form.get("data[old_email]"), form.get("data[new_email]")
        if form.get("type") == "upemail" and old and new:
            # the member id is the hash of the address: the same member, under a new id
            await services.move_remote_id(STREAM, subscriber_hash(old), subscriber_hash(new))
        if form.get("type") == "campaign":
            return
        # LeaseHeld (a run is going, maybe from before this change) fails the item, so the
        # inbox tries again later; by then that run is over and may have read the change.
        await services.catch_up(item.received_at)
