"""Pulling a declared stream: pages, the incremental boundary, deletions, resuming.

Cursor (JSON)::

    {"since": "2024-05-01T12:00:00+00:00" | null,   # ask for changes at or after this
     "seen": {id: key},                              # already pulled at the boundary
     "full_at": "..." | null,                        # the last complete listing (full_scan)
     "next": {...},                                  # incremental.resume = "next_page"
     "resume": {...}}                                # only inside a pull: where to go on

The first pull lists everything; later ones send ``since`` as declared (query parameter,
body key or ``If-Modified-Since``) and skip what the boundary says was seen. ``since``
stays ``overlap`` behind the newest change. Intermediate pages keep the pull's own start
and the next request, so a pull interrupted by a crash resumes where it was; only the last
page moves ``since`` forward. A change feed (``resume = "next_page"``) also keeps the request
its last page names (``next``), and later pulls start with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from hub.connector import Cursor, Page
from hub.errors import TransientError
from hub.http import RetryingClient, send_with_retry
from hub.http.ratelimit import limiter_for
from hub.rest.jsonpath import JsonPath, Unlisted
from hub.rest.model import EndpointDeletes, FullScanDeletes
from hub.rest.paginators import PageAnswer, PageRequest
from hub.rest.stream import CompiledStream
from hub.rest.times import parser
from hub.rest.window import Window, parse_iso

__all__ = ["Reader", "read_body"]


def _said(response: httpx.Response) -> str:
    """The request an answer is to, as messages name it: ``GET /api/contacts?page=3``."""
    return f"{response.request.method} {response.request.url.raw_path.decode('ascii')}"


def read_body(response: httpx.Response, connection: str) -> Any:
    """The JSON body of a successful answer; an empty one reads as ``None``."""
    if not response.content:
        return None
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise TransientError(
            f"HTTP {response.status_code} answer is not JSON",
            connection=connection,
            request=f"{response.request.method} {response.request.url.path}",
        ) from None


@dataclass
class _Start:
    since: datetime | None
    seen: dict[str, str]
    full_at: datetime | None
    resume: dict[str, Any] | None
    next: PageRequest | None = None


def _start(cursor: Cursor | None) -> _Start:
    """The saved position; anything unreadable starts over with a full listing."""
    if not isinstance(cursor, dict):
        return _Start(None, {}, None, None)
    seen = cursor.get("seen")
    if not isinstance(seen, dict) or not all(isinstance(v, str) for v in seen.values()):
        seen = {}
    resume = cursor.get("resume")
    return _Start(
        parse_iso(cursor.get("since")),
        seen,
        parse_iso(cursor.get("full_at")),
        resume if isinstance(resume, dict) else None,
        PageRequest.from_json(cursor.get("next")),
    )


class Reader:
    """One pull of one stream; ``pages(cursor)`` yields the engine's pages."""

    def __init__(self, http: RetryingClient, stream: CompiledStream) -> None:
        self.http = http
        self.s = stream
        spec = stream.spec
        inc = spec.incremental
        self.window = Window(
            overlap=timedelta(seconds=inc.overlap if inc else 0),
            step=stream.since_step,
            cap=inc.window_max if inc else 10_000,
        )
        self.deletes = spec.deletes
        self.tracked = inc is not None
        self.feed = inc is not None and inc.resume == "next_page"
        self.following: PageRequest | None = None
        limit, key = spec.rate_limit, spec.limit_key or stream.name
        self.limiter = limiter_for(f"{http.connection}:{key}", limit) if limit else None

    def _full_due(self, start: _Start, now: datetime) -> bool:
        if self.feed and start.next is not None:
            return False
        if start.since is None or self.s.spec.incremental is None:
            return True
        if isinstance(self.deletes, FullScanDeletes):
            every = timedelta(hours=self.deletes.every_hours)
            return start.full_at is None or now - start.full_at >= every
        return False

    async def pages(self, cursor: Cursor | None) -> AsyncIterator[Page]:
        start = _start(cursor)
        now = datetime.now(UTC)
        resume = start.resume or {}
        full = bool(resume.get("full")) if resume else self._full_due(start, now)
        started = parse_iso(resume.get("started")) or now
        self.window.restore(resume.get("window"))
        since = None if full else start.since
        self.following = None if full else start.next
        scan = full and isinstance(self.deletes, FullScanDeletes)
        phase = resume.get("phase", "records")
        request = PageRequest.from_json(resume.get("request"))
        if phase == "records":
            first = (
                request
                or self._resumed(start, full)
                or self._first(self.s.path, self.s.paginator, since)
            )
            endpoint = isinstance(self.deletes, EndpointDeletes) and since is not None
            async for page, following in self._listing(first, start, since, endpoint):
                page.full_scan = scan
                if following is not None:
                    page.cursor = self._midway(start, full, started, "records", following)
                elif endpoint:
                    nxt = self._endpoint_first(since)
                    page.cursor = self._midway(start, full, started, "deleted", nxt)
                else:
                    page.cursor = self._final(start, full, started)
                yield page
            if not (isinstance(self.deletes, EndpointDeletes) and since is not None):
                return
            request = None
        async for page, following in self._deleted(request or self._endpoint_first(since), start):
            page.cursor = (
                self._midway(start, full, started, "deleted", following)
                if following is not None
                else self._final(start, full, started)
            )
            yield page

    def _resumed(self, start: _Start, full: bool) -> PageRequest | None:
        """Where the feed said to go on, for a pull that is not a complete listing."""
        return start.next if self.feed and not full else None

    def _first(self, path: str, paginator: Any, since: datetime | None) -> PageRequest:
        spec = self.s.spec
        request = PageRequest(spec.method, path, dict(self.s.params), spec.body)
        inc = spec.incremental
        if since is not None and inc is not None and self.s.format_since is not None:
            value = self.s.format_since(since)
            if inc.send == "query":
                assert inc.param is not None
                request = request.with_params(**{inc.param: value})
            elif inc.send == "body":
                assert inc.param is not None
                body = dict(request.json or {})
                JsonPath(inc.param).set(body, value)
                request = replace(request, json=body)
            else:
                # "changed later than" at whole seconds: ask from the second before the floor
                value = self.s.format_since(since - timedelta(seconds=1))
                request = replace(request, headers={"If-Modified-Since": str(value)})
        return paginator.start(request)

    def _endpoint_first(self, since: datetime | None) -> PageRequest:
        deletes = self.deletes
        assert isinstance(deletes, EndpointDeletes)
        path = self.s.render(deletes.path)
        inc = self.s.spec.incremental
        request = PageRequest("GET", path)
        param = deletes.param or (inc.param if inc else None)
        if since is not None and param and self.s.format_since is not None:
            request = request.with_params(**{param: self.s.format_since(since)})
        return deletes.paginator.start(request)

    async def _send(self, request: PageRequest) -> tuple[httpx.Response, Any]:
        if self.limiter is None:
            return await self._sent(request)
        slot = await self.limiter.acquire()
        try:
            return await self._sent(request)
        finally:
            slot.release()

    async def _sent(self, request: PageRequest) -> tuple[httpx.Response, Any]:
        http = self.http
        response = await send_with_retry(
            http.client,
            request.method,
            request.url,
            connection=http.connection,
            classifier=self.s.classifiers["pull"],
            policy=http.policy,
            sleep=http.sleep,
            idempotent=True,
            params=request.params or None,
            json=request.json,
            headers=request.headers or None,
        )
        if response.status_code == 304:  # If-Modified-Since: nothing changed
            return response, None
        return response, read_body(response, self.http.connection)

    async def _listing(
        self, request: PageRequest, start: _Start, since: datetime | None, more: bool
    ) -> AsyncIterator[tuple[Page, PageRequest | None]]:
        paginator = self.s.paginator
        while True:
            response, body = await self._send(request)
            raw = self._records(self.s.records, response, body)
            page = Page()
            self._take(raw, page, start.seen, since is not None)
            if page.problems:
                page.problems = [f"{_said(response)}: {p}" for p in page.problems]
            following = None
            if response.status_code != 304:
                answer = PageAnswer(response, body, len(raw))
                following = paginator.advance(request, answer)
                if self.feed:
                    follow = getattr(paginator, "follow", None)
                    self.following = (follow(request, answer) if follow else None) or request
            yield page, following
            if following is None:
                return
            request = following

    def _records(self, path: JsonPath, response: httpx.Response, body: Any) -> list[Any]:
        """The records of an answer (none for an empty or 304 one); an answer without them
        where the declaration says fails the pull, naming what it holds instead."""
        if body is None:
            return []
        try:
            return path.listed(body)
        except Unlisted as exc:
            raise TransientError(
                f"HTTP {response.status_code} answer: {exc}",
                connection=self.http.connection,
                request=_said(response),
            ) from None

    def _take(self, raws: list[Any], page: Page, seen: dict[str, str], incremental: bool) -> None:
        """The records and tombstones of one answer into ``page``; on an incremental pull,
        records the boundary says were pulled before are skipped."""
        window = self.window if self.tracked else None
        self.s.lister()(raws, page, window, seen if incremental else None)

    async def _deleted(
        self, request: PageRequest, start: _Start
    ) -> AsyncIterator[tuple[Page, PageRequest | None]]:
        deletes = self.deletes
        assert isinstance(deletes, EndpointDeletes)
        records, ident = JsonPath(deletes.records), JsonPath(deletes.id)
        when = JsonPath(deletes.time) if deletes.time else None
        read_time = parser(deletes.format)
        while True:
            response, body = await self._send(request)
            entries = self._records(records, response, body)
            page = Page()
            for n, entry in enumerate(entries, 1):
                value = entry if ident.is_root else ident.first(entry)
                if value in (None, ""):
                    page.problems.append(f"{_said(response)}: deleted record {n} has no id")
                    continue
                record_id = str(value)
                changed = read_time(when.first(entry)) if when is not None else None
                self.window.observe(record_id, changed, "deleted")
                if start.seen.get(record_id) == "deleted":
                    continue
                page.deleted.append(record_id)
            following = None
            if response.status_code != 304:
                answer = PageAnswer(response, body, len(entries))
                following = deletes.paginator.advance(request, answer)
            yield page, following
            if following is None:
                return
            request = following

    def _midway(
        self, start: _Start, full: bool, started: datetime, phase: str, following: PageRequest
    ) -> Cursor:
        return {
            "since": start.since.isoformat() if start.since else None,
            "seen": start.seen,
            "full_at": start.full_at.isoformat() if start.full_at else None,
            **self._next_json(),
            "resume": {
                "phase": phase,
                "full": full,
                "started": started.isoformat(),
                "request": following.to_json(),
                "window": self.window.to_json(),
            },
        }

    def _final(self, start: _Start, full: bool, started: datetime) -> Cursor:
        full_at = started if full else start.full_at
        if self.s.spec.incremental is None:
            return {"since": None, "seen": {}, "full_at": started.isoformat()}
        previous = {} if full else start.seen
        since, seen = self.window.settle(None if full else start.since, previous, self._truncate)
        return {
            "since": since.isoformat() if since else None,
            "seen": seen,
            "full_at": full_at.isoformat() if full_at else None,
            **self._next_json(),
        }

    def _next_json(self) -> dict[str, Any]:
        return {"next": self.following.to_json()} if self.feed and self.following else {}

    def _truncate(self, moment: datetime) -> datetime:
        """``moment`` cut down to what the request's time format can say."""
        step = self.s.since_step
        if step >= timedelta(seconds=1):
            return moment.replace(microsecond=0)
        if step >= timedelta(milliseconds=1):
            return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        return moment
