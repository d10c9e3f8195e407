"""The ``runs`` table: one row per run of a connection, and the questions asked of it.

Everything that writes a run or asks "when did this connection last run, and how did it
end?" goes through here, on a connection (or transaction) the caller holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.store.db import as_utc
from hub.store.schema import runs
from hub.store.status import ENDED, READ_ALL, UNFINISHED, RunStatus

__all__ = [
    "ENDED",
    "READ_ALL",
    "UNFINISHED",
    "RunStatus",
    "finish",
    "latest",
    "ran_since",
    "start",
    "throttled_until",
    "unfinished",
]


async def start(
    db: AsyncConnection, run_id: str, connection: str, *, full: bool, started_at: datetime
) -> None:
    """Record a run as running. A row still running for the connection belongs to a process
    that died or stalled past its lease: it is marked interrupted (its own process, if it
    wakes up, finds its lease gone and says so)."""
    await db.execute(
        update(runs)
        .where(runs.c.connection == connection, runs.c.status == RunStatus.RUNNING)
        .values(status=RunStatus.INTERRUPTED, finished_at=started_at)
    )
    await db.execute(
        runs.insert().values(
            id=run_id,
            connection=connection,
            status=RunStatus.RUNNING,
            full=full,
            started_at=started_at,
            counts={},
        )
    )


async def finish(
    db: AsyncConnection,
    run_id: str,
    status: RunStatus | str,
    *,
    finished_at: datetime | None = None,
    counts: dict[str, Any] | None = None,
    error: str | None = None,
    throttled_until: datetime | None = None,
) -> None:
    """Record how a run ended (``finished_at`` is kept when not given: an approval)."""
    values: dict[str, Any] = {"status": RunStatus(status)}
    if finished_at is not None:
        values.update(finished_at=finished_at, error=error, throttled_until=throttled_until)
    if counts is not None:
        values["counts"] = counts
    await db.execute(update(runs).where(runs.c.id == run_id).values(**values))


async def latest(db: AsyncConnection, connection: str) -> Row[Any] | None:
    """The connection's most recent run, or ``None``."""
    query = select(runs).where(runs.c.connection == connection).order_by(runs.c.started_at.desc())
    return (await db.execute(query.limit(1))).first()


async def throttled_until(db: AsyncConnection, connection: str) -> datetime | None:
    """When the provider lets ``connection`` in again, if its latest run ended throttled."""
    row = await latest(db, connection)
    if row is None or row.status != RunStatus.THROTTLED or row.throttled_until is None:
        return None
    return as_utc(row.throttled_until)


async def ran_since(
    db: AsyncConnection,
    connection: str,
    since: datetime,
    statuses: Iterable[RunStatus] = READ_ALL,
) -> bool:
    """Whether a run of ``connection`` started after ``since`` and ended in one of
    ``statuses``. The default asks "has a run read everything since then?": what a
    webhook delivery that only says "something changed" needs to know."""
    query = select(runs.c.id).where(
        runs.c.connection == connection,
        runs.c.started_at > as_utc(since),
        runs.c.status.in_([RunStatus(s) for s in statuses]),
    )
    return (await db.scalar(query.limit(1))) is not None


async def unfinished(db: AsyncConnection, connections: Iterable[str]) -> list[str]:
    """Those of ``connections`` whose latest run did not end (running or interrupted)."""
    names = list(connections)
    if not names:
        return []
    newest = (
        select(runs.c.connection, func.max(runs.c.started_at).label("started_at"))
        .where(runs.c.connection.in_(names))
        .group_by(runs.c.connection)
        .subquery()
    )
    query = (
        select(runs.c.connection)
        .join(
            newest,
            (runs.c.connection == newest.c.connection) & (runs.c.started_at == newest.c.started_at),
        )
        .where(runs.c.status.in_(UNFINISHED))
    )
    return sorted({row.connection for row in await db.execute(query)})
