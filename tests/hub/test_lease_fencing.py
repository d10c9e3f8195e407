"""Lease fencing: a run that lost its lease to another run stops at its next write.

On SQLite and PostgreSQL: the lease is taken over (as a run started while this one stalled
past its expiry would) in the middle of a pull, of a push, and right before a CSV file is
replaced; the run that lost it commits nothing more and says why.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from connectors.csv.connector import CsvConnector
from hub.config import load_config
from hub.engine import sync_connection
from hub.errors import LeaseHeld, LeaseLost
from hub.runtime import Hub
from hub.store import Lease, Store
from hub.store.schema import cursors, entities, leases, outbox
from hub.testing.memory import MemoryConnector
from tests.hub.enginekit import Setup

_PAST = datetime(2000, 1, 1, tzinfo=UTC)


async def take_over(store: Store, connection: str) -> Lease:
    """What a run started while ``connection``'s run stalled past its lease does."""
    async with store.begin() as db:
        await db.execute(
            update(leases).where(leases.c.name == f"run:{connection}").values(expires_at=_PAST)
        )
    other = Lease(store, f"run:{connection}", ttl=60)
    await other.acquire()
    return other


async def count(store: Store, table: Any) -> int:
    from sqlalchemy import func

    async with store.connect() as db:
        return int(await db.scalar(select(func.count()).select_from(table)) or 0)


async def test_lease_epoch_grows_with_each_holder(store: Store) -> None:
    first = Lease(store, "run:x")
    await first.acquire()
    assert first.epoch == 1
    async with store.begin() as db:
        assert await first.holds(db) is None
    second = await take_over(store, "x")
    assert second.epoch == 2
    async with store.begin() as db:
        assert await first.holds(db) == second.holder
        assert await second.holds(db) is None
    await second.release()
    await first.release()  # releasing a lost lease leaves the other's alone (none here)


