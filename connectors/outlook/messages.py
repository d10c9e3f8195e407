"""Graph messages read into :class:`hub.mail.MailMessage`.

Delta rounds ask only for the properties used (``$select``); the text body comes with
``Prefer: outlook.body-content-type="text"`` when the connection reads bodies, cut to its
size limit. A message of the Sent Items folder is the mailbox's own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hub.mail import Address, MailMessage, address

__all__ = ["MESSAGE_FIELDS", "PEOPLE_FIELDS", "read_message"]

PEOPLE_FIELDS = ["from", "toRecipients", "ccRecipients", "bccRecipients", "receivedDateTime"]
MESSAGE_FIELDS = [
    *PEOPLE_FIELDS,
    "subject",
    "bodyPreview",
    "internetMessageId",
    "conversationId",
    "sentDateTime",
    "isDraft",
]


def _party(value: Any) -> Address | None:
    if not isinstance(value, dict):
        return None
    email = value.get("emailAddress") or {}
    return address(email.get("address"), email.get("name"))


def _parties(values: Any) -> list[Address]:
    found = [_party(v) for v in values or []]
    return [a for a in found if a is not None]


def _when(value: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return datetime.now(UTC)


def read_message(data: dict[str, Any], sent: bool, body_limit: int | None) -> MailMessage:
    """A Graph message; ``sent``: it is in the Sent Items folder."""
    body = None
    if body_limit is not None:
        content = (data.get("body") or {}).get("content")
        if isinstance(content, str):
            raw = content.encode()
            body = content if len(raw) <= body_limit else raw[:body_limit].decode("utf-8", "ignore")
    return MailMessage(
        id=str(data["id"]),
        sent_at=_when(data.get("sentDateTime") if sent else data.get("receivedDateTime")),
        thread_id=data.get("conversationId"),
        message_id=data.get("internetMessageId"),
        subject=data.get("subject"),
        snippet=data.get("bodyPreview"),
        body=body,
        sender=_party(data.get("from")),
        to=_parties(data.get("toRecipients")),
        cc=_parties(data.get("ccRecipients")),
        bcc=_parties(data.get("bccRecipients")),
        sent_by_mailbox=sent,
    )
