"""The records a generated sandbox holds, stream by stream, and how they change.

A ``Table`` keeps records in the remote's own shape, with the declared id, version and
modification time fields maintained as the remote would. Deleting keeps what the declared
deletes need: a tombstone in the listing, a status value, or an entry in the deleted-records
log. Creates remember their idempotency keys.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hub.rest.jsonpath import JsonPath
from hub.rest.model import EndpointDeletes, StatusDeletes, StreamSpec, TombstoneDeletes
from hub.rest.times import formatter, parser

__all__ = ["Answer", "Table"]


@dataclass
class Answer:
    """A stored answer, replayed for a repeated idempotency key."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class Table:
    """One stream's records. Thread-safe: tests edit while the server thread serves."""

    def __init__(
        self,
        name: str,
        spec: StreamSpec,
        clock: Callable[[], datetime],
        defaults: dict[str, Any] | None = None,
        moved: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.defaults = defaults or {}
        self.moved = {JsonPath(k): JsonPath(v) for k, v in (moved or {}).items()}
        self.spec = spec
        self.clock = clock
        self.key = JsonPath(spec.primary_key)
        self.version = JsonPath(spec.version.field) if spec.version and spec.version.field else None
        modified = spec.modified_at
        inc = spec.incremental
        field_path = (inc.cursor_field if inc and inc.cursor_field else None) or (
            modified.field if modified else None
        )
        self.changed_at = JsonPath(field_path) if field_path else None
        fmt = modified.format if modified else "iso"
        tz = modified.timezone if modified else "UTC"
        self.write_time = formatter(fmt, tz)
        self.read_time = parser(fmt, tz)
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.rows: dict[str, dict[str, Any]] = {}
            self.times: dict[str, datetime] = {}
            self.versions: dict[str, int] = {}
            self.seqs: dict[str, int] = {}
            """The change number of each record's last change (change feeds' positions)."""
            self.gone: dict[str, datetime] = {}
            """Deleted ids and when (listed by tombstone kinds and the deleted endpoint)."""
            self.idempotency: dict[str, Answer] = {}
            self.ids = itertools.count(1)
            self.changes = 0
            self._listed: tuple[Any, int, list[str]] | None = None

    # -- changes -------------------------------------------------------------------------

    def _stamp(self, record_id: str, when: datetime | None = None) -> None:
        self.changes += 1
        moment = when or self.clock()
        record = self.rows[record_id]
        self.times[record_id] = moment
        self.versions[record_id] = self.versions.get(record_id, 0) + 1
        self.seqs[record_id] = self.changes
        if self.changed_at is not None:
            self.changed_at.set(record, self.write_time(moment))
        if self.version is not None:
            self.version.set(record, self.versions[record_id])

    def add(self, data: dict[str, Any], when: datetime | None = None) -> dict[str, Any]:
        """A new record (the id is the remote's); returns it as stored."""
        with self.lock:
            record = copy.deepcopy(data)
            for source, target in self.moved.items():
                value = _take(record, source)
                if value is not None and target.first(record) is None:
                    target.set(record, value)
            for key, value in self.defaults.items():
                record.setdefault(key, copy.deepcopy(value))
            record_id = str(next(self.ids))
            self.key.set(record, int(record_id))
            self.rows[record_id] = record
            self._stamp(record_id, when)
            return copy.deepcopy(record)

    def update(
        self, record_id: str, changes: dict[str, Any], *, replace: bool = False
    ) -> dict[str, Any]:
        with self.lock:
            record = self.rows[record_id]
            if replace:
                record.clear()
            changes = copy.deepcopy(changes)
            for source in self.moved:
                _take(changes, source)
            _merge_into(record, changes)
            self.key.set(record, int(record_id))  # the id is the remote's, not the client's
            self._stamp(record_id)
            return copy.deepcopy(record)

    def remove(self, record_id: str) -> None:
        """Delete as the declared API shows it (tombstone, status, log, or just gone)."""
        with self.lock:
            deletes = self.spec.deletes
            now = self.clock()
            self.gone[record_id] = now
            if isinstance(deletes, TombstoneDeletes | StatusDeletes):
                value: Any = deletes.values[0] if deletes.values else self.write_time(now)
                JsonPath(deletes.field).set(self.rows[record_id], value)
                self._stamp(record_id, now)
                return
            self.changes += 1
            del self.rows[record_id]
            self.times.pop(record_id, None)
            self.versions.pop(record_id, None)
            self.seqs.pop(record_id, None)

    # -- reads ---------------------------------------------------------------------------

    def live(self, record_id: str) -> dict[str, Any] | None:
        with self.lock:
            if record_id in self.gone:
                return None
            found = self.rows.get(record_id)
            return copy.deepcopy(found) if found is not None else None

    def current_version(self, record_id: str) -> int:
        return self.versions[record_id]

    def listing(self, since: datetime | None) -> list[str]:
        """Ids of live records in id order; with ``since``, of every record changed at or
        after it (tombstones included), oldest change first. Repeated asks for the same
        listing (the pages of one pull) are answered from a cache."""
        with self.lock:
            cached = self._listed
            if cached is not None and cached[0] == since and cached[1] == self.changes:
                return cached[2]
            if since is None:
                ids = [i for i in self.rows if i not in self.gone]
            else:
                changed = sorted((t, int(i)) for i, t in self.times.items() if t >= since)
                ids = [str(i) for _, i in changed]
            self._listed = (since, self.changes, ids)
            return ids

    def feed(self, after: int | None, since: datetime | None) -> tuple[list[str], int]:
        """A change feed: ids changed after change number ``after`` (else changed at or
        after ``since``, else every live record), in the order of their last change; and
        the newest change number, where the feed goes on from once these are read."""
        with self.lock:
            if after is not None:
                picked = [(n, i) for i, n in self.seqs.items() if n > after]
            elif since is not None:
                picked = [(n, i) for i, n in self.seqs.items() if self.times[i] >= since]
            else:
                picked = [(n, i) for i, n in self.seqs.items() if i not in self.gone]
            return [i for _, i in sorted(picked)], self.changes

    def copies(self, ids: list[str]) -> list[dict[str, Any]]:
        """The records of ``ids`` (copies: the server serialises them after the lock)."""
        with self.lock:
            return [copy.deepcopy(self.rows[i]) for i in ids if i in self.rows]

    def deleted_since(self, since: datetime | None) -> list[tuple[str, datetime]]:
        with self.lock:
            return sorted(
                ((i, t) for i, t in self.gone.items() if since is None or t >= since),
                key=lambda pair: (pair[1], int(pair[0])),
            )

    def find(self, path: str, value: Any) -> str | None:
        """The live record whose field ``path`` equals ``value`` (natural-key lookups)."""
        lookup = JsonPath(path)
        with self.lock:
            for record_id, record in self.rows.items():
                if record_id not in self.gone and lookup.first(record) == value:
                    return record_id
        return None

    def all(self) -> list[dict[str, Any]]:
        """Every live record, in id order."""
        return self.copies(self.listing(None))

    @property
    def logs_deletes(self) -> bool:
        return isinstance(self.spec.deletes, EndpointDeletes)


def _take(record: dict[str, Any], path: JsonPath) -> Any:
    """Remove the value at ``path`` (and a parent it leaves empty); return it."""
    value = path.first(record)
    steps = [str(s) for s in path.steps]
    parent: Any = record
    for step in steps[:-1]:
        parent = parent.get(step) if isinstance(parent, dict) else None
    if isinstance(parent, dict):
        parent.pop(steps[-1], None)
        if len(steps) > 1 and not parent:
            record.pop(steps[0], None)
    return value


def _merge_into(target: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        else:
            target[key] = value


def seeded_times(size: int, now: datetime | None = None) -> list[datetime]:
    """Modification times for ``size`` made-up records: one a second, ending a minute ago."""
    end = (now or datetime.now(UTC)).replace(microsecond=0) - timedelta(seconds=60)
    return [end - timedelta(seconds=size - i) for i in range(size)]
