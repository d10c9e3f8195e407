"""The state of the Slack sandbox: one workspace's people, channels, threads and posts.

People are made from ``hub.sandbox.fake_people`` (Slack's ``users.list`` member shape, one
bot and Slackbot beside them); customers of a Slack Connect channel belong to another team
and are found with ``users.info`` only, as in Slack. Message ``ts`` values come from the
workspace's clock and never repeat. Listings page with opaque cursors the way Slack's look
(base64 of ``user:<id>`` or ``next_ts:<ts>``), stable while messages are added.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hub.sandbox import fake_people

__all__ = ["CUSTOMER_TEAM", "SHARED_CHANNEL", "TEAM", "Workspace"]

TEAM = "T0SANDBOX1"
CUSTOMER_TEAM = "T0CUSTOMR1"
SHARED_CHANNEL = "C0SHARED01"
BOT_USER = "U0CRMHUBBT"


def encode_cursor(kind: str, value: str) -> str:
    return base64.b64encode(f"{kind}:{value}".encode()).decode()


def decode_cursor(cursor: str, kind: str) -> str | None:
    try:
        found, _, value = base64.b64decode(cursor.encode(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return value if found == kind and value else None


def _member(index: int, person: Any, team: str, updated: int) -> dict[str, Any]:
    uid = f"U{index:09d}" if team == TEAM else f"W{index:09d}"
    profile = {
        "avatar_hash": f"g{index:011x}",
        "display_name": person.first_name.lower(),
        "display_name_normalized": person.first_name.lower(),
        "email": person.email,
        "first_name": person.first_name,
        "last_name": person.last_name,
        "real_name": person.name,
        "real_name_normalized": person.name,
        "title": person.title,
        "phone": person.phone or "",
        "team": team,
    }
    return {
        "id": uid,
        "team_id": team,
        "name": person.email.split("@")[0],
        "deleted": False,
        "color": "9f69e7",
        "real_name": person.name,
        "tz": "Europe/London",
        "tz_label": "Greenwich Mean Time",
        "tz_offset": 0,
        "profile": profile,
        "is_admin": False,
        "is_owner": False,
        "is_primary_owner": False,
        "is_restricted": False,
        "is_ultra_restricted": False,
        "is_bot": False,
        "is_app_user": False,
        "updated": updated,
        "has_2fa": False,
    }


@dataclass
class Workspace:
    """People, channels and messages of one Slack workspace; thread-safe."""

    seed: int = 0
    size: int = 20
    customers: int = 5
    channels: tuple[str, ...] = (SHARED_CHANNEL,)
    clock: Callable[[], float] = time.time
    users: dict[str, dict[str, Any]] = field(default_factory=dict, init=False)
    external: dict[str, dict[str, Any]] = field(default_factory=dict, init=False)
    messages: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict, init=False)
    posted: list[dict[str, Any]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self._last_ts = Decimal(0)
            start = int(self.clock()) - 86_400
            people = list(fake_people(self.seed, self.size + self.customers + 1))
            self.users = {}
            for i, person in enumerate(people[: self.size]):
                member = _member(i + 1, person, TEAM, start + i)
                self.users[member["id"]] = member
            bot = _member(0, people[-1], TEAM, start)
            bot.update(id=BOT_USER, name="crmhub", is_bot=True, real_name="crmhub")
            bot["profile"] = {
                "real_name": "crmhub",
                "display_name": "crmhub",
                "team": TEAM,
                "bot_id": "B0CRMHUBBT",
            }
            self.users[BOT_USER] = bot
            slackbot = dict(bot, id="USLACKBOT", name="slackbot", is_bot=False)
            slackbot["profile"] = {
                "real_name": "Slackbot",
                "display_name": "Slackbot",
                "team": TEAM,
            }
            self.users["USLACKBOT"] = slackbot
            self.external = {}
            for j, person in enumerate(people[self.size : self.size + self.customers]):
                member = _member(j + 1, person, CUSTOMER_TEAM, start + j)
                self.external[member["id"]] = member
            self.messages = {c: {} for c in self.channels}
            self.posted = []

    # -- people --------------------------------------------------------------------------

    def person(self, user: str) -> dict[str, Any] | None:
        with self.lock:
            return self.users.get(user) or self.external.get(user)

    def staff(self) -> list[str]:
        return [
            u
            for u, m in self.users.items()
            if u.startswith("U0") and not m["is_bot"] and u != "USLACKBOT" and u != BOT_USER
        ]

    def edit_user(self, user: str, **profile: Any) -> dict[str, Any]:
        """Change a person's profile as they would in Slack; ``updated`` moves on."""
        with self.lock:
            member = self.users[user]
            member["profile"].update(profile)
            if "real_name" in profile:
                member["real_name"] = profile["real_name"]
            member["updated"] = max(int(self.clock()), member["updated"] + 1)
            return member

    def add_user(self, first: str, last: str, email: str) -> dict[str, Any]:
        with self.lock:
            index = len(self.users) + 1
            person = type(
                "P",
                (),
                {
                    "first_name": first,
                    "last_name": last,
                    "email": email,
                    "name": f"{first} {last}",
                    "title": "",
                    "phone": None,
                },
            )()
            member = _member(index, person, TEAM, int(self.clock()))
            self.users[member["id"]] = member
            return member

    def deactivate(self, user: str) -> dict[str, Any]:
        with self.lock:
            member = self.users[user]
            member["deleted"] = True
            member["updated"] = max(int(self.clock()), member["updated"] + 1)
            return member

    def list_users(self, cursor: str | None, limit: int) -> tuple[list[dict[str, Any]], str]:
        with self.lock:
            ids = sorted(self.users)
            start = 0
            if cursor:
                after = decode_cursor(cursor, "user")
                start = next((i for i, u in enumerate(ids) if u > (after or "")), len(ids))
            chosen = ids[start : start + limit]
            more = start + limit < len(ids)
            members = [dict(self.users[u]) for u in chosen]
        return members, encode_cursor("user", chosen[-1]) if more and chosen else ""

    # -- messages ------------------------------------------------------------------------

    def next_ts(self) -> str:
        with self.lock:
            ts = max(Decimal(f"{self.clock():.6f}"), self._last_ts + Decimal("0.000001"))
            self._last_ts = ts
            return f"{ts:.6f}"

    def post(
        self,
        channel: str,
        user: str,
        text: str,
        thread_ts: str | None = None,
        ts: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """A message as a person sends it (a reply with ``thread_ts``)."""
        with self.lock:
            stamp = ts or self.next_ts()
            message: dict[str, Any] = {
                "type": "message",
                "user": user,
                "text": text,
                "ts": stamp,
                **extra,
            }
            member = self.person(user)
            if member is not None:
                message["team"] = member["team_id"]
            if thread_ts:
                parent = self.messages[channel][thread_ts]
                message["thread_ts"] = thread_ts
                message["parent_user_id"] = parent["user"]
                parent["thread_ts"] = thread_ts
                parent["reply_count"] = parent.get("reply_count", 0) + 1
                parent["latest_reply"] = stamp
                parent["reply_users"] = sorted({*parent.get("reply_users", []), user})
                parent["reply_users_count"] = len(parent["reply_users"])
            self.messages[channel][stamp] = message
            return message

    def history(
        self,
        channel: str,
        oldest: str | None,
        latest: str | None,
        inclusive: bool,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[dict[str, Any]], str]:
        """Top-level messages, newest first, within (oldest, latest)."""
        low = Decimal(oldest) if oldest else None
        high = Decimal(latest) if latest else None
        before = Decimal(decode_cursor(cursor, "next_ts") or "0") if cursor else None
        with self.lock:
            found = []
            for ts, m in self.messages[channel].items():
                t = Decimal(ts)
                if m.get("thread_ts") not in (None, ts):
                    continue  # a reply: conversations.replies lists it
                if low is not None and (t < low or (t == low and not inclusive)):
                    continue
                if high is not None and (t > high or (t == high and not inclusive)):
                    continue
                if before is not None and t >= before:
                    continue
                found.append(m)
            found.sort(key=lambda m: Decimal(m["ts"]), reverse=True)
            page = [dict(m) for m in found[:limit]]
        more = len(found) > limit
        return page, encode_cursor("next_ts", page[-1]["ts"]) if more else ""

    def replies(
        self, channel: str, thread: str, oldest: str | None, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str] | None:
        """The thread's first message, then its replies after ``oldest``, oldest first."""
        low = Decimal(oldest) if oldest else None
        after = Decimal(decode_cursor(cursor, "next_ts") or "0") if cursor else None
        with self.lock:
            parent = self.messages.get(channel, {}).get(thread)
            if parent is None:
                return None
            rest = sorted(
                (
                    m
                    for ts, m in self.messages[channel].items()
                    if m.get("thread_ts") == thread
                    and ts != thread
                    and (low is None or Decimal(ts) > low)
                    and (after is None or Decimal(ts) > after)
                ),
                key=lambda m: Decimal(m["ts"]),
            )
            page = [dict(m) for m in rest[:limit]]
        more = len(rest) > limit
        return [dict(parent), *page], encode_cursor("next_ts", page[-1]["ts"]) if more else ""
