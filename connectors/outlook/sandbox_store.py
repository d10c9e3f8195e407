"""The Outlook sandbox's mailboxes: folders of messages and contacts with change logs.

Every change takes the next sequence number of its mailbox. A delta round (Graph's
``delta`` function) lists a folder's items as of a snapshot, page by page
(``$skiptoken``: offset and snapshot), and ends with a ``$deltatoken`` naming the snapshot;
a later round with it returns what changed since: items added or changed, and ``@removed``
entries for items deleted or moved out. Tokens older than ``expired_before`` are gone
(Graph's 410).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hub.sandbox import fake_person

__all__ = ["Item", "Mailbox", "decode_token", "encode_token", "seed"]

CONTACTS = "contacts"
TOPICS = ("Quote", "Invoice", "Meeting", "Order", "Support request", "Proposal", "Renewal")


def encode_token(**values: Any) -> str:
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any] | None:
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Item:
    """A message or a contact: Graph's JSON, where it lives, when it last changed."""

    id: str
    folder: str
    data: dict[str, Any]
    seq: int
    removed: bool = False
    history: list[tuple[int, str]] = field(default_factory=list)  # (seq, folder left)

    @property
    def change_key(self) -> str:
        digest = hashlib.sha256(f"{self.id}:{self.seq}".encode()).digest()[:12]
        return base64.b64encode(digest).decode()

    @property
    def odata_type(self) -> str:
        return "#microsoft.graph.contact" if self.folder == CONTACTS else "#microsoft.graph.message"

    def render(self, select: set[str] | None) -> dict[str, Any]:
        body = {k: v for k, v in self.data.items() if not select or k in select or k == "id"}
        body["@odata.type"] = self.odata_type
        body["@odata.etag"] = f'W/"{self.change_key}"'
        if not select or "changeKey" in select:
            body["changeKey"] = self.change_key
        return body


class Mailbox:
    def __init__(self, address: str) -> None:
        self.address = address.lower()
        self.lock = threading.RLock()
        self.items: dict[str, Item] = {}
        self.seq = 0
        self.expired_before = 0
        self._ids = itertools.count(1)

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def new_id(self, prefix: str) -> str:
        digest = hashlib.sha256(f"{self.address}:{next(self._ids)}".encode()).digest()[:18]
        return prefix + base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def put(self, folder: str, data: dict[str, Any], item_id: str | None = None) -> Item:
        with self.lock:
            item_id = item_id or self.new_id("AAMk" if folder != CONTACTS else "AAMkC")
            stamp = iso(datetime.now(UTC))
            data = {**data, "id": item_id, "lastModifiedDateTime": stamp}
            data.setdefault("createdDateTime", stamp)
            item = Item(item_id, folder, data, self._next())
            self.items[item_id] = item
            return item

    def update(self, item_id: str, changes: dict[str, Any]) -> Item | None:
        with self.lock:
            item = self.items.get(item_id)
            if item is None or item.removed:
                return None
            item.data.update(changes)
            item.data["lastModifiedDateTime"] = iso(datetime.now(UTC))
            item.seq = self._next()
            return item

    def remove(self, item_id: str) -> bool:
        with self.lock:
            item = self.items.get(item_id)
            if item is None or item.removed:
                return False
            item.removed = True
            item.seq = self._next()
            return True

    def get(self, item_id: str, folder: str | None = None) -> Item | None:
        with self.lock:
            item = self.items.get(item_id)
            if item is None or item.removed or (folder and item.folder != folder):
                return None
            return item

    def expire_tokens(self) -> None:
        with self.lock:
            self._next()
            self.expired_before = self.seq

    def changes(self, folder: str, since: int | None, received_after: str | None) -> list[Item]:
        """The folder's items now (``since`` None), or those changed after ``since``."""
        with self.lock:
            found = []
            for item in self.items.values():
                if item.folder != folder:
                    continue
                if since is None:
                    if item.removed:
                        continue
                    received = item.data.get("receivedDateTime")
                    if received_after and received and received < received_after:
                        continue
                elif item.seq <= since:
                    continue
                found.append(item)
            return sorted(found, key=lambda i: (i.seq, i.id))

    def live(self, folder: str) -> list[Item]:
        with self.lock:
            return [i for i in self.items.values() if i.folder == folder and not i.removed]


def recipient(name: str, address: str) -> dict[str, Any]:
    return {"emailAddress": {"name": name, "address": address}}


def message(
    *,
    sender: dict[str, Any],
    to: list[dict[str, Any]],
    subject: str,
    body: str,
    when: datetime,
    internet_id: str,
    conversation: str,
    cc: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    stamp = iso(when)
    return {
        "receivedDateTime": stamp,
        "sentDateTime": stamp,
        "subject": subject,
        "bodyPreview": body[:255],
        "body": {"contentType": "text", "content": body},
        "from": sender,
        "sender": sender,
        "toRecipients": to,
        "ccRecipients": cc or [],
        "bccRecipients": [],
        "internetMessageId": internet_id,
        "conversationId": conversation,
        "isDraft": False,
        "isRead": False,
    }


def seed(box: Mailbox, seed_value: int, size: int, contacts: int) -> None:
    """``size`` messages (a third sent by the mailbox) and ``contacts`` contacts."""
    people = max(1, size // 3)
    now = datetime.now(UTC)
    own = recipient("Sandbox User", box.address)
    for i in range(size):
        person = fake_person(seed_value, i % people)
        other = recipient(person.name, person.email)
        outgoing = i % 3 == 0
        thread = i // 2
        topic = TOPICS[thread % len(TOPICS)]
        cc = None
        if i % 5 == 0:
            extra = fake_person(seed_value, (i + 1) % people)
            cc = [recipient(extra.name, extra.email)]
        data = message(
            sender=own if outgoing else other,
            to=[other if outgoing else own],
            cc=cc,
            subject=f"{'RE: ' if i % 2 else ''}{topic} #{thread}",
            body=f"Hello {person.first_name}, about {topic.lower()} #{thread}: message {i}.",
            when=now - timedelta(seconds=(size - i) * 90),
            internet_id=f"<osbx{seed_value}.{i}@mail.crmhub-sandbox.example>",
            conversation=f"AAQk{seed_value}x{thread:06d}",
        )
        box.put("sentitems" if outgoing else "inbox", data)
    for i in range(contacts):
        p = fake_person(seed_value, i * 2)
        fields: dict[str, Any] = {
            "givenName": p.first_name,
            "surname": p.last_name,
            "displayName": p.name,
            "emailAddresses": [{"name": p.name, "address": p.email}],
            "companyName": p.company,
            "jobTitle": p.title or None,
            "businessPhones": [],
            "mobilePhone": p.phone,
            "businessAddress": {"city": p.city, "countryOrRegion": p.country},
        }
        box.put(CONTACTS, fields)
