"""Reading a mailbox: a window of recent mail first, then its history.

A mailbox's position (in the stream's cursor) is one of::

    {"window": {"history": "812", "after": 1714000000, "page": "token" | null}}
    {"history": "950"}                       # settled: changes after history id 950
    {"history": "950", "page": "token"}      # inside a history listing

The first sync notes the mailbox's current history id, then lists the messages of the last
``window_days`` (``after:`` plus the connection's ``query``; without the read scope, Gmail's
metadata scope forbids queries, so the listing runs newest first until it passes the
window) and reads them in batches of ``batch_size`` (``format=metadata`` by default). It
then goes on from the noted history id, so mail that arrived meanwhile is not missed.
Later pulls list ``users.history`` from the saved id: added messages are read, deleted
ones reported. A history id Gmail no longer knows (404) starts a new window sync; the
messages keep their ids, so nothing is created twice. Messages with an excluded label
(spam, trash, drafts by default) are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from connectors.gmail.client import GmailApi, GoogleError
from connectors.gmail.messages import read_message
from hub.connector import RemoteRecord
from hub.mail import MailMessage

__all__ = ["MailboxPull", "Reading", "Step"]


@dataclass(frozen=True)
class Reading:
    """What a stream reads of a mailbox."""

    headers: list[str]
    body_limit: int | None
    """Bytes of text body to keep (``format=full``), or None for ``format=metadata``."""
    label: str | None = None
    """Only messages with this label (``SENT``: the mailbox's own)."""
    deletes: bool = True


@dataclass
class Step:
    """One page of a mailbox's pull: records, deleted message ids, the position after it."""

    records: list[RemoteRecord]
    deleted: list[str]
    state: dict[str, Any]


class MailboxPull:
    """Pulls one mailbox (``user``: ``me`` or an address) for one stream."""

    def __init__(
        self,
        api: GmailApi,
        user: str,
        reading: Reading,
        records: Callable[[list[MailMessage]], list[RemoteRecord]],
        *,
        window_days: int,
        query: str,
        exclude: frozenset[str],
        may_query: bool,
        page_size: int,
        batch_size: int,
    ) -> None:
        self.api = api
        self.user = user
        self.reading = reading
        self.records = records
        self.window_days = window_days
        self.query = query
        self.exclude = exclude
        self.may_query = may_query
        self.page_size = page_size
        self.batch_size = batch_size

    async def steps(self, state: dict[str, Any] | None) -> AsyncIterator[Step]:
        state = state if isinstance(state, dict) else {}
        if isinstance(state.get("window"), dict) or not _history_id(state.get("history")):
            async for step in self._window(state.get("window") or {}):
                yield step
            return
        async for step in self._history(state):
            yield step

    # -- the window ---------------------------------------------------------------------

    async def _window(self, resume: dict[str, Any]) -> AsyncIterator[Step]:
        gmail = await self.api.service("gmail")
        history = _history_id(resume.get("history"))
        after = resume.get("after")
        if history is None or not isinstance(after, int):
            profile = await self.api.execute(
                gmail.users().getProfile(userId=self.user), "users.getProfile"
            )
            history = str(profile["historyId"])
            after = int(time.time()) - self.window_days * 86_400
        token = resume.get("page") if isinstance(resume.get("page"), str) else None
        ahead: asyncio.Task[dict[str, Any]] | None = asyncio.ensure_future(self._list(token, after))
        try:
            while ahead is not None:
                listing = await ahead
                ahead = None
                token = listing.get("nextPageToken")
                ids = [m["id"] for m in listing.get("messages") or [] if not self._skip(m)]
                if token:
                    ahead = asyncio.ensure_future(self._list(token, after))
                messages = await self._read(ids)
                kept = [m for m in messages if m.sent_at.timestamp() >= after]
                passed = len(kept) < len(messages)  # only without a query: newest first
                if passed and ahead is not None:
                    ahead.cancel()
                    ahead, token = None, None
                window = {"history": history, "after": after, "page": token}
                state = {"window": window} if token else {"history": history}
                yield Step(self.records(kept), [], state)
        finally:
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(BaseException):
                    await ahead
        async for step in self._history({"history": history}, fresh=True):
            yield step

    async def _list(self, token: str | None, after: int) -> dict[str, Any]:
        gmail = await self.api.service("gmail")
        params: dict[str, Any] = {"userId": self.user, "maxResults": self.page_size}
        if token:
            params["pageToken"] = token
        if self.may_query:
            terms = [f"after:{after}", self.query]
            if self.reading.label == "SENT":
                terms.append("in:sent")
            params["q"] = " ".join(t for t in terms if t)
        elif self.reading.label:
            params["labelIds"] = [self.reading.label]
        try:
            return dict(await self.api.execute(gmail.users().messages().list(**params), "list"))
        except GoogleError as exc:
            if exc.status == 400 and token:
                # the page token is no longer valid (a resumed sync): list from the start
                return await self._list(None, after)
            raise

    # -- history --------------------------------------------------------------------------

    async def _history(self, state: dict[str, Any], fresh: bool = False) -> AsyncIterator[Step]:
        """Changes after ``state["history"]``; ``fresh``: an id just read from the profile."""
        gmail = await self.api.service("gmail")
        start = str(state["history"])
        token = state.get("page") if isinstance(state.get("page"), str) else None
        types = ["messageAdded", "messageDeleted"] if self.reading.deletes else ["messageAdded"]
        while True:
            params: dict[str, Any] = {
                "userId": self.user,
                "startHistoryId": start,
                "historyTypes": types,
                "maxResults": 500,
            }
            if token:
                params["pageToken"] = token
            if self.reading.label:
                params["labelId"] = self.reading.label
            try:
                answer = await self.api.execute(
                    gmail.users().history().list(**params), "users.history.list"
                )
            except GoogleError as exc:
                if exc.status != 404 or fresh:
                    raise
                # Gmail no longer knows this history id: a new window sync, no duplicates
                async for step in self._window({}):
                    yield step
                return
            added: dict[str, None] = {}
            deleted: dict[str, None] = {}
            for record in answer.get("history") or []:
                for item in record.get("messagesAdded") or []:
                    message = item.get("message") or {}
                    if message.get("id") and not self._skip(message):
                        added[message["id"]] = None
                        deleted.pop(message["id"], None)
                for item in record.get("messagesDeleted") or []:
                    message_id = (item.get("message") or {}).get("id")
                    if message_id:
                        deleted[message_id] = None
                        added.pop(message_id, None)
            token = answer.get("nextPageToken")
            messages = await self._read(list(added))
            after = {"history": start, "page": token} if token else {"history": answer["historyId"]}
            if messages or deleted or after != {"history": start}:
                deletes = list(deleted) if self.reading.deletes else []
                yield Step(self.records(messages), deletes, after)
            if not token:
                return

    # -- reading messages -----------------------------------------------------------------

    def _skip(self, message: dict[str, Any]) -> bool:
        labels = set(message.get("labelIds") or [])
        if self.reading.label and labels and self.reading.label not in labels:
            return True
        return bool(labels & self.exclude)

    async def _read(self, ids: list[str]) -> list[MailMessage]:
        if not ids:
            return []
        gmail = await self.api.service("gmail")
        fmt = "metadata" if self.reading.body_limit is None else "full"
        get = gmail.users().messages().get
        calls = {
            i: get(userId=self.user, id=i, format=fmt, metadataHeaders=self.reading.headers)
            if fmt == "metadata"
            else get(userId=self.user, id=i, format=fmt)
            for i in ids
        }
        found = await self.api.batch(gmail, calls, "users.messages.get", self.batch_size)
        messages = []
        for message_id in ids:
            message = found.get(message_id)
            if message is None or self._skip(message):
                continue  # deleted since it was listed, or excluded
            messages.append(read_message(message, self.reading.body_limit))
        return messages


def _history_id(value: Any) -> str | None:
    text = str(value) if isinstance(value, int | str) else ""
    return text if text.isdigit() and int(text) > 0 else None
