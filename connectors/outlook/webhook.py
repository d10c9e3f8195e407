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
from hub.webhooks import (
    Delivery,
    MalformedDelivery,
    RequestInfo,
    WebhookReceiver,
    WebhookRejected,
    WebhookResponse,
    body_id,
)

if TYPE_CHECKING:
    from hub.inbox import InboxItem
    from hub.services import ConnectionServices

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
        services = self.connector.context.services
        if services is None:
            return set()
        state = await services.push_state()
        return {str(s.get("id")) for s in (state.get("subscriptions") or {}).values()}

    async def handle(self, services: ConnectionServices, item: InboxItem) -> None:
        try:
            notes = notification_format.parse(item.body)
        except notification_format.NotificationError as exc:
            raise MalformedDelivery(str(exc)) from None
        events = {str(n.get("lifecycleEvent")) for n in notes if n.get("lifecycleEvent")}
        if "subscriptionRemoved" in events:
            gone = {str(n["subscriptionId"]) for n in notes}
            state = await services.push_state()
            subs: dict[str, Any] = state.get("subscriptions") or {}
            state["subscriptions"] = {k: v for k, v in subs.items() if v.get("id") not in gone}
            await services.save_push_state(state)
        if events & {"reauthorizationRequired", "subscriptionRemoved"}:
            await services.renew(force=True)
        if events and not events & {"missed"}:
            return
        await services.catch_up(item.received_at)
