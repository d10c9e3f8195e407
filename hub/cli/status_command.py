"""``crmhub status``: one screen saying whether everything is in step, and what needs a person.

Per connection: its last run (status, when, how long it took, its error's first line),
whether a run is going now (the run lease and its holder), the next run its schedule asks
for, the writes it is owed, runs held for approval, its credentials and how long it is
throttled. For the hub: open conflicts, webhook deliveries waiting or given up on, and
references waiting for their target. Every problem is one line naming the command that
deals with it; the exit status is 0 when there is none, 1 when there is one (2 when the
status cannot be read: configuration or database), so a monitor can run it as it is.

It reads only what indexes answer: per connection a handful of look-ups on
``ix_runs_connection_started``, ``ix_runs_connection_status_finished``, the lease's key
and ``ix_outbox_due`` (counted per stream, the streams found by walking that index); for
the hub ``ix_conflicts_open``, ``ix_inbox_status`` and a count of ``pending_refs`` that
stops at ``REFS_COUNTED``. No entity, link or settled row is read, so a big store answers
as fast as an empty one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.cli.app import app, console, fail, get_config, print_json
from hub.cli.ids import short_ids
from hub.errors import CrmhubError
from hub.runtime import Hub
from hub.schedule import ScheduleSpec, schedule_for
from hub.store import as_utc, utcnow
from hub.store import runs as run_rows
from hub.store.schema import conflicts, inbox, leases, outbox, pending_refs, runs
from hub.store.status import InboxStatus, OutboxStatus, RunStatus

__all__ = ["status"]

OWED_GRACE = timedelta(minutes=5)
"""Owed writes older than this (past the connection's schedule period) should have been
pushed: the daemon's owed check runs every minute, each scheduled run pushes."""
INBOX_GRACE = timedelta(minutes=15)
"""A delivery pending longer than this waits for an inbox processor (``crmhub up``)."""
OVERDUE_SLACK = timedelta(minutes=1)
REFS_COUNTED = 10_000
"""Pending references are counted up to this many (shown as ``10000+``)."""
SYNC_SOON = timedelta(days=7)
"""An idle grant (Xero) shows as expiring this long before it lapses."""
EXIT_CANNOT_READ = 2


@dataclass
class Problem:
    """Something that needs a person: what, and the command that deals with it."""

    connection: str | None
    what: str
    command: str
    """The one command to run (a person checks what it shows before running ``then``)."""
    then: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "connection": self.connection,
            "what": self.what,
            "command": self.command,
            "then": self.then,
        }


@dataclass
class ConnectionStatus:
    name: str
    connector: str
    enabled: bool
    direction: str
    schedule: str | None
    last_run: dict[str, Any] | None = None
    last_ok_at: datetime | None = None
    running: dict[str, Any] | None = None
    next_run_at: datetime | None = None
    throttled_until: datetime | None = None
    owed: dict[str, Any] = field(default_factory=dict)
    held_runs: list[dict[str, Any]] = field(default_factory=list)
    credentials: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "connection": self.name,
            "connector": self.connector,
            "enabled": self.enabled,
            "direction": self.direction,
            "schedule": self.schedule,
            "last_run": self.last_run,
            "last_ok_at": _iso(self.last_ok_at),
            "running": self.running,
            "next_run_at": _iso(self.next_run_at),
            "throttled_until": _iso(self.throttled_until),
            "owed": self.owed,
            "held_runs": self.held_runs,
            "credentials": self.credentials,
            "needs_action": [p.as_dict() for p in self.problems],
            "notes": self.notes,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _first_line(text: str | None) -> str | None:
    if not text:
        return None
    return text.strip().splitlines()[0][:200] if text.strip() else None


