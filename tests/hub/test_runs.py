"""hub.store.runs: the one place runs are written and asked about, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hub.store import Store, runs
from hub.store.status import ENDED, RunStatus

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


async def test_a_new_run_interrupts_one_left_running(store: Store) -> None:
    async with store.begin() as db:
        await runs.start(db, "r1", "crm", full=False, started_at=T0)
        await runs.start(db, "r2", "crm", full=True, started_at=T0 + timedelta(minutes=1))
        await runs.start(db, "other", "shop", full=False, started_at=T0)
    async with store.connect() as db:
        latest = await runs.latest(db, "crm")
        assert latest is not None and latest.id == "r2" and latest.status == RunStatus.RUNNING
        assert await runs.unfinished(db, ["crm", "shop", "nobody"]) == ["crm", "shop"]
        assert await runs.latest(db, "nobody") is None


async def test_finish_records_the_end_and_an_approval_keeps_it(store: Store) -> None:
    async with store.begin() as db:
        await runs.start(db, "r1", "crm", full=False, started_at=T0)
        end = T0 + timedelta(seconds=5)
        await runs.finish(db, "r1", RunStatus.HELD, finished_at=end, counts={"deletes_held": 3})
        await runs.finish(db, "r1", RunStatus.OK, counts={"deleted": 3})
    async with store.connect() as db:
        row = await runs.latest(db, "crm")
        assert row is not None and row.status == "ok" and row.counts == {"deleted": 3}
        assert row.finished_at.replace(tzinfo=UTC) == end
        assert await runs.unfinished(db, ["crm"]) == []


async def test_throttled_until_comes_from_the_latest_run_only(store: Store) -> None:
    until = T0 + timedelta(hours=15)
    async with store.begin() as db:
        await runs.start(db, "r1", "xero", full=False, started_at=T0)
        await runs.finish(db, "r1", "throttled", finished_at=T0, throttled_until=until)
    async with store.connect() as db:
        assert await runs.throttled_until(db, "xero") == until
    async with store.begin() as db:
        await runs.start(db, "r2", "xero", full=False, started_at=T0 + timedelta(hours=16))
        await runs.finish(db, "r2", RunStatus.OK, finished_at=T0 + timedelta(hours=16))
    async with store.connect() as db:
        assert await runs.throttled_until(db, "xero") is None


async def test_ran_since_asks_how_the_run_ended(store: Store) -> None:
    async with store.begin() as db:
        await runs.start(db, "r1", "crm", full=False, started_at=T0)
        await runs.finish(db, "r1", RunStatus.FAILED, finished_at=T0, error="refused")
    async with store.connect() as db:
        before = T0 - timedelta(seconds=1)
        # a failed run read nothing for sure; it still ended, which is what a schedule asks
        assert not await runs.ran_since(db, "crm", before)
        assert await runs.ran_since(db, "crm", before, ENDED)
        assert not await runs.ran_since(db, "crm", T0, ENDED)  # started after, not at
        assert not await runs.ran_since(db, "shop", before, ENDED)
    async with store.begin() as db:
        await runs.start(db, "r2", "crm", full=False, started_at=T0 + timedelta(minutes=1))
        await runs.finish(db, "r2", RunStatus.HELD, finished_at=T0 + timedelta(minutes=2))
    async with store.connect() as db:
        assert await runs.ran_since(db, "crm", T0)  # a held run read everything
