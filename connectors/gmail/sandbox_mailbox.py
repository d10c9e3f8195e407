"""The Gmail sandbox's mailboxes: messages, labels, the history log and search.

A :class:`Mailbox` holds its messages newest first and a history log whose ids grow, with
gaps, as Gmail's do. History older than ``oldest_history`` is gone: asking for it is
Gmail's 404. ``search`` understands the part of Gmail's query language a sync uses
(``after:``, ``before:``, ``in:``, ``label:``, ``category:``, ``from:``, ``to:``,
``rfc822msgid:``, negation with ``-`` and free words in the subject).
"""

from __future__ import annotations

import base64
import bisect
import itertools
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, getaddresses
from typing import Any

from hub.sandbox import fake_person

__all__ = ["Mailbox", "SandboxMessage", "seed_messages"]

SYSTEM_LABELS = (
    "INBOX", "SENT", "DRAFT", "SPAM", "TRASH", "UNREAD", "IMPORTANT", "STARRED",
    "CATEGORY_PERSONAL", "CATEGORY_SOCIAL", "CATEGORY_PROMOTIONS", "CATEGORY_UPDATES",
    "CATEGORY_FORUMS",
)  # fmt: skip
TOPICS = ("Quote", "Invoice", "Meeting", "Order", "Support request", "Proposal", "Renewal")
HISTORY_KEYS = {
    "messageAdded": "messagesAdded",
    "messageDeleted": "messagesDeleted",
    "labelAdded": "labelsAdded",
    "labelRemoved": "labelsRemoved",
}
_TERM = re.compile(r'(-?)(\w+:)?("[^"]*"|\S+)')


@dataclass
class SandboxMessage:
    id: str
    thread_id: str
    internal_ms: int
    labels: set[str]
    headers: list[tuple[str, str]]
    snippet: str
    body: str
    history_id: int = 0

    def header(self, name: str) -> str:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), "")

    def addresses(self, *names: str) -> list[str]:
        found = getaddresses([self.header(n) for n in names if self.header(n)])
        return [email.lower() for _, email in found if email]

    def render(self, fmt: str, wanted_headers: list[str] | None) -> dict[str, Any]:
        """The ``users.messages.get`` answer in ``fmt`` (minimal, metadata, full, raw)."""
        out: dict[str, Any] = {
            "id": self.id,
            "threadId": self.thread_id,
            "labelIds": sorted(self.labels),
            "snippet": self.snippet,
            "historyId": str(self.history_id),
            "internalDate": str(self.internal_ms),
            "sizeEstimate": len(self.body) + 400,
        }
        if fmt == "minimal":
            return out
        if fmt == "raw":
            raw = "".join(f"{k}: {v}\r\n" for k, v in self.headers) + "\r\n" + self.body
            out["raw"] = base64.urlsafe_b64encode(raw.encode()).decode()
            return out
        headers = self.headers
        if fmt == "metadata" and wanted_headers:
            wanted = {h.lower() for h in wanted_headers}
            headers = [(k, v) for k, v in headers if k.lower() in wanted]
        payload: dict[str, Any] = {
            "partId": "",
            "mimeType": "text/plain",
            "filename": "",
            "headers": [{"name": k, "value": v} for k, v in headers],
            "body": {"size": len(self.body.encode())},
        }
        if fmt == "full":
            data = base64.urlsafe_b64encode(self.body.encode()).decode()
            payload["body"]["data"] = data
        out["payload"] = payload
        return out


@dataclass
class _History:
    id: int
    kind: str  # messageAdded | messageDeleted | labelAdded | labelRemoved
    message: SandboxMessage
    labels: list[str] = field(default_factory=list)


def _words(value: str) -> str:
    return value[1:-1] if value.startswith('"') and value.endswith('"') else value


