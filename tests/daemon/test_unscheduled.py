"""Connections without a schedule: named at start, and synced when writes owed to them are
due, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hub.config import load_config
from hub.registry import Registry
from hub.runtime import Hub
from hub.store import Store
from hub.store.bulk import new_id
from hub.store.schema import entities, outbox
from hub.sync_scheduler import SyncScheduler


@pytest.fixture
async def hub(tmp_path: Path, db_url: str) -> AsyncIterator[Hub]:
    (tmp_path / "crmhub.toml").write_text(
        '[hub]\ndatabase = "crmhub.db"\n\n'
        '[connections.crm]\nconnector = "fake"\nschedule = "0 3 * * *"\n\n'
        '[connections.owed]\nconnector = "fake"\n\n'
        '[connections.later]\nconnector = "fake"\n\n'
        '[connections.idle]\nconnector = "fake"\n\n'
        '[connections.feed]\nconnector = "fake"\ndirection = "pull"\n\n'
        '[connections.off]\nconnector = "fake"\nenabled = false\n'
    )
    config = load_config(tmp_path / "crmhub.toml")
    h = Hub(config=config, store=await Store.open(db_url), registry=Registry())
    try:
        yield h
    finally:
        await h.close()


async def owe(hub: Hub, connection: str, *, due_in: float | None = None) -> None:
    now = datetime.now(UTC)
    entity = new_id()
    next_try = None if due_in is None else now + timedelta(seconds=due_in)
    async with hub.store.begin() as db:
        await db.execute(
            entities.insert().values(
                id=entity, type="contact", fields={}, provenance={}, created_at=now, updated_at=now
            )
        )
        await db.execute(
            outbox.insert().values(
                id=new_id(), connection=connection, stream="contacts", entity_id=entity,
                op="upsert", status="pending", attempts=0, next_attempt_at=next_try,
                created_at=now, updated_at=now,
            )
        )  # fmt: skip


async def test_unscheduled_connections_are_named_and_synced_when_owed_writes(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    started: list[str] = []

    async def job(hub: Hub, name: str, stop: asyncio.Event) -> Any:
        started.append(name)

    await owe(hub, "owed")
    await owe(hub, "later", due_in=3600)  # failed lately: not due for an hour
    await owe(hub, "crm")  # scheduled: its own schedule pushes it
    caplog.set_level(logging.INFO, logger="crmhub.scheduler")
    async with SyncScheduler(hub, job=job, owed_check=0.3) as scheduler:
        await scheduler.start()
        for _ in range(150):  # the first owed check, however loaded the machine
            if started:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # and a few more: only 'owed' is ever started
    assert started and set(started) == {"owed"}, started
    warned = {r.getMessage() for r in caplog.records if r.levelno == logging.WARNING}
    for name in ("owed", "later", "idle"):
        assert any(
            f"connection {name!r} has no schedule: it is synced only when writes owed to it "
            "are due (checked every 0.3 s)"
            in m
            and f"[connections.{name}]" in m
            for m in warned
        ), warned
    assert any("'feed' has no schedule" in m and "never by the daemon" in m for m in warned)
    assert not any("'crm'" in m or "'off'" in m for m in warned), warned
