"""Gmail messages (``users.messages.get``) read into :class:`hub.mail.MailMessage`.

``format=metadata`` (the default, and all the ``gmail.metadata`` scope allows) gives the
headers and Gmail's snippet; ``format=full`` also the text body, which is cut to the
connection's size limit. A message is the mailbox's own when it carries the ``SENT``
label.
"""

from __future__ import annotations

import base64
import binascii
import html
from datetime import UTC, datetime
from typing import Any

from hub.mail import MailMessage, parse_addresses

__all__ = ["HEADERS", "PEOPLE_HEADERS", "read_message"]

HEADERS = ["From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID"]
"""Headers asked for with ``format=metadata``."""
PEOPLE_HEADERS = ["From", "To", "Cc", "Bcc"]
"""Headers the participants stream needs."""


def _headers(payload: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for header in payload.get("headers") or []:
        if isinstance(header, dict):
            name = str(header.get("name", "")).lower()
            found.setdefault(name, str(header.get("value", "")))
    return found


def _text(part: dict[str, Any]) -> str | None:
    """The first text/plain body in a message part tree, decoded."""
    if part.get("mimeType") == "text/plain":
        data = (part.get("body") or {}).get("data")
        if isinstance(data, str):
            try:
                raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
            except (binascii.Error, ValueError):
                return None
            return raw.decode("utf-8", "replace")
    for child in part.get("parts") or []:
        if isinstance(child, dict) and (found := _text(child)) is not None:
            return found
    return None


def _cut(text: str, limit: int) -> str:
    raw = text.encode()
    return text if len(raw) <= limit else raw[:limit].decode("utf-8", "ignore")


def read_message(message: dict[str, Any], body_limit: int | None = None) -> MailMessage:
    """A Gmail message as a :class:`MailMessage`; ``body_limit`` (bytes) when the message
    was read with ``format=full``."""
    payload = message.get("payload") or {}
    headers = _headers(payload)
    senders = parse_addresses(headers.get("from"))
    try:
        sent_at = datetime.fromtimestamp(int(message.get("internalDate", 0)) / 1000, UTC)
    except (TypeError, ValueError):
        sent_at = datetime.now(UTC)
    body = None
    if body_limit is not None:
        text = _text(payload)
        body = _cut(text, body_limit) if text is not None else None
    labels = message.get("labelIds") or []
    return MailMessage(
        id=str(message["id"]),
        sent_at=sent_at,
        thread_id=message.get("threadId"),
        message_id=headers.get("message-id") or None,
        subject=headers.get("subject"),
        snippet=html.unescape(str(message.get("snippet") or "")),
        body=body,
        sender=senders[0] if senders else None,
        to=parse_addresses(headers.get("to")),
        cc=parse_addresses(headers.get("cc")),
        bcc=parse_addresses(headers.get("bcc")),
        sent_by_mailbox="SENT" in labels,
    )
