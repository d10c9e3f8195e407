"""What people do in the sandbox's workspace, and the Events API deliveries it makes.

Each event callback is shaped like Slack's documented examples (the wrapper's ``token``,
``team_id``, ``api_app_id``, ``event_id``, ``event_time``, ``authed_users`` and
``authorizations``), signed with ``SANDBOX_SIGNING_SECRET`` (v0) and posted to the URL set
with ``/_sandbox/webhooks``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from connectors.slack.sandbox_workspace import BOT_USER, SHARED_CHANNEL, TEAM, Workspace
from connectors.slack.webhook import sign
from hub.sandbox import WebhookSender

__all__ = ["APP_ID", "SANDBOX_SIGNING_SECRET", "WorkspaceEvents", "signer"]

SANDBOX_SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
APP_ID = "A0CRMHUB01"


def signer(body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    return {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": sign(SANDBOX_SIGNING_SECRET, timestamp, body),
    }


class WorkspaceEvents:
    """The controls of :class:`~connectors.slack.sandbox.SlackSandbox`: a person's message,
    profile change or arrival, each optionally announced to the hub as Slack would."""

    workspace: Workspace
    events: WebhookSender
    _lock: threading.Lock
    _events: int

    def _callback(self, event: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._events += 1
            number = self._events
        return {
            "token": "sandboxverificationtoken",
            "team_id": TEAM,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{number:010d}",
            "event_time": int(time.time()),
            "authed_users": [BOT_USER],
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": TEAM,
                    "user_id": BOT_USER,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "event_context": f"4-sandbox-{number}",
        }

    def say(
        self,
        user: str,
        text: str,
        channel: str = SHARED_CHANNEL,
        thread_ts: str | None = None,
        notify: bool = False,
    ) -> dict[str, Any]:
        """A message by ``user``; with ``notify`` the ``message`` event is sent to the hub."""
        message = self.workspace.post(channel, user, text, thread_ts)
        if notify and self.events.url:
            event = {
                **message,
                "channel": channel,
                "event_ts": message["ts"],
                "channel_type": "channel",
            }
            self.deliver(self._callback(event))
        return message

    def edit_user(self, user: str, notify: bool = False, **profile: Any) -> dict[str, Any]:
        member = self.workspace.edit_user(user, **profile)
        if notify and self.events.url:
            event = {
                "type": "user_change",
                "user": dict(member),
                "cache_ts": member["updated"],
                "event_ts": f"{time.time():.6f}",
            }
            self.deliver(self._callback(event))
        return member

    def join(self, first: str, last: str, email: str, notify: bool = False) -> dict[str, Any]:
        member = self.workspace.add_user(first, last, email)
        if notify and self.events.url:
            event = {"type": "team_join", "user": dict(member), "event_ts": f"{time.time():.6f}"}
            self.deliver(self._callback(event))
        return member

    def deliver(self, payload: dict[str, Any], retries: int = 0) -> list[int | None]:
        """Post an event (blocking), then ``retries`` more times as Slack's retries."""
        statuses = [self.events.send_sync(payload).status]
        for number in range(1, retries + 1):
            headers = {"X-Slack-Retry-Num": str(number), "X-Slack-Retry-Reason": "http_timeout"}
            statuses.append(self.events.send_sync(payload, headers).status)
        return statuses

    def verify_url(
        self, challenge: str = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    ) -> Any:
        """Slack's Request URL check; the delivery (its status and the answer's text)."""
        payload = {
            "token": "sandboxverificationtoken",
            "challenge": challenge,
            "type": "url_verification",
        }
        return self.events.send_sync(payload)