def _day(value: str) -> int | None:
    """``after:`` values: epoch seconds or ``YYYY/MM/DD`` (midnight UTC here)."""
    if value.isdigit():
        return int(value) * 1000
    try:
        when = datetime.strptime(value.replace("-", "/"), "%Y/%m/%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(when.timestamp() * 1000)


class Mailbox:
    """One user's mailbox. Thread-safe: tests edit it while the server answers."""

    def __init__(self, address: str, history_start: int = 1000) -> None:
        self.address = address.lower()
        self.lock = threading.RLock()
        self.messages: dict[str, SandboxMessage] = {}
        self._order: list[tuple[int, str]] = []  # (-internal_ms, id): newest first
        self.history: list[_History] = []
        self.history_id = history_start
        self.oldest_history = history_start
        self._ids = itertools.count(1)
        self._step = itertools.cycle((1, 3, 2, 5, 1, 4))  # ids grow with gaps

    def _next_history(self) -> int:
        self.history_id += next(self._step)
        return self.history_id

    def add(
        self,
        *,
        headers: list[tuple[str, str]],
        internal_ms: int,
        labels: Iterable[str],
        body: str = "",
        thread_id: str | None = None,
        message_id: str | None = None,
        record: bool = True,
    ) -> SandboxMessage:
        """A new message; ``record`` writes it to the history log (seeded mail is not)."""
        with self.lock:
            mid = message_id or f"{internal_ms:x}{next(self._ids):06x}"
            message = SandboxMessage(
                id=mid,
                thread_id=thread_id or mid,
                internal_ms=internal_ms,
                labels=set(labels),
                headers=headers,
                snippet=body[:120],
                body=body,
            )
            message.history_id = self._next_history()
            self.messages[mid] = message
            bisect.insort(self._order, (-internal_ms, mid))
            if record:
                self.history.append(_History(message.history_id, "messageAdded", message))
            else:
                self.oldest_history = self.history_id
            return message

    def delete(self, message_id: str) -> SandboxMessage | None:
        with self.lock:
            message = self.messages.pop(message_id, None)
            if message is None:
                return None
            self._order.remove((-message.internal_ms, message_id))
            self.history.append(_History(self._next_history(), "messageDeleted", message))
            return message

    def expire_history(self) -> None:
        """Every history id older than the current one stops working (as after a week)."""
        with self.lock:
            self.oldest_history = self.history_id
            self.history.clear()

    # -- reading -----------------------------------------------------------------------

    def search(
        self, query: str, label_ids: list[str], include_spam_trash: bool
    ) -> list[SandboxMessage]:
        """Messages matching, newest first."""
        tests = [self._term(neg, op, _words(value)) for neg, op, value in _TERM.findall(query)]
        with self.lock:
            found = []
            for _, mid in self._order:
                m = self.messages[mid]
                if not include_spam_trash and m.labels & {"SPAM", "TRASH"}:
                    continue
                if any(label not in m.labels for label in label_ids):
                    continue
                if all(test(m) for test in tests):
                    found.append(m)
            return found

    def _term(self, negated: str, op: str, value: str) -> Any:
        low = value.lower()
        op = op.rstrip(":").lower()
        test: Any
        if op in ("after", "before"):
            ms = _day(value)
            if ms is None:
                test = lambda m: True  # noqa: E731  (Gmail ignores what it cannot read)
            elif op == "after":
                test = lambda m: m.internal_ms >= ms  # noqa: E731
            else:
                test = lambda m: m.internal_ms < ms  # noqa: E731
        elif op in ("in", "label"):
            label = {"sent": "SENT", "inbox": "INBOX", "spam": "SPAM", "trash": "TRASH"}.get(
                low, value.upper()
            )
            test = lambda m: label in m.labels  # noqa: E731
        elif op == "category":
            label = f"CATEGORY_{value.upper()}"
            test = lambda m: label in m.labels  # noqa: E731
        elif op in ("from", "to"):
            names = ("From",) if op == "from" else ("To", "Cc", "Bcc")
            test = lambda m: any(low in a for a in m.addresses(*names))  # noqa: E731
        elif op == "rfc822msgid":
            test = lambda m: m.header("Message-ID").strip("<>").lower() == low.strip("<>")  # noqa: E731
        else:
            word = f"{op}:{low}" if op else low
            test = lambda m: word in m.header("Subject").lower()  # noqa: E731
        return (lambda m: not test(m)) if negated else test

    def changes(
        self, start: int, types: set[str], label: str | None
    ) -> list[dict[str, Any]] | None:
        """History records after ``start`` (Gmail's shape), or None when it is too old."""
        with self.lock:
            if start < self.oldest_history or start <= 0:
                return None
            out = []
            for h in self.history:
                if h.id <= start or (types and h.kind not in types):
                    continue
                if label and label not in h.message.labels:
                    continue
                short = {"id": h.message.id, "threadId": h.message.thread_id}
                full = {**short, "labelIds": sorted(h.message.labels)}
                record: dict[str, Any] = {"id": str(h.id), "messages": [short]}
                record[HISTORY_KEYS[h.kind]] = [
                    {"message": full, **({"labelIds": h.labels} if h.labels else {})}
                ]
                out.append(record)
            return out


def seed_messages(mailbox: Mailbox, seed: int, size: int, now_ms: int) -> None:
    """``size`` messages exchanged with fake people over the last weeks, newest last.

    A third are the mailbox's own (SENT), replies share a thread, one in seventeen is a
    promotion; every message has its own Message-ID. The same seed always makes the same
    mail."""
    people = max(1, size // 3)
    own = mailbox.address
    for i in range(size):
        person = fake_person(seed, i % people)
        other = f"{person.name} <{person.email}>"
        outgoing = i % 3 == 0
        promo = i % 17 == 5
        thread = i // 2
        when = now_ms - (size - i) * 90_000
        topic = TOPICS[thread % len(TOPICS)]
        subject = f"{'Re: ' if i % 2 else ''}{topic} #{thread}"
        headers = [
            ("From", f"Sandbox User <{own}>" if outgoing else other),
            ("To", other if outgoing else own),
            ("Subject", subject),
            ("Date", format_datetime(datetime.fromtimestamp(when / 1000, UTC))),
            ("Message-ID", f"<sbx{seed}.{i}@mail.crmhub-sandbox.example>"),
        ]
        if i % 5 == 0:
            cc = fake_person(seed, (i + 1) % people)
            headers.insert(2, ("Cc", f"{cc.name} <{cc.email}>"))
        labels = {"SENT"} if outgoing else {"INBOX", "UNREAD"}
        labels.add("CATEGORY_PROMOTIONS" if promo else "CATEGORY_PERSONAL")
        body = f"Hello {person.first_name}, about {topic.lower()} #{thread}: message {i}."
        mailbox.add(
            headers=headers,
            internal_ms=when,
            labels=labels,
            body=body,
            thread_id=f"t{seed}x{thread:x}",
            record=False,
        )
