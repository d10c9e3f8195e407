"""What ``crmhub status`` costs on a large store.

    .venv/bin/python bench/status.py [--rows 100000] [--connections 8] [--reads 10]
        [--database URL]

A monitor runs ``crmhub status`` every minute or so against a store that has been busy for
weeks. This fills a store with ``--rows`` finished runs over ``--connections`` connections,
as many written outbox rows, processed webhook deliveries and resolved conflicts, a tenth as
many golden records (what the outbox and conflicts point at) and references waiting for
their record, plus a few of each thing the command reports (pending and dead writes, held
runs, open conflicts, dead and waiting deliveries), then times ``--reads`` reads of the
whole status (``hub.cli.status_command.gather``: what the command prints, without starting
Python). Prints the median and the slowest read. The store is a new SQLite file, or with
``--database postgresql+psycopg://...`` a schema of its own, dropped at the end, with the
tables vacuumed and analysed after filling, as autovacuum would have done by then. Figures,
never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import database
from sqlalchemy import insert

from hub.cli.status_command import gather
from hub.config import load_config
from hub.registry import Registry
from hub.runtime import Hub
from hub.store import Store, utcnow
from hub.store.bulk import new_ids
from hub.store.schema import conflicts, entities, inbox, outbox, pending_refs, runs
from hub.testing.memory import MemoryConnector

BATCH = 5_000


async def _insert(store: Store, table: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), BATCH):
        async with store.begin() as db:
            await db.execute(insert(table), rows[start : start + BATCH])


async def fill(store: Store, n: int, connections: int) -> None:
    now = utcnow()
    names = [f"conn{i}" for i in range(connections)]
    people = new_ids(max(n // 10, 1))
    await _insert(
        store,
        entities,
        [
            {
                "id": e,
                "type": "contact",
                "fields": {"email": f"p{i}@example.com"},
                "provenance": {},
                "created_at": now,
                "updated_at": now,
            }
            for i, e in enumerate(people)
        ],
    )
    run_ids = new_ids(n)
    await _insert(
        store,
        runs,
        [
            {
                "id": run_ids[i],
                "connection": names[i % connections],
                "status": ("ok", "failed", "held")[(i % 500 == 0) + (i == n - 1)],
                "full": False,
                "started_at": now - timedelta(seconds=5 * (n - i)),
                "finished_at": now - timedelta(seconds=5 * (n - i) - 1),
                "counts": {"records": 3, "deletes_held": 7 if i == n - 1 else 0},
            }
            for i in range(n)
        ],
    )
    out_ids = new_ids(n)
    await _insert(
        store,
        outbox,
        [
            {
                "id": out_ids[i],
                "connection": names[i % connections],
                "stream": ("records", "companies")[i % 2],
                "entity_id": people[i % len(people)],
                "op": "upsert",
                # the last rows of each kind are what a person has to see
                "status": "done" if i < n - 30 else ("pending", "dead")[i % 2],
                "attempts": 1,
                "created_at": now - timedelta(seconds=n - i),
                "updated_at": now,
            }
            for i in range(n)
        ],
    )
    await _insert(
        store,
        inbox,
        [
            {
                "source": names[i % connections],
                "delivery_id": f"d-{i}",
                "kind": "event",
                "headers": {},
                "body": b"{}",
                "status": "done" if i < n - 10 else ("pending", "dead")[i % 2],
                "attempts": 1,
                "received_at": now - timedelta(seconds=n - i),
                "processed_at": now,
            }
            for i in range(n)
        ],
    )
    await _insert(
        store,
        conflicts,
        [
            {
                "entity_id": people[i % len(people)],
                "connection": names[i % connections],
                "field": "phone",
                "status": "resolved" if i < n - 5 else "open",
                "created_at": now,
            }
            for i in range(n)
        ],
    )
    await _insert(
        store,
        pending_refs,
        [
            {
                "connection": names[i % connections],
                "stream": "records",
                "remote_id": f"r{i}",
                "field": "company",
                "value": f"c{i}",
                "target_type": "company",
                "by": "id",
                "created_at": now,
            }
            for i in range(max(n // 10, 1))
        ],
    )
    if not store.is_sqlite:
        async with store.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in ("entities", "runs", "outbox", "inbox", "conflicts", "pending_refs"):
                await conn.exec_driver_sql(f"VACUUM (ANALYZE) {table}")


def configure(folder: Path, url: str, connections: int) -> Path:
    lines = [f'[hub]\ndatabase = "{url}"\n']
    for i in range(connections):
        schedule = 'schedule = "every 5m"\n' if i % 2 else ""
        lines.append(f'[connections.conn{i}]\nconnector = "memory"\nstore = "s{i}"\n{schedule}')
    path = folder / "crmhub.toml"
    path.write_text("\n".join(lines))
    return path


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--reads", type=int, default=10)
    parser.add_argument("--database", default=None, help="SQLAlchemy URL (default: SQLite)")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="crmhub-bench-") as tmp,
        database(args.database, Path(tmp)) as url,
    ):
        store = await Store.open(url)
        try:
            started = time.perf_counter()
            await fill(store, args.rows, args.connections)
            filled = time.perf_counter() - started
        finally:
            await store.close()
        config = load_config(configure(Path(tmp), url, args.connections))
        hub = await Hub.open(config, Registry.discover(extra={"memory": MemoryConnector}))
        try:
            print(
                f"crmhub status benchmark: {args.rows:,} runs, outbox rows, deliveries and "
                f"conflicts over {args.connections} connections, written in {filled:.1f} s; "
                f"{hub.store.engine.dialect.name}"
            )
            report = await gather(hub)  # warm: the first read pulls the pages in
            times = []
            for _ in range(args.reads):
                started = time.perf_counter()
                report = await gather(hub)
                times.append(time.perf_counter() - started)
            print(
                f"{args.reads} reads: median {statistics.median(times) * 1000:,.1f} ms, "
                f"slowest {max(times) * 1000:,.1f} ms; {len(report['needs_action'])} "
                "problems listed"
            )
        finally:
            await hub.close()


if __name__ == "__main__":
    asyncio.run(main())
