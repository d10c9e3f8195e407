"""``crmhub inbox``: list, show and retry received webhooks.

crmhub inbox [--status dead] [--source crm] [--limit 50] [--json]
crmhub inbox show ID [--json]
crmhub inbox retry ID
crmhub inbox retry --all-dead
"""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from hub.cli.app import app, console, fail, get_config, limit_option, print_json, print_table, run
from hub.inbox import STATUSES, Inbox, InboxItem
from hub.store import Store
from hub.store.status import InboxStatus

inbox_app = typer.Typer(help="Received webhooks: list, show, retry.", no_args_is_help=False)
app.add_typer(inbox_app, name="inbox")


async def _open() -> Store:
    return await Store.open(get_config().database_url)


def _when(item: InboxItem) -> str:
    return item.received_at.strftime("%Y-%m-%d %H:%M:%S")


@inbox_app.callback(invoke_without_command=True)
def inbox_list(
    ctx: typer.Context,
    status: str | None = typer.Option(
        None, "--status", "-s", help=f"Only items with this status ({', '.join(STATUSES)})."
    ),
    source: str | None = typer.Option(
        None, "--source", "--connection", help="Only items of this connection."
    ),
    limit: int = limit_option(50),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List inbox items, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    if status is not None and status not in STATUSES:
        raise fail(f"unknown status {status!r} (use one of: {', '.join(STATUSES)})")

    async def body() -> tuple[list[InboxItem], dict[str, int]]:
        store = await _open()
        try:
            inbox = Inbox(store)
            return list(await inbox.list(status, source=source, limit=limit)), await inbox.depth()
        finally:
            await store.close()

    items, depth = run(body)
    if as_json:
        print_json([item.summary() for item in items])
        return
    counts = ", ".join(f"{k} {v}" for k, v in depth.items())
    table = Table(title=f"inbox ({counts})")
    for column in ("id", "received", "source", "kind", "status", "attempts", "error"):
        table.add_column(column, overflow="fold")
    for item in items:
        table.add_row(
            str(item.id),
            _when(item),
            item.source,
            item.kind,
            item.status,
            str(item.attempts),
            escape(item.error.splitlines()[0][:80]) if item.error else "",
        )
    print_table(table, f"no inbox items{f' with status {status}' if status else ''} ({counts})")


def _body_view(item: InboxItem) -> Any:
    try:
        return item.json()
    except ValueError:
        return item.text()


@inbox_app.command("show")
def inbox_show(
    item_id: int = typer.Argument(..., metavar="ID", help="The inbox item's id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one item: its headers, body, status, last error and each failed attempt."""

    async def body() -> InboxItem | None:
        store = await _open()
        try:
            return await Inbox(store).show(item_id)
        finally:
            await store.close()

    item = run(body)
    if item is None:
        raise fail(f"no inbox item {item_id} (list them with `crmhub inbox`)")
    data = {**item.summary(), "headers": item.headers, "body": _body_view(item)}
    if as_json:
        print_json(data)
        return
    for key, value in item.summary().items():
        if key != "attempt_errors":
            console.print(f"[bold]{key}:[/] {escape(str(value))}", highlight=False)
    if item.attempt_errors:
        console.print("[bold]failed attempts:[/]")
        for number, failure in enumerate(item.attempt_errors, start=1):
            line = f"  {number}. {failure['at'][:19].replace('T', ' ')}  {failure['error']}"
            console.print(line, highlight=False, markup=False)
    console.print("[bold]headers:[/]")
    for name, value in sorted(item.headers.items()):
        console.print(f"  {name}: {value}", highlight=False, markup=False)
    console.print("[bold]body:[/]")
    console.print(item.text(), highlight=False, markup=False)


@inbox_app.command("retry")
def inbox_retry(
    item_id: int | None = typer.Argument(None, metavar="[ID]", help="The item to retry."),
    all_dead: bool = typer.Option(False, "--all-dead", help="Retry every dead item."),
) -> None:
    """Put a dead (or failed) item back in the queue with a fresh attempt count."""
    if (item_id is None) == (not all_dead):
        raise fail("give an item ID or --all-dead (not both)")

    async def body() -> int:
        store = await _open()
        try:
            inbox = Inbox(store)
            if all_dead:
                return await inbox.retry_dead()
            found = await inbox.show(item_id) if item_id is not None else None
            if found is None:
                raise fail(f"no inbox item {item_id} (list them with `crmhub inbox`)")
            if found.status == InboxStatus.MALFORMED:
                raise fail(f"item {item_id} is malformed: nothing can process it")
            return int(await inbox.retry(found.id))
        finally:
            await store.close()

    count = run(body)
    console.print(f"{count} item{'s' if count != 1 else ''} queued again", highlight=False)