def ago(then: datetime, now: datetime) -> str:
    """``3m ago``, ``in 2h``: a coarse distance for a person reading a screen."""
    seconds = (now - then).total_seconds()
    text = duration(abs(seconds))
    return f"{text} ago" if seconds >= 0 else f"in {text}"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            whole, rest = divmod(int(seconds), size)
            smaller = {"d": ("h", 3600), "h": ("m", 60), "m": ("s", 1)}[unit]
            part = rest // smaller[1]
            return f"{whole}{unit}{part}{smaller[0]}" if part and whole < 10 else f"{whole}{unit}"
    return f"{seconds:.0f}s"  # pragma: no cover


# -- reading the store -------------------------------------------------------------------


async def _last_run(db: AsyncConnection, st: ConnectionStatus, now: datetime) -> None:
    row = await run_rows.latest(db, st.name)
    if row is None:
        return
    started, finished = as_utc(row.started_at), as_utc(row.finished_at)
    short = await short_ids(db, runs.c.id, [row.id])
    st.last_run = {
        "id": row.id,
        "short_id": short[row.id],
        "status": row.status,
        "started_at": _iso(started),
        "finished_at": _iso(finished),
        "seconds": round((finished - started).total_seconds(), 3) if finished else None,
        "error": _first_line(row.error),
    }
    st.throttled_until = await run_rows.throttled_until(db, st.name)
    if row.status == RunStatus.OK:
        st.last_ok_at = finished
    else:  # the index (connection, status, finished_at) answers with one look-up
        last_ok = await db.scalar(
            select(func.max(runs.c.finished_at)).where(
                runs.c.connection == st.name, runs.c.status == RunStatus.OK
            )
        )
        st.last_ok_at = as_utc(last_ok)


async def _lease(db: AsyncConnection, st: ConnectionStatus, now: datetime) -> None:
    row = (
        await db.execute(
            select(leases.c.holder, leases.c.expires_at).where(leases.c.name == f"run:{st.name}")
        )
    ).first()
    if row is not None and as_utc(row.expires_at) >= now:
        st.running = {"holder": row.holder, "lease_expires_at": _iso(as_utc(row.expires_at))}


async def _held(db: AsyncConnection, st: ConnectionStatus) -> None:
    rows = (
        await db.execute(
            select(runs.c.id, runs.c.started_at, runs.c.counts)
            .where(runs.c.connection == st.name, runs.c.status == RunStatus.HELD)
            # the index's own order: by started_at, SQLite would walk every run of the
            # connection along (connection, started_at) to spare itself a sort
            .order_by(runs.c.finished_at.desc())
        )
    ).all()
    short = await short_ids(db, runs.c.id, [r.id for r in rows])
    st.held_runs = [
        {
            "id": r.id,
            "short_id": short[r.id],
            "started_at": _iso(as_utc(r.started_at)),
            "deletes_held": int((r.counts or {}).get("deletes_held", 0)),
        }
        for r in rows
    ]


async def _streams(db: AsyncConnection, connection: str) -> list[str]:
    """The streams with outbox rows for ``connection``: one seek of ``ix_outbox_due`` each
    (a loose index scan), where ``SELECT DISTINCT`` would read every row."""
    found: list[str] = []
    while True:
        query = select(func.min(outbox.c.stream)).where(outbox.c.connection == connection)
        if found:
            query = query.where(outbox.c.stream > found[-1])
        stream = await db.scalar(query)
        if stream is None:
            return found
        found.append(str(stream))


async def _owed(db: AsyncConnection, st: ConnectionStatus, due_by: datetime) -> None:
    """Owed writes by status, each count a range of ``ix_outbox_due`` (connection, stream,
    status, created_at): ``overdue`` are pending ones made before ``due_by``."""
    pending = overdue = dead = 0
    oldest: datetime | None = None
    for stream in await _streams(db, st.name):
        here = (outbox.c.connection == st.name) & (outbox.c.stream == stream)
        waiting = here & (outbox.c.status == OutboxStatus.PENDING)
        n, first = (
            await db.execute(select(func.count(), func.min(outbox.c.created_at)).where(waiting))
        ).one()
        pending += int(n)
        if first is not None:
            first = as_utc(first)
            oldest = first if oldest is None else min(oldest, first)
        if n:
            overdue += int(
                await db.scalar(select(func.count()).where(waiting, outbox.c.created_at < due_by))
                or 0
            )
        dead += int(
            await db.scalar(select(func.count()).where(here, outbox.c.status == OutboxStatus.DEAD))
            or 0
        )
    st.owed = {
        "pending": pending,
        "overdue": overdue,
        "dead": dead,
        "oldest_pending_at": _iso(oldest),
    }


