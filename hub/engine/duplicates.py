"""Several records of one connection that are one golden record.

Two rows with the same email in one CSV file, two accounts of one person in a CRM: each
record keeps its own link, both to the golden record their match key names. The hub cannot
tell which of them a change is meant for, so it writes neither (a change one of them made
is never copied into the other); the owed write waits in the outbox (``crmhub outbox``, as
a failed write retried later) until a person removes or changes one of the records. Each
run that meets such a pair says so, and ``crmhub entities duplicates`` lists them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.connector import RemoteRecord
from hub.engine.context import RunContext
from hub.store.bulk import select_in
from hub.store.schema import links

WAITING = (
    "the contact has several records in {connection} (see `crmhub entities duplicates`); "
    "nothing is written to either until one of them is removed or changed"
)


async def report_matches(
    db: AsyncConnection,
    ctx: RunContext,
    stream: str,
    matched: list[tuple[RemoteRecord, str]],
) -> None:
    """Warn about each record of ``matched`` (record, entity id it was just linked to by
    its match key; the links written already) whose golden record another record of the
    same stream is linked to."""
    if not matched:
        return
    entity_ids = {entity_id for _, entity_id in matched}
    others: dict[str, list[str]] = {}
    for entity_id, remote_id in await select_in(
        db,
        links,
        ("entity_id", "remote_id"),
        {"connection": ctx.name, "stream": stream},
        "entity_id",
        entity_ids,
    ):
        others.setdefault(entity_id, []).append(remote_id)
    for rec, entity_id in matched:
        siblings = sorted({r for r in others.get(entity_id, []) if r != rec.id})
        if not siblings:
            continue
        ctx.count("duplicates")
        where = rec.where or f"record {rec.id}"
        ctx.errors.append(
            f"{ctx.name} {stream} {where}: matches the same golden record {entity_id} as "
            f"record {siblings[0]} of {ctx.name}; each keeps its own link, and writes to "
            f"{ctx.name} for it wait until one is removed or changed "
            "(crmhub entities duplicates)"
        )


def duplicated(link_rows: Iterable[Any]) -> set[str]:
    """Entity ids that ``link_rows`` (of one connection and stream) link more than once."""
    seen: set[str] = set()
    twice: set[str] = set()
    for row in link_rows:
        (twice if row.entity_id in seen else seen).add(row.entity_id)
    return twice


async def listing(db: AsyncConnection) -> list[dict[str, Any]]:
    """Every golden record linked to several records of one connection's stream."""
    groups = (
        select(links.c.entity_id, links.c.connection, links.c.stream)
        .group_by(links.c.entity_id, links.c.connection, links.c.stream)
        .having(func.count() > 1)
        .subquery()
    )
    rows = await db.execute(
        select(links.c.entity_id, links.c.connection, links.c.stream, links.c.remote_id)
        .join(
            groups,
            (groups.c.entity_id == links.c.entity_id)
            & (groups.c.connection == links.c.connection)
            & (groups.c.stream == links.c.stream),
        )
        .order_by(links.c.connection, links.c.entity_id, links.c.remote_id)
    )
    found: dict[tuple[str, str, str], list[str]] = {}
    for entity_id, connection, stream, remote_id in rows:
        found.setdefault((entity_id, connection, stream), []).append(remote_id)
    return [
        {"entity_id": e, "connection": c, "stream": s, "remote_ids": r}
        for (e, c, s), r in found.items()
    ]
