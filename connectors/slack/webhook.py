"""The Events API receiver: ``POST /hooks/<connection>`` from Slack.

A delivery is accepted only when ``X-Slack-Signature`` is ``v0=`` + the hex HMAC-SHA256 of
``v0:<X-Slack-Request-Timestamp>:<raw body>`` with the app's signing secret (constant-time
compare) and the timestamp is within five minutes of now; anything else is refused with 401
and nothing is stored. ``url_verification`` (Slack checking the Request URL) is answered
with its ``challenge`` at once. Every other delivery is written to the inbox under its
``event_id`` and answered 200 after that write, well inside Slack's 3 seconds; Slack's
retries (``X-Slack-Retry-Num``) carry the same ``event_id`` and are stored once.

Handling, from the inbox: ``user_change`` and ``team_join`` (people), ``message`` in a
followed channel, and ``app_rate_limited`` (Slack dropped a minute's events) sync the
connection (skipped when a run that started after the delivery already did); other events
are kept and do nothing.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from hub.webhooks import (
    Delivery,
    MalformedDelivery,
    RequestInfo,
    WebhookReceiver,
    WebhookRejected,
    WebhookResponse,
    body_id,
    check_timestamp,
    hmac_sha256,
    parse_json,
    verify_signature,
)

if TYPE_CHECKING:
    from hub.inbox import InboxItem
    from hub.services import ConnectionServices

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WINDOW", "SlackReceiver", "sign"]

SIGNATURE_HEADER = "x-slack-signature"
TIMESTAMP_HEADER = "x-slack-request-timestamp"
WINDOW = 300.0
PEOPLE_EVENTS = frozenset({"user_change", "team_join"})


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 signature of a request."""
    return "v0=" + hmac_sha256(secret, f"v0:{timestamp}:".encode() + body)


def event_of(body: Any) -> dict[str, Any]:
    event = body.get("event") if isinstance(body, dict) else None
    return event if isinstance(event, dict) else {}


class SlackReceiver(WebhookReceiver):
    """The receiver of a Slack connection (``SlackConnector.webhook``)."""

    headers = (SIGNATURE_HEADER, TIMESTAMP_HEADER, "x-slack-retry-num", "x-slack-retry-reason")

    async def verify(self, request: RequestInfo, body: bytes) -> Delivery:
        if request.subpath:
            raise WebhookRejected(404, "no such webhook path")
        secret = self.secret("signing_secret")
        if secret is None:
            raise WebhookRejected(401, "no signing_secret is configured for this connection")
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        check_timestamp(timestamp, WINDOW)
        verify_signature(sign(secret, str(timestamp), body), request.headers.get(SIGNATURE_HEADER))
        payload = parse_json(body, body_id(body))
        if not isinstance(payload, dict):
            raise MalformedDelivery("the event is not a JSON object", body_id(body))
        if payload.get("type") == "url_verification":
            challenge = payload.get("challenge")
            if not isinstance(challenge, str):
                raise MalformedDelivery("url_verification without a challenge", body_id(body))
            return Delivery(
                delivery_id=body_id(body),
                kind="url_verification",
                store=False,
                response=WebhookResponse(200, challenge, "text/plain; charset=utf-8"),
            )
        if payload.get("type") == "app_rate_limited":
            # Slack dropped events of this minute: the next handling syncs instead
            minute = str(payload.get("minute_rate_limited") or body_id(body))
            return Delivery(delivery_id=f"slack:rate_limited:{minute}", kind="app_rate_limited")
        event_id = payload.get("event_id")
        if payload.get("type") != "event_callback" or not isinstance(event_id, str):
            raise MalformedDelivery("expected an event_callback with an event_id", body_id(body))
        kind = str(event_of(payload).get("type") or "event")
        return Delivery(delivery_id=f"slack:{event_id}", kind=kind[:64])

    def wanted(self, payload: Any) -> bool:
        """Whether the event changes what the connection pulls."""
        if isinstance(payload, dict) and payload.get("type") == "app_rate_limited":
            return True
        event = event_of(payload)
        kind = event.get("type")
        if kind in PEOPLE_EVENTS:
            return True
        settings: Any = self.settings
        return kind == "message" and event.get("channel") in settings.channels

    async def handle(self, services: ConnectionServices, item: InboxItem) -> None:
        if not self.wanted(json.loads(item.body)):
            return
        # LeaseHeld (a run is going) fails the item; the inbox tries again after that run.
        await services.catch_up(item.received_at)
