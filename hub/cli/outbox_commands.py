"""``crmhub outbox``: the writes the hub owes remote systems, and their dead letters."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy import func, select, update

from hub.cli.app import (
    ConnectionFilter,
    JsonOption,
    app,
    console,
    limit_option,
    open_hub,
    print_json,
    print_table,
    run,
)
from hub.cli.ids import find_id, short_ids
from hub.errors import CrmhubError
from hub.store import utcnow
from hub.store.schema import entities, outbox
from hub.store.status import OutboxStatus

outbox_app = typer.Typer(
    help="Owed writes: pending, done and dead letters.", invoke_without_command=True
)
app.add_typer(outbox_app, name="outbox")
STATUSES = ("pending", "done", "dead")


@outbox_app.callback()
def outbox_list(
    ctx: typer.Context,
    status: str = typer.Option("dead", "--status", "-s", help="pending, done, dead or all."),
    connection: str = ConnectionFilter,
    limit: int = limit_option(50),
    json_out: bool = JsonOption,
) -> None:
    """List owed writes (dead letters by default) with their last error."""
    if ctx.invoked_subcommand:
        return
    if status not in (*STATUSES, "all"):
        raise typer.BadParameter(f"use one of {', '.join(STATUSES)}, all", param_hint="--status")

    async def body() -> tuple[list[dict[str, Any]], dict[str, int], dict[str, str]]:
        async with open_hub() as hub:
            q = select(outbox).order_by(outbox.c.updated_at.desc()).limit(limit)
            if status != "all":
                q = q.where(outbox.c.status == status)
            if connection:
                q = q.where(outbox.c.connection == connection)
            totals = select(outbox.c.status, func.count()).group_by(outbox.c.status)
            async with hub.store.connect() as db:
                rows = [dict(r._mapping) for r in await db.execute(q)]
                counts = {s: int(n) for s, n in await db.execute(totals)}
                short = await short_ids(db, outbox.c.id, [r["id"] for r in rows])
                short |= await short_ids(db, entities.c.id, [r["entity_id"] for r in rows])
            return rows, counts, short

    rows, counts, short = run(body)
    if json_out:
        print_json(rows)
        return
    console.print(", ".join(f"{s} {counts.get(s, 0)}" for s in STATUSES))
    table = Table("id", "connection", "op", "entity", "status", "attempts", "next try", "error")
    for r in rows:
        table.add_row(
            short[r["id"]],
            r["connection"],
            r["op"],
            short[r["entity_id"]],
            r["status"],
            str(r["attempts"]),
            str(r["next_attempt_at"] or "-")[:19],
            escape((r["last_error"] or "")[:70]),
        )
    table.columns[0].no_wrap = table.columns[3].no_wrap = True
    what = {"pending": "pending writes", "done": "written rows", "dead": "dead letters"}
    where = f" for {connection!r}" if connection else ""
    print_table(table, f"no {what.get(status, 'owed writes')}{where}")


@outbox_app.command("retry")
def outbox_retry(
    row_id: str = typer.Argument(None, help="The row (a unique prefix of its id is enough)."),
    all_dead: bool = typer.Option(False, "--all-dead", help="Every dead letter."),
) -> None:
    """Make dead letters due again: the next run of their connection pushes them."""
    if not row_id and not all_dead:
        raise typer.BadParameter("name a row id or use --all-dead")

    async def body() -> int:
        async with open_hub() as hub:
            where = outbox.c.status == "dead"
            async with hub.store.begin() as db:
                if row_id:
                    found = await find_id(db, outbox.c.id, row_id, "outbox row", "crmhub outbox")
                    where = where & (outbox.c.id == found)
                result = await db.execute(
                    update(outbox)
                    .where(where)
                    .values(
                        status=OutboxStatus.PENDING,
                        attempts=0,
                        next_attempt_at=None,
                        updated_at=utcnow(),
                    )
                )
            if row_id and result.rowcount != 1:
                raise CrmhubError(f"outbox row {found} is not a dead letter: nothing to retry")
            return int(result.rowcount)

    console.print(f"{run(body)} owed write(s) will be pushed by the next run")
