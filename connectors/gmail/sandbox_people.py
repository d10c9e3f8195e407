"""The Gmail sandbox's People API state: one user's contacts, their etags and sync tokens.

Each change takes the next sequence number; a sync token names the number it was issued
at, so a listing with it returns what changed since (deleted contacts with
``metadata.deleted``). Tokens issued before ``expired_before`` are expired
(``EXPIRED_SYNC_TOKEN``). An update must name the contact source's current etag
(``metadata.sources[].etag``), as People requires; a stale one is refused.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

from hub.sandbox import fake_person

__all__ = ["PEOPLE_FIELDS", "PeopleBook", "SandboxPerson"]

PEOPLE_FIELDS = (
    "names",
    "emailAddresses",
    "phoneNumbers",
    "organizations",
    "addresses",
    "birthdays",
    "biographies",
    "urls",
    "memberships",
    "metadata",
)
"""The person fields the sandbox keeps (``personFields`` may name others: answered empty)."""


class StaleEtag(Exception):
    pass


@dataclass
class SandboxPerson:
    id: str
    fields: dict[str, Any]
    seq: int
    deleted: bool = False
    updated: str = ""
    history: list[int] = field(default_factory=list)

    @property
    def resource(self) -> str:
        return f"people/{self.id}"

    @property
    def etag(self) -> str:
        digest = hashlib.sha256(f"{self.id}:{self.seq}".encode()).digest()[:9]
        return "%" + base64.b64encode(digest).decode()

    @property
    def source_etag(self) -> str:
        return "#" + self.etag[1:]

    def render(self, wanted: set[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"resourceName": self.resource, "etag": self.etag}
        source = {"type": "CONTACT", "id": self.id, "etag": self.source_etag}
        if self.updated:
            source["updateTime"] = self.updated
        if "metadata" in wanted or self.deleted:
            meta: dict[str, Any] = {"sources": [source], "objectType": "PERSON"}
            if self.deleted:
                meta["deleted"] = True
            out["metadata"] = meta
        if self.deleted:
            return out
        for name, values in self.fields.items():
            if name in wanted and values:
                out[name] = [
                    {**v, "metadata": {"primary": i == 0, "source": {"type": "CONTACT"}}}
                    for i, v in enumerate(copy.deepcopy(values))
                ]
        return out


def _clean(person: dict[str, Any], mask: set[str] | None) -> dict[str, Any]:
    """The writable fields of a person sent by a client (``metadata`` parts dropped)."""
    out: dict[str, Any] = {}
    for name in PEOPLE_FIELDS:
        if name == "metadata" or name not in person or (mask is not None and name not in mask):
            continue
        values = person.get(name) or []
        out[name] = [
            {k: v for k, v in item.items() if k != "metadata"}
            for item in values
            if isinstance(item, dict)
        ]
        for item in out[name]:
            if name == "names":
                given, family = item.get("givenName", ""), item.get("familyName", "")
                item["displayName"] = f"{given} {family}".strip()
    return out


class PeopleBook:
    """One user's contacts."""

    def __init__(self, clock: Any) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.people: dict[str, SandboxPerson] = {}
        self.seq = 0
        self.expired_before = 0
        self._ids = itertools.count(1)

    def _stamp(self) -> tuple[int, str]:
        self.seq += 1
        return self.seq, self.clock().isoformat().replace("+00:00", "Z")

    def create(self, person: dict[str, Any]) -> SandboxPerson:
        with self.lock:
            seq, when = self._stamp()
            pid = f"c{next(self._ids):012d}"
            entry = SandboxPerson(pid, _clean(person, None), seq, updated=when)
            self.people[pid] = entry
            return entry

    def get(self, resource: str) -> SandboxPerson | None:
        pid = resource.removeprefix("people/")
        with self.lock:
            found = self.people.get(pid)
            return None if found is None or found.deleted else found

    def update(
        self, resource: str, person: dict[str, Any], mask: set[str], etag: str | None
    ) -> SandboxPerson:
        """Replace the fields in ``mask``; raises ``KeyError`` (no such contact) or
        :class:`StaleEtag`."""
        with self.lock:
            found = self.get(resource)
            if found is None:
                raise KeyError(resource)
            if etag not in (found.etag, found.source_etag):
                raise StaleEtag(resource)
            changes = _clean(person, mask)
            for name in mask:
                found.fields[name] = changes.get(name, [])
            found.seq, found.updated = self._stamp()
            return found

    def edit(self, resource: str, changes: dict[str, Any]) -> SandboxPerson:
        """A change "in Google Contacts": no etag needed."""
        with self.lock:
            found = self.get(resource)
            if found is None:
                raise KeyError(resource)
            found.fields.update(_clean(changes, None))
            found.seq, found.updated = self._stamp()
            return found

    def delete(self, resource: str) -> bool:
        with self.lock:
            found = self.get(resource)
            if found is None:
                return False
            found.deleted = True
            found.fields = {}
            found.seq, found.updated = self._stamp()
            return True

    def find_email(self, email: str) -> SandboxPerson | None:
        email = email.strip().lower()
        with self.lock:
            for p in self.people.values():
                if p.deleted:
                    continue
                if any(
                    e.get("value", "").lower() == email for e in p.fields.get("emailAddresses", [])
                ):
                    return p
            return None

    def listing(self, since: int | None) -> list[SandboxPerson]:
        """Every live contact (``since`` None), or every one changed after ``since``."""
        with self.lock:
            if since is None:
                chosen = [p for p in self.people.values() if not p.deleted]
            else:
                chosen = [p for p in self.people.values() if p.seq > since]
            return sorted(chosen, key=lambda p: p.id)

    def expire_sync_tokens(self) -> None:
        """Every sync token handed out so far expires (as 7 days after a full sync)."""
        with self.lock:
            self.seq += 1
            self.expired_before = self.seq

    def live(self) -> int:
        with self.lock:
            return sum(1 for p in self.people.values() if not p.deleted)


def seed_people(book: PeopleBook, seed: int, size: int) -> None:
    """``size`` contacts from the fake people of ``seed`` (a different slice than the
    correspondents of the mailbox, so some people are in both, most in one)."""
    for i in range(size):
        p = fake_person(seed, i * 2)
        fields: dict[str, Any] = {
            "names": [{"givenName": p.first_name, "familyName": p.last_name}],
            "emailAddresses": [{"value": p.email}],
            "organizations": [{"name": p.company, **({"title": p.title} if p.title else {})}],
            "addresses": [{"city": p.city, "countryCode": p.country}],
        }
        if p.phone:
            fields["phoneNumbers"] = [{"value": p.phone}]
        book.create(fields)