def _next_run(st: ConnectionStatus, spec: ScheduleSpec | None, now: datetime) -> None:
    """When the schedule asks for the next run: an interval after the last run started
    (the daemon counts from its own start, so this is within one interval; at once when
    it never ran), a cron expression's next match; never before the end of a throttle."""
    if spec is None:
        return
    if spec.interval is not None:
        last = st.last_run["started_at"] if st.last_run else None
        at = datetime.fromisoformat(last) + spec.interval if last else now
    else:
        at = (spec.trigger().next() or now).astimezone(UTC)
    if st.throttled_until is not None and st.throttled_until > at:
        at = st.throttled_until
    st.next_run_at = at


# -- judging ----------------------------------------------------------------------------


def _judge_runs(st: ConnectionStatus, spec: ScheduleSpec | None, now: datetime) -> None:
    name, run = st.name, st.last_run
    sync = f"crmhub sync {name}"
    if run is None:
        if spec is not None:
            st.problems.append(
                Problem(
                    name,
                    "never synced though it has a schedule: is the daemon (crmhub up) running?",
                    sync,
                )
            )
        else:
            st.notes.append(f"never synced: {sync}")
        return
    status = run["status"]
    if status == RunStatus.FAILED:
        st.problems.append(
            Problem(name, f"last run failed: {run['error'] or 'no error recorded'}", sync)
        )
    elif status == RunStatus.RUNNING and st.running is None:
        st.problems.append(
            Problem(name, "last run stopped without finishing (its lease expired)", sync)
        )
    elif status == RunStatus.INTERRUPTED and st.running is None:
        st.problems.append(Problem(name, "last run was interrupted", sync))
    for held in st.held_runs:
        deletions = f"{held['deletes_held']} deletion(s)" if held["deletes_held"] else "deletions"
        st.problems.append(
            Problem(
                name,
                f"run {held['short_id']} is held: {deletions} wait for approval "
                "(check the remote system first)",
                f"crmhub runs approve {held['short_id']}",
            )
        )
    throttled = st.throttled_until is not None and st.throttled_until > now
    if spec is not None and st.running is None and not throttled:
        started = datetime.fromisoformat(run["started_at"])
        late = now - started - 2 * spec.period() - OVERDUE_SLACK
        if late > timedelta(0):
            st.problems.append(
                Problem(
                    name,
                    f"no run since {started:%Y-%m-%d %H:%M} UTC though scheduled {spec.text}: "
                    "is the daemon (crmhub up) running?",
                    sync,
                )
            )


def _judge_owed(st: ConnectionStatus) -> None:
    name, owed = st.name, st.owed
    listing = f"crmhub outbox --connection {name}"
    if owed.get("dead"):
        st.problems.append(
            Problem(
                name,
                f"{owed['dead']} owed write(s) given up on (dead letters)",
                listing,
                "crmhub outbox retry --all-dead",
            )
        )
    if owed.get("overdue"):
        st.problems.append(
            Problem(
                name,
                f"{owed['overdue']} owed write(s) waiting longer than they should "
                f"(since {owed['oldest_pending_at'][:16].replace('T', ' ')} UTC)",
                f"{listing} --status pending",
                f"crmhub sync {name}",
            )
        )


