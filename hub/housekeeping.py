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

Entities, links, cursors, conflicts and the change log are never pruned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, select
from sqlalchemy.orm import aliased

from hub.inbox import Inbox
from hub.store import Store, utcnow
from hub.store.schema import outbox, runs


@dataclass
class Pruned:
    inbox: int = 0
    outbox: int = 0
    runs: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"inbox": self.inbox, "outbox": self.outbox, "runs": self.runs}


async def prune(store: Store, older_than: timedelta, *, now: datetime | None = None) -> Pruned:
    """Delete settled rows last touched more than ``older_than`` before ``now``."""
    cutoff = (now or utcnow()) - older_than
    pruned = Pruned()
    pruned.inbox = await Inbox.shared(store).purge(older_than, now=now)
    later = aliased(runs)
    newer_exists = (
        select(func.count())
        .where(later.c.connection == runs.c.connection, later.c.started_at > runs.c.started_at)
        .scalar_subquery()
    )
    async with store.begin() as db:
        result = await db.execute(
            delete(outbox).where(outbox.c.status == "done", outbox.c.updated_at < cutoff)
        )
        pruned.outbox = int(result.rowcount)
        result = await db.execute(
            delete(runs).where(
                and_(
                    runs.c.finished_at.is_not(None),
                    runs.c.finished_at < cutoff,
                    runs.c.status.not_in(("held", "running")),
                    newer_exists > 0,
                )
            )
        )
        pruned.runs = int(result.rowcount)
    return pruned
