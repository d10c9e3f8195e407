"""A targeted fetch: read a few named records of one connection and merge them now.

A webhook that names the records it concerns (a ticket id, a member's address) need not wait
for a whole incremental pull: the records are read with ``Connector.fetch`` and applied like
a pulled page (map, match, merge, links, owed writes, references), under the connection's
run lease. It is not a run: no cursor moves, no deletion is inferred from a record that did
not come back, nothing is pushed, and no row is added to ``runs``, so "has a run read
everything since then?" still waits for a real sync (scheduled pulls reconcile).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection

from hub.connector import Connector, Page
from hub.engine import holds
from hub.engine.context import build_context
from hub.engine.lease import RunLease, fenced
from hub.engine.pages import collector_paused, page_transaction
from hub.engine.pull import PageApplier
from hub.engine.settle import settle_pending
from hub.errors import ConnectorConfigError
from hub.runtime import Hub
from hub.store import utcnow
from hub.store.bulk import new_id

__all__ = ["FetchReport", "fetch_records"]

log = logging.getLogger("crmhub.engine")


@dataclass
class FetchReport:
    """What a targeted fetch read: ``found`` of the ``asked`` ids came back."""

    connection: str
    stream: str
    asked: int = 0
    found: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


async def fetch_records(hub: Hub, name: str, stream: str, remote_ids: Sequence[str]) -> FetchReport:
    """Read ``remote_ids`` of ``stream`` from connection ``name`` and merge them into the hub.

    Raises ``LeaseHeld`` while a run of the connection is going (it reads them anyway),
    ``ConnectorConfigError`` for an unknown stream or a connector that cannot read single
    records, and the connector's own errors. A disabled connection, or one that only
    receives (``direction = "push"``), reads nothing."""
    ids = sorted({str(i) for i in remote_ids if str(i)})
    report = FetchReport(name, stream, asked=len(ids))
    conn = hub.config.connection(name)
    if not ids or not conn.hub.enabled or conn.hub.direction == "push":
        return report
    async with contextlib.AsyncExitStack() as stack:
        connector = hub.connector(name)
        stack.push_async_callback(connector.aclose)
        if type(connector).fetch is Connector.fetch:
            raise ConnectorConfigError(
                f"connector {connector.name!r} cannot read single records (it has no fetch); "
                "sync the connection instead",
                connection=name,
            )
        ctx = build_context(hub, name, connector, new_id(), utcnow(), plan=False)
        sctx = next((s for s in ctx.streams if s.stream.name == stream), None)
        if sctx is None:
            known = ", ".join(s.stream.name for s in ctx.streams)
            raise ConnectorConfigError(
                f"connection {name!r} has no stream {stream!r} (streams: {known})",
                connection=name,
            )
        ctx.lease = lease = await stack.enter_async_context(
            RunLease(hub.store, name, ttl=hub.config.hub.run_lease_seconds)
        )
        connector.context.check_lease = lease.check_now

        def db_factory() -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
            return fenced(lease, hub.store.begin())

        records = await connector.fetch(sctx.stream, ids)
        report.found = len(records)
        applier = PageApplier(ctx, sctx)
        async with page_transaction(ctx, sctx.stream.entity, db_factory) as db:
            with collector_paused():
                await applier.apply(db, Page(records=records))
            if await holds.has_holds(db, name, stream):
                await holds.forget_seen(db, name, stream, [r.id for r in records])
        await settle_pending(ctx, lambda entity: page_transaction(ctx, entity, db_factory))
    report.counts, report.errors = dict(ctx.counts), list(ctx.errors)
    for error in report.errors[:20]:  # no run row keeps them: the log does
        log.warning("targeted fetch: %s", error, extra={"connection": name, "stream": stream})
    return report
