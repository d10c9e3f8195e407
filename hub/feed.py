"""A running account of what the hub changes, as lines for a person watching (the demo).

:class:`ChangeFeed` reads the store every half second and turns what appeared since the last
look into lines: contacts created (with their fields), updated (each field, old and new) and
deleted; writes pushed to each system, and writes given up on; webhook deliveries and form
posts processed; and each run that changed something, with its counts. It reads only what
the engine records anyway, so it sees every change, whichever run, delivery or process made
it.

Rows are found by their time stamps. A transaction stamps its rows before it commits, so
each look reaches back ``LOOKBACK`` behind the previous one (never before the start) and
skips what it printed. A creation is shown with the fields the record has when the feed
looks.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, select

from hub.store import Store, as_utc, utcnow
from hub.store.schema import change_log, entities, inbox, links, outbox, runs
from hub.store.status import OutboxStatus, RunStatus

__all__ = ["ChangeFeed"]

LOOKBACK = timedelta(seconds=10)
QUIET_COUNTS = ("records", "pages", "matched", "push_calls")
WIDEST = 60  # characters of one value; a form's whole submission is longer


@dataclass(frozen=True, order=True)
class _Line:
    at: datetime
    order: int
    text: str


def _value(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= WIDEST else text[: WIDEST - 4] + '..."'


def _label(fields: dict[str, Any] | None, entity_id: str) -> str:
    f = fields or {}
    return str(f.get("email") or f.get("name") or f.get("number") or f.get("subject") or entity_id)


class ChangeFeed:
    """Lines for what the hub changed since ``since`` (default: now)."""

    def __init__(self, store: Store, since: datetime | None = None) -> None:
        self.store = store
        self.start = self.since = since or utcnow()
        self._seen: dict[tuple[Any, ...], datetime] = {}

    async def follow(self, say: Callable[[str], None], interval: float = 0.5) -> None:
        """Print new lines with ``say`` until cancelled."""
        while True:
            for line in await self.poll():
                say(line)
            await asyncio.sleep(interval)

    async def poll(self) -> list[str]:
        """The lines for what appeared since the last call, oldest first."""
        now = utcnow()
        since = max(self.start, self.since - LOOKBACK)
        lines: list[_Line] = []
        async with self.store.connect() as db:
            for read in (self._created, self._updated, self._deleted, self._pushed):
                lines += await read(db, since)
            lines += await self._deliveries(db, since)
            lines += await self._runs(db, since)
        self.since = now
        self._seen = {k: at for k, at in self._seen.items() if at >= since - LOOKBACK}
        return [f"{line.at.astimezone():%H:%M:%S} {line.text}" for line in sorted(lines)]

    def _new(self, key: tuple[Any, ...], at: datetime) -> bool:
        if key in self._seen:
            return False
        self._seen[key] = at
        return True

    async def _created(self, db: Any, since: datetime) -> list[_Line]:
        q = select(entities).where(entities.c.created_at >= since).order_by(entities.c.id)
        lines = []
        for e in await db.execute(q):
            at = as_utc(e.created_at)
            if not self._new(("created", e.id), at):
                continue
            label = _label(e.fields, e.id)
            by = {str(p[0]) for p in e.provenance.values() if p and p[0]}
            shown = ", ".join(
                f"{k} {_value(v)}" for k, v in sorted(e.fields.items()) if str(v) != label
            )
            lines.append(
                _Line(
                    at,
                    0,
                    f"{'/'.join(sorted(by)) or 'a person'}: created {e.type} {label}"
                    + (f" ({shown})" if shown else ""),
                )
            )
        return lines

    async def _updated(self, db: Any, since: datetime) -> list[_Line]:
        q = (
            select(change_log, entities.c.type, entities.c.fields)
            .join(entities, entities.c.id == change_log.c.entity_id)
            .where(change_log.c.at >= since)
            .order_by(change_log.c.id)
        )
        lines = []
        for c in await db.execute(q):
            at = as_utc(c.at)
            if not self._new(("updated", c.id), at):
                continue
            changes = "; ".join(
                f"{field} {_value(old)} -> {_value(new)}"
                for field, (old, new) in sorted(c.changes.items())
            )
            by = c.connection or "a person"
            lines.append(
                _Line(at, 1, f"{by}: updated {c.type} {_label(c.fields, c.entity_id)}: {changes}")
            )
        return lines

    async def _deleted(self, db: Any, since: datetime) -> list[_Line]:
        q = select(entities).where(entities.c.deleted_at >= since)
        lines = []
        for e in await db.execute(q):
            at = as_utc(e.deleted_at)
            if self._new(("deleted", e.id, at), at):
                lines.append(_Line(at, 2, f"deleted {e.type} {_label(e.fields, e.id)}"))
        return lines

    async def _pushed(self, db: Any, since: datetime) -> list[_Line]:
        """Settled outbox rows. A write that was sent moved its link's base in the same
        transaction (same stamp); a row settled without one had nothing left to send."""
        link = and_(
            links.c.entity_id == outbox.c.entity_id,
            links.c.connection == outbox.c.connection,
            links.c.stream == outbox.c.stream,
            links.c.updated_at == outbox.c.updated_at,
        )
        q = (
            select(
                outbox.c.id,
                outbox.c.connection,
                outbox.c.op,
                outbox.c.status,
                outbox.c.updated_at,
                outbox.c.last_error,
                outbox.c.entity_id,
                entities.c.fields,
                links.c.id.label("link_id"),
            )
            .join(entities, entities.c.id == outbox.c.entity_id)
            .outerjoin(links, link)
            .where(outbox.c.updated_at >= since, outbox.c.status.in_(("done", "dead")))
        )
        grouped: dict[tuple[str, str, datetime], list[str]] = {}
        lines = []
        for r in await db.execute(q):
            at = as_utc(r.updated_at)
            sent = r.op == "delete" or r.link_id is not None
            if (r.status == OutboxStatus.DONE and not sent) or not self._new(
                ("outbox", r.id, at), at
            ):
                continue
            label = _label(r.fields, r.entity_id)
            if r.status == OutboxStatus.DEAD:
                error = (r.last_error or "").splitlines()[0][:120] if r.last_error else ""
                lines.append(_Line(at, 3, f"{r.connection}: gave up writing {label}: {error}"))
                continue
            what = "deleted in" if r.op == "delete" else "pushed to"
            grouped.setdefault((what, r.connection, at), []).append(label)
        for (what, connection, at), labels in grouped.items():
            lines.append(_Line(at, 3, f"{what} {connection}: {', '.join(sorted(labels))}"))
        return lines

    async def _deliveries(self, db: Any, since: datetime) -> list[_Line]:
        q = select(
            inbox.c.id,
            inbox.c.source,
            inbox.c.kind,
            inbox.c.status,
            inbox.c.attempts,
            inbox.c.error,
            inbox.c.processed_at,
        ).where(inbox.c.processed_at >= since)
        lines = []
        for d in await db.execute(q):
            at = as_utc(d.processed_at)
            if not self._new(("inbox", d.id, d.status, d.attempts), at):
                continue
            error = (d.error or "").splitlines()[0][:120] if d.error else ""
            outcome = {
                "done": "processed",
                "pending": f"failed ({error}); it is tried again",
                "dead": f"given up after {d.attempts} attempts ({error})",
            }.get(d.status, d.status)
            lines.append(_Line(at, -1, f"{d.source}: {d.kind} delivery {outcome}"))
        return lines

    async def _runs(self, db: Any, since: datetime) -> list[_Line]:
        q = select(runs).where(runs.c.finished_at >= since)
        lines = []
        for r in await db.execute(q):
            at = as_utc(r.finished_at)
            counts = {
                k: v
                for k, v in r.counts.items()
                if v and not k.startswith("http_") and k not in QUIET_COUNTS
            }
            if (counts or r.status != RunStatus.OK) and self._new(("run", r.id), at):
                said = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no changes"
                error = f" ({r.error.splitlines()[0][:120]})" if r.error else ""
                lines.append(_Line(at, 4, f"{r.connection}: run {r.status}: {said}{error}"))
        return lines
