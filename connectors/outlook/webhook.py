"""Microsoft Graph change notifications: ``/hooks/<connection>`` (and ``/lifecycle``).

- A validation request (``?validationToken=...``, when a subscription is created or
  renewed) is answered at once with the token as ``text/plain`` and stored nowhere.
- A notification is accepted only when every item's ``clientState`` equals the
  connection's (constant-time compare) and names a subscription the connection made (the
  ones :meth:`OutlookConnector.renew` keeps); otherwise it is refused (401) and nothing is
  stored. Graph signs nothing: the client state and the unguessable URL are the proof.
- Accepted deliveries go to the inbox (deduped on the body's hash) and are answered 202.

Handling: a change runs a sync of the connection (skipped when a run started since the
delivery arrived already saw it); lifecycle events: ``reauthorizationRequired`` renews the
subscriptions now, ``subscriptionRemoved`` makes them again, ``missed`` syncs.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from connectors.outlook import notification_format
from hub.renewals import load_state, renew_connection, save_state
from hub.webhooks import (
    Delivery,
    MalformedDelivery,
    RequestInfo,
    WebhookReceiver,
    WebhookRejected,
    WebhookResponse,
    body_id,
    synced_since,
)

if TYPE_CHECKING:
    from hub.inbox import InboxItem
    from hub.runtime import Hub

__all__ = ["GraphReceiver"]


class GraphReceiver(WebhookReceiver):
    """The receiver of an Outlook connection (``OutlookConnector.webhook``)."""

    async def verify(self, request: RequestInfo, body: bytes) -> Delivery:
        if request.subpath not in ("", "lifecycle"):
            raise WebhookRejected(404, "no such webhook path")
        token = request.query.get("validationToken")
        if token is not None:
            # Graph checks the endpoint answers: echo the token, store nothing
            return Delivery(
                delivery_id="validation",
                store=False,
                response=WebhookResponse(200, token, "text/plain; charset=utf-8"),
            )
        expected = self.secret("client_state")
        if not expected:
            raise WebhookRejected(401, "no client_state is configured for this connection")
        try:
            items = notification_format.parse(body)
        except notification_format.NotificationError as exc:
            raise WebhookRejected(401, f"not a Graph notification: {exc}") from None
        known = await self._subscriptions()
        for item in items:
            given = str(item.get("clientState") or "")
            if not hmac.compare_digest(given.encode(), expected.encode()):
                raise WebhookRejected(401, "clientState does not match")
            if item["subscriptionId"] not in known:
                raise WebhookRejected(401, "the notification names an unknown subscription")
        kind = "graph.lifecycle" if any(i.get("lifecycleEvent") for i in items) else "graph.change"
        return Delivery(delivery_id=body_id(body), kind=kind, response=WebhookResponse(status=202))

    async def _subscriptions(self) -> set[str]:
        store = self.connector.context.store
        if store is None:
            return set()
        state = await load_state(store, self.connection)
        return {str(s.get("id")) for s in (state.get("subscriptions") or {}).values()}

    async def handle(self, hub: Hub, item: InboxItem) -> None:
        from hub.engine import sync_connection

        try:
            notes = notification_format.parse(item.body)
        except notification_format.NotificationError as exc:
            raise MalformedDelivery(str(exc)) from None
        events = {str(n.get("lifecycleEvent")) for n in notes if n.get("lifecycleEvent")}
        if "subscriptionRemoved" in events:
            gone = {str(n["subscriptionId"]) for n in notes}
            state = await load_state(hub.store, self.connection)
            subs: dict[str, Any] = state.get("subscriptions") or {}
            state["subscriptions"] = {k: v for k, v in subs.items() if v.get("id") not in gone}
            await save_state(hub.store, self.connection, state)
        if events & {"reauthorizationRequired", "subscriptionRemoved"}:
            await renew_connection(hub, self.connection, force=True)
        if events and not events & {"missed"}:
            return
        if await synced_since(hub, self.connection, item.received_at):
            return
        await sync_connection(hub, self.connection)
