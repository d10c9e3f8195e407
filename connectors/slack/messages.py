"""Messages of the followed channels -> activities, threads kept together.

Per channel the cursor keeps ``oldest`` (the newest message already read: Slack's
``oldest`` is exclusive) and the threads started in the last ``thread_days`` with the
newest reply read. A pull reads ``conversations.history`` from ``oldest`` (newest first,
cursor paging), the replies of each new thread with ``conversations.replies``, and then
asks each followed older thread for replies newer than the last one read. A pull in
flight keeps Slack's paging cursor and the newest ``ts`` seen, so a first sync that is
interrupted goes on where it stopped.

Each message is one activity: its ``message_id`` is ``slack:<team>:<channel>:<ts>`` (two
connections on one workspace make one activity), its ``thread_id`` names the thread's
first message; its author and the people it mentions (``<@U…>``) are resolved to e-mail
addresses (``people_emails``, the author first: the activity's ``contacts`` references)
with the directory of the people stream or ``users.info``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from connectors.slack.client import SlackApi
from connectors.slack.users import Person, is_bot, person_of
from hub.connector import Cursor, RemoteRecord
from hub.errors import PermanentError

__all__ = ["SKIPPED_SUBTYPES", "ChannelPull", "Directory", "message_record"]

SKIPPED_SUBTYPES = frozenset(
    {
        "bot_message",
        "channel_join",
        "channel_leave",
        "channel_topic",
        "channel_purpose",
        "channel_name",
        "channel_archive",
        "channel_unarchive",
        "group_join",
        "group_leave",
        "pinned_item",
        "unpinned_item",
    }
)
"""Message subtypes that are no conversation with a person."""
SUBJECT_CHARS = 120
MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")


def ts_time(ts: str) -> datetime:
    return datetime.fromtimestamp(float(Decimal(ts)), UTC)


def _later(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if Decimal(a) >= Decimal(b) else b


class Directory:
    """Slack user ids -> people, from the people stream's listing or ``users.info``."""

    def __init__(self, api: SlackApi, known: dict[str, Person]) -> None:
        self.api = api
        self.known = known
        self.missing: set[str] = set()

    async def resolve(self, ids: Iterable[str]) -> None:
        for user in sorted(set(ids) - set(self.known) - self.missing):
            try:
                body = await self.api.call("users.info", user=user)
            except PermanentError:
                self.missing.add(user)  # user_not_found: a person of a team that left
                continue
            member = body.get("user")
            if isinstance(member, dict) and member.get("id") and not is_bot(member):
                self.known[user] = person_of(member)
            else:
                self.missing.add(user)


