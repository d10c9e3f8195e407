"""Commands for the core: init, connectors, sync, runs, conflicts, entities, mapping, db."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import select

from hub.cli.app import (
    ConnectionFilter,
    app,
    console,
    fail,
    limit_option,
    open_hub,
    print_json,
    print_table,
    run,
    state,
)
from hub.cli.ids import find_id, short_ids
from hub.config import CONFIG_NAME, find_config
from hub.errors import ConfigError
from hub.registry import Registry
from hub.runtime import Hub
from hub.store.schema import conflicts, entities, runs
from hub.store.status import RunStatus

db_app = typer.Typer(help="The database: migrations and retention.", no_args_is_help=True)
runs_app = typer.Typer(help="Runs: history and held deletions.", invoke_without_command=True)
conflicts_app = typer.Typer(help="Conflicts waiting for a person.", invoke_without_command=True)
entities_app = typer.Typer(help="Golden records.", invoke_without_command=True)
mapping_app = typer.Typer(help="Mapping files.", no_args_is_help=True)
connectors_app = typer.Typer(
    help="Installed connectors; `check` a declaration.", invoke_without_command=True
)
app.add_typer(db_app, name="db")
app.add_typer(runs_app, name="runs")
app.add_typer(conflicts_app, name="conflicts")
app.add_typer(entities_app, name="entities")
app.add_typer(mapping_app, name="mapping")
app.add_typer(connectors_app, name="connectors")

JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")
RUN_STATUSES = ", ".join(s for s in RunStatus if s not in (RunStatus.SKIPPED, RunStatus.PLAN))

INIT_TEMPLATE = """\
# crmhub configuration. Relative paths are relative to this file.
# Every [connections.NAME] table is one configured use of a connector.

[hub]
# SQLite file (default) or a PostgreSQL URL: postgresql+psycopg://user@host/db
# ($CRMHUB_DATABASE_URL overrides it).
database = "crmhub.db"
# Region for phone numbers written without a country code.
# phone_region = "GB"
# A run deleting more than this share of a connection's linked records, or more
# than this many, waits for `crmhub runs approve RUN_ID`.
delete_guard_share = 0.10
delete_guard_max = 50
# Days to keep settled runs, written outbox rows and processed webhook deliveries
# (the daemon deletes older ones once a day; `crmhub db prune` at once).
# retention_days = 30
# Days to keep runs that finished well and changed nothing.
# idle_run_retention_days = 3

# [connections.people]
# connector = "csv"
# path = "people.csv"            # settings of the connector
# direction = "both"             # both | pull | push
# schedule = "every 5m"          # or cron: "*/15 * * * *"
# conflict_policy = "newest"     # newest | prefer | hub | remote | manual
# prefer = ["crm", "people"]     # for policy "prefer": first listed wins
# field_policies = { phone = "manual" }
# delete_policy = "unlink"       # unlink | propagate | ignore
# mapping = "mappings/people.toml"   # default: the connector's own mapping

# Secrets need not be written here. "env:VARIABLE" reads an environment variable:
# [connections.newsletter]
# connector = "mailchimp"
# list_id = "a1b2c3d4e5"
# webhook_secret = "env:NEWSLETTER_WEBHOOK_SECRET"
# Or override any setting with CRMHUB_CONNECTIONS__<NAME>__<SETTING>: NAME in upper
# case with each "-" written "_2D_" (contact-form: CONTACT_2D_FORM), a table's
# setting after another "__" (CRMHUB_CONNECTIONS__CRM__OAUTH__CLIENT_SECRET).
"""


@app.command()
def init(
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a commented crmhub.toml (and the secret key file) in the current directory."""
    path = Path(state.config_path or find_config())
    if path.exists() and not force:
        raise fail(f"{path} exists already (use --force to overwrite)")
    path.write_text(INIT_TEMPLATE, encoding="utf-8")
    console.print(f"wrote {path}")
    try:
        from auth.keys import create_key_file
    except ImportError:
        return
    key = path.parent / "crmhub.key"
    if not key.exists():
        create_key_file(key)
        console.print(f"wrote {key} (mode 0600; keep it safe, it decrypts stored tokens)")


