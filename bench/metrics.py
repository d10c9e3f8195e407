"""What a /metrics scrape costs as the runs table fills up.

    .venv/bin/python bench/metrics.py [--runs 100000] [--connections 4] [--scrapes 10]
        [--database URL]

A daemon with connections scheduled every few seconds records thousands of runs a day, and
keeps them for the retention (30 days; runs that changed nothing 3 days). Prometheus scrapes
``/metrics`` every 15 to 60 seconds, and the scrape reads the store (runs by status, the sums
of the runs' counts, the inbox and outbox, token expiry). This fills the runs table with
``--runs`` finished runs over ``--connections`` connections, each with the counts a real run
reports, then times ``--scrapes`` reads of the store's metrics (``hub.web.ops.store_metrics``,
the part of the page that depends on the data). Prints the median and slowest scrape and how
much the process's peak RSS rose while scraping. The store is a new SQLite file, or with
``--database postgresql+psycopg://...`` a schema of its own, dropped at the end, with the
table vacuumed and analysed after filling, as autovacuum would have done by then. Figures,
never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import database, rss_mb
from sqlalchemy import insert

from hub.store import Store, utcnow
from hub.store.schema import runs
from hub.web.ops import store_metrics


def counts(i: int) -> dict[str, int]:
    """What a scheduled incremental run of the demo reports: mostly reads, now and then a
    change."""
    changed = i % 20 == 0
    found = {"records": 3 + i % 5, "pages": 1, "http_200": 2, "http_calls": 2}
    if changed:
        found |= {"updated": 1, "push_calls": 1}
    return found


async def fill(store: Store, n: int, connections: int) -> None:
    now = utcnow()
    batch = 5_000
    for start in range(0, n, batch):
        rows = [
            {
                "id": str(uuid.uuid4()),
                "connection": f"conn{i % connections}",
                "status": "ok" if i % 50 else "failed",
                "full": False,
                "started_at": now - timedelta(seconds=5 * (n - i)),
                "finished_at": now - timedelta(seconds=5 * (n - i) - 1),
                "counts": counts(i),
            }
            for i in range(start, min(start + batch, n))
        ]
        async with store.begin() as db:
            await db.execute(insert(runs), rows)
    if not store.is_sqlite:
        # what autovacuum has done by the time a daemon has recorded that many runs
        async with store.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("VACUUM (ANALYZE) runs")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--scrapes", type=int, default=10)
    parser.add_argument("--database", default=None, help="SQLAlchemy URL (default: SQLite)")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="crmhub-bench-") as tmp,
        database(args.database, Path(tmp)) as url,
    ):
        store = await Store.open(url)
        try:
            started = time.perf_counter()
            await fill(store, args.runs, args.connections)
            print(
                f"crmhub /metrics benchmark: {args.runs:,} runs over {args.connections} "
                f"connections, written in {time.perf_counter() - started:.1f} s; "
                f"{store.engine.dialect.name}"
            )
            before = rss_mb()
            await store_metrics(store)  # warm: the first read pulls the pages in
            times = []
            for _ in range(args.scrapes):
                started = time.perf_counter()
                families = await store_metrics(store)
                times.append(time.perf_counter() - started)
            samples = sum(len(f.samples()) for f in families)
            print(
                f"{args.scrapes} scrapes: median {statistics.median(times) * 1000:,.1f} ms, "
                f"slowest {max(times) * 1000:,.1f} ms; {samples} samples; "
                f"peak RSS +{rss_mb() - before:.1f} MB while scraping"
            )
        finally:
            await store.close()


if __name__ == "__main__":
    asyncio.run(main())
