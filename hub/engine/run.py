"""One run of one connection: lease, pull, map, match, merge, commit per page, deletes, push.

``sync_connection`` is the only entry point; the CLI, the daemon and the tests all call it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import metrics
from hub.connector import Page
from hub.engine import deletes
from hub.engine.context import RunContext, StreamContext, build_context
from hub.engine.pull import PageApplier, Prepared
from hub.engine.push import Pusher
from hub.engine.settle import settle_pending
from hub.errors import ConnectorError, LeaseHeld, NeedsReauth, RateLimited
from hub.runtime import Hub
from hub.store import Lease, utcnow
from hub.store.bulk import new_id
from hub.store.schema import cursors, links, runs

Progress = Callable[[str, int], None]


@dataclass
class RunReport:
    run_id: str
    connection: str
    status: str  # ok|failed|held|throttled|interrupted|skipped|plan
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
    conn = hub.config.connection(name)
    run_id = new_id()
    if not conn.hub.enabled:
        return RunReport(run_id, name, "skipped")
    connector = hub.connector(name)
    started = utcnow()
    clock = time.monotonic()
    try:
        ctx = build_context(hub, name, connector, run_id, started, plan)
        if plan:
            report = await _plan(ctx, full, progress)
        else:
            async with Lease(hub.store, f"run:{name}"):
                report = await _run(ctx, full, progress, stop)
    finally:
        await connector.aclose()
    report.duration = time.monotonic() - clock
    return report


async def _run(
    ctx: RunContext, full: bool, progress: Progress | None, stop: asyncio.Event | None
) -> RunReport:
    store = ctx.hub.store
    async with store.begin() as db:
        # A run row still 'running' for this connection belongs to a process that died.
        await db.execute(
            update(runs)
            .where(runs.c.connection == ctx.name, runs.c.status == "running")
            .values(status="interrupted", finished_at=ctx.started)
        )
        await db.execute(
            runs.insert().values(
                id=ctx.run_id,
                connection=ctx.name,
                status="running",
                full=full,
                started_at=ctx.started,
                counts={},
            )
        )
    report = RunReport(ctx.run_id, ctx.name, "ok")
    try:
        await _steps(ctx, store.begin, full, progress, stop)
        if ctx.held:
            report.status = "held"
    except _Stopped:
        report.status = "interrupted"
    except NeedsReauth as exc:
        report.status, report.error = "failed", str(exc)
    except RateLimited as exc:
        report.status, report.error = "throttled", str(exc)
        if exc.retry_after is not None:
            report.throttled_until = utcnow() + timedelta(seconds=exc.retry_after)
    except ConnectorError as exc:
        report.status, report.error = "failed", str(exc)
    except asyncio.CancelledError:
        report.status = "interrupted"
        await _record(ctx, report)
        raise
    except Exception as exc:
        report.status, report.error = "failed", f"{type(exc).__name__}: {exc}"
        await _record(ctx, report)
        raise
    await _record(ctx, report)
    return report


async def _record(ctx: RunContext, report: RunReport) -> None:
    report.counts = dict(ctx.counts)
    http = ctx.connector.context.counters.as_dict()
    report.counts.update({f"http_{k}": v for k, v in http.items() if v})
    report.errors = list(ctx.errors)
    error = report.error
    if ctx.errors and not error:
        error = "\n".join(ctx.errors[:20])
    with contextlib.suppress(Exception):
        async with ctx.hub.store.begin() as db:
            await db.execute(
                update(runs)
                .where(runs.c.id == ctx.run_id)
                .values(
                    status=report.status,
                    finished_at=utcnow(),
                    counts=report.counts,
                    error=error,
                    throttled_until=report.throttled_until,
                )
            )
    for key, value in report.counts.items():
        if value > 0:
            metrics.RUN_COUNTS.inc(value, connection=ctx.name, key=key)


async def _steps(
    ctx: RunContext,
    db_factory: Callable[[], contextlib.AbstractAsyncContextManager[AsyncConnection]],
    full: bool,
    progress: Progress | None,
    stop: asyncio.Event | None,
) -> None:
    direction = ctx.conn.hub.direction
    if direction != "push":
        for sctx in ctx.streams:
            await _pull_stream(ctx, sctx, db_factory, full, progress, stop)
        await settle_pending(ctx, lambda entity: page_transaction(ctx, entity, db_factory))
    if direction != "pull" and not ctx.held:
        for sctx in ctx.streams:
            if sctx.stream.can_push:
                if stop is not None and stop.is_set():
                    raise _Stopped
                await Pusher(ctx, sctx).run(db_factory)
                if progress:
                    progress(
                        "pushed", sum(v for k, v in ctx.counts.items() if k.startswith("pushed_"))
                    )


async def _pull_stream(
    ctx: RunContext,
    sctx: StreamContext,
    db_factory: Callable[[], contextlib.AbstractAsyncContextManager[AsyncConnection]],
    full: bool,
    progress: Progress | None,
    stop: asyncio.Event | None,
) -> None:
    name, stream = ctx.name, sctx.stream.name
    cursor = None
    if not full:
        async with db_factory() as db:
            cursor = await db.scalar(
                select(cursors.c.value).where(
                    cursors.c.connection == name, cursors.c.stream == stream
                )
            )
    applier = PageApplier(ctx, sctx)
    pages = 0
    all_full_scan = True
    async with read_ahead(ctx.connector.pull(sctx.stream, cursor), applier.prepare) as ahead:
        async for page, prepared in ahead:
            async with page_transaction(ctx, sctx.stream.entity, db_factory) as db:
                with collector_paused():
                    await applier.apply(db, prepared)
            pages += 1
            all_full_scan = all_full_scan and page.full_scan
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
            await _deletes(ctx, db, stream, sorted(removed))


@contextlib.asynccontextmanager
async def read_ahead(
    pages: AsyncIterator[Page], prepare: Callable[[Page], Prepared]
) -> AsyncIterator[AsyncGenerator[tuple[Page, Prepared]]]:
    """The connector's pages, each with its :meth:`PageApplier.prepare` result, the next
    one fetched and prepared while the caller applies the current one: the remote's
    answer (or the mapping's work) overlaps the database's. One page at most is held
    ahead; leaving the block cancels it and closes the connector's generator, so a run
    that stops or fails asks nothing more of the remote."""

    async def fetch() -> tuple[Page, Prepared] | None:
        page = await anext(pages, None)
        if page is None:
            return None
        with collector_paused():
            return page, prepare(page)

    task: asyncio.Future[tuple[Page, Prepared] | None] | None = None

    async def iterate() -> AsyncGenerator[tuple[Page, Prepared]]:
        nonlocal task
        task = asyncio.ensure_future(fetch())
        while True:
            item = await task
            if item is None:
                task = None
                return
            task = asyncio.ensure_future(fetch())
            yield item

    items = iterate()
    try:
        yield items
    finally:
        await items.aclose()
        if task is not None:
            task.cancel()
            await asyncio.wait([task])  # a cancellation of this run still comes through
            if not task.cancelled():
                task.exception()  # the caller's own error is the one that counts
        aclose = getattr(pages, "aclose", None)
        if aclose is not None:
            await aclose()


_pauses = 0


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector held off while a page is applied.

    A page builds thousands of records, entities and rows that live until its transaction
    ends and are then freed by reference counting; collecting while they are being built
    walks them again and again for nothing (some 5% of a large sync's time). Once the last
    page in flight (of any run in this process) is done, collection resumes and catches
    up at once. Nested and concurrent pauses count: the collector stays off until all end.
    """
    global _pauses
    if _pauses == 0 and not gc.isenabled():
        yield  # switched off by someone else: leave it as it is
        return
    if _pauses == 0:
        gc.disable()
    _pauses += 1
    try:
        yield
    finally:
        _pauses -= 1
        if _pauses == 0:
            gc.enable()


def page_transaction(
    ctx: RunContext,
    entity: str,
    db_factory: Callable[[], contextlib.AbstractAsyncContextManager[AsyncConnection]],
) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
    """The transaction a page is applied in. Identity matching reads the match keys and
    then creates the entities it found none for: two runs doing that at once for the same
    entity type would both create the same person, so page transactions of one entity type
    take turns (across processes and hosts). A plan runs in its own rolled-back one."""
    if ctx.plan:
        return db_factory()
    return ctx.hub.store.begin_serialized(f"match:{entity}")


async def _deletes(
    ctx: RunContext, db: AsyncConnection, stream: str, remote_ids: list[str]
) -> None:
    rows: list[Any] = []
    for i in range(0, len(remote_ids), 5000):
        chunk = remote_ids[i : i + 5000]
        rows.extend(
            (
                await db.execute(
                    select(links).where(
                        links.c.connection == ctx.name,
                        links.c.stream == stream,
                        links.c.remote_id.in_(chunk),
                    )
                )
            ).all()
        )
    if not rows:
        return
    linked = await deletes.linked_count(db, ctx.name, stream)
    if deletes.guard_exceeded(ctx.hub, len(rows), linked):
        if not ctx.plan:
            await deletes.hold(db, ctx.run_id, [r.id for r in rows])
        ctx.held = True
        ctx.count("deletes_held", len(rows))
        ctx.errors.append(
            f"{ctx.name}: {len(rows)} of {linked} linked records were deleted remotely; "
            f"held for approval (crmhub runs approve {ctx.run_id})"
        )
        return
    n = await deletes.apply_deletes(ctx.hub, db, ctx.name, ctx.conn.hub.delete_policy, rows)
    ctx.count("deleted", n)
    if ctx.plan:
        ctx.plan_hub_changes.extend({"deleted_remote": r.remote_id} for r in rows)


async def _plan(ctx: RunContext, full: bool, progress: Progress | None) -> RunReport:
    """Everything a run would do, inside one transaction that is rolled back."""
    async with ctx.hub.store.connect() as db:
        trans = await db.begin()

        @contextlib.asynccontextmanager
        async def same() -> AsyncIterator[AsyncConnection]:
            yield db

        try:
            await _steps(ctx, same, full, progress, None)
            queued = await _queued_elsewhere(db, ctx)
        finally:
            await trans.rollback()
    return RunReport(
        ctx.run_id,
        ctx.name,
        "plan",
        counts=dict(ctx.counts),
        errors=list(ctx.errors),
        plan={
            "hub": ctx.plan_hub_changes,
            "remote": ctx.plan_remote,
            "queued_for_other_connections": queued,
            "held_deletes": ctx.held,
        },
    )


async def _queued_elsewhere(db: AsyncConnection, ctx: RunContext) -> dict[str, int]:
    from sqlalchemy import func

    from hub.store.schema import outbox

    rows = await db.execute(
        select(outbox.c.connection, func.count())
        .where(outbox.c.status == "pending", outbox.c.connection != ctx.name)
        .group_by(outbox.c.connection)
    )
    return {c: int(n) for c, n in rows}


__all__ = ["LeaseHeld", "RunReport", "sync_connection"]
