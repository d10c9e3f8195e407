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

from sqlalchemy import select, update

from connectors.mailchimp.members import subscriber_hash
from hub.store.schema import links
from hub.webhooks import (
    Delivery,
    MalformedDelivery,
    RequestInfo,
    WebhookReceiver,
    WebhookRejected,
    WebhookResponse,
    parse_form,
    synced_since,
    verify_url_secret,
)

if TYPE_CHECKING:
    from hub.inbox import InboxItem
    from hub.runtime import Hub

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

    async def handle(self, hub: Hub, item: InboxItem) -> None:
        from hub.engine import sync_connection

        form = parse_form(item.body)
        if form.get("type") == "upemail":
            await self._moved(hub, form.get("data[old_email]"), form.get("data[new_email]"))
        if form.get("type") == "campaign" or await synced_since(
            hub, self.connection, item.received_at
        ):
            return
        # LeaseHeld (a run is going, maybe from before this change) fails the item, so the
        # inbox tries again later; by then that run is over and the check above may pass.
        await sync_connection(hub, self.connection)

    async def _moved(self, hub: Hub, old: str | None, new: str | None) -> None:
        """Point the link of the old address's member at the new one (same member)."""
        if not old or not new:
            return
        mine = (links.c.connection == self.connection) & (links.c.stream == STREAM)
        async with hub.store.begin() as db:
            taken = await db.scalar(
                select(links.c.id).where(mine, links.c.remote_id == subscriber_hash(new))
            )
            if taken is None:  # a pull may have linked the new address already
                await db.execute(
                    update(links)
                    .where(mine, links.c.remote_id == subscriber_hash(old))
                    .values(remote_id=subscriber_hash(new))
                )