def _judge_credentials(st: ConnectionStatus, idle_days: int | None, now: datetime) -> None:
    name, cred = st.name, st.credentials
    state = cred.get("status")
    connect = f"crmhub connect {name}"
    reason = f": {_first_line(cred.get('last_error'))}" if cred.get("last_error") else ""
    if state == "needs_reauth":
        st.problems.append(Problem(name, f"credentials need re-authorisation{reason}", connect))
    elif state == "not usable":
        st.problems.append(
            Problem(name, f"stored credentials cannot be decrypted{reason}", connect)
        )
    elif state == "not connected" and cred.get("auth") not in (None, "none"):
        st.problems.append(Problem(name, "no credentials stored", connect))
    refreshed = cred.get("refreshed_at")
    if idle_days and state == "ok" and refreshed:
        lapses = datetime.fromisoformat(refreshed) + timedelta(days=idle_days)
        cred["lapses_at"] = _iso(lapses)
        if lapses <= now:
            cred["status"] = "expired"
            st.problems.append(
                Problem(name, f"the grant lapsed unused on {lapses:%Y-%m-%d}", connect)
            )
        elif lapses - now <= SYNC_SOON:
            cred["status"] = "expiring"
            st.problems.append(
                Problem(
                    name,
                    f"the grant lapses unused on {lapses:%Y-%m-%d} unless refreshed "
                    "(the daemon refreshes it daily)",
                    f"crmhub sync {name}",
                )
            )


# -- the whole hub -----------------------------------------------------------------------


async def _credentials(hub: Hub) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """``crmhub connections``' rows by name, and each OAuth connection's idle limit."""
    from auth.flows import resolve
    from hub.authspec import OAUTH_KINDS
    from hub.cli.auth_commands import connection_rows

    rows = {row["connection"]: row for row in await connection_rows(hub)}
    idle: dict[str, int] = {}
    for name, row in rows.items():
        if row["auth"] not in OAUTH_KINDS:
            continue
        try:
            days = resolve(hub, name).settings.refresh_token_max_idle_days
        except CrmhubError:
            continue
        if days:
            idle[name] = days
    return rows, idle


async def _hub_wide(db: AsyncConnection, now: datetime) -> tuple[dict[str, Any], list[Problem]]:
    problems: list[Problem] = []
    open_conflicts = {
        str(c): int(n)
        for c, n in await db.execute(
            select(conflicts.c.connection, func.count())
            .where(conflicts.c.status == "open")
            .group_by(conflicts.c.connection)
        )
    }
    total = sum(open_conflicts.values())
    if total:
        where = ", ".join(f"{c} {n}" for c, n in sorted(open_conflicts.items()))
        problems.append(
            Problem(
                None,
                f"{total} open conflict(s) wait for a person ({where})",
                "crmhub conflicts",
                "crmhub conflicts resolve ID --take hub|remote|VALUE",
            )
        )
    counts: dict[str, int] = {}
    for status in (InboxStatus.PENDING, InboxStatus.DEAD, InboxStatus.MALFORMED):
        counts[status] = int(
            await db.scalar(select(func.count()).where(inbox.c.status == status)) or 0
        )
    oldest: datetime | None = None
    if counts[InboxStatus.PENDING]:
        first_id = select(func.min(inbox.c.id)).where(inbox.c.status == InboxStatus.PENDING)
        oldest = as_utc(
            await db.scalar(
                select(inbox.c.received_at).where(inbox.c.id == first_id.scalar_subquery())
            )
        )
    if counts[InboxStatus.DEAD]:
        problems.append(
            Problem(
                None,
                f"{counts[InboxStatus.DEAD]} webhook delivery(ies) given up on",
                "crmhub inbox --status dead",
                "crmhub inbox retry --all-dead",
            )
        )
    if oldest is not None and now - oldest > INBOX_GRACE:
        problems.append(
            Problem(
                None,
                f"{counts[InboxStatus.PENDING]} webhook delivery(ies) waiting, the oldest "
                f"since {oldest:%Y-%m-%d %H:%M} UTC: the daemon processes them; is it running?",
                "crmhub up",
            )
        )
    refs = select(pending_refs.c.connection).limit(REFS_COUNTED + 1).subquery()
    waiting_refs = int(await db.scalar(select(func.count()).select_from(refs)) or 0)
    return (
        {
            "open_conflicts": total,
            "open_conflicts_by_connection": open_conflicts,
            "inbox": {
                "pending": counts[InboxStatus.PENDING],
                "dead": counts[InboxStatus.DEAD],
                "malformed": counts[InboxStatus.MALFORMED],
                "oldest_pending_at": _iso(oldest),
            },
            "pending_references": min(waiting_refs, REFS_COUNTED),
            "pending_references_more": waiting_refs > REFS_COUNTED,
        },
        problems,
    )


