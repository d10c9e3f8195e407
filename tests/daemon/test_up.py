"""``crmhub up`` end to end: real processes, a CSV connection, SIGTERM, restart."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette

from hub.config import load_config
from hub.daemon import Daemon
from hub.registry import Registry
from hub.runtime import Hub
from hub.store import Store, utcnow
from hub.store.lease import make_holder
from hub.store.schema import leases

CRMHUB = str(Path(sys.executable).with_name("crmhub"))
LAUNCHER = str(Path(__file__).resolve().parents[2] / "scheduler.py")

CONFIG = """\
[hub]
database = "crmhub.db"

[connections.people]
connector = "csv"
path = "people.csv"
schedule = "every 2s"
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "crmhub.toml").write_text(CONFIG)
    (tmp_path / "people.csv").write_text(
        "id,email,first_name,last_name\n"
        "1,anna@example.com,Anna,Smith\n"
        "2,ben@example.com,Ben,Jones\n"
    )
    return tmp_path


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=10) as conn:
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError as exc:  # tables not created yet
            if "no such table" in str(exc):
                return []
            raise


def wait_until(check: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; log:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


@pytest.fixture
def start(workdir: Path) -> Iterator[Callable[[list[str]], tuple[subprocess.Popen[bytes], Path]]]:
    started: list[subprocess.Popen[bytes]] = []

    def launch(command: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
        log = workdir / f"daemon-{len(started)}.log"
        env = {**os.environ, "CRMHUB_CONFIG": ""}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*command, "--config", str(workdir / "crmhub.toml"), "--port", "0", "--log-json"],
                cwd=workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        started.append(proc)
        return proc, log

    yield launch
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def base_url(log: Path) -> str | None:
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
            message = str(record.get("msg") or record.get("message") or "")
        except json.JSONDecodeError:
            message = line
        match = re.search(r"crmhub up on (http://[\d.]+:\d+)", message)
        if match:
            return match.group(1)
    return None


def stop(proc: subprocess.Popen[bytes]) -> float:
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=15)
    return time.monotonic() - began


def test_up_runs_schedules_stops_cleanly_and_resumes(
    workdir: Path, start: Callable[[list[str]], tuple[subprocess.Popen[bytes], Path]]
) -> None:
    db = workdir / "crmhub.db"
    proc, log = start([CRMHUB, "up"])
    wait_until(lambda: base_url(log) is not None, 30, "the web server", log)
    url = base_url(log)
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    wait_until(
        lambda: query(db, "select count(*) from runs where status = 'ok'")[0][0] >= 1,
        20,
        "a scheduled run",
        log,
    )
    contacts = query(db, "select count(*) from entities where type = 'contact'")[0][0]
    assert contacts == 2

    # A second daemon on the same SQLite file is refused, and the first one is unharmed.
    second, second_log = start([CRMHUB, "up"])
    assert second.wait(timeout=30) == 1
    assert "another crmhub daemon" in second_log.read_text()
    assert proc.poll() is None

    assert stop(proc) < 10
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert query(db, "select * from leases") == []
    assert query(db, "select count(*) from runs where status = 'running'")[0][0] == 0
    before = query(db, "select count(*), max(started_at) from runs")[0]

    # Started again (this time through the launcher), it picks up where it stopped.
    proc, log = start([sys.executable, LAUNCHER])
    wait_until(
        lambda: query(db, "select count(*) from runs")[0][0] > before[0],
        20,
        "a run after the restart",
        log,
    )
    assert query(db, "select max(started_at) from runs")[0][0] > before[1]
    assert query(db, "select count(*) from entities where type = 'contact'")[0][0] == 2
    assert stop(proc) < 10
    assert proc.returncode == 0
    assert query(db, "select * from leases") == []


def test_up_refuses_a_bad_schedule(
    workdir: Path, start: Callable[[list[str]], tuple[subprocess.Popen[bytes], Path]]
) -> None:
    config = workdir / "crmhub.toml"
    config.write_text(CONFIG.replace("every 2s", "every 2 fortnights"))
    proc, log = start([CRMHUB, "up"])
    assert proc.wait(timeout=30) == 1
    output = log.read_text()
    assert "'people'" in output and "every 2 fortnights" in output
    assert f"{config.name}:7" in output


# -- in process: a sync that ignores the stop ---------------------------------------------


async def idle_inbox(hub: Hub, stop: asyncio.Event) -> None:
    await stop.wait()


@pytest.mark.parametrize("signals", [1, 2])
async def test_a_stuck_sync_is_cancelled_and_its_lease_freed(tmp_path: Path, signals: int) -> None:
    (tmp_path / "crmhub.toml").write_text(
        '[connections.people]\nconnector = "fake"\nschedule = "every 1s"\n'
    )
    config = load_config(tmp_path / "crmhub.toml")
    hub = Hub(config=config, store=await Store.open(config.database_url), registry=Registry())
    started = asyncio.Event()

    async def stuck(hub: Hub, name: str, stop: asyncio.Event) -> None:
        async with hub.store.begin() as db:
            await db.execute(
                leases.insert().values(
                    name=f"run:{name}", holder=make_holder(), expires_at=utcnow()
                )
            )
        started.set()
        await asyncio.sleep(3600)  # never looks at ``stop``

    daemon = Daemon(hub, port=0, job=stuck, app=Starlette(), inbox=idle_inbox)
    daemon.sync_grace = 0.5 if signals == 1 else 60
    try:
        running = asyncio.create_task(daemon.run())
        await asyncio.wait_for(started.wait(), 10)
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{daemon.base_url}/nothing")).status_code == 404
        began = time.monotonic()
        for _ in range(signals):
            daemon.request_stop()
        await asyncio.wait_for(running, 10)
        assert time.monotonic() - began < 3
        async with hub.store.connect() as db:
            assert (await db.execute(select(leases))).all() == []
    finally:
        await hub.close()
