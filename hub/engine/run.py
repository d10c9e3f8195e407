"""One run of one connection: lease, pull, map, match, merge, commit per page, deletes, push.

``sync_connection`` is the only entry point; the CLI, the daemon and the tests all call it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import metrics
from hub.engine import deletes, holds
from hub.engine.context import DbFactory, RunContext, StreamContext, build_context
from hub.engine.lease import RunLease, fenced
from hub.engine.pages import collector_paused, page_transaction, read_ahead
from hub.engine.pull import PageApplier
from hub.engine.push import Pusher
from hub.engine.settle import settle_pending
from hub.errors import ConnectorError, LeaseHeld, LeaseLost, NeedsReauth, RateLimited
from hub.runtime import Hub
from hub.store import runs as run_rows
from hub.store import utcnow
from hub.store.bulk import new_id
from hub.store.schema import cursors, links
from hub.store.status import RunStatus

Progress = Callable[[str, int], None]


@dataclass
class RunReport:
    run_id: str
    connection: str
    status: RunStatus
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    errors: list[str] = field(default_factory=list)
    throttled_until: datetime | None = None
    duration: float = 0.0
    plan: dict[str, Any] | None = None


class _Stopped(Exception):
    pass


async def sync_connection(
    hub: Hub,
    name: str,
    *,
    full: bool = False,
    plan: bool = False,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
) -> RunReport:
    """Run one sync of connection ``name``.

    Raises ``LeaseHeld`` when another run of the connection is going (never two at once).
    With ``plan`` nothing is written anywhere: the run happens inside one transaction that
    is rolled back, and no push is sent; the report's ``plan`` says what would change.
    """
    if not hub.config.connection(name).hub.enabled:
        return RunReport(new_id(), name, RunStatus.SKIPPED)
    if plan:
        from hub.engine.plan import plan_runs

        [report] = await plan_runs(hub, [name], full, {name: progress} if progress else {})
        return report
    clock = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        ctx = await open_run(hub, name, full, stack)
        report = RunReport(ctx.run_id, name, RunStatus.OK)
        await run_phase(ctx, report, pull_all, full, progress, stop, unexpected="raise")
        if report.status == RunStatus.OK and not ctx.held:
            await run_phase(ctx, report, push_all, full, progress, stop, unexpected="raise")
        await finish_run(ctx, report)
    report.duration = time.monotonic() - clock
    return report


async def open_run(
    hub: Hub, name: str, full: bool, stack: contextlib.AsyncExitStack, *, plan: bool = False
) -> RunContext:
    """The context of a new run of ``name``, its connector closed when ``stack`` ends. A
    real run (not ``plan``) takes the connection's lease (``LeaseHeld`` when taken) and
    records itself as running."""
    connector = hub.connector(name)
    stack.push_async_callback(connector.aclose)
    ctx = build_context(hub, name, connector, new_id(), utcnow(), plan)
    if plan:
        return ctx
    ctx.lease = await stack.enter_async_context(
        RunLease(hub.store, name, ttl=hub.config.hub.run_lease_seconds)
    )
    connector.context.check_lease = ctx.lease.check_now
    async with hub.store.begin() as db:
        await run_rows.start(db, ctx.run_id, name, full=full, started_at=ctx.started)
    return ctx


Phase = Callable[
    [RunContext, DbFactory, bool, "Progress | None", "asyncio.Event | None"],
    Awaitable[None],
]


async def run_phase(
    ctx: RunContext,
    report: RunReport,
    phase: Phase,
    full: bool,
    progress: Progress | None,
    stop: asyncio.Event | None,
    *,
    unexpected: str = "report",
    db_factory: DbFactory | None = None,
) -> None:
    """Run one phase (pull or push) of a run; a failure ends the run with its status.

    ``unexpected="raise"`` records an unexpected error (a bug) and raises it; ``"report"``
    records it in the report only, so the other connections of a sync still run."""
    if db_factory is None:

        def db_factory() -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
            return fenced(ctx.lease, ctx.hub.store.begin())

    clock = time.monotonic()
    try:
        await phase(ctx, db_factory, full, progress, stop)
        if ctx.held:
            report.status = RunStatus.HELD
    except _Stopped:
        report.status = RunStatus.INTERRUPTED
    except (NeedsReauth, LeaseLost) as exc:
        report.status, report.error = RunStatus.FAILED, str(exc)
    except RateLimited as exc:
        report.status, report.error = RunStatus.THROTTLED, str(exc)
        if exc.retry_after is not None:
            report.throttled_until = utcnow() + timedelta(seconds=exc.retry_after)
    except ConnectorError as exc:
        report.status, report.error = RunStatus.FAILED, str(exc)
    except asyncio.CancelledError:
        report.status = RunStatus.INTERRUPTED
        await finish_run(ctx, report)
        raise
    except Exception as exc:
        report.status, report.error = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
        if unexpected == "raise":
            await finish_run(ctx, report)
            raise
    finally:
        report.duration += time.monotonic() - clock


async def finish_run(ctx: RunContext, report: RunReport) -> None:
    """Record the run's outcome (once)."""
    if ctx.finished:
        return
    ctx.finished = True
    report.counts = dict(ctx.counts)
    http = ctx.connector.context.counters.as_dict()
    report.counts.update({f"http_{k}": v for k, v in http.items() if v})
    report.errors = list(ctx.errors)
    if ctx.plan:
        return
    error = report.error
    if ctx.errors and not error:
        error = "\n".join(ctx.errors[:20])
    with contextlib.suppress(Exception):
        async with ctx.hub.store.begin() as db:
            await run_rows.finish(
                db,
                ctx.run_id,
                report.status,
                finished_at=utcnow(),
                counts=report.counts,
                error=error,
                throttled_until=report.throttled_until,
            )
    for key, value in report.counts.items():
        if value > 0:
            metrics.RUN_COUNTS.inc(value, connection=ctx.name, key=key)


