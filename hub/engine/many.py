"""A sync of several connections that converges in one go.

Every connection is pulled first, then each is pushed what it is owed: what the first
connection's pull brings in reaches the last one in the same sync, instead of waiting for
that connection's next run. Each connection is its own run (own lease, record and status),
and a connection that cannot run (another run holds it, its configuration or credentials
are wrong, its remote fails) fails alone: the others still run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from hub.engine.context import RunContext
from hub.engine.run import (
    Progress,
    RunReport,
    finish_run,
    open_run,
    pull_all,
    push_all,
    run_phase,
)
from hub.errors import CrmhubError, LeaseHeld
from hub.runtime import Hub
from hub.store.bulk import new_id
from hub.store.status import RunStatus


async def sync_connections(
    hub: Hub,
    names: list[str],
    *,
    full: bool = False,
    plan: bool = False,
    progress: Mapping[str, Progress] | None = None,
    stop: asyncio.Event | None = None,
) -> list[RunReport]:
    """One report per connection of ``names``, in that order. A connection another run
    holds is reported ``skipped`` with the holder in ``error``; disabled ones ``skipped``."""
    progress = progress or {}
    enabled = [n for n in names if hub.config.connection(n).hub.enabled]
    if plan:
        from hub.engine.plan import plan_runs

        planned = {r.connection: r for r in await plan_runs(hub, enabled, full, progress)}
        return [planned.get(n) or RunReport(new_id(), n, RunStatus.SKIPPED) for n in names]
    reports: dict[str, RunReport] = {}
    async with contextlib.AsyncExitStack() as stack:
        members: list[tuple[RunContext, RunReport]] = []
        for name in enabled:
            # Each run gets its own stack so one that fails to open leaves nothing behind.
            own = contextlib.AsyncExitStack()
            try:
                ctx = await open_run(hub, name, full, own)
            except LeaseHeld as exc:
                await own.aclose()
                reports[name] = RunReport(new_id(), name, RunStatus.SKIPPED, error=str(exc))
                continue
            except CrmhubError as exc:
                await own.aclose()
                reports[name] = RunReport(new_id(), name, RunStatus.FAILED, error=str(exc))
                continue
            stack.push_async_callback(own.aclose)
            report = reports[name] = RunReport(ctx.run_id, name, RunStatus.OK)
            members.append((ctx, report))
        try:
            for phase in (pull_all, push_all):
                for ctx, report in members:
                    if report.status == RunStatus.OK:
                        await run_phase(ctx, report, phase, full, progress.get(ctx.name), stop)
        finally:
            for ctx, report in members:
                await finish_run(ctx, report)
    return [reports.get(n) or RunReport(new_id(), n, RunStatus.SKIPPED) for n in names]