def _subject(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= SUBJECT_CHARS else line[: SUBJECT_CHARS - 1] + "…"


def people_in(message: dict[str, Any]) -> list[str]:
    """The Slack user ids of a message's author and of those it mentions, author first."""
    found = [str(message.get("user") or ""), *MENTION.findall(str(message.get("text") or ""))]
    return [u for u in dict.fromkeys(found) if u]


def message_record(
    message: dict[str, Any], channel: str, team: str, people: dict[str, Person]
) -> RemoteRecord:
    """The activity record of one message of ``channel`` in workspace ``team``."""
    ts = str(message["ts"])
    emails = [people[u].email for u in people_in(message) if u in people]
    thread = str(message.get("thread_ts") or ts)
    author = people.get(str(message.get("user") or ""))
    author_team = (author.team if author else None) or message.get("user_team") or team
    text = str(message.get("text") or "")
    edited = (message.get("edited") or {}).get("ts")
    data = {
        "kind": "slack_message",
        "source": "slack",
        "channel": channel,
        "ts": ts,
        "subject": _subject(text),
        "text": text,
        "sent_at": ts_time(ts).isoformat().replace("+00:00", "Z"),
        "direction": "out" if author_team == team else "in",
        "thread_id": f"slack:{team}:{channel}:{thread}",
        "message_id": f"slack:{team}:{channel}:{ts}",
        "user": message.get("user"),
        "author_name": author.name if author else "",
        "author_email": author.email if author else None,
        "people_emails": list(dict.fromkeys(e for e in emails if e)),
        "reply": thread != ts,
    }
    changed = ts_time(str(edited)) if edited else ts_time(ts)
    return RemoteRecord(
        id=f"{channel}:{ts}", data=data, version=str(edited or ts), modified_at=changed
    )


@dataclass
class ChannelStep:
    records: list[RemoteRecord]
    state: dict[str, Any]


class ChannelPull:
    """One channel's messages since its cursor state (see the module)."""

    def __init__(
        self,
        api: SlackApi,
        channel: str,
        team: str,
        directory: Directory,
        *,
        page_size: int,
        history_days: int,
        thread_days: int,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api = api
        self.channel = channel
        self.team = team
        self.directory = directory
        self.page_size = page_size
        self.history_days = history_days
        self.thread_days = thread_days
        self.now = now

    def _keep(self, message: dict[str, Any]) -> bool:
        if not isinstance(message, dict) or not message.get("ts"):
            return False
        if message.get("subtype") in SKIPPED_SUBTYPES or message.get("bot_id"):
            return False
        return bool(message.get("user"))

    async def _records(self, messages: list[dict[str, Any]]) -> list[RemoteRecord]:
        kept = [m for m in messages if self._keep(m)]
        await self.directory.resolve(u for m in kept for u in people_in(m))
        return [message_record(m, self.channel, self.team, self.directory.known) for m in kept]

    async def _replies(self, thread: str, after: str) -> tuple[list[RemoteRecord], str]:
        """The replies of ``thread`` newer than ``after``, and the newest reply's ts."""
        found: list[dict[str, Any]] = []
        newest = after
        async for body in self.api.pages(
            "conversations.replies",
            "messages",
            channel=self.channel,
            ts=thread,
            oldest=after,
            limit=self.page_size,
        ):
            for m in body["messages"]:
                ts = str(m.get("ts") or "")
                if ts and ts != thread and Decimal(ts) > Decimal(after):
                    found.append(m)
                    newest = _later(newest, ts) or newest
        return await self._records(found), newest

    def _follow(self, threads: dict[str, str]) -> dict[str, str]:
        """The threads still followed: started within ``thread_days``."""
        horizon = (self.now() - timedelta(days=self.thread_days)).timestamp()
        return {t: r for t, r in threads.items() if float(Decimal(t)) >= horizon}

    async def steps(self, state: Cursor | None) -> AsyncIterator[ChannelStep]:
        state = dict(state or {})
        if "oldest" not in state:
            start = self.now() - timedelta(days=self.history_days)
            state["oldest"] = f"{start.timestamp():.6f}"
        oldest = str(state["oldest"])
        threads: dict[str, str] = self._follow(dict(state.get("threads") or {}))
        top: str | None = state.get("top")
        seen_now: set[str] = set()
        if not state.get("done_history"):
            async for body in self.api.pages(
                "conversations.history",
                "messages",
                channel=self.channel,
                oldest=oldest,
                limit=self.page_size,
                cursor=state.get("page"),
            ):
                messages = [m for m in body["messages"] if isinstance(m, dict)]
                records = await self._records(messages)
                for m in messages:
                    ts = str(m.get("ts") or "")
                    if not ts:
                        continue
                    top = _later(top, ts)
                    if m.get("reply_count") and str(m.get("thread_ts") or "") == ts:
                        seen_now.add(ts)
                        try:
                            reply_records, newest = await self._replies(ts, threads.get(ts, ts))
                        except PermanentError:
                            continue  # thread_not_found: deleted since the listing
                        records.extend(reply_records)
                        threads[ts] = newest
                page = (body.get("response_metadata") or {}).get("next_cursor") or None
                # a copy: the engine may store this page's cursor after the next is read
                held = {"oldest": oldest, "threads": dict(threads), "top": top}
                if page:
                    yield ChannelStep(records, {**held, "page": page})
                else:
                    yield ChannelStep(records, {**held, "done_history": True})
        # replies newer than the last read, in older threads still followed
        for thread in sorted(self._follow(threads)):
            if thread in seen_now:
                continue
            try:
                records, newest = await self._replies(thread, threads[thread])
            except PermanentError:
                threads.pop(thread)  # thread_not_found: its first message was deleted
                continue
            threads[thread] = newest
            if records:
                yield ChannelStep(
                    records,
                    {"oldest": oldest, "threads": dict(threads), "top": top, "done_history": True},
                )
        yield ChannelStep(
            [], {"oldest": _later(oldest, top) or oldest, "threads": self._follow(threads)}
        )