async def gather(hub: Hub, now: datetime | None = None) -> dict[str, Any]:
    """The status of every configured connection and of the hub, as ``--json`` prints it."""
    now = now or utcnow()
    config = hub.config
    credentials, idle = await _credentials(hub)
    found: list[ConnectionStatus] = []
    async with hub.store.connect() as db:
        for name, conn in sorted(config.connections.items()):
            spec = schedule_for(config, name)
            st = ConnectionStatus(
                name=name,
                connector=conn.hub.connector,
                enabled=conn.hub.enabled,
                direction=conn.hub.direction,
                schedule=spec.text if spec else None,
            )
            await _last_run(db, st, now)
            await _lease(db, st, now)
            await _held(db, st)
            grace = OWED_GRACE + (spec.period() if spec is not None else timedelta(0))
            await _owed(db, st, now - grace)
            _next_run(st, spec, now)
            row = credentials.get(name, {})
            st.credentials = {
                key: row.get(key)
                for key in ("auth", "status", "expires_at", "refreshed_at", "last_error")
            }
            st.credentials["lapses_at"] = None
            if conn.hub.enabled:
                _judge_runs(st, spec, now)
                _judge_credentials(st, idle.get(name), now)
                _judge_owed(st)
            else:  # what it is owed waits for it to be enabled again: no problem of today
                st.notes.append("disabled (enabled = false)")
            found.append(st)
        hub_wide, hub_problems = await _hub_wide(db, now)
    problems = [p for st in found for p in st.problems] + hub_problems
    return {
        "checked_at": now.isoformat(),
        "ok": not problems,
        "connections": [st.as_dict() for st in found],
        "hub": hub_wide,
        "needs_action": [p.as_dict() for p in problems],
    }


# -- printing ----------------------------------------------------------------------------

_COLOURS = {"ok": "green", "held": "yellow", "throttled": "yellow", "running": "cyan"}


def _run_cell(c: dict[str, Any], now: datetime) -> str:
    run = c["last_run"]
    if run is None:
        return "never"
    status = run["status"]
    colour = _COLOURS.get(status, "red")
    when = ago(datetime.fromisoformat(run["started_at"]), now)
    took = f" ({duration(run['seconds'])})" if run["seconds"] is not None else ""
    text = f"[{colour}]{status}[/] {when}{took}"
    if run["error"]:
        text += f"\n[dim]{escape(run['error'][:80])}[/]"
    return text


def _now_cell(c: dict[str, Any], now: datetime) -> str:
    if c["running"]:
        return f"[cyan]running[/] ({escape(c['running']['holder'])})"
    if not c["enabled"]:
        return "disabled"
    until = c["throttled_until"]
    if until and datetime.fromisoformat(until) > now:
        return f"[yellow]throttled[/] until {until[:16].replace('T', ' ')}"
    if c["next_run_at"]:
        at = datetime.fromisoformat(c["next_run_at"])
        return f"next {'due now' if at <= now else ago(at, now)}\n[dim]{c['schedule']}[/]"
    return "[dim]no schedule[/]"


