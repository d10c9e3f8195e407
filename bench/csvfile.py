"""CSV writes: the cost of one push, and rows kept while another program appends.

    .venv/bin/python bench/csvfile.py [--rows 1000 100000] [--appended 400] [--pause 0.003]

For each file size: the median time of a push of 100 updates and 100 creates (read, change,
write beside, compare, rename). Then a program appends one row every ``--pause`` seconds,
once taking crmhub's lock and once not, while pushes of 3 creates rewrite the file: how
many pushes went through, how many were given up (left owed), and how many appended rows
were lost.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.csv import CsvConnector, CsvSettings
from hub.connector import Change, ConnectorContext
from hub.errors import TransientError

APPENDER = """
import fcntl, sys, time
path, count, pause, lock = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
for i in range(count):
    if lock == "lock":
        guard = open(path + ".lock", "a")
        fcntl.flock(guard, fcntl.LOCK_EX)
    with open(path, "a", newline="") as f:
        f.write(f"append{i}@example.com,Append{i},,,\\n")
    if lock == "lock":
        guard.close()
    time.sleep(pause)
"""


def connector(folder: Path) -> CsvConnector:
    return CsvConnector(
        CsvSettings(path="people.csv"), ConnectorContext(connection="bench", base_dir=folder)
    )


def seed(folder: Path, rows: int) -> None:
    lines = "".join(
        f"p{i}@example.com,P{i},L{i},+1415555{i % 10000:04d},C{i % 50}\n" for i in range(rows)
    )
    (folder / "people.csv").write_text("email,first_name,last_name,phone,city\n" + lines)


async def push_cost(rows: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        seed(folder, rows)
        csv = connector(folder)
        stream = csv.streams()[0]
        times = []
        for round_ in range(5):
            changes = [
                Change(
                    key=f"u{i}",
                    op="update",
                    data={"city": f"R{round_}"},
                    idempotency_key="u",
                    remote_id=f"email:p{i * (rows // 100)}@example.com",
                )
                for i in range(100)
            ] + [
                Change(
                    key=f"c{i}",
                    op="create",
                    data={"email": f"n{round_}-{i}@example.com"},
                    idempotency_key=f"c{round_}-{i}",
                )
                for i in range(100)
            ]
            began = time.perf_counter()
            results = await csv.push(stream, changes)
            times.append(time.perf_counter() - began)
            assert all(r.ok for r in results), results[0].message
        return statistics.median(times)


async def with_appender(lock: str, appended: int, pause: float) -> tuple[int, int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        seed(folder, 300)
        path = folder / "people.csv"
        proc = subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(path), str(appended), str(pause), lock]
        )
        csv = connector(folder)
        stream = csv.streams()[0]
        done = given_up = 0
        n = 0
        while proc.poll() is None:
            changes = [
                Change(
                    key=f"c{n + i}",
                    op="create",
                    data={"email": f"new{n + i}@example.com"},
                    idempotency_key=f"c{n + i}",
                )
                for i in range(3)
            ]
            try:
                results = await csv.push(stream, changes)
            except TransientError:
                given_up += 1
                continue
            if all(r.ok for r in results):
                done += 1
                n += 3
            else:
                given_up += 1
        text = path.read_text()
        lost = sum(1 for i in range(appended) if f"append{i}@example.com," not in text)
        return done, given_up, lost


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[1000, 100_000])
    parser.add_argument("--appended", type=int, default=400)
    parser.add_argument("--pause", type=float, default=0.003)
    args = parser.parse_args()
    for rows in args.rows:
        cost = await push_cost(rows)
        print(
            f"push of 100 updates + 100 creates into {rows:,} rows: "
            f"{cost * 1000:.1f} ms (median of 5)"
        )
    for lock in ("lock", "nolock"):
        done, given_up, lost = await with_appender(lock, args.appended, args.pause)
        who = "taking the lock" if lock == "lock" else "without the lock"
        print(
            f"appender {who}, {args.appended} rows every {args.pause * 1000:g} ms: "
            f"{done} pushes written, {given_up} given up (left owed), {lost} appended rows lost"
        )


if __name__ == "__main__":
    asyncio.run(main())
