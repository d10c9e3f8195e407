"""Retention: what the store no longer needs, deleted once a day by the daemon.

A hub that syncs every few minutes writes a run row per run, an outbox row per owed write
and an inbox row per delivery. Those rows are history once they are settled; left alone
they grow without end. :func:`prune` deletes, when older than ``[hub] retention_days``
(default 30):

- inbox deliveries that were processed (``done``); dead and malformed ones stay until a
  person has looked at them (``crmhub inbox``);
- outbox rows that were written (``done``); pending and dead ones stay;
- finished runs, except each connection's latest (the scheduler reads it) and runs held for
  approval (``crmhub runs approve``).

Runs that finished well and changed nothing (they read records or made calls, but created,
updated, deleted, matched, queued and pushed nothing) are most of a busy schedule's runs and
tell nothing after a few days: they go after ``[hub] idle_run_retention_days`` (default 3).

Entities, links, cursors, conflicts and the change log are never pruned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, select
from sqlalchemy.orm import aliased

from hub.inbox import Inbox
from hub.store import Store, utcnow
from hub.store.schema import outbox, runs
from hub.store.status import OutboxStatus, RunStatus


@dataclass
class Pruned:
    inbox: int = 0
    outbox: int = 0
    runs: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"inbox": self.inbox, "outbox": self.outbox, "runs": self.runs}


# Counts a run keeps when it only looked: records read, pages, calls made, bytes moved.
_LOOKING = frozenset({"records", "pages", "push_calls"})


def changed_nothing(counts: dict[str, Any]) -> bool:
    """Whether a run's counts show it only read and called, and changed nothing."""
    return all(k in _LOOKING or k.startswith("http_") for k, n in counts.items() if n)


async def prune(
    store: Store,
    older_than: timedelta,
    *,
    idle_older_than: timedelta | None = None,
    now: datetime | None = None,
) -> Pruned:
    """Delete settled rows last touched more than ``older_than`` before ``now``, and runs
    that changed nothing more than ``idle_older_than`` before it (when shorter)."""
    now = now or utcnow()
    cutoff = now - older_than
    pruned = Pruned()
    pruned.inbox = await Inbox.shared(store).purge(older_than, now=now)
    later = aliased(runs)
    newer_exists = (
        select(func.count())
        .where(later.c.connection == runs.c.connection, later.c.started_at > runs.c.started_at)
        .scalar_subquery()
    )
    if idle_older_than is not None and idle_older_than < older_than:
        pruned.runs += await _prune_idle_runs(store, now - idle_older_than, cutoff, newer_exists)
    async with store.begin() as db:
        result = await db.execute(
            delete(outbox).where(outbox.c.status == OutboxStatus.DONE, outbox.c.updated_at < cutoff)
        )
        pruned.outbox = int(result.rowcount)
        result = await db.execute(
            delete(runs).where(
                and_(
                    runs.c.finished_at.is_not(None),
                    runs.c.finished_at < cutoff,
                    runs.c.status.not_in((RunStatus.HELD, RunStatus.RUNNING)),
                    newer_exists > 0,
                )
            )
        )
        pruned.runs += int(result.rowcount)
    return pruned


async def _prune_idle_runs(
    store: Store, idle_cutoff: datetime, cutoff: datetime, newer_exists: Any
) -> int:
    """Delete, a thousand at a time, runs that finished well between ``cutoff`` and
    ``idle_cutoff`` (older ones go with the rest) and changed nothing."""
    deleted = 0
    after = ""
    while True:
        async with store.begin() as db:
            rows = (
                await db.execute(
                    select(runs.c.id, runs.c.counts)
                    .where(
                        runs.c.status == RunStatus.OK,
                        runs.c.finished_at < idle_cutoff,
                        runs.c.finished_at >= cutoff,
                        runs.c.id > after,
                        newer_exists > 0,
                    )
                    .order_by(runs.c.id)
                    .limit(1000)
                )
            ).all()
            if not rows:
                return deleted
            after = rows[-1].id
            idle = [r.id for r in rows if changed_nothing(r.counts or {})]
            if idle:
                result = await db.execute(delete(runs).where(runs.c.id.in_(idle)))
                deleted += int(result.rowcount)
