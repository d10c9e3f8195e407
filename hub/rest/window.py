"""The incremental boundary: which records near the newest change were already pulled.

APIs filter ``updated_since`` inclusively (and a look-back ``overlap`` asks again on
purpose), so the records at the boundary come back on the next pull. The cursor keeps
them, ``{id: key}``, where the key is the record's version (or a hash of its content), and
the next pull skips a record whose key has not changed: a quiet remote pulls nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

__all__ = ["Window", "content_key", "parse_iso"]


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


@dataclass
class Window:
    """Records seen within ``overlap`` (plus one step of the request's time precision) of
    the newest change, at most ``cap`` of them."""

    overlap: timedelta
    step: timedelta
    cap: int
    high: datetime | None = None
    seen: dict[str, tuple[datetime, str]] = field(default_factory=dict)

    def admits(self, changed: datetime) -> bool:
        """Whether a record changed at ``changed`` falls in the window (so needs a key)."""
        return self.high is None or changed >= self.high - self.overlap - self.step

    def observe(self, record_id: str, changed: datetime | None, key: str) -> None:
        if changed is None:
            return
        if self.high is None or changed > self.high:
            self.high = changed
        if changed >= self.high - self.overlap - self.step:
            self.seen[record_id] = (changed, key)
            if len(self.seen) > 2 * self.cap:
                self._trim()

    def _trim(self) -> None:
        assert self.high is not None
        floor = self.high - self.overlap - self.step
        kept = sorted(((c, i, k) for i, (c, k) in self.seen.items() if c >= floor), reverse=True)[
            : self.cap
        ]
        self.seen = {i: (c, k) for c, i, k in kept}

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
