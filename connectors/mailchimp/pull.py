"""Pulling an audience's members: a full listing first, then changes by ``last_changed``.

Cursor (JSON)::

    {"since": "2024-05-01T12:25:00+00:00" | null,   # null: list everything
     "recent": {member id: version},                # seen at or after ``since``
     "resume": {...}}                               # only inside a run: where to go on

A full listing pages by ``offset`` (1,000 a call, a few calls in flight), reports cleaned
members and then every archived member (``status=archived``) as deletions, and ends with a
page that is a full scan only when the audience's size did not change under it, so a member
skipped by shifting offsets is never taken for deleted. An incremental pull asks for
members changed since ``since`` (sorted by ``last_changed``, paging by moving ``since``
forward), archived ones included. ``since`` stays an overlap window (default 5 minutes)
behind the newest change seen, so a change that becomes visible late is still found; the
members already seen in that window are skipped by version, so an unchanged audience
pulls nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from connectors.mailchimp.client import MailchimpApi
from connectors.mailchimp.members import (
    EXCLUDE_FIELDS,
    is_gone,
    member_version,
    parse_time,
    to_record,
)
from hub.connector import Cursor, Page, RemoteRecord

RECENT_MAX = 20_000
"""Most members kept in the cursor's window; beyond, the window narrows to the newest."""
PREFETCH = 4
"""Listing pages requested ahead of the one being handed to the engine."""
PHASES = (None, "archived")
"""Listing passes: every visible member, then archived ones (only shown when asked for)."""
_SECOND = timedelta(seconds=1)


@dataclass
class _Window:
    """The newest ``last_changed`` seen and the members seen within ``overlap`` of it."""

    overlap: timedelta
    high: datetime | None = None
    seen: dict[str, tuple[datetime, str]] = field(default_factory=dict)

    def observe(self, member_id: str, changed: datetime | None, version: str) -> None:
        if changed is None:
            return
        if self.high is None or changed > self.high:
            self.high = changed
        if changed >= self.high - self.overlap:
            self.seen[member_id] = (changed, version)
            if len(self.seen) > 4 * RECENT_MAX:
                self._prune(self.high - self.overlap)

    def _prune(self, floor: datetime) -> None:
        self.seen = {k: v for k, v in self.seen.items() if v[0] >= floor}

    def settle(self, since: datetime | None, recent: dict[str, str]) -> Cursor:
        """The cursor after a complete pull that started from ``since``/``recent``."""
        for member_id, version in recent.items():
            changed = parse_time(version.partition("#")[0])
            if changed is not None and member_id not in self.seen:
                self.observe(member_id, changed, version)
        floor = since
        if self.high is not None:
            floor = max(floor, self.high - self.overlap) if floor else self.high - self.overlap
        if floor is None:
            return {"since": None, "recent": {}}
        kept = sorted(((c, k, v) for k, (c, v) in self.seen.items() if c >= floor), reverse=True)
        if len(kept) > RECENT_MAX:
            kept = kept[:RECENT_MAX]
            floor = max(floor, kept[-1][0])
        return {
            "since": floor.isoformat(timespec="seconds"),
            "recent": {k: v for c, k, v in kept if c >= floor},
        }


@dataclass
class _Start:
    since: datetime | None
    recent: dict[str, str]
    resume: dict[str, Any] | None


def _read_cursor(cursor: Cursor | None) -> _Start:
    """The saved position; anything unreadable starts over with a full listing."""
    if not isinstance(cursor, dict):
        return _Start(None, {}, None)
    since = parse_time(cursor.get("since"))
    recent = cursor.get("recent")
    if not isinstance(recent, dict) or not all(isinstance(v, str) for v in recent.values()):
        recent = {}
    resume = cursor.get("resume")
    return _Start(since, recent, resume if isinstance(resume, dict) else None)


def _int(value: Any, default: int = 0) -> int:
    return (
        value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default
    )


