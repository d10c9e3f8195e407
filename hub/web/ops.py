"""Operations endpoints: ``/healthz`` for load balancers, ``/metrics`` for Prometheus.

``/healthz`` answers 200 when the process is up and one database round trip succeeds
within ``HEALTH_TIMEOUT`` seconds, else 503 with the reason. ``/metrics`` reads what lives in
the store (runs, inbox, outbox, tokens) at scrape time and adds this process's counters
(``hub.metrics``); when the store cannot be read it still answers, with ``crmhub_store_up 0``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import metrics
from hub.errors import CrmhubError
from hub.metrics import Metric
from hub.store import Store, as_utc
from hub.store.schema import inbox, outbox, runs, tokens
from hub.store.status import InboxStatus, RunStatus

log = logging.getLogger("hub.web.ops")
router = APIRouter()
HEALTH_TIMEOUT = 5.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def _ping(store: Store) -> None:
    async with store.connect() as conn:
        await conn.execute(text("SELECT 1"))


@router.get("/healthz", include_in_schema=False)
async def healthz(request: Request) -> JSONResponse:
    store: Store = request.app.state.hub.store
    started = time.perf_counter()
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT):
            await _ping(store)
    except TimeoutError:
        reason = f"database did not answer within {HEALTH_TIMEOUT:g} s"
    except (SQLAlchemyError, CrmhubError, OSError) as exc:
        reason = f"database error: {type(exc).__name__}: {exc}".splitlines()[0][:300]
    else:
        ms = round((time.perf_counter() - started) * 1000, 1)
        return JSONResponse({"status": "ok", "database": "ok", "database_ms": ms})
    log.warning("health check failed: %s", reason)
    return JSONResponse({"status": "error", "database": reason}, status_code=503)


async def _runs(conn: AsyncConnection) -> list[Metric]:
    by_status = Metric(
        "crmhub_runs", "Runs recorded in the store.", "gauge", ("connection", "status")
    )
    rows = await conn.execute(
        select(runs.c.connection, runs.c.status, func.count()).group_by(
            runs.c.connection, runs.c.status
        )
    )
    succeeded: set[str] = set()
    for connection, status, n in rows:
        by_status.set(n, connection=connection, status=status)
        if status == "ok":
            succeeded.add(connection)
    last_ok = Metric(
        "crmhub_last_success_timestamp_seconds",
        "When the last successful run of each connection finished.",
        "gauge",
        ("connection",),
    )
    # one index lookup per connection (connection, status, finished_at), not a scan
    for connection in sorted(succeeded):
        finished = await conn.scalar(
            select(func.max(runs.c.finished_at)).where(
                runs.c.connection == connection, runs.c.status == RunStatus.OK
            )
        )
        if finished is not None:
            last_ok.set(as_utc(finished).timestamp(), connection=connection)
    return [by_status, last_ok]


async def _queues(conn: AsyncConnection) -> list[Metric]:
    items = Metric("crmhub_inbox_items", "Inbox items by status.", "gauge", ("status",))
    for status in InboxStatus:
        items.set(0, status=status)
    rows = await conn.execute(select(inbox.c.status, func.count()).group_by(inbox.c.status))
    for status, n in rows:
        items.set(n, status=status)
    oldest = Metric(
        "crmhub_inbox_oldest_pending_seconds", "Age of the oldest pending inbox item.", "gauge"
    )
    first = (
        await conn.execute(
            select(func.min(inbox.c.received_at)).where(inbox.c.status == InboxStatus.PENDING)
        )
    ).scalar()
    oldest.set(max(0.0, time.time() - as_utc(first).timestamp()) if first else 0.0)
    owed = Metric(
        "crmhub_outbox_items",
        "Outbox rows by connection and status.",
        "gauge",
        ("connection", "status"),
    )
    rows = await conn.execute(
        select(outbox.c.connection, outbox.c.status, func.count()).group_by(
            outbox.c.connection, outbox.c.status
        )
    )
    dead_outbox = 0
    for connection, status, n in rows:
        owed.set(n, connection=connection, status=status)
        dead_outbox += n if status == "dead" else 0
    dead = Metric(
        "crmhub_dead_letters", "Items that gave up (inbox and outbox).", "gauge", ("queue",)
    )
    dead.set(items.value(status=InboxStatus.DEAD), queue="inbox")
    dead.set(dead_outbox, queue="outbox")
    return [items, oldest, owed, dead]


async def _tokens(conn: AsyncConnection) -> list[Metric]:
    expiry = Metric(
        "crmhub_token_expiry_timestamp_seconds",
        "When each connection's access token expires (absent: never or unknown).",
        "gauge",
        ("connection",),
    )
    state = Metric(
        "crmhub_token_status",
        "1 for each connection's credential status.",
        "gauge",
        ("connection", "status"),
    )
    rows = await conn.execute(select(tokens.c.connection, tokens.c.expires_at, tokens.c.status))
    for connection, expires_at, status in rows:
        if expires_at is not None:
            expiry.set(as_utc(expires_at).timestamp(), connection=connection)
        state.set(1, connection=connection, status=status)
    return [expiry, state]


async def store_metrics(store: Store) -> list[Metric]:
    """Figures read from the store now; ``crmhub_store_up`` says whether that worked."""
    up = Metric("crmhub_store_up", "1 when the store answered this scrape.", "gauge")
    try:
        async with store.connect() as conn:
            found = [*await _runs(conn), *await _queues(conn), *await _tokens(conn)]
    except (SQLAlchemyError, CrmhubError, OSError) as exc:
        log.warning("metrics: store not readable: %s", exc)
        up.set(0)
        return [up]
    up.set(1)
    return [up, *found]


@router.get("/metrics", include_in_schema=False)
async def metrics_page(request: Request) -> PlainTextResponse:
    store: Store = request.app.state.hub.store
    families = [
        *await store_metrics(store),
        *metrics.REGISTRY.metrics(),
        *metrics.process_metrics(),
    ]
    return PlainTextResponse(metrics.render(families), media_type=CONTENT_TYPE)
