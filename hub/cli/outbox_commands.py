"""``crmhub outbox``: the writes the hub owes remote systems, and their dead letters."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table
from sqlalchemy import func, select, update

from hub.cli.app import app, console, open_hub, print_json, run
from hub.errors import ConfigError
from hub.store import utcnow
from hub.store.schema import outbox

outbox_app = typer.Typer(
    help="Owed writes: pending, done and dead letters.", invoke_without_command=True
)
app.add_typer(outbox_app, name="outbox")
STATUSES = ("pending", "done", "dead")


@outbox_app.callback()
def outbox_list(
    ctx: typer.Context,
    status: str = typer.Option("dead", "--status", help="pending, done, dead or all."),
    connection: str = typer.Option(None, "--connection", help="Only this connection."),
    limit: int = typer.Option(50, "--limit", "-n", min=1),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List owed writes (dead letters by default) with their last error."""
    if ctx.invoked_subcommand:
        return
    if status not in (*STATUSES, "all"):
        raise typer.BadParameter(f"use one of {', '.join(STATUSES)}, all", param_hint="--status")

    async def body() -> tuple[list[dict[str, Any]], dict[str, int]]:
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
            return rows, counts

    rows, counts = run(body)
    if json_out:
        print_json(rows)
        return
    console.print(", ".join(f"{s} {counts.get(s, 0)}" for s in STATUSES))
    table = Table("id", "connection", "op", "entity", "status", "attempts", "next try", "error")
    for r in rows:
        table.add_row(
            r["id"][:8],
            r["connection"],
            r["op"],
            r["entity_id"][:8],
            r["status"],
            str(r["attempts"]),
            str(r["next_attempt_at"] or "-")[:19],
            (r["last_error"] or "")[:70],
        )
    console.print(table)


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
            if row_id:
                where = where & outbox.c.id.like(f"{row_id}%")
            async with hub.store.begin() as db:
                result = await db.execute(
                    update(outbox)
                    .where(where)
                    .values(status="pending", attempts=0, next_attempt_at=None, updated_at=utcnow())
                )
            if row_id and result.rowcount != 1:
                raise ConfigError(f"no single dead letter matches {row_id!r}")
            return int(result.rowcount)

    console.print(f"{run(body)} owed write(s) will be pushed by the next run")
