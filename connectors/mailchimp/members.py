"""Mailchimp members as crmhub sees them: subscriber hashes, records, versions, statuses.

A member's remote id is Mailchimp's ``id``: the MD5 of the trimmed, lower-cased address
(the subscriber hash). It changes when the address changes, so a push that changes an
address answers with the new id. Record data is the member as Mailchimp returns it, with
three adjustments that keep mappings simple:

- ``tags`` is a list of tag names;
- an empty address merge field (``""``) is left out: unknown, not emptied, because
  Mailchimp holds no partial address and drops one that is not complete (a hub address
  without a state stays in the hub instead of being erased by the next pull); other empty
  merge fields (``""``) read as ``null``;
- ``consent_updated_at`` is when a subscribed member opted in (``timestamp_opt``) and
  ``null`` for every other status: Mailchimp does not say when a member unsubscribed, and
  ``last_changed`` moves on any edit, so consent's time changes only when consent does.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from datetime import datetime
from typing import Any

from hub.connector import RemoteRecord

DROPPED_FIELDS = ("_links", "stats", "member_rating", "tags_count", "last_note")
"""Member fields that change on their own (engagement) or are links: not part of a record."""
EXCLUDE_FIELDS = ",".join(
    ["_links", *(f"members.{name}" for name in DROPPED_FIELDS)]
)  # the ``exclude_fields`` query value of a listing: smaller pages
SUBSCRIBED = "subscribed"
ADDRESS_TAGS = frozenset({"ADDRESS"})
"""Merge tags of address type (an empty one is unknown, see the module docstring)."""
GONE = frozenset({"archived", "cleaned"})
"""Statuses reported to the engine as deletions: archived (deleted) and cleaned (bounced)."""
OPTED_OUT = frozenset({"unsubscribed", "cleaned"})
"""Members in these states are never subscribed again by a sync."""


def subscriber_hash(email: str) -> str:
    """Mailchimp's subscriber hash: MD5 of the trimmed, lower-cased address."""
    return hashlib.md5(email.strip().lower().encode("utf-8"), usedforsecurity=False).hexdigest()


def parse_time(value: Any) -> datetime | None:
    """A Mailchimp timestamp (``2024-05-01T12:30:00+00:00``) as an aware datetime."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode


def _without_dropped(member: dict[str, Any]) -> dict[str, Any]:
    # listings already leave these out (``exclude_fields``): copy only when needed
    if any(name in member for name in DROPPED_FIELDS):
        return {k: v for k, v in member.items() if k not in DROPPED_FIELDS}
    return member


def member_version(member: dict[str, Any]) -> str:
    """``last_changed`` plus a checksum of the member's data.

    ``last_changed`` has one-second resolution; the checksum tells apart two edits made in
    the same second. Mailchimp's key order is stable, so the JSON text is too.
    """
    text = _encode(_without_dropped(member))
    return f"{member.get('last_changed') or ''}#{zlib.crc32(text.encode()):08x}"


def record_data(member: dict[str, Any]) -> dict[str, Any]:
    """The member in the shape mappings read (see the module docstring)."""
    data = dict(_without_dropped(member))
    tags = data.get("tags")
    if isinstance(tags, list):
        data["tags"] = [t["name"] if isinstance(t, dict) else str(t) for t in tags]
    merge = data.get("merge_fields")
    if isinstance(merge, dict):
        data["merge_fields"] = {
            k: (None if v == "" else v)
            for k, v in merge.items()
            if not (k in ADDRESS_TAGS and v == "")
        }
    opted = member.get("timestamp_opt") if member.get("status") == SUBSCRIBED else None
    data["consent_updated_at"] = opted or None
    return data


def to_record(member: dict[str, Any], version: str | None = None) -> RemoteRecord:
    """A member as a ``RemoteRecord`` (id = subscriber hash); ``version`` if known."""
    return RemoteRecord(
        id=str(member["id"]),
        data=record_data(member),
        version=version or member_version(member),
        modified_at=parse_time(member.get("last_changed")),
    )


def is_gone(member: dict[str, Any]) -> bool:
    return member.get("status") in GONE
