"""Email messages as activities, the same way for every mail connector (Gmail, Outlook).

A connector reads a message into a :class:`MailMessage` (its own API's shape) and hands it
to :func:`activity_record`, so every mailbox yields the same record:

``kind`` ("email"), ``source``, ``subject``, ``snippet``, ``body`` (the text body when the
connection reads bodies, else the snippet), ``sent_at``
(ISO 8601, UTC), ``direction`` ("out" when the mailbox's own address sent it, else "in"),
``thread_id``, ``message_id`` (RFC 5322, without brackets, lower case: the activity's match
key, so one message seen by two mailboxes is one activity), ``from``, ``participants``
(``{email, name, role}`` for From, To, Cc and Bcc) and ``participant_emails`` /
``participant_names`` (every other party's address and name, in the same order, the
mailbox's own addresses left out).

Which unknown people become contacts is the connection's ``create_contacts`` setting:
``never``, ``outgoing`` (the people the mailbox wrote to: recipients of its own messages)
or ``all`` (everyone it exchanged mail with). :func:`people_to_create` picks them and
:func:`person_record` makes the records of the connector's pull-only contact stream (remote
id = the normalised address).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import getaddresses
from typing import Any, Literal

from hub.connector import RemoteRecord
from hub.records import normalize_email, normalize_message_id

__all__ = [
    "Address",
    "CreateContacts",
    "MailMessage",
    "activity_record",
    "parse_addresses",
    "people_to_create",
    "person_record",
]

CreateContacts = Literal["never", "outgoing", "all"]
Role = Literal["from", "to", "cc", "bcc"]


@dataclass(frozen=True)
class Address:
    """One party of a message: a normalised address and the display name given with it."""

    email: str
    name: str | None = None


def address(email: str | None, name: str | None = None) -> Address | None:
    """An :class:`Address`, or ``None`` when ``email`` is not an address."""
    normalised = normalize_email(email)
    if normalised is None:
        return None
    shown = (name or "").strip().strip('"').strip() or None
    return Address(normalised, None if shown and shown.lower() == normalised else shown)


def parse_addresses(header: str | None) -> list[Address]:
    """The addresses of a From/To/Cc header (``"Ann <ann@x.example>, bob@y.example"``)."""
    if not header:
        return []
    found = []
    for name, email in getaddresses([header]):
        parsed = address(email, name)
        if parsed is not None:
            found.append(parsed)
    return found


@dataclass
class MailMessage:
    """What a mail connector read of one message, in its mailbox."""

    id: str
    sent_at: datetime
    thread_id: str | None = None
    message_id: str | None = None
    subject: str | None = None
    snippet: str | None = None
    body: str | None = None
    """The text body when the connection reads bodies (cut to its size limit), else None."""
    sender: Address | None = None
    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    bcc: list[Address] = field(default_factory=list)
    sent_by_mailbox: bool | None = None
    """True when the provider marks the message as the mailbox's own (Gmail's SENT label,
    Outlook's Sent Items); None: decide by the sender's address."""

    def parties(self) -> list[tuple[Role, Address]]:
        roles: list[tuple[Role, Sequence[Address]]] = [
            ("from", [self.sender] if self.sender else []),
            ("to", self.to),
            ("cc", self.cc),
            ("bcc", self.bcc),
        ]
        return [(role, a) for role, found in roles for a in found]

    def outgoing(self, own: frozenset[str]) -> bool:
        if self.sent_by_mailbox is not None:
            return self.sent_by_mailbox
        return self.sender is not None and self.sender.email in own


def _iso(when: datetime) -> str:
    aware = when if when.tzinfo else when.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def activity_record(message: MailMessage, source: str, own: frozenset[str]) -> RemoteRecord:
    """The activity record of ``message`` in a mailbox whose own addresses are ``own``."""
    others: dict[str, str | None] = {}
    for _, party in message.parties():
        if party.email not in own and (party.email not in others or not others[party.email]):
            others[party.email] = party.name
    data: dict[str, Any] = {
        "kind": "email",
        "source": source,
        "subject": message.subject or "",
        "snippet": message.snippet or "",
        "sent_at": _iso(message.sent_at),
        "direction": "out" if message.outgoing(own) else "in",
        "thread_id": message.thread_id,
        "message_id": normalize_message_id(message.message_id),
        "from": message.sender.email if message.sender else None,
        "participants": [
            {"email": a.email, "name": a.name, "role": role} for role, a in message.parties()
        ],
        "participant_emails": list(others),
        "participant_names": [name or "" for name in others.values()],
        "body": message.body if message.body is not None else message.snippet or "",
    }
    return RemoteRecord(id=message.id, data=data, modified_at=message.sent_at)


def people_to_create(
    messages: Iterable[MailMessage], own: frozenset[str], mode: CreateContacts
) -> dict[str, str | None]:
    """The addresses (with a name where one was given) that ``mode`` makes contacts of."""
    found: dict[str, str | None] = {}
    if mode == "never":
        return found
    for message in messages:
        outgoing = message.outgoing(own)
        if mode == "outgoing" and not outgoing:
            continue
        for role, party in message.parties():
            if party.email in own or (mode == "outgoing" and role == "from"):
                continue
            if party.email not in found or (party.name and not found[party.email]):
                found[party.email] = party.name
    return found


def person_record(email: str, name: str | None) -> RemoteRecord:
    """A record of the pull-only contact stream: the address, and the name it came with.

    It carries no time, so on a conflict with what the hub already holds the hub's own
    value stays (a display name in a header never overwrites a contact's name)."""
    data: dict[str, Any] = {"email": email}
    if name:
        data["name"] = name
    return RemoteRecord(id=email, data=data)
