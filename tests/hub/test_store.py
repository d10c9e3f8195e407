"""The store suite: migrations and leases, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import insert, inspect, select

from hub.errors import LeaseHeld
from hub.store import Lease, Store, utcnow
from hub.store.schema import runs

HEAD = "0008"


async def test_migrates_to_head_and_is_idempotent(db_url: str) -> None:
    first = await Store.open(db_url)
    await first.close()
    again = await Store.open(db_url)
    try:
        assert await again.revision() == HEAD
        await again.check_revision()
    finally:
        await again.close()


async def test_a_database_of_the_first_schema_upgrades_with_its_runs(db_url: str) -> None:
    old = Store(Store.create_engine(db_url))
    try:
        await old.upgrade("0001")
        async with old.begin() as db:
            await db.execute(
                insert(runs).values(
                    id="r1",
                    connection="crm",
                    status="ok",
                    full=False,
                    started_at=utcnow(),
                    finished_at=utcnow(),
                    counts={"records": 2},
                )
            )
    finally:
        await old.close()
    store = await Store.open(db_url)
    try:
        assert await store.revision() == HEAD
        async with store.connect() as db:
            names = await db.run_sync(
                lambda sync: {i["name"] for i in inspect(sync).get_indexes("runs")}
            )
            kept = (await db.execute(select(runs.c.id, runs.c.counts))).all()
        assert "ix_runs_connection_status_finished" in names
        assert [tuple(r) for r in kept] == [("r1", {"records": 2})]
    finally:
        await store.close()


_KILLED_MID_MIGRATION = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from alembic.operations import Operations
    from hub.store import Store

    made = Operations.create_table
    count = [0]

    def create_then_die(self, *args, **kwargs):
        table = made(self, *args, **kwargs)
        count[0] += 1
        if count[0] == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return table

    Operations.create_table = create_then_die
    asyncio.run(Store.open(sys.argv[1]))
    """
)


async def test_a_process_killed_while_migrating_leaves_a_database_that_migrates(
    db_url: str,
) -> None:
    died = subprocess.run(
        [sys.executable, "-c", _KILLED_MID_MIGRATION, db_url], capture_output=True, timeout=60
    )
    assert died.returncode == -9
    store = await Store.open(db_url)  # nothing half-made stands in the way
    try:
        assert await store.revision() == HEAD
    finally:
        await store.close()


async def test_lease_is_exclusive_and_released(store: Store) -> None:
    async with Lease(store, "run:people"):
        with pytest.raises(LeaseHeld) as held:
            await Lease(store, "run:people").acquire()
        assert "people" in str(held.value)
        # another name is independent
        async with Lease(store, "run:other"):
            pass
    async with Lease(store, "run:people"):
        pass


async def test_expired_lease_can_be_taken(store: Store) -> None:
    first = Lease(store, "run:x", ttl=0.2)
    await first.acquire()
    assert first._renewer is not None
    first._renewer.cancel()  # a holder that stopped renewing (hung, or on another host)
    await asyncio.sleep(0.4)
    second = Lease(store, "run:x", ttl=5)
    await second.acquire()
    await second.release()


_HOLD = textwrap.dedent(
    """
    import asyncio, sys
    from hub.store import Lease, Store
    from hub.errors import LeaseHeld

    async def main(url):
        store = await Store.open(url)
        try:
            async with Lease(store, "run:shared"):
                print("acquired", flush=True)
                await asyncio.sleep(float(sys.argv[2]))
        except LeaseHeld:
            print("held", flush=True)
        await store.close()

    asyncio.run(main(sys.argv[1]))
    """
)


def test_lease_across_processes(db_url: str) -> None:
    """Two processes race for one lease: exactly one wins while the other is told it is held."""
    asyncio.run(_migrate(db_url))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _HOLD, db_url, "2"], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outputs == ["acquired", "held"]


def test_lease_of_killed_process_is_taken_at_once(db_url: str) -> None:
    asyncio.run(_migrate(db_url))
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, db_url, "60"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "acquired"
    proc.kill()
    proc.wait()
    again = subprocess.run(
        [sys.executable, "-c", _HOLD, db_url, "0"], capture_output=True, text=True, timeout=60
    )
    assert again.stdout.strip() == "acquired"


async def _migrate(url: str) -> None:
    store = await Store.open(url)
    await store.close()


async def test_migrations_create_exactly_the_schema(store: Store) -> None:
    """The tables the migrations build are the ones ``hub.store.schema`` describes (a schema
    change without its migration fails here)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from hub.store.schema import metadata

    scheduler_tables = {"metadata", "tasks", "schedules", "jobs", "job_results"}

    def diff(connection: object) -> list[object]:
        found = compare_metadata(MigrationContext.configure(connection), metadata)
        return [d for d in found if not (d[0] == "remove_table" and d[1].name in scheduler_tables)]

    async with store.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_statistics_are_refreshed_only_where_missing_or_stale(store: Store) -> None:
    first = await store.refresh_statistics("entities", "links")
    again = await store.refresh_statistics("entities", "links")
    if store.is_sqlite:
        assert first == again == []  # SQLite's planner needs no statistics
    else:
        assert first == ["entities", "links"]  # never analysed
        assert again == []
