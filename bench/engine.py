"""Engine throughput: 100,000 contacts across two connections (in-process remotes).

    .venv/bin/python bench/engine.py [--records 100000] [--database URL] [--busy]
    .venv/bin/python -m bench.engine --relations [--references-first] [--records N] [--database URL]

Prints the initial sync's records/s, an incremental sync with 1% and with 0% changed,
and the peak RSS. The remotes are generated (``MemoryRemote.generate``): records made from
their index when pulled, only those changed or pushed kept, as the records of another system
are not in the hub's memory. With ``--busy`` a thread of the same process spins the whole time, as
another run's mapping or a burst of webhooks does in the daemon: the figures then show what
the database driver's waits for the interpreter lock cost. HTTP is not measured here (see
bench/ratelimit.py, bench/webhooks.py).

``--relations``: one connection with three streams, ``--records`` contacts naming a tenth
as many companies by the remote's id, and twice as many activities naming their contact;
the initial sync and a 1% incremental, once with the references resolved and once with the
same ids copied as plain text (each in a new store), and the peak RSS of each sync.
By default the store is a new SQLite file; with ``--database postgresql+psycopg://...`` the
run gets a schema of its own in that database, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.config import load_config
from hub.engine import sync_connection
from hub.registry import Registry
from hub.runtime import Hub
from hub.testing.memory import MemoryConnector, create_remote

MAPPING = """\
entity = "contact"
[[field]]
canonical = "email"
remote = "email"
transforms = ["email"]
[[field]]
canonical = "first_name"
remote = "first_name"
[[field]]
canonical = "last_name"
remote = "last_name"
[[field]]
canonical = "phone"
remote = "phone"
transforms = [{ name = "phone", region = "US" }]
[[field]]
canonical = "city"
remote = "city"
"""


def person(i: int) -> dict[str, str]:
    return {
        "email": f"person{i}@example.com",
        "first_name": f"First{i}",
        "last_name": f"Last{i % 997}",
        "phone": f"+1415{5550000 + i % 10000:07d}",
        "city": ("Paris", "Oslo", "Lima", "Rome")[i % 4],
    }


def rss_mb() -> float:
    """Peak RSS of the whole process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mb(field: str) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return None


def reset_peak() -> None:
    """Start a new peak (Linux: the high-water mark falls to the current RSS)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_mb() -> float:
    """Peak RSS since the last :func:`reset_peak` (the whole process's where unsupported)."""
    return _status_mb("VmHWM") or rss_mb()


def current_mb() -> float:
    return _status_mb("VmRSS") or rss_mb()


@contextlib.contextmanager
def database(given: str | None, tmp: Path) -> Iterator[str]:
    """The URL to run on: a new SQLite file by default; on PostgreSQL a schema of its own,
    dropped afterwards, so every run starts from empty tables."""
    if given is None:
        yield f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        return
    if make_url(given).get_backend_name() != "postgresql":
        yield given
        return
    import psycopg

    dsn = make_url(given).set(drivername="postgresql").render_as_string(hide_password=False)
    schema = f"crmhub_bench_{os.getpid()}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{given}{'&' if '?' in given else '?'}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--database", default=None, help="SQLAlchemy URL (default: SQLite)")
    parser.add_argument("--busy", action="store_true", help="a busy thread beside the syncs")
    parser.add_argument("--relations", action="store_true", help="the relations case")
    parser.add_argument(
        "--references-first", action="store_true", help="relations: the references case first"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="crmhub-bench-"))
    if args.relations:
        from bench.relations import run_relations

        await run_relations(
            args.records, args.database, tmp, database, reverse=args.references_first
        )
        return
    with database(args.database, tmp) as url, busy_thread(args.busy):
        await run(args.records, url, tmp)


@contextlib.contextmanager
def busy_thread(wanted: bool) -> Iterator[None]:
    """A thread running pure Python until the block ends (if ``wanted``)."""
    if not wanted:
        yield
        return
    stop = threading.Event()

    def spin() -> None:
        n = 0
        while not stop.is_set():
            n += 1

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


async def run(n: int, url: str, tmp: Path) -> None:
    crm, shop = create_remote("bench-crm"), create_remote("bench-shop")
    # The two remotes stand in for other systems, whose records are not in the hub's memory:
    # each record is made from its index when pulled; only those changed or pushed are kept.
    crm.generate(n, person, prefix="p")

    def shouted(i: int) -> dict[str, str]:
        # the second system knows the first half of the people, with other spelling of emails
        p = person(i)
        p["email"] = p["email"].upper()
        return p

    shop.generate(n // 2, shouted, prefix="p")
    gc.freeze()
    (tmp / "contact.toml").write_text(MAPPING)
    (tmp / "crmhub.toml").write_text(
        f'[hub]\ndatabase = "{url}"\nphone_region = "US"\n'
        '[connections.crm]\nconnector = "memory"\nstore = "bench-crm"\nmapping = "contact.toml"\n'
        '[connections.shop]\nconnector = "memory"\nstore = "bench-shop"\n'
        'mapping = "contact.toml"\n'
    )
    hub = await Hub.open(
        load_config(tmp / "crmhub.toml"), Registry.discover(extra={"memory": MemoryConnector})
    )
    print(
        f"crmhub engine benchmark: {n} contacts in crm, {n // 2} of them in shop; {hub.store.url}"
    )

    async def timed(name: str) -> tuple[float, dict[str, int]]:
        start = time.perf_counter()
        report = await sync_connection(hub, name)
        assert report.status == "ok", (report.status, report.error)
        return time.perf_counter() - start, report.counts

    before = current_mb()
    t1, c1 = await timed("crm")
    t2, c2 = await timed("shop")
    pulled = c1.get("records", 0) + c2.get("records", 0)
    print(
        f"initial sync, crm: {c1.get('records', 0)} records in {t1:.2f}s "
        f"({c1.get('records', 0) / t1:,.0f} records/s)"
    )
    print(
        f"initial sync, shop (matching + pushing {n - n // 2} new): "
        f"{c2.get('records', 0)} records in {t2:.2f}s; pushed {c2.get('pushed_create', 0)}"
    )
    print(
        f"initial sync overall: {pulled} records in {t1 + t2:.2f}s "
        f"({pulled / (t1 + t2):,.0f} records/s)"
    )
    # settle: crm pushes what shop brought in, and each side pulls the echo of the hub's
    # own writes once (found equal to the base: no change)
    for name in ("crm", "shop", "crm", "shop"):
        await timed(name)

    changed = n // 100
    ids = crm.ids()[:changed]
    for rid in ids:
        crm.update(rid, city="Berlin")
    t3, c3 = await timed("crm")
    t4, c4 = await timed("shop")
    print(
        f"incremental, 1% changed ({changed}): crm {t3:.2f}s "
        f"({c3.get('updated', 0)} updated), shop push {t4:.2f}s "
        f"({c4.get('pushed_update', 0)} pushed)"
    )
    t5, _ = await timed("crm")
    t6, _ = await timed("shop")
    print(f"incremental, 0% changed: crm {t5:.3f}s, shop {t6:.3f}s")
    kept = len(crm._records) + len(shop._records)
    print(
        f"peak RSS: {rss_mb():.0f} MB ({before:.0f} MB before the first sync: Python and the "
        f"modules; the remotes keep only what changed or was pushed, {kept:,} records by the end)"
    )
    await hub.close()


if __name__ == "__main__":
    asyncio.run(main())
