"""The Mailchimp sandbox's state: one audience in memory, behaving like Mailchimp.

Members are keyed by subscriber hash and listed in the order they were added. ``last_changed``
has Mailchimp's one-second resolution and moves only when something changes. ``DELETE``
archives; an archived member is listed only with ``status=archived`` and comes back (with
the status it had, if it had opted out) when written again. A member who unsubscribed
themselves, or was set so with ``compliance=True``, is in Mailchimp's compliance state and
cannot be subscribed through the API. An address merge field must be complete (``addr1``,
``city``, ``state`` and ``zip``) or empty, as Mailchimp requires. Safe to drive from a test
thread while served.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hub.sandbox import fake_people

STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
MERGE_TAGS = ("FNAME", "LNAME", "ADDRESS", "PHONE", "BIRTHDAY", "COMPANY")
ADDRESS_KEYS = ("addr1", "addr2", "city", "state", "zip", "country")
ADDRESS_REQUIRED = ("addr1", "city", "state", "zip")
STATES = {
    "San Francisco": "CA", "Chicago": "IL", "Austin": "TX", "London": "Greater London",
    "Manchester": "Greater Manchester", "Berlin": "Berlin", "Lyon": "Rhone", "Utrecht": "Utrecht",
}  # fmt: skip
SEED_EPOCH = 1_704_067_200  # 2024-01-01: seeded members changed long before any test runs
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")


class ApiError(Exception):
    """A refusal in Mailchimp's problem format."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra

    def body(self) -> dict[str, Any]:
        return {
            "type": "https://mailchimp.com/developer/marketing/docs/errors/",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": "sandbox",
            **self.extra,
        }