def _owed_cell(c: dict[str, Any]) -> str:
    owed = c["owed"]
    parts = []
    if owed["pending"]:
        colour = "red" if owed["overdue"] else ""
        text = f"{owed['pending']} pending"
        parts.append(f"[{colour}]{text}[/]" if colour else text)
    if owed["dead"]:
        parts.append(f"[red]{owed['dead']} dead[/]")
    if c["held_runs"]:
        parts.append(f"[yellow]{len(c['held_runs'])} held run(s)[/]")
    return ", ".join(parts) or "-"


def _credentials_cell(c: dict[str, Any], now: datetime) -> str:
    cred = c["credentials"]
    state = cred.get("status") or "-"
    if state in ("no credentials needed",):
        return "[dim]none needed[/]"
    colour = {"ok": "green", "expiring": "yellow"}.get(state, "red")
    if state == "not connected" and cred.get("auth") in (None, "none"):
        colour = ""
    text = f"[{colour}]{escape(state)}[/]" if colour else escape(state)
    if cred.get("lapses_at") and state in ("ok", "expiring"):
        text += f"\n[dim]grant lapses {cred['lapses_at'][:10]}[/]"
    return text


def render(report: dict[str, Any]) -> None:
    now = datetime.fromisoformat(report["checked_at"])
    rows = report["connections"]
    console.print(f"[bold]crmhub status[/] at {now:%Y-%m-%d %H:%M:%S} UTC", highlight=False)
    if not rows:
        console.print(
            "no connections configured: add a [connections.NAME] table to crmhub.toml "
            "(`crmhub init` writes a commented one)",
            highlight=False,
            markup=False,
        )
    else:
        table = Table("connection", "connector", "last run", "now / next", "owed", "credentials")
        for c in rows:
            table.add_row(
                c["connection"],
                c["connector"],
                _run_cell(c, now),
                _now_cell(c, now),
                _owed_cell(c),
                _credentials_cell(c, now),
            )
        console.print(table)
    h = report["hub"]
    refs = f"{h['pending_references']}{'+' if h['pending_references_more'] else ''}"
    inbox_counts = h["inbox"]
    console.print(
        f"hub: {h['open_conflicts']} open conflict(s); webhook inbox "
        f"{inbox_counts['pending']} pending, {inbox_counts['dead']} dead, "
        f"{inbox_counts['malformed']} malformed; {refs} reference(s) waiting for their record",
        highlight=False,
        markup=False,
    )
    for c in rows:
        for note in c["notes"]:
            console.print(f"{c['connection']}: {note}", style="dim", highlight=False, markup=False)
    problems = report["needs_action"]
    if not problems:
        if rows:
            console.print("[green]Everything is in step: nothing needs you.[/]", highlight=False)
        return
    console.print(f"[bold red]{len(problems)} thing(s) need you:[/]", highlight=False)
    for p in problems:
        who = f"{p['connection']}: " if p["connection"] else ""
        then = f"\n      then: [bold]{escape(p['then'])}[/]" if p["then"] else ""
        console.print(
            f"  - {escape(who + p['what'])}\n      run: [bold]{escape(p['command'])}[/]{then}",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def status(
    json_out: bool = typer.Option(False, "--json", help="Print JSON (stable keys) instead."),
) -> None:
    """Is everything in step, and if not, what needs you? Exit status 1 when something does.

    Each connection's last run, current run, next run, owed writes, held runs and
    credentials; open conflicts and webhook deliveries. Every problem names its command.
    Exit status 0: nothing needs you; 1: something does; 2: the status could not be read.
    """
    from hub.cli.auth_commands import open_hub

    async def body() -> dict[str, Any]:
        hub = await open_hub(get_config())
        try:
            return await gather(hub)
        finally:
            await hub.close()

    try:
        report = asyncio.run(body())
    except CrmhubError as exc:
        raise fail(str(exc), EXIT_CANNOT_READ) from None
    if json_out:
        print_json(report)
    else:
        render(report)
    if not report["ok"]:
        raise typer.Exit(1)
