"""Scheduled syncs: the one place (with ``scheduler.py``) that talks to APScheduler.

:class:`SyncScheduler` runs an APScheduler 4 ``AsyncScheduler`` whose SQLAlchemy data store
lives in the hub's own database (its tables ``metadata``, ``tasks``, ``schedules``, ``jobs``
and ``job_results`` sit beside the hub's and do not clash with them). On SQLite the event
broker is local to the process; on PostgreSQL it is APScheduler's psycopg broker
(``LISTEN``/``NOTIFY``), so several daemons on one database share the schedules and split the
jobs between them.

Guarantees:

- Schedules derive from the configuration on every start: one per enabled connection with a
  ``schedule``; a changed schedule replaces the stored one, an unchanged one keeps its stored
  next run time, and schedules of connections no longer configured are removed.
- A connection never runs twice at once: the engine takes the connection's run lease (in the
  database, so across nodes), and this process skips a connection it is already running.
  APScheduler's own ``max_running_jobs`` is not used: its counter stays taken for ever when
  a daemon dies in the middle of a job (4.0.0a6), which would stop the connection's schedule.
- Runs missed while every daemon was down run once on start, not once per missed slot
  (``CoalescePolicy.latest``); a queued run is skipped when a run of the same connection
  started less than half a period before it was due, so a slow connection does not pile up
  back-to-back runs.
- A connection whose last run was interrupted (daemon stopped) or never finished (crash) is
  run again at once on start, resuming from its saved cursors.
- A connection without a ``schedule`` is named in a warning at start, and synced by a check
  every minute when writes owed to it are due, so they never wait unseen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler import (
    AsyncScheduler,
    CoalescePolicy,
    ConflictPolicy,
    current_async_scheduler,
    current_job,
)
from apscheduler.abc import EventBroker
from apscheduler.datastores.sqlalchemy import SQLAlchemyDataStore
from apscheduler.eventbrokers.local import LocalEventBroker
from apscheduler.eventbrokers.psycopg import PsycopgEventBroker
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.errors import CrmhubError, LeaseHeld, StoreError
from hub.schedule import ScheduleSpec, schedule_for
from hub.store import runs as run_rows
from hub.store.schema import outbox
from hub.store.status import ENDED, OutboxStatus, RunStatus

if TYPE_CHECKING:
    from hub.runtime import Hub

__all__ = ["JobFunction", "SyncScheduler", "build_scheduler", "run_sync"]

log = logging.getLogger("crmhub.scheduler")

JobFunction = Callable[["Hub", str, asyncio.Event], Awaitable[Any]]
"""What a scheduled run does: ``(hub, connection, stop) -> report``."""

SCHEDULE_PREFIX = "sync:"
TASK_PREFIX = "crmhub.sync:"
KEEPALIVE_TASK = "crmhub.keepalive"
HOUSEKEEPING_TASK = "crmhub.housekeeping"
OWED_TASK = "crmhub.owed"
OWED_CHECK_SECONDS = 60.0
RENEWAL_TASK = "crmhub.renewals"
RENEWAL_CHECK = timedelta(minutes=1)
"""How often the daemon looks for connections whose upkeep is due (``hub.renewals``: push
subscriptions to renew, Slack notifications to post); each has its own ``renew_every``."""
MIN_GRACE = timedelta(minutes=1)
# Statuses after which the next start runs the connection again at once.

_owners: dict[str, SyncScheduler] = {}


async def run_sync(hub: Hub, name: str, stop: asyncio.Event) -> Any:
    """The production job: one sync of ``name`` through the engine, unless its last run
    ended throttled until a time still ahead (a daily quota): then it waits for that."""
    from hub.engine import RunReport, sync_connection

    until = await throttled_until(hub, name)
    if until is not None and until > datetime.now(UTC):
        log.info("scheduled run of %r skipped: throttled until %s", name, until.isoformat())
        return RunReport(run_id="", connection=name, status=RunStatus.SKIPPED)
    return await sync_connection(hub, name, stop=stop)


async def throttled_until(hub: Hub, name: str) -> datetime | None:
    """When the provider lets ``name`` in again, if its latest run ended throttled."""
    async with hub.store.connect() as conn:
        return await run_rows.throttled_until(conn, name)


def build_scheduler(
    engine: AsyncEngine,
    *,
    identity: str = "",
    lease_duration: float = 30,
    cleanup_interval: float = 60,
) -> AsyncScheduler:
    """An ``AsyncScheduler`` storing its state through ``engine`` (SQLite or PostgreSQL)."""
    dialect = engine.dialect.name
    broker: EventBroker
    if dialect == "sqlite":
        broker = LocalEventBroker()
    elif dialect == "postgresql":
        if engine.dialect.driver != "psycopg":
            raise StoreError(
                f"the scheduler needs the psycopg driver on PostgreSQL (got "
                f"{engine.dialect.driver!r}): use a postgresql+psycopg:// database URL"
            )
        broker = PsycopgEventBroker.from_async_sqla_engine(engine, channel="crmhub_scheduler")
    else:
        raise StoreError(f"the scheduler supports SQLite and PostgreSQL, not {dialect!r}")
    return AsyncScheduler(
        SQLAlchemyDataStore(engine),
        broker,
        identity=identity,
        lease_duration=timedelta(seconds=lease_duration),
        # Cleanup also frees the run slot of a job whose daemon died mid-run.
        cleanup_interval=timedelta(seconds=cleanup_interval),
        logger=logging.getLogger("crmhub.apscheduler"),
    )


async def run_scheduled_sync(name: str, due: datetime | None = None) -> str:
    """The task function APScheduler calls; finds the :class:`SyncScheduler` running it."""
    scheduler = current_async_scheduler.get()
    owner = _owners.get(scheduler.identity) if scheduler else None
    if owner is None:
        log.warning("scheduled run of %r found no running crmhub scheduler", name)
        return "skipped"
    return await owner.run_job(name, due or _scheduled_fire_time())


async def run_keep_alive() -> list[str]:
    """The daily task refreshing OAuth grants that die when unused (``HubAuth.keep_alive``)."""
    scheduler = current_async_scheduler.get()
    owner = _owners.get(scheduler.identity) if scheduler else None
    if owner is None or owner.hub.auth is None:
        return []
    return await owner.hub.auth.keep_alive(owner.hub)


async def run_housekeeping() -> dict[str, int]:
    """The daily task deleting settled rows past their retention (``hub.housekeeping``)."""
    from hub.housekeeping import prune

    scheduler = current_async_scheduler.get()
    owner = _owners.get(scheduler.identity) if scheduler else None
    if owner is None:
        return {}
    hub = owner.hub
    settings = hub.config.hub
    pruned = (
        await prune(
            hub.store,
            timedelta(days=settings.retention_days),
            idle_older_than=timedelta(days=settings.idle_run_retention_days),
        )
    ).as_dict()
    if any(pruned.values()):
        log.info("housekeeping deleted %s", ", ".join(f"{n} {k}" for k, n in pruned.items()))
    return pruned


async def run_owed_check() -> list[str]:
    """The task syncing unscheduled connections that are owed writes (``run_owed``)."""
    scheduler = current_async_scheduler.get()
    owner = _owners.get(scheduler.identity) if scheduler else None
    return await owner.run_owed() if owner is not None else []


async def run_renewals() -> list[str]:
    """The task renewing expiring push subscriptions (Gmail watch, Graph subscriptions)."""
    from hub.renewals import renew_all

    scheduler = current_async_scheduler.get()
    owner = _owners.get(scheduler.identity) if scheduler else None
    return await renew_all(owner.hub) if owner is not None else []


class SyncScheduler:
    """Scheduled syncs of a hub's connections.

    ``async with SyncScheduler(hub, stop=stop) as s: await s.start()`` applies the
    configuration and runs jobs in the background until :meth:`shutdown` (or the block
    ends). ``job`` replaces the engine call (tests).
    """

    def __init__(
        self,
        hub: Hub,
        *,
        job: JobFunction = run_sync,
        stop: asyncio.Event | None = None,
        identity: str = "",
        lease_duration: float = 30,
        cleanup_interval: float = 60,
        owed_check: float = OWED_CHECK_SECONDS,
    ) -> None:
        self.hub = hub
        self.job = job
        self.owed_check = owed_check
        self.stop = stop or asyncio.Event()
        self.running: set[str] = set()
        self._last_start: dict[str, datetime] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._shut_down = False
        self.scheduler = build_scheduler(
            hub.store.engine,
            identity=identity,
            lease_duration=lease_duration,
            cleanup_interval=cleanup_interval,
        )

    @property
    def identity(self) -> str:
        return self.scheduler.identity

    async def __aenter__(self) -> SyncScheduler:
        await self.scheduler.__aenter__()
        _owners[self.identity] = self
        try:
            await self.apply_config()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: Any) -> None:
        try:
            # Leaving on an error or a cancellation: no more waiting for running syncs.
            await self.shutdown(grace=0 if exc_type is not None else 7.0)
        finally:
            _owners.pop(self.identity, None)
            await self.scheduler.__aexit__(None, None, None)

    async def start(self) -> None:
        """Start processing schedules and jobs; returns once the scheduler runs."""
        await self.resume_interrupted()
        self.warn_unscheduled()
        await self.scheduler.start_in_background()

    def wanted(self) -> dict[str, ScheduleSpec]:
        """The schedules the configuration asks for, by connection name."""
        config = self.hub.config
        specs = {name: schedule_for(config, name) for name in config.connections}
        return {name: spec for name, spec in specs.items() if spec is not None}

    async def apply_config(self) -> dict[str, list[str]]:
        """Make the stored schedules match the configuration; report what changed."""
        wanted = self.wanted()
        stored = {
            s.id.removeprefix(SCHEDULE_PREFIX): s
            for s in await self.scheduler.get_schedules()
            if s.id.startswith(SCHEDULE_PREFIX)
        }
        changes: dict[str, list[str]] = {"added": [], "replaced": [], "kept": [], "removed": []}
        for name, spec in sorted(wanted.items()):
            grace = max(spec.period(), MIN_GRACE)
            task_id = TASK_PREFIX + name
            await self.scheduler.configure_task(
                task_id, func=run_scheduled_sync, max_running_jobs=None, misfire_grace_time=grace
            )
            old = stored.get(name)
            if old is not None and old.metadata.get("schedule") == spec.text:
                changes["kept"].append(name)
                continue
            await self.scheduler.add_schedule(
                task_id,
                spec.trigger(),
                id=SCHEDULE_PREFIX + name,
                args=(name,),
                coalesce=CoalescePolicy.latest,
                misfire_grace_time=grace,
                metadata={"connection": name, "schedule": spec.text},
                conflict_policy=ConflictPolicy.replace,
            )
            changes["replaced" if old is not None else "added"].append(name)
        daily = ((KEEPALIVE_TASK, run_keep_alive), (HOUSEKEEPING_TASK, run_housekeeping))
        for task, task_func in daily:
            await self.scheduler.configure_task(task, func=task_func, max_running_jobs=None)
            await self.scheduler.add_schedule(
                task,
                IntervalTrigger(days=1),
                id=task,
                coalesce=CoalescePolicy.latest,
                conflict_policy=ConflictPolicy.do_nothing,
            )
        await self.scheduler.configure_task(OWED_TASK, func=run_owed_check, max_running_jobs=None)
        await self.scheduler.add_schedule(
            OWED_TASK,
            IntervalTrigger(seconds=self.owed_check),
            id=OWED_TASK,
            coalesce=CoalescePolicy.latest,
            conflict_policy=ConflictPolicy.replace,
        )
        await self.scheduler.configure_task(RENEWAL_TASK, func=run_renewals, max_running_jobs=None)
        await self.scheduler.add_schedule(
            RENEWAL_TASK,
            IntervalTrigger(seconds=RENEWAL_CHECK.total_seconds()),
            id=RENEWAL_TASK,
            coalesce=CoalescePolicy.latest,
            conflict_policy=ConflictPolicy.do_nothing,
        )
        for name in sorted(set(stored) - set(wanted)):
            await self.scheduler.remove_schedule(SCHEDULE_PREFIX + name)
            changes["removed"].append(name)
        for kind, names in changes.items():
            if names and kind != "kept":
                log.info("schedules %s: %s", kind, ", ".join(names))
        return changes

    def unscheduled(self) -> list[str]:
        """Enabled connections without a schedule."""
        wanted = self.wanted()
        connections = self.hub.config.connections
        return sorted(n for n, c in connections.items() if c.hub.enabled and n not in wanted)

    def warn_unscheduled(self) -> None:
        """One line per connection without a schedule, saying when the daemon syncs it."""
        from hub.webhooks import receiver_for

        for name in self.unscheduled():
            try:
                hooked = receiver_for(self.hub, name) is not None
            except Exception:  # a connector that cannot load fails its own runs, loudly
                hooked = False
            if self.hub.config.connection(name).hub.direction != "pull":
                when = f"when writes owed to it are due (checked every {self.owed_check:g} s)" + (
                    " and when its webhooks arrive" if hooked else ""
                )
            elif hooked:
                log.info("connection %r has no schedule: it is synced when it posts", name)
                continue
            else:
                when = "when `crmhub sync` is run, never by the daemon"
            log.warning(
                "connection %r has no schedule: it is synced only %s; set schedule = "
                '"every 5m" (or a cron expression) in [connections.%s] to sync it regularly',
                name,
                when,
                name,
            )

    async def run_owed(self) -> list[str]:
        """Sync each unscheduled connection that has owed writes due now (the rows its
        push would take); returns their names."""
        names = self.unscheduled()
        if not names or self.stop.is_set():
            return []
        now = datetime.now(UTC)
        due = or_(
            and_(
                outbox.c.status == OutboxStatus.PENDING,
                or_(outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= now),
            ),
            and_(outbox.c.status == OutboxStatus.DEAD, outbox.c.next_attempt_at <= now),
        )
        query = select(outbox.c.connection).where(outbox.c.connection.in_(names), due).distinct()
        async with self.hub.store.connect() as conn:
            owed = sorted(row.connection for row in await conn.execute(query))
        for name in owed:
            log.info("syncing %r: it has no schedule and writes owed to it are due", name)
            await self.run_job(name)
        return owed

    async def resume_interrupted(self) -> list[str]:
        """Queue an immediate run of each scheduled connection whose last run did not end."""
        async with self.hub.store.connect() as conn:
            resume = await run_rows.unfinished(conn, self.wanted())
        for name in resume:
            log.info("resuming %r: its last run did not finish", name)
            await self.scheduler.add_job(
                TASK_PREFIX + name, args=(name,), kwargs={"due": datetime.now(UTC)}
            )
        return resume

    async def run_job(self, name: str, due: datetime | None = None) -> str:
        """One scheduled run of ``name`` due at ``due``; returns the run's status, or why
        it was skipped. A run that started less than half a period before ``due`` (here
        or on another node) already did this run's work."""
        if self.stop.is_set():
            return "skipped"
        if name not in self.hub.config.connections:
            log.warning("scheduled run of %r skipped: no such connection configured", name)
            return "skipped"
        if name in self.running:
            log.info("scheduled run of %r skipped: it is still running", name)
            return "skipped"
        self.running.add(name)
        self._idle.clear()
        try:
            if due is not None and await self._ran_since(name, due - self._period(name) / 2):
                log.info("scheduled run of %r due %s skipped: a recent run covers it", name, due)
                return "skipped"
            started = datetime.now(UTC)
            report = await self.job(self.hub, name, self.stop)
        except LeaseHeld as exc:
            log.info("scheduled run of %r skipped: %s", name, exc)
            return "held"
        except CrmhubError as exc:  # says what is wrong and what to do: one line is enough
            log.error("scheduled run of %r failed: %s", name, exc, extra={"connection": name})
            return "failed"
        except Exception:
            log.exception("scheduled run of %r failed", name)
            return "failed"
        finally:
            self.running.discard(name)
            if not self.running:
                self._idle.set()
        status = str(getattr(report, "status", "ok"))
        if status != "interrupted":
            self._last_start[name] = started
        counts = getattr(report, "counts", None) or {}
        error = getattr(report, "error", None)
        log.log(
            logging.WARNING if status == "failed" else logging.INFO,
            "scheduled run of %r: %s%s%s",
            name,
            status,
            f" {counts}" if counts else "",
            f": {error}" if error else "",
            extra={"connection": name, "status": status},
        )
        return status

    def _period(self, name: str) -> timedelta:
        spec = self.wanted().get(name)
        return spec.period() if spec else timedelta(0)

    async def _ran_since(self, name: str, since: datetime) -> bool:
        """True when a run of ``name`` that started after ``since`` ended, not interrupted.

        A run still marked running is left out: it is either going on elsewhere (the
        engine's lease then holds this one back) or its process died."""
        last = self._last_start.get(name)
        if last is not None and last > since:
            return True
        async with self.hub.store.connect() as conn:
            return await run_rows.ran_since(conn, name, since, ENDED)

    async def shutdown(self, grace: float = 7.0) -> None:
        """Ask running syncs to stop after their page in flight; wait up to ``grace``
        seconds for them, then stop the scheduler (cancelling what is left)."""
        self.stop.set()
        if self._shut_down:
            return
        self._shut_down = True
        if self.running and grace > 0:
            log.info("waiting for running syncs to stop: %s", ", ".join(sorted(self.running)))
            try:
                async with asyncio.timeout(grace):
                    await self._idle.wait()
            except TimeoutError:
                log.warning("cancelling syncs still running: %s", ", ".join(self.running))
        await self.scheduler.stop()
        await self.scheduler.wait_until_stopped()


def _scheduled_fire_time() -> datetime | None:
    try:
        return current_job.get().scheduled_fire_time
    except LookupError:
        return None