def md5(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()


def iso(epoch: int | None) -> str:
    if not epoch:
        return ""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


@dataclass(slots=True)
class Member:
    email: str
    status: str
    merge_fields: dict[str, Any]
    order: int
    last_changed: int
    timestamp_opt: int = 0
    timestamp_signup: int = 0
    tags: list[str] = field(default_factory=list)
    archived: bool = False
    compliance: bool = False
    source: str = "API - Generic"
    cache: dict[str, bytes] = field(default_factory=dict)
    """Rendered JSON by excluded-fields key; cleared whenever the member changes."""

    @property
    def id(self) -> str:
        return md5(self.email)

    def render(self, list_id: str) -> dict[str, Any]:
        status = "archived" if self.archived else self.status
        name = f"{self.merge_fields.get('FNAME', '')} {self.merge_fields.get('LNAME', '')}"
        return {
            "id": self.id,
            "email_address": self.email,
            "unique_email_id": self.id[:10],
            "contact_id": self.id[::-1],
            "full_name": name.strip(),
            "web_id": self.order + 1000,
            "email_type": "html",
            "status": status,
            "merge_fields": dict(self.merge_fields),
            "stats": {"avg_open_rate": 0, "avg_click_rate": 0},
            "ip_signup": "",
            "timestamp_signup": iso(self.timestamp_signup),
            "ip_opt": "",
            "timestamp_opt": iso(self.timestamp_opt),
            "member_rating": 2,
            "last_changed": iso(self.last_changed),
            "language": "",
            "vip": False,
            "email_client": "",
            "source": self.source,
            "tags_count": len(self.tags),
            "tags": [{"id": i + 1, "name": t} for i, t in enumerate(self.tags)],
            "list_id": list_id,
            "_links": [],
        }


def _blank_merge() -> dict[str, Any]:
    return dict.fromkeys(MERGE_TAGS, "")


class Audience:
    """One list. Methods raise :class:`ApiError` where Mailchimp answers with a problem."""

    def __init__(
        self,
        list_id: str = "sandbox01",
        seed: int = 0,
        size: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.list_id = list_id
        self.seed_value = seed
        self.size = size
        self.clock = clock
        self.lock = threading.RLock()
        self.reset()

    # -- state ------------------------------------------------------------------------

    def reset(self) -> None:
        with self.lock:
            self.members: dict[str, Member] = {}
            self._order = 0
            self.mutations = 0
            self._views: dict[tuple[Any, ...], list[Member]] = {}
            for person in fake_people(self.seed_value, self.size):
                i = person.index
                status = "unsubscribed" if i % 23 == 7 else "subscribed"
                merge = _blank_merge() | {
                    "FNAME": person.first_name,
                    "LNAME": person.last_name,
                    "PHONE": person.phone or "",
                    "COMPANY": person.company,
                    "ADDRESS": {
                        "addr1": f"{i % 200 + 1} Market Street",
                        "addr2": "",
                        "city": person.city,
                        "state": STATES.get(person.city, ""),
                        "zip": f"{10000 + i % 89999}",
                        "country": person.country,
                    },
                }
                changed = SEED_EPOCH + i * 60
                self._insert(
                    Member(
                        email=person.email,
                        status=status,
                        merge_fields=merge,
                        order=0,
                        last_changed=changed,
                        timestamp_opt=changed if status == "subscribed" else 0,
                        timestamp_signup=changed,
                        compliance=status == "unsubscribed",
                    )
                )

    def now(self) -> int:
        return int(self.clock())

    def _insert(self, member: Member) -> Member:
        member.order = self._order
        self._order += 1
        self.members[member.id] = member
        self._touched(member)
        return member

    def _touched(self, member: Member) -> None:
        member.cache.clear()
        self.mutations += 1
        self._views.clear()

    def get(self, key: str) -> Member | None:
        """A member by hash or address (archived ones included)."""
        with self.lock:
            return self.members.get(key) or self.members.get(md5(key))

    # -- listing ----------------------------------------------------------------------

    def listing(
        self,
        *,
        status: str | None = None,
        since: datetime | None = None,
        before: datetime | None = None,
        sort_field: str | None = None,
        descending: bool = False,
    ) -> list[Member]:
        """Members matching the filters, in listing order (cached until the next change)."""
        key = (status, since, before, sort_field, descending)
        with self.lock:
            found = self._views.get(key)
            if found is None:
                low = int(since.timestamp()) if since else None
                high = int(before.timestamp()) if before else None
                found = [
                    m
                    for m in self.members.values()
                    if (m.archived if status == "archived" else not m.archived)
                    and (status in (None, "archived") or m.status == status)
                    and (low is None or m.last_changed > low)
                    and (high is None or m.last_changed < high)
                ]
                if sort_field in ("last_changed", "timestamp_opt"):
                    found.sort(key=lambda m: (getattr(m, sort_field), m.order), reverse=descending)
                self._views[key] = found
            return found

    # -- writes -----------------------------------------------------------------------

    def _check_email(self, email: Any) -> str:
        if not isinstance(email, str) or not _EMAIL.match(email.strip()):
            raise ApiError(
                400,
                "Invalid Resource",
                f"{email} looks fake or invalid, please enter a real email address.",
            )
        return email.strip()

    def _merge(self, member: Member, fields: Any) -> bool:
        """Apply merge fields, all or none: every value is checked before any is written."""
        if fields is None:
            return False
        if not isinstance(fields, dict):
            raise ApiError(400, "Invalid Resource", "merge_fields must be an object")
        values: dict[str, Any] = {}
        for tag, value in fields.items():
            if tag not in MERGE_TAGS:
                raise ApiError(
                    400,
                    "Invalid Resource",
                    f"Your merge fields were invalid: {tag} is not a merge field of this list",
                )
            if tag == "ADDRESS" and isinstance(value, dict):
                value = {k: str(value.get(k) or "") for k in ADDRESS_KEYS}  # replaces it all
                if not all(value[k].strip() for k in ADDRESS_REQUIRED):
                    raise ApiError(
                        400,
                        "Invalid Resource",
                        "Your merge fields were invalid.",
                        errors=[{"field": tag, "message": "Please enter a complete address"}],
                    )
            values[tag] = "" if value is None else value
        changed = False
        for tag, value in values.items():
            if member.merge_fields.get(tag) != value:
                member.merge_fields[tag] = value
                changed = True
        return changed

    def _set_status(self, member: Member, status: Any) -> bool:
        if status is None or status == member.status:
            return False
        if status not in STATUSES or status == "cleaned":
            raise ApiError(400, "Invalid Resource", f"status {status!r} cannot be set")
        if status == "subscribed" and (member.compliance or member.status == "cleaned"):
            raise ApiError(
                400,
                "Member In Compliance State",
                f"{member.email} is already a list member in compliance state due to "
                "unsubscribe, bounce, or compliance review and cannot be subscribed.",
            )
        member.status = status
        if status == "subscribed":
            member.timestamp_opt = self.now()
        return True

    def upsert(
        self, member_hash: str, body: dict[str, Any], *, create: bool = True
    ) -> tuple[Member, bool]:
        """PUT (``create``) or PATCH one member; returns it and whether it is new."""
        with self.lock:
            member = self.members.get(member_hash)
            if member is None or (member.archived and create):
                return self._add(member_hash, body, member), True
            if member.archived:
                raise ApiError(
                    404, "Resource Not Found", "The requested resource could not be found."
                )
            changed = self._merge(member, body.get("merge_fields"))
            changed |= self._set_status(member, body.get("status"))
            new_email = body.get("email_address")
            if isinstance(new_email, str) and md5(new_email) != member.id:
                self._rekey(member, self._check_email(new_email))
                changed = True
            if changed:
                member.last_changed = self.now()
                self._touched(member)
            return member, False

    def _add(self, member_hash: str, body: dict[str, Any], archived: Member | None) -> Member:
        email = self._check_email(body.get("email_address"))
        if md5(email) != member_hash:
            raise ApiError(
                400, "Invalid Resource", "The email address does not match the subscriber hash."
            )
        status = body.get("status_if_new") or body.get("status")
        if archived is not None and archived.status in ("unsubscribed", "cleaned"):
            status = archived.status  # re-adding never undoes an opt-out or a bounce
        if status not in STATUSES or status == "cleaned":
            raise ApiError(400, "Invalid Resource", "status_if_new must be a member status")
        member = Member(
            email=email,
            status=status,
            merge_fields=_blank_merge(),
            order=0,
            last_changed=self.now(),
            timestamp_opt=self.now() if status == "subscribed" else 0,
            timestamp_signup=self.now(),
            compliance=archived.compliance if archived else False,
        )
        self._merge(member, body.get("merge_fields"))
        if isinstance(body.get("tags"), list):
            member.tags = [str(t) for t in body["tags"]]
        if archived is not None:
            del self.members[member_hash]
        return self._insert(member)

    def _rekey(self, member: Member, email: str) -> None:
        if md5(email) in self.members:
            raise ApiError(400, "Member Exists", f"{email} is already a list member.")
        del self.members[member.id]
        member.email = email
        self.members[member.id] = member

    def archive(self, member_hash: str) -> None:
        with self.lock:
            member = self.members.get(member_hash)
            if member is None or member.archived:
                raise ApiError(
                    404, "Resource Not Found", "The requested resource could not be found."
                )
            member.archived = True
            member.last_changed = self.now()
            self._touched(member)

    def set_tags(self, member_hash: str, tags: list[dict[str, Any]]) -> None:
        with self.lock:
            member = self.members.get(member_hash)
            if member is None or member.archived:
                raise ApiError(
                    404, "Resource Not Found", "The requested resource could not be found."
                )
            before = list(member.tags)
            for tag in tags:
                name = str(tag.get("name") or "")
                if tag.get("status") == "inactive":
                    member.tags = [t for t in member.tags if t != name]
                elif name and name not in member.tags:
                    member.tags.append(name)
            if member.tags != before:
                member.last_changed = self.now()
                self._touched(member)

    def batch(self, members: list[Any], update_existing: bool) -> dict[str, Any]:
        """Batch subscribe: per-member results, never a failure of the whole call."""
        new: list[dict[str, Any]] = []
        updated: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        seen: set[str] = set()
        with self.lock:
            for entry in members:
                email = entry.get("email_address") if isinstance(entry, dict) else None
                try:
                    if not isinstance(entry, dict):
                        raise ApiError(400, "Invalid Resource", "a member must be an object")
                    email = self._check_email(email)
                    key = md5(email)
                    if key in seen:
                        raise ApiError(400, "Invalid Resource", f"{email} is listed twice")
                    seen.add(key)
                    held = self.members.get(key)
                    if held is not None and not held.archived and not update_existing:
                        errors.append(
                            {
                                "email_address": email,
                                "error": f"{email} is already a list member, do you want to "
                                "update? please provide update_existing:true in the request body",
                                "error_code": "ERROR_CONTACT_EXISTS",
                            }
                        )
                        continue
                    if held is None or held.archived:
                        body = {**entry, "status_if_new": entry.get("status")}
                        member, _ = self.upsert(key, body)
                        new.append(member.render(self.list_id))
                    else:
                        member, _ = self.upsert(key, {**entry, "email_address": email})
                        updated.append(member.render(self.list_id))
                except ApiError as exc:
                    errors.append(
                        {"email_address": email, "error": exc.detail, "error_code": "ERROR_GENERIC"}
                    )
        return {
            "new_members": new,
            "updated_members": updated,
            "errors": errors,
            "total_created": len(new),
            "total_updated": len(updated),
            "error_count": len(errors),
            "_links": [],
        }