async def pull_all(
    ctx: RunContext,
    db_factory: DbFactory,
    full: bool,
    progress: Progress | None,
    stop: asyncio.Event | None,
) -> None:
    if ctx.conn.hub.direction != "push":
        for sctx in ctx.streams:
            await _pull_stream(ctx, sctx, db_factory, full, progress, stop)
        await settle_pending(ctx, lambda entity: page_transaction(ctx, entity, db_factory))


async def push_all(
    ctx: RunContext,
    db_factory: DbFactory,
    full: bool,
    progress: Progress | None,
    stop: asyncio.Event | None,
) -> None:
    if ctx.conn.hub.direction == "pull" or ctx.held:
        return
    for sctx in ctx.streams:
        if sctx.stream.can_push:
            if stop is not None and stop.is_set():
                raise _Stopped
            await Pusher(ctx, sctx).run(db_factory)
            if progress:
                progress("pushed", sum(v for k, v in ctx.counts.items() if k.startswith("pushed_")))


async def _pull_stream(
    ctx: RunContext,
    sctx: StreamContext,
    db_factory: DbFactory,
    full: bool,
    progress: Progress | None,
    stop: asyncio.Event | None,
) -> None:
    name, stream = ctx.name, sctx.stream.name
    async with db_factory() as db:
        stored = await db.scalar(
            select(cursors.c.value).where(cursors.c.connection == name, cursors.c.stream == stream)
        )
        had_links = await deletes.has_links(db, name, stream)
        holding = await holds.has_holds(db, name, stream)
    cursor = None if full else stored
    applier = PageApplier(ctx, sctx)
    # Only a connection with links can see deletions (and be held): keep its new ids.
    applier.track_new = had_links
    pages = 0
    all_full_scan = True
    async with read_ahead(ctx.connector.pull(sctx.stream, cursor), applier.prepare) as ahead:
        async for page, prepared in ahead:
            async with page_transaction(ctx, sctx.stream.entity, db_factory) as db:
                with collector_paused():
                    await applier.apply(db, prepared)
                if holding:
                    await holds.forget_seen(db, name, stream, [r.id for r, _ in prepared.records])
            pages += 1
            all_full_scan = all_full_scan and page.full_scan and not page.problems
            if page.problems:
                ctx.count("records_unreadable", len(page.problems))
                ctx.errors.extend(f"{name} {stream}: {p}" for p in page.problems)
            ctx.count("pages")
            await ctx.wrote(len(page.records))
            if progress:
                progress("pulled", ctx.counts.get("records", 0))
            if stop is not None and stop.is_set():
                raise _Stopped
    removed = set(applier.deleted_remote_ids)
    async with db_factory() as db:
        if pages and all_full_scan:
            linked = await db.execute(
                select(links.c.remote_id).where(
                    links.c.connection == name, links.c.stream == stream
                )
            )
            removed.update(r for (r,) in linked if r not in applier.seen_remote_ids)
        if removed:
            # The delete guard's share counts the links that existed before this run.
            before = await deletes.linked_count(db, name, stream) - len(applier.new_link_ids)
            await deletes.handle_removed(ctx, db, stream, sorted(removed), before)
        if ctx.held:
            await holds.keep_back_creates(
                db, ctx, stream, applier.created_ids, applier.new_link_ids, stored
            )


__all__ = ["LeaseHeld", "RunReport", "sync_connection"]
