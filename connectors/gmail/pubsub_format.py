"""Pub/Sub push deliveries of Gmail notifications, as Google documents them.

Sources: Pub/Sub "Push subscriptions" (the JSON body of a push request: ``message`` with
``data`` (base64), ``attributes``, ``messageId``/``message_id``, ``publishTime``/
``publish_time``, and ``subscription``) and Gmail's "Push notifications" guide (the data is
JSON ``{"emailAddress": ..., "historyId": ...}``). No OpenAPI description covers them, so
the sandbox's deliveries are checked against this (:func:`problems`) and the receiver reads
them with :func:`parse`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Notification", "PushFormatError", "parse", "problems"]

_SUBSCRIPTION = re.compile(r"^projects/[^/]+/subscriptions/[^/]+$")
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


class PushFormatError(ValueError):
    pass


@dataclass(frozen=True)
class Notification:
    message_id: str
    subscription: str
    email: str
    history_id: int


def parse(body: bytes) -> Notification:
    """The notification in a push body; raises :class:`PushFormatError` naming the problem."""
    try:
        envelope = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PushFormatError(f"body is not JSON: {exc}") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("message"), dict):
        raise PushFormatError("no 'message' object (not a Pub/Sub push)")
    message: dict[str, Any] = envelope["message"]
    message_id = message.get("messageId") or message.get("message_id")
    if not isinstance(message_id, str) or not message_id:
        raise PushFormatError("message.messageId missing")
    try:
        data = json.loads(base64.b64decode(str(message.get("data", "")), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise PushFormatError(f"message.data is not base64 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PushFormatError("message.data is not a JSON object")
    email, history = data.get("emailAddress"), data.get("historyId")
    if not isinstance(email, str) or "@" not in email:
        raise PushFormatError("message.data has no emailAddress")
    if isinstance(history, str) and history.isdigit():
        history = int(history)
    if not isinstance(history, int) or isinstance(history, bool):
        raise PushFormatError("message.data has no historyId")
    subscription = envelope.get("subscription")
    return Notification(message_id, str(subscription or ""), email.lower(), history)


def problems(body: bytes, headers: Mapping[str, str]) -> list[str]:
    """What differs from the documented push of a Gmail notification (empty: it follows)."""
    found = []
    kind = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    if not kind.startswith("application/json"):
        found.append(f"content-type {kind!r}, not application/json")
    try:
        parse(body)
    except PushFormatError as exc:
        return [*found, str(exc)]
    envelope = json.loads(body)
    message = envelope["message"]
    for key in ("data", "messageId", "message_id", "publishTime", "publish_time"):
        if key not in message:
            found.append(f"message.{key} missing")
    for key in ("publishTime", "publish_time"):
        if key in message and not _TIME.match(str(message[key])):
            found.append(f"message.{key} {message[key]!r} is not an RFC 3339 UTC time")
    if not _SUBSCRIPTION.match(str(envelope.get("subscription", ""))):
        found.append("subscription is not projects/<project>/subscriptions/<name>")
    extra = set(envelope) - {"message", "subscription", "deliveryAttempt"}
    if extra:
        found.append(f"undocumented keys {sorted(extra)}")
    return found