@connectors_app.callback()
def connectors(ctx: typer.Context, json_out: bool = JSON) -> None:
    """List installed connectors: name, version, package, streams and status."""
    if ctx.invoked_subcommand:
        return
    registry = Registry.discover()
    rows: list[dict[str, Any]] = []
    listed = sorted(
        [*registry.plugins.values(), *registry.shadowed], key=lambda p: (p.name, p.shadowed)
    )
    for info in listed:
        streams = _default_streams(info.cls) if info.cls is not None else []
        rows.append(
            {
                "name": info.name,
                "version": info.version,
                "package": info.package,
                "streams": streams,
                "status": info.status,
                "error": info.error,
                "note": info.note,
                "description": getattr(info.cls, "description", "") if info.cls else "",
            }
        )
    if json_out:
        print_json(rows)
        return
    table = Table("name", "version", "package", "streams", "status")
    for r in rows:
        table.add_row(r["name"], r["version"], r["package"], ", ".join(r["streams"]), _status(r))
    console.print(table)


@connectors_app.command("check")
def connectors_check(
    target: str = typer.Argument(
        ..., metavar="PATH_OR_NAME", help="A declaration file, or an installed connector."
    ),
) -> None:
    """Check a declaration and its hooks without running anything.

    Every problem with its file, line and key (exit 1), or a line saying what it declares.
    """
    from hub.rest.connector import RestConnector, declared

    if target.endswith(".toml") or Path(target).is_file():
        try:
            cls: Any = declared(Path(target))
        except ConfigError as exc:
            _problems([str(p) for p in exc.problems])
        except OSError as exc:
            raise fail(f"cannot read {target}: {exc.strerror or exc}") from None
    else:
        registry = Registry.discover()
        info = registry.plugins.get(target)
        if info is None:
            raise fail(
                f"no connector named {target!r} (installed: {', '.join(sorted(registry.plugins))})"
            )
        if info.cls is None:
            _problems((info.error or "").splitlines())
        cls = info.cls
        for other in registry.shadowed:
            if other.name == target:
                console.print(f"note: {other.note}", highlight=False, markup=False)
    streams = ", ".join(_default_streams(cls)) or "none"
    if isinstance(cls, type) and issubclass(cls, RestConnector):
        auth = cls.declaration.client.auth.kind
        where = cls.loaded.source or target
        said = f"{where}: {cls.name} {cls.version} OK (auth {auth}; streams: {streams})"
        must = sorted(cls.loaded.unfilled)
        if must:
            said += f"; connections must set {', '.join(must)}"
    else:
        said = f"{target}: {cls.name} {cls.version} loads (a Python connector; streams: {streams})"
    console.print(said, highlight=False, markup=False, soft_wrap=True)


def _problems(lines: list[str]) -> None:
    for line in lines:
        console.print(f"[red]{escape(line)}[/]", highlight=False, soft_wrap=True)
    console.print(f"{len(lines)} problem(s)", highlight=False)
    raise typer.Exit(1)


def _status(row: dict[str, Any]) -> str:
    """A connector's status as markup; the texts are escaped, their keys in brackets kept."""
    if row["status"] == "broken":
        return f"[red]broken[/]: {escape(row['error'] or '')}"
    note = f": {escape(row['note'])}" if row["note"] else ""
    if row["status"] == "shadowed":
        return f"[yellow]shadowed[/]{note}"
    return f"[green]ok[/]{note}"


