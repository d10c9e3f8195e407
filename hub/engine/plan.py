"""Plans: everything a sync would do, inside one transaction that is rolled back.

Several connections are planned as one sequence, the way ``sync_connections`` runs them:
every connection's pull, then every connection's push, all in the same transaction, so a
connection planned later sees what the earlier ones would have brought in ("matched 2",
not "created 3").
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

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
from hub.errors import CrmhubError
from hub.runtime import Hub
from hub.store.bulk import new_id
from hub.store.schema import outbox
from hub.store.status import OutboxStatus, RunStatus


async def plan_runs(
    hub: Hub, names: list[str], full: bool, progress: Mapping[str, Progress]
) -> list[RunReport]:
    """One plan report per connection of ``names``, in that order."""
    async with contextlib.AsyncExitStack() as stack:
        members: list[tuple[RunContext | None, RunReport]] = []
        for name in names:
            try:
                opened = await open_run(hub, name, full, stack, plan=True)
            except CrmhubError as exc:
                if len(names) == 1:
                    raise
                members.append((None, RunReport(new_id(), name, RunStatus.FAILED, error=str(exc))))
                continue
            members.append((opened, RunReport(opened.run_id, name, RunStatus.PLAN)))
        async with hub.store.connect() as db:
            trans = await db.begin()

            @contextlib.asynccontextmanager
            async def same() -> AsyncIterator[AsyncConnection]:
                yield db

            try:
                for phase in (pull_all, push_all):
                    for member, report in members:
                        if member is not None and report.status == RunStatus.PLAN:
                            await run_phase(
                                member,
                                report,
                                phase,
                                full,
                                progress.get(member.name),
                                None,
                                unexpected="raise" if len(names) == 1 else "report",
                                db_factory=same,
                            )
                            if report.status == RunStatus.HELD:
                                report.status = "plan"
                queued = await _queued(db)
            finally:
                await trans.rollback()
        for ctx, report in members:
            if ctx is None:
                continue
            await finish_run(ctx, report)
            report.plan = {
                "hub": ctx.plan_hub_changes,
                "remote": ctx.plan_remote,
                "queued_for_other_connections": {c: n for c, n in queued.items() if c != ctx.name},
                "held_deletes": ctx.held,
            }
    return [report for _, report in members]


async def _queued(db: AsyncConnection) -> dict[str, int]:
    rows = await db.execute(
        select(outbox.c.connection, func.count())
        .where(outbox.c.status == OutboxStatus.PENDING)
        .group_by(outbox.c.connection)
    )
    return {c: int(n) for c, n in rows}
