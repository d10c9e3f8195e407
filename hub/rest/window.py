"""The incremental boundary: which records near the newest change were already pulled.

APIs filter ``updated_since`` inclusively (and a look-back ``overlap`` asks again on
purpose), so the records at the boundary come back on the next pull. The cursor keeps
them, ``{id: key}``, where the key is the record's version (or a hash of its content), and
the next pull skips a record whose key has not changed: a quiet remote pulls nothing.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any

import orjson

from hub.connector import Page, RemoteRecord

__all__ = ["Window", "content_key", "key_of", "parse_iso"]

_modified_at = attrgetter("modified_at")


def content_key(data: Any) -> str:
    """A short, stable digest of a record (for APIs that give no version)."""
    blob = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(blob, digest_size=8).hexdigest()


def parse_iso(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def key_of(record: RemoteRecord | None, keyed: bool) -> str:
    """What tells a pulled record from a changed one: its version, else a content hash."""
    if record is None:
        return "deleted"
    if keyed and record.version is not None:
        return record.version
    return content_key(record.data)


@dataclass
class Window:
    """Records seen within ``overlap`` (plus one step of the request's time precision) of
    the newest change, at most ``cap`` of them."""

    overlap: timedelta
    step: timedelta
    cap: int
    high: datetime | None = None
    seen: dict[str, tuple[datetime, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.span = self.overlap + self.step
        self._floor: tuple[datetime | None, datetime | None] = (None, None)  # (high, floor)
        self._limit = 2 * self.cap

    def floor(self) -> datetime | None:
        """Changes at or after it are in the window (``None``: nothing seen yet)."""
        high, floor = self._floor
        if high is not self.high:
            floor = None if self.high is None else self.high - self.span
            self._floor = (self.high, floor)
        return floor

    def admits(self, changed: datetime) -> bool:
        high = self.high
        if high is None or changed >= high:  # the common case of a listing in time order
            return True
        floor = self.floor()
        return floor is None or changed >= floor

    def add(self, record_id: str, changed: datetime, key: str) -> None:
        """Remember a record that :meth:`admits` its change time."""
        if self.high is None or changed > self.high:
            self.high = changed
        self.seen[record_id] = (changed, key)
        if len(self.seen) > self._limit:
            self._trim()

    def take(
        self,
        found: Iterable[tuple[str, RemoteRecord | None, datetime | None] | None],
        page: Page,
        seen: dict[str, str] | None,
        keyed: bool,
    ) -> None:
        """Read records (``(id, record or None for a tombstone, change time)``) into
        ``page``, remembering those in the window; with ``seen`` (an incremental pull), skip
        the ones it holds unchanged. The loop every listed record goes through.

        What the window keeps is settled once the page is read: a record admitted on the
        way but older than the page's final floor would only be trimmed away again, so the
        loop just notes the admitted ones and :meth:`keep` stores those still in reach.

        ``hub.rest.stream`` runs the same loop inline, fused with reading the records."""
        records, deleted = page.records, page.deleted
        admitted: list[tuple[str, RemoteRecord | None, datetime | None]] = []
        note = admitted.append
        high = self.high
        floor = self.floor()
        for item in found:
            if item is None:
                continue
            record_id, record, changed = item
            if changed is not None:
                # a listing in time order meets a newer change with every record
                if high is None or changed >= high:
                    if high is None or changed > high:
                        high = changed
                        floor = None
                    note(item)
                else:
                    if floor is None:
                        floor = high - self.span
                    if changed >= floor:
                        note(item)
                if seen and record_id in seen and seen[record_id] == key_of(record, keyed):
                    continue  # pulled before, unchanged since: the inclusive boundary
            if record is None:
                deleted.append(record_id)
            else:
                records.append(record)
        if admitted:
            self.keep(admitted, high, keyed)

    def keep(
        self,
        admitted: list[tuple[str, RemoteRecord | None, datetime | None]],
        high: datetime | None,
        keyed: bool,
    ) -> None:
        """Store the admitted records of a page (in listing order) that are within the
        window of its newest change ``high``; one admitted on the way but below that floor
        replaced, then lost, what the window held for its id."""
        self.high = high
        floor = self.floor()
        kept = self.seen
        for record_id, record, changed in admitted:
            if floor is None or changed >= floor:  # type: ignore[operator]
                kept[record_id] = (changed, key_of(record, keyed))  # type: ignore[assignment]
                if len(kept) > self._limit:
                    self._trim()
                    kept = self.seen
            elif kept:
                kept.pop(record_id, None)

    def keep_listed(
        self, records: list[RemoteRecord], first: int, high: datetime | None, keyed: bool
    ) -> None:
        """:meth:`keep` for a page whose records from ``first`` on were all admitted, in
        time order, each at its ``modified_at``, and nothing else was: those below the
        floor of the newest change come first, and only forget what the window held for
        their ids; the rest are stored."""
        if first >= len(records):
            return
        self.high = high
        floor = self.floor()
        start = bisect_left(records, floor, first, key=_modified_at)
        kept = self.seen
        # below the floor: replaced, then lost, what the window held for their ids
        below = records[first:start]
        if kept and below and not kept.keys().isdisjoint([record.id for record in below]):
            for record in below:
                kept.pop(record.id, None)
        for record in records[start:]:
            kept[record.id] = (record.modified_at, key_of(record, keyed))  # type: ignore[assignment]
            if len(kept) > self._limit:
                self._trim()
                kept = self.seen

    def observe(self, record_id: str, changed: datetime | None, key: str) -> None:
        if changed is not None and self.admits(changed):
            self.add(record_id, changed, key)

    def _trim(self) -> None:
        """Forget what fell out of the window; past ``cap`` within it, keep the newest."""
        floor = self.floor()
        kept = {i: v for i, v in self.seen.items() if floor is None or v[0] >= floor}
        if len(kept) > self.cap:
            newest = sorted(kept.items(), key=lambda item: item[1][0], reverse=True)
            kept = dict(newest[: self.cap])
        self.seen = kept
        # trim again only after as many new entries as are kept: linear time overall
        self._limit = max(2 * self.cap, 2 * len(kept))

    def settle(
        self, since: datetime | None, previous: dict[str, str], truncate: Any
    ) -> tuple[datetime | None, dict[str, str]]:
        """The next ``since`` (already cut to what the request can say) and the records at
        or after it, given the pull started from ``since``/``previous``."""
        floor = since
        if self.high is not None:
            candidate = truncate(self.high - self.overlap)
            floor = candidate if floor is None else max(floor, candidate)
        if floor is None:
            return None, {}
        kept = sorted(((c, i, k) for i, (c, k) in self.seen.items() if c >= floor), reverse=True)
        if len(kept) > self.cap:
            kept = kept[: self.cap]
            floor = max(floor, kept[-1][0])  # too many at the boundary: narrow it
        seen = {i: k for c, i, k in kept if c >= floor}
        if floor == since:
            seen = {**previous, **seen}
        return floor, seen

    def to_json(self) -> dict[str, Any]:
        self._trim()
        return {
            "high": self.high.isoformat() if self.high else None,
            "seen": {i: [c.isoformat(), k] for i, (c, k) in self.seen.items()},
        }

    def restore(self, value: Any) -> None:
        """Take back the state an interrupted pull kept in its cursor."""
        if not isinstance(value, dict):
            return
        self.high = parse_iso(value.get("high"))
        seen = value.get("seen")
        if isinstance(seen, dict):
            for record_id, entry in seen.items():
                if isinstance(entry, list) and len(entry) == 2:
                    changed = parse_iso(entry[0])
                    if changed is not None and isinstance(entry[1], str):
                        self.seen[str(record_id)] = (changed, entry[1])