def _default_streams(cls: Any) -> list[str]:
    """Streams of a connector under its default settings (some depend on settings)."""
    from hub.connector import ConnectorContext

    try:
        connector = cls(cls.Settings.model_construct(), ConnectorContext(connection="-"))
        return [f"{s.name} -> {s.entity}" for s in connector.streams()]
    except Exception:
        return []


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (also done on every start)."""

    async def body() -> None:
        async with open_hub() as hub:
            console.print(f"database at revision {await hub.store.revision()}")

    run(body)


@db_app.command("prune")
def db_prune(
    older_than: int = typer.Option(
        None,
        "--older-than",
        min=1,
        help="Days to keep (default: [hub] retention_days, 30).",
    ),
    json_out: bool = JSON,
) -> None:
    """Delete settled runs, written owed writes and processed deliveries past retention.

    Runs, written outbox rows and processed inbox deliveries older than the retention go
    (the daemon does this once a day).
    """
    from datetime import timedelta

    from hub.housekeeping import prune

    async def body() -> None:
        async with open_hub() as hub:
            days = older_than or hub.config.hub.retention_days
            idle_days = min(days, hub.config.hub.idle_run_retention_days)
            pruned = (
                await prune(
                    hub.store, timedelta(days=days), idle_older_than=timedelta(days=idle_days)
                )
            ).as_dict()
        if json_out:
            print_json({"older_than_days": days, "idle_runs_older_than_days": idle_days, **pruned})
            return
        console.print(
            f"deleted what was settled more than {days} days ago"
            f" (runs that changed nothing: {idle_days}): "
            + ", ".join(f"{n} {what}" for what, n in pruned.items())
        )

    run(body)


@app.command()
def sync(
    connections: list[str] = typer.Argument(None, help="Connections to sync (default: all)."),
    full: bool = typer.Option(False, "--full", help="Ignore cursors: pull everything."),
    plan: bool = typer.Option(False, "--plan", help="Show what would change; write nothing."),
    json_out: bool = JSON,
) -> None:
    """Sync connections now: pull, merge, push."""
    from hub.engine import sync_connections

    async def body() -> int:
        async with open_hub() as hub:
            names = connections or [n for n, c in hub.config.connections.items() if c.hub.enabled]
            for name in names:
                hub.config.connection(name)
            with Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
                disable=json_out,
            ) as bar:
                tasks = {name: bar.add_task(name, total=None, detail="") for name in names}

                def progress_of(name: str) -> Any:
                    def progress(phase: str, n: int) -> None:
                        bar.update(tasks[name], detail=f"{phase} {n}")

                    return progress

                reports = await sync_connections(
                    hub,
                    names,
                    full=full,
                    plan=plan,
                    progress={name: progress_of(name) for name in names},
                )
        failed = 0
        for report in reports:
            if report.status not in ("ok", "plan", "skipped") or report.error:
                failed += 1
            if not json_out:
                _print_report(report)
        if json_out:
            print_json(
                [
                    {
                        "run_id": r.run_id,
                        "connection": r.connection,
                        "status": r.status,
                        "counts": r.counts,
                        "error": r.error,
                        "errors": r.errors,
                        "duration": round(r.duration, 3),
                        "plan": r.plan,
                    }
                    for r in reports
                ]
            )
        return failed

    if run(body):
        raise typer.Exit(1)


def _print_report(report: Any) -> None:
    colour = {"ok": "green", "plan": "cyan", "held": "yellow"}.get(report.status, "red")
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items()))
    if not counts and report.status in ("ok", "plan"):
        counts = "no changes"
    console.print(
        f"[bold]{report.connection}[/]: [{colour}]{report.status}[/] in "
        f"{report.duration:.2f}s" + (f": {counts}" if counts else ""),
        highlight=False,
    )
    if report.error:
        console.print(f"  {report.error}", style="red", highlight=False, markup=False)
    for line in report.errors[:10]:
        console.print(f"  {line}", highlight=False, markup=False)
    if report.plan:
        for change in report.plan["hub"][:50]:
            console.print(f"  hub: {json.dumps(change, default=str)}", markup=False)
        for change in report.plan["remote"][:50]:
            console.print(f"  remote: {json.dumps(change, default=str)}", markup=False)
        for name, n in report.plan["queued_for_other_connections"].items():
            console.print(f"  would owe {n} record(s) to {name}", markup=False)


@runs_app.callback()
def runs_list(
    ctx: typer.Context,
    connection: str = ConnectionFilter,
    status: str = typer.Option(
        None, "--status", "-s", help=f"Only runs with this status ({RUN_STATUSES})."
    ),
    limit: int = limit_option(20),
    json_out: bool = JSON,
) -> None:
    """List recent runs, newest first."""
    if ctx.invoked_subcommand:
        return

    async def body() -> tuple[list[dict[str, Any]], dict[str, str]]:
        async with open_hub() as hub:
            q = select(runs).order_by(runs.c.started_at.desc()).limit(limit)
            if connection:
                q = q.where(runs.c.connection == connection)
            if status:
                q = q.where(runs.c.status == status)
            async with hub.store.connect() as db:
                rows = [dict(r._mapping) for r in await db.execute(q)]
                return rows, await short_ids(db, runs.c.id, [r["id"] for r in rows])

    rows, short = run(body)
    if json_out:
        print_json(rows)
        return
    table = Table("id", "connection", "status", "started", "seconds", "counts", "error")
    table.columns[0].no_wrap = True
    for r in rows:
        secs = (r["finished_at"] - r["started_at"]).total_seconds() if r["finished_at"] else None
        table.add_row(
            short[r["id"]],
            r["connection"],
            r["status"],
            str(r["started_at"])[:19],
            f"{secs:.2f}" if secs is not None else "-",
            ", ".join(f"{k} {v}" for k, v in sorted(r["counts"].items())),
            escape((r["error"] or "")[:80]),
        )
    which = " ".join(filter(None, [status, "runs", connection and f"of {connection!r}"]))
    print_table(table, f"no {which} yet" if not status else f"no {which}")


@runs_app.command("approve")
def runs_approve(run_id: str) -> None:
    """Apply the deletions a held run is waiting for."""
    from hub.engine import approve

    async def body() -> Any:
        async with open_hub() as hub:
            full_id = await _full_run_id(hub, run_id)
            return await approve(hub, full_id)

    done = run(body)
    console.print(f"applied {done.applied} deletion(s)", highlight=False)
    if done.kept:
        console.print(
            f"kept {done.kept} record(s) held for deletion that were seen again since "
            "(or are gone already)",
            highlight=False,
        )


async def _full_run_id(hub: Hub, prefix: str) -> str:
    async with hub.store.connect() as db:
        return await find_id(db, runs.c.id, prefix, "run", "crmhub runs")


@conflicts_app.callback()
def conflicts_list(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "--all", help="Include resolved conflicts."),
    connection: str = ConnectionFilter,
    limit: int = limit_option(50),
    json_out: bool = JSON,
) -> None:
    """List open conflicts, newest first."""
    if ctx.invoked_subcommand:
        return

    async def body() -> tuple[list[dict[str, Any]], dict[str, str]]:
        async with open_hub() as hub:
            q = select(conflicts).order_by(conflicts.c.id.desc()).limit(limit)
            if not all_:
                q = q.where(conflicts.c.status == "open")
            if connection:
                q = q.where(conflicts.c.connection == connection)
            async with hub.store.connect() as db:
                rows = [dict(r._mapping) for r in await db.execute(q)]
                return rows, await short_ids(db, entities.c.id, [r["entity_id"] for r in rows])

    rows, short = run(body)
    if json_out:
        print_json(rows)
        return
    table = Table("id", "entity", "field", "connection", "hub", "remote", "base", "status")
    table.columns[1].no_wrap = True
    for r in rows:
        table.add_row(
            str(r["id"]),
            short[r["entity_id"]],
            r["field"],
            r["connection"],
            json.dumps(r["hub_value"]),
            json.dumps(r["remote_value"]),
            json.dumps(r["base_value"]),
            r["status"],
        )
    print_table(table, "no conflicts" if all_ else "no open conflicts")


@conflicts_app.command("resolve")
def conflicts_resolve(
    conflict_id: int,
    take: str = typer.Option(..., "--take", help="hub, remote, or a value."),
) -> None:
    """Settle a conflict: keep the hub's value, take the remote's, or set a value."""
    from hub.conflicts import resolve_conflict

    async def body() -> Any:
        async with open_hub() as hub:
            return await resolve_conflict(hub, conflict_id, take)

    value = run(body)
    console.print(f"conflict {conflict_id} resolved: {json.dumps(value)}")


@mapping_app.command("check")
def mapping_check(files: list[Path]) -> None:
    """Check mapping files; every problem is listed with file, line and key."""
    from hub.mapping import check_mapping_file

    problems = [p for f in files for p in check_mapping_file(f)]
    for p in problems:
        console.print(f"[red]{escape(str(p))}[/]", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)
    console.print(f"{len(files)} mapping file(s) OK")


__all__ = ["CONFIG_NAME"]


@app.command()
def demo(
    folder: Path = typer.Option(
        Path("demo"), "--folder", help="The demo's folder (kept between starts)."
    ),
    port: int = typer.Option(8750, "--port", help="The hub's HTTP port (0: any free port)."),
    seconds: float = typer.Option(
        None,
        "--seconds",
        help="Stop this many seconds after the demo's steps (default: run until Ctrl-C).",
    ),
    fresh: bool = typer.Option(
        False, "--fresh", help="Start over: write sales.csv and crmhub.toml again."
    ),
) -> None:
    """Start a Mailchimp sandbox and the hub, and watch records flow both ways."""
    from hub.demo import run_demo

    def say(line: str) -> None:
        console.print(line, highlight=False, markup=False, soft_wrap=True)

    if not run(lambda: run_demo(folder, port=port, seconds=seconds, fresh=fresh, say=say)):
        raise typer.Exit(1)