class MemberPull:
    """One pull of the members stream; ``pages(cursor)`` yields the engine's pages."""

    def __init__(
        self,
        api: MailchimpApi,
        *,
        page_size: int = 1000,
        overlap: timedelta = timedelta(minutes=5),
    ) -> None:
        self.api = api
        self.page_size = page_size
        self.overlap = overlap

    def _params(self, status: str | None, offset: int, since: datetime | None) -> dict[str, Any]:
        params: dict[str, Any] = {
            "count": self.page_size,
            "offset": offset,
            "exclude_fields": EXCLUDE_FIELDS,
        }
        if status:
            params["status"] = status
        if since is not None:
            params["since_last_changed"] = since.isoformat(timespec="seconds")
            params["sort_field"] = "last_changed"
            params["sort_dir"] = "ASC"
        return params

    def _split(
        self,
        members: list[dict[str, Any]],
        window: _Window,
        skip: dict[str, str],
        archived: bool,
    ) -> tuple[list[RemoteRecord], list[str]]:
        records: list[RemoteRecord] = []
        deleted: list[str] = []
        for member in members:
            member_id = member.get("id")
            if not isinstance(member_id, str) or not member_id:
                continue
            version = member_version(member)
            window.observe(member_id, parse_time(member.get("last_changed")), version)
            if skip.get(member_id) == version:
                continue
            skip[member_id] = version
            if archived or is_gone(member):
                deleted.append(member_id)
                continue
            records.append(to_record(member, version))
        return records, deleted

    async def pages(self, cursor: Cursor | None) -> AsyncIterator[Page]:
        start = _read_cursor(cursor)
        if start.since is None:
            async for page in self._full(start):
                yield page
        else:
            async for page in self._changes(start, cursor):
                yield page

    # -- a complete listing ------------------------------------------------------------

    async def _full(self, start: _Start) -> AsyncIterator[Page]:
        resume = start.resume or {}
        full_scan = not resume
        window = _Window(self.overlap, parse_time(resume.get("high")))
        first_phase = min(_int(resume.get("phase")), len(PHASES) - 1)
        seen: dict[str, str] = {}
        totals: set[int] = set()
        listed = 0
        for phase in range(first_phase, len(PHASES)):
            status = PHASES[phase]
            offset = _int(resume.get("offset")) if phase == first_phase else 0
            async for body, end in self._listing(status, offset):
                members = body["members"]
                if status is None:
                    totals.add(_int(body.get("total_items"), -1))
                    listed += len(members)
                records, deleted = self._split(members, window, seen, status == "archived")
                if records or deleted:
                    position: dict[str, Any] = {"phase": phase, "offset": end}
                    if window.high is not None:
                        position["high"] = window.high.isoformat(timespec="seconds")
                    yield Page(
                        records=records,
                        deleted=deleted,
                        cursor={"since": None, "recent": {}, "resume": position},
                        full_scan=full_scan,
                    )
        # The audience changed size under the listing: some member may have been skipped.
        steady = len(totals) == 1 and totals == {listed}
        yield Page(cursor=window.settle(None, {}), full_scan=full_scan and steady)

    async def _listing(
        self, status: str | None, offset: int
    ) -> AsyncIterator[tuple[dict[str, Any], int]]:
        """Pages from ``offset`` on, a few requested ahead; yields (body, next offset)."""
        size = self.page_size
        queue: deque[tuple[int, asyncio.Task[dict[str, Any]]]] = deque()
        next_offset = offset

        def ask() -> None:
            nonlocal next_offset
            task = asyncio.ensure_future(
                self.api.list_members(self._params(status, next_offset, None))
            )
            queue.append((next_offset, task))
            next_offset += size

        try:
            ask()
            while queue:
                at, task = queue.popleft()
                body = await task
                members = body["members"]
                if len(members) == size:
                    total = _int(body.get("total_items"), 0)
                    while len(queue) < PREFETCH and next_offset < total:
                        ask()
                yield body, at + len(members)
                if len(members) < size:
                    break
        finally:
            for _, task in queue:
                task.cancel()
            for _, task in queue:
                with contextlib.suppress(BaseException):
                    await task

    # -- changes since the cursor --------------------------------------------------------

    async def _changes(self, start: _Start, cursor: Cursor | None) -> AsyncIterator[Page]:
        assert start.since is not None
        resume = start.resume or {}
        window = _Window(self.overlap, parse_time(resume.get("high")))
        skip = dict(start.recent)
        first_phase = min(_int(resume.get("phase")), len(PHASES) - 1)
        base = {"since": start.since.isoformat(timespec="seconds"), "recent": start.recent}
        changed = False
        for phase in range(first_phase, len(PHASES)):
            status = PHASES[phase]
            since = start.since
            offset = 0
            if phase == first_phase and resume:
                since = parse_time(resume.get("since")) or start.since
                offset = _int(resume.get("offset"))
            while True:
                body = await self.api.list_members(self._params(status, offset, since))
                members = body["members"]
                records, deleted = self._split(members, window, skip, status == "archived")
                if len(members) < self.page_size:
                    more = False
                else:
                    more = True
                    newest = max(
                        (t for m in members if (t := parse_time(m.get("last_changed")))),
                        default=None,
                    )
                    # Move ``since`` forward (a second short, whatever the bound's
                    # inclusiveness); only a page all in one second pages by offset.
                    if newest is not None and newest - _SECOND > since:
                        since, offset = newest - _SECOND, 0
                    else:
                        offset += len(members)
                if records or deleted:
                    changed = True
                    position: dict[str, Any] = {"phase": phase + 1}
                    if more:
                        position = {
                            "phase": phase,
                            "since": since.isoformat(timespec="seconds"),
                            "offset": offset,
                        }
                    if window.high is not None:
                        position["high"] = window.high.isoformat(timespec="seconds")
                    yield Page(
                        records=records, deleted=deleted, cursor={**base, "resume": position}
                    )
                if not more:
                    break
        settled = window.settle(start.since, start.recent)
        if changed or settled != {k: v for k, v in (cursor or {}).items() if k != "resume"}:
            yield Page(cursor=settled)
