"""Who is who in the workspace: ``users.list`` -> contacts, and a directory for messages.

Slack has no change feed for people, so every pull lists the workspace (``users.list``,
tier 2, ``limit`` people a call) and passes on the people whose ``updated`` time is past
the cursor's: a quiet workspace costs its listing and changes nothing. Bots and Slackbot
are never contacts. People Slack marks ``deleted`` (deactivated) reach the hub as
deletions. A person without an e-mail address (the app lacks ``users:read.email``, or the
profile has none) is skipped unless the connection sets ``match_by_name``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors.slack.client import SlackApi, next_cursor
from hub.connector import Cursor, Page, RemoteRecord
from hub.records import normalize_email

__all__ = ["Person", "UserPull", "is_bot", "person_of", "user_record"]

SLACKBOT = "USLACKBOT"


@dataclass(frozen=True)
class Person:
    """What messages need to know of their author."""

    id: str
    email: str | None
    name: str
    team: str | None


def is_bot(member: dict[str, Any]) -> bool:
    return bool(member.get("is_bot")) or member.get("id") == SLACKBOT


def _names(member: dict[str, Any]) -> tuple[str, str, str]:
    profile = member.get("profile") or {}
    full = str(profile.get("real_name") or member.get("real_name") or member.get("name") or "")
    first = str(profile.get("first_name") or "").strip()
    last = str(profile.get("last_name") or "").strip()
    if not first and not last and full.strip():
        first, _, last = full.strip().partition(" ")
    return full.strip(), first, last.strip()


def person_of(member: dict[str, Any]) -> Person:
    profile = member.get("profile") or {}
    full, _, _ = _names(member)
    return Person(
        id=str(member["id"]),
        email=normalize_email(profile.get("email")),
        name=full or str(profile.get("display_name") or member.get("name") or ""),
        team=member.get("team_id") or profile.get("team"),
    )


def user_record(member: dict[str, Any]) -> RemoteRecord:
    """The contact record of a workspace member (its ``updated`` time is its version)."""
    profile = member.get("profile") or {}
    full, first, last = _names(member)
    data: dict[str, Any] = {
        "id": member["id"],
        "team_id": member.get("team_id"),
        "name": full,
        "first_name": first,
        "last_name": last,
        "display_name": profile.get("display_name") or "",
        "email": normalize_email(profile.get("email")),
        "title": profile.get("title") or "",
        "phone": profile.get("phone") or "",
        "tz": member.get("tz"),
        "guest": bool(member.get("is_restricted") or member.get("is_ultra_restricted")),
    }
    updated = member.get("updated")
    when = datetime.fromtimestamp(int(updated), UTC) if updated else None
    return RemoteRecord(
        id=str(member["id"]),
        data=data,
        version=str(updated) if updated is not None else None,
        modified_at=when,
    )


class UserPull:
    """One pull of the workspace's people since a cursor ``{"updated", "ids"}`` (the newest
    ``updated`` seen and the people at that second); a pull in flight also keeps Slack's
    ``page`` cursor, so an interrupted first sync goes on where it stopped."""

    def __init__(
        self,
        api: SlackApi,
        *,
        page_size: int,
        with_email_only: bool,
        directory: dict[str, Person] | None = None,
    ) -> None:
        self.api = api
        self.page_size = page_size
        self.with_email_only = with_email_only
        self.directory = directory if directory is not None else {}

    def _changed(self, member: dict[str, Any], since: int, at_since: set[str]) -> bool:
        updated = int(member.get("updated") or 0)
        return updated > since or (updated == since and member.get("id") not in at_since)

    async def pages(self, cursor: Cursor | None) -> AsyncIterator[Page]:
        state = dict(cursor or {})
        since = int(state.get("updated") or -1)
        at_since = set(state.get("ids") or [])
        top = int(state.get("top", since))
        top_ids = set(state.get("top_ids") or at_since)
        params: dict[str, Any] = {"limit": self.page_size, "cursor": state.get("page")}
        async for body in self.api.pages("users.list", "members", **params):
            records: list[RemoteRecord] = []
            deleted: list[str] = []
            for member in body["members"]:
                if not isinstance(member, dict) or "id" not in member or is_bot(member):
                    continue
                self.directory[str(member["id"])] = person_of(member)
                if not self._changed(member, since, at_since):
                    continue
                updated = int(member.get("updated") or 0)
                if updated > top:
                    top, top_ids = updated, set()
                if updated == top:
                    top_ids.add(str(member["id"]))
                if member.get("deleted"):
                    deleted.append(str(member["id"]))
                    continue
                record = user_record(member)
                if self.with_email_only and not record.data["email"]:
                    continue
                records.append(record)
            page = next_cursor(body)
            if page:
                position = {
                    "updated": since,
                    "ids": sorted(at_since),
                    "page": page,
                    "top": top,
                    "top_ids": sorted(top_ids),
                }
            else:
                position = {"updated": top, "ids": sorted(top_ids)}
            yield Page(records=records, deleted=deleted, cursor=position)
