"""Schedule strings, and the scheduler running injected jobs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler import CoalescePolicy, ConflictPolicy
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import func, select

from auth.credentials import VaultAuth
from hub.config import load_config
from hub.errors import ConfigError, LeaseHeld
from hub.registry import Registry
from hub.runtime import Hub
from hub.schedule import parse_schedule, schedule_for
from hub.store import Lease, Store
from hub.store.schema import runs
from hub.sync_scheduler import SCHEDULE_PREFIX, TASK_PREFIX, SyncScheduler

# -- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normal", "period"),
    [
        ("every 5m", "every 5m", timedelta(minutes=5)),
        ("every 2h", "every 2h", timedelta(hours=2)),
        ("every 30s", "every 30s", timedelta(seconds=30)),
        ("every 1d", "every 1d", timedelta(days=1)),
        ("Every  90 seconds", "every 90s", timedelta(seconds=90)),
        ("*/15 * * * *", "*/15 * * * *", timedelta(minutes=15)),
        ("0 3 * * *", "0 3 * * *", timedelta(days=1)),
    ],
)
def test_good_schedules(text: str, normal: str, period: timedelta) -> None:
    spec = parse_schedule(text, "people")
    assert spec.text == normal
    assert spec.period() == period
    first = spec.trigger().next()
    assert first is not None and first.tzinfo is not None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("every 0m", "at least 1"),
        ("every 5y", "unknown unit 'y'"),
        ("every five minutes", "not an interval"),
        ("hourly", "5 fields"),
        ("*/15 * * *", "5 fields, got 4"),
        ("61 * * * *", "bad cron expression"),
        ("0 0 31 2 *", "never matches"),
    ],
)
def test_bad_schedules_name_connection_and_value(text: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_schedule(text, "people")
    message = str(err.value)
    assert "'people'" in message and repr(text) in message and why in message


def write_config(directory: Path, schedules: dict[str, str | None]) -> Path:
    lines = ["[hub]", 'database = "crmhub.db"', ""]
    for name, schedule in schedules.items():
        lines += [f"[connections.{name}]", 'connector = "fake"']
        if schedule is not None:
            lines.append(f'schedule = "{schedule}"')
        lines.append("")
    path = directory / "crmhub.toml"
    path.write_text("\n".join(lines))
    return path


def test_schedule_for_points_at_the_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"a": "every 5m", "b": None, "c": "every 5q"})
    config = load_config(path)
    bad_line = path.read_text().splitlines().index('schedule = "every 5q"') + 1
    assert schedule_for(config, "a") == parse_schedule("every 5m")
    assert schedule_for(config, "b") is None
    with pytest.raises(ConfigError) as err:
        schedule_for(config, "c")
    problem = err.value.problems[0]
    assert (problem.file, problem.line, problem.key) == (
        str(path),
        bad_line,
        "connections.c.schedule",
    )
    assert "'c'" in problem.message and "'every 5q'" in problem.message


# -- the scheduler with an injected job ------------------------------------------------------

Job = Callable[[Hub, str, asyncio.Event], Awaitable[Any]]


class Recorder:
    """A fake sync: records starts, overlap, and optionally writes ``runs`` rows."""

    def __init__(self, seconds: float = 0.05, write_runs: bool = False) -> None:
        self.seconds = seconds
        self.write_runs = write_runs
        self.starts: list[tuple[str, float]] = []
        self.active = 0
        self.max_active = 0

    async def __call__(self, hub: Hub, name: str, stop: asyncio.Event) -> Any:
        # Like the engine: the connection's run lease first (raises LeaseHeld when taken).
        async with Lease(hub.store, f"run:{name}"):
            return await self._run(hub, name, stop)

    async def _run(self, hub: Hub, name: str, stop: asyncio.Event) -> Any:
        self.starts.append((name, time.monotonic()))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        run_id = str(uuid.uuid4())
        if self.write_runs:
            async with hub.store.begin() as db:
                await db.execute(
                    runs.insert().values(
                        id=run_id, connection=name, status="running", full=False,
                        started_at=datetime.now(UTC), counts={},
                    )
                )  # fmt: skip
        try:
            deadline = time.monotonic() + self.seconds
            while time.monotonic() < deadline and not stop.is_set():
                await asyncio.sleep(0.02)  # pages; a stop ends the run after the current one
        finally:
            self.active -= 1
        if self.write_runs:
            async with hub.store.begin() as db:
                await db.execute(runs.update().where(runs.c.id == run_id).values(status="ok"))


async def open_hub(tmp_path: Path, schedules: dict[str, str | None], url: str | None) -> Hub:
    config = load_config(write_config(tmp_path, schedules))
    store = await Store.open(url or config.database_url)
    return Hub(config=config, store=store, registry=Registry())


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    h = await open_hub(tmp_path, {"people": "every 1s"}, None)
    yield h
    await h.close()


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_every_second_runs_the_job(hub: Hub) -> None:
    job = Recorder()
    async with SyncScheduler(hub, job=job) as scheduler:
        await scheduler.start()
        await wait_for(lambda: len(job.starts) >= 3, timeout=6)
    gaps = [b[1] - a[1] for a, b in zip(job.starts, job.starts[1:], strict=False)]
    assert all(name == "people" for name, _ in job.starts)
    assert all(0.5 < gap < 1.6 for gap in gaps), gaps


async def test_a_running_connection_is_not_started_twice(hub: Hub) -> None:
    job = Recorder(seconds=1.8)
    async with SyncScheduler(hub, job=job) as scheduler:
        await scheduler.start()
        await asyncio.sleep(2.9)
        assert scheduler.running == {"people"}
    assert job.max_active == 1
    # slots missed while the slow run went on do not pile up: one follow-up run at most
    assert len(job.starts) == 2


async def test_direct_call_while_running_is_skipped(hub: Hub) -> None:
    job = Recorder(seconds=0.5)
    async with SyncScheduler(hub, job=job) as scheduler:
        first = asyncio.create_task(scheduler.run_job("people"))
        await asyncio.sleep(0.1)
        assert await scheduler.run_job("people") == "skipped"
        assert await first == "ok"
    assert len(job.starts) == 1


async def test_lease_held_elsewhere_is_a_skip_not_a_failure(hub: Hub) -> None:
    async def held(hub: Hub, name: str, stop: asyncio.Event) -> Any:
        raise LeaseHeld(name, "otherhost:1:abc")

    async with SyncScheduler(hub, job=held) as scheduler:
        assert await scheduler.run_job("people") == "held"
        assert scheduler.running == set()


async def test_missed_runs_while_down_run_once(hub: Hub, tmp_path: Path) -> None:
    job = Recorder()
    async with SyncScheduler(hub, job=job) as scheduler:
        # A schedule whose last run was ten minutes and ten slots ago: the daemon was down.
        hub.config.connections["people"].hub.schedule = "every 1m"
        await scheduler.apply_config()
        await scheduler.scheduler.add_schedule(
            TASK_PREFIX + "people",
            IntervalTrigger(minutes=1, start_time=datetime.now(UTC) - timedelta(minutes=10)),
            id=SCHEDULE_PREFIX + "people",
            args=("people",),
            coalesce=CoalescePolicy.latest,
            metadata={"connection": "people", "schedule": "every 1m"},
            conflict_policy=ConflictPolicy.replace,
        )
    assert job.starts == []
    async with SyncScheduler(hub, job=job) as scheduler:
        assert (await scheduler.apply_config())["kept"] == ["people"]
        await scheduler.start()
        await wait_for(lambda: len(job.starts) >= 1)
        await asyncio.sleep(1.5)
        stored = await scheduler.scheduler.get_schedule(SCHEDULE_PREFIX + "people")
    assert len(job.starts) == 1
    assert stored.next_fire_time is not None and stored.next_fire_time > datetime.now(UTC)


async def test_schedules_follow_the_configuration(tmp_path: Path) -> None:
    hub = await open_hub(tmp_path, {"a": "every 5m", "b": "*/15 * * * *", "c": None}, None)
    try:
        async with SyncScheduler(hub, job=Recorder()) as scheduler:
            ids = {s.id for s in await scheduler.scheduler.get_schedules()}
            assert ids == {
                "sync:a",
                "sync:b",
                "crmhub.keepalive",
                "crmhub.housekeeping",
                "crmhub.owed",
                "crmhub.renewals",
            }
        hub.config = load_config(write_config(tmp_path, {"a": "every 10m", "c": "every 1h"}))
        async with SyncScheduler(hub, job=Recorder()) as scheduler:
            assert scheduler.wanted().keys() == {"a", "c"}
            schedules = {s.id: s for s in await scheduler.scheduler.get_schedules()}
        assert set(schedules) == {
            "sync:a",
            "sync:c",
            "crmhub.keepalive",
            "crmhub.housekeeping",
            "crmhub.owed",
            "crmhub.renewals",
        }
        assert schedules["sync:a"].metadata["schedule"] == "every 10m"
        trigger = schedules["sync:a"].trigger
        assert isinstance(trigger, IntervalTrigger)
        assert trigger.minutes * 60 + trigger.seconds == 600
    finally:
        await hub.close()


async def test_interrupted_connection_resumes_at_once(tmp_path: Path) -> None:
    names = ("people", "crashed", "other")
    hub = await open_hub(tmp_path, dict.fromkeys(names, "every 1h"), None)
    try:
        async with hub.store.begin() as db:
            for name, status in zip(names, ("interrupted", "running", "ok"), strict=True):
                await db.execute(
                    runs.insert().values(
                        id=str(uuid.uuid4()), connection=name, status=status, full=False,
                        started_at=datetime.now(UTC) - timedelta(seconds=5), counts={},
                    )
                )  # fmt: skip
        job = Recorder()
        async with SyncScheduler(hub, job=job) as scheduler:
            # the stored schedules already ran this hour: only the resume is due
            for name in names:
                await scheduler.scheduler.add_schedule(
                    TASK_PREFIX + name,
                    IntervalTrigger(hours=1, start_time=datetime.now(UTC) + timedelta(hours=1)),
                    id=SCHEDULE_PREFIX + name,
                    args=(name,),
                    metadata={"connection": name, "schedule": "every 1h"},
                    conflict_policy=ConflictPolicy.replace,
                )
            assert await scheduler.resume_interrupted() == ["crashed", "people"]
            await scheduler.scheduler.start_in_background()
            await wait_for(lambda: len(job.starts) >= 2)
            await asyncio.sleep(0.5)
        assert sorted(name for name, _ in job.starts) == ["crashed", "people"]
    finally:
        await hub.close()


async def test_shutdown_lets_the_run_finish_its_page(hub: Hub) -> None:
    finished: list[str] = []

    async def page_by_page(hub: Hub, name: str, stop: asyncio.Event) -> Any:
        for _ in range(100):
            await asyncio.sleep(0.05)  # one page
            if stop.is_set():
                finished.append("interrupted")
                return type("Report", (), {"status": "interrupted", "counts": {}})()
        finished.append("ok")
        return None

    async with SyncScheduler(hub, job=page_by_page) as scheduler:
        await scheduler.start()
        await wait_for(lambda: bool(scheduler.running))
        started = time.monotonic()
        await scheduler.shutdown(grace=5)
        assert time.monotonic() - started < 1
    assert finished == ["interrupted"]


@pytest.mark.postgres
async def test_two_nodes_on_postgres_never_run_a_connection_twice(
    tmp_path: Path, pg_schema_url: str
) -> None:
    one = await open_hub(tmp_path, {"people": "every 1s"}, pg_schema_url)
    two = await open_hub(tmp_path, {"people": "every 1s"}, pg_schema_url)
    job = Recorder(seconds=1.5, write_runs=True)
    try:
        async with (
            SyncScheduler(one, job=job, identity="node-1") as a,
            SyncScheduler(two, job=job, identity="node-2") as b,
        ):
            await a.start()
            await b.start()
            await asyncio.sleep(3.5)
        assert job.max_active == 1
        assert 2 <= len(job.starts) <= 3
        async with one.store.connect() as db:
            count = (await db.execute(select(func.count()).select_from(runs))).scalar()
        assert count == len(job.starts)
    finally:
        await one.close()
        await two.close()


async def test_a_run_throttled_until_later_is_not_started_again_before(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from hub.config import load_config
    from hub.runtime import Hub
    from hub.store.schema import runs
    from hub.sync_scheduler import run_sync

    (tmp_path / "p.csv").write_text("email\nann@example.com\n")
    (tmp_path / "crmhub.toml").write_text(
        '[hub]\ndatabase = "hub.db"\n[connections.p]\nconnector = "csv"\npath = "p.csv"\n'
    )
    hub = await Hub.open(load_config(tmp_path / "crmhub.toml"), auth=VaultAuth())
    try:
        now = datetime.now(UTC)
        async with hub.store.begin() as db:
            await db.execute(
                runs.insert().values(
                    id="r1",
                    connection="p",
                    status="throttled",
                    full=False,
                    started_at=now,
                    counts={},
                    throttled_until=now + timedelta(hours=3),
                )
            )
        report = await run_sync(hub, "p", asyncio.Event())
        assert report.status == "skipped"
        async with hub.store.begin() as db:
            await db.execute(runs.update().values(throttled_until=now - timedelta(seconds=1)))
        report = await run_sync(hub, "p", asyncio.Event())
        assert report.status == "ok"
    finally:
        await hub.close()