async def test_a_run_that_lost_its_lease_commits_no_further_page(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Setup(tmp_path, db_url, ["crm", "shop"], per_connection={"crm": "page_size = 10\n"})
    hub = await s.open()
    taken: dict[str, Any] = {}
    original = MemoryConnector.pull

    async def take_over_and_count() -> None:
        taken["lease"] = await take_over(hub.store, "crm")
        taken["entities"] = await count(hub.store, entities)

    async def stalling(self: MemoryConnector, stream: Any, cursor: Any) -> AsyncIterator[Any]:
        n = 0
        async for page in original(self, stream, cursor):
            if n == 2 and "task" not in taken:
                # The run may fail (and cancel this fetch) while the other run takes over:
                # the take-over finishes regardless, and the test waits for it.
                taken["task"] = asyncio.ensure_future(take_over_and_count())
                await asyncio.shield(taken["task"])
            n += 1
            yield page

    monkeypatch.setattr(MemoryConnector, "pull", stalling)
    try:
        for i in range(50):
            s.remotes["crm"].add({"email": f"p{i}@x.io"})
        report = await sync_connection(hub, "crm")
        await taken["task"]
        assert report.status == "failed"
        assert report.error is not None and "lost its lease" in report.error
        assert taken["lease"].holder in report.error
        # Nothing was committed after the other run took the lease, and the pull stopped.
        assert 0 < await count(hub.store, entities) == taken["entities"] < 50
        async with hub.store.connect() as db:
            [cursor] = (await db.execute(select(cursors.c.value))).scalars().all()
        assert cursor["seq"] < 50
        # The other run goes on; this one's record says what happened.
        await taken["lease"].release()
        assert (await s.sync("crm")).status == "ok"
        assert await count(hub.store, entities) == 50
    finally:
        await s.close()


async def test_a_push_whose_lease_was_lost_settles_nothing(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Setup(tmp_path, db_url, ["crm", "shop"])
    hub = await s.open()
    original = MemoryConnector.push
    taken: list[Lease] = []

    async def stalled(self: MemoryConnector, stream: Any, changes: list[Any]) -> Any:
        taken.append(await take_over(hub.store, self.context.connection))
        return await original(self, stream, changes)

    try:
        for i in range(5):
            s.remotes["crm"].add({"email": f"p{i}@x.io"})
        await s.sync("crm")
        monkeypatch.setattr(MemoryConnector, "push", stalled)
        report = await sync_connection(hub, "shop")
        assert report.status == "failed" and "lost its lease" in (report.error or "")
        # The outbox rows stay owed: the run holding the lease now sends them again (with
        # the same idempotency keys), instead of two runs settling them at once.
        assert await s.count(outbox, connection="shop", status="pending") == 5
        monkeypatch.undo()
        await taken[0].release()
        await s.sync("shop")
        assert await s.count(outbox, connection="shop", status="pending") == 0
    finally:
        await s.close()


async def test_a_csv_file_is_not_replaced_by_a_run_that_lost_its_lease(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.csv").write_text("email,first_name\nann@example.com,Ann\n")
    (tmp_path / "b.csv").write_text("email,first_name\n")
    (tmp_path / "crmhub.toml").write_text(
        f'[hub]\ndatabase = "{db_url}"\n\n'
        '[connections.a]\nconnector = "csv"\npath = "a.csv"\n\n'
        '[connections.b]\nconnector = "csv"\npath = "b.csv"\n'
    )
    hub = await Hub.open(load_config(tmp_path / "crmhub.toml"))
    original = CsvConnector.push
    taken: list[Lease] = []

    async def stalled(self: CsvConnector, stream: Any, changes: list[Any]) -> Any:
        taken.append(await take_over(hub.store, self.context.connection))
        return await original(self, stream, changes)

    try:
        assert (await sync_connection(hub, "a")).status == "ok"
        before = (tmp_path / "b.csv").read_bytes()
        monkeypatch.setattr(CsvConnector, "push", stalled)
        report = await sync_connection(hub, "b")
        assert report.status == "failed" and "lost its lease" in (report.error or "")
        assert (tmp_path / "b.csv").read_bytes() == before
        assert sorted(p.name for p in tmp_path.glob("b.csv*")) == ["b.csv", "b.csv.lock"]
    finally:
        for lease in taken:
            await lease.release()
        await hub.close()


def test_lease_lost_says_who_took_over() -> None:
    text = str(LeaseLost("b", "host:12:abc"))
    assert "'b'" in text and "host:12:abc" in text


@pytest.mark.parametrize("fenced", [True, False])
async def test_an_expired_run_lease_is_not_renewed_by_its_waking_holder(
    store: Store, fenced: bool
) -> None:
    first = Lease(store, "run:x", ttl=0.3, fenced=fenced)
    await first.acquire()
    assert first._renewer is not None
    first._renewer.cancel()  # stalled (a stopped process) ...
    await asyncio.sleep(0.45)
    first._renewer = asyncio.create_task(first._renew_forever())  # ... and continued
    await asyncio.sleep(0.6)  # its renewal turns came
    second = Lease(store, "run:x", ttl=5)
    try:
        if fenced:  # a run's lease: free for the next run, whose writes then win
            await second.acquire()
            await second.release()
        else:  # other leases (no fence): kept by the holder that woke up first
            with pytest.raises(LeaseHeld):
                await second.acquire()
    finally:
        await first.release()


async def test_a_row_the_new_holder_wrote_first_is_reported_as_the_lost_lease(
    store: Store,
) -> None:
    from hub.engine.lease import RunLease, fenced

    async with RunLease(store, "x", ttl=60) as mine:
        other = await take_over(store, "x")
        try:
            async with store.begin() as db:  # the new holder's run writes a row first ...
                await db.execute(leases.insert().values(name="probe", holder="h", expires_at=_PAST))
            with pytest.raises(LeaseLost):  # ... and the stalled run's same row names why
                async with fenced(mine, store.begin()) as db:
                    await db.execute(
                        leases.insert().values(name="probe", holder="h", expires_at=_PAST)
                    )
        finally:
            await other.release()
