"""Web form intake: accepted HTML form posts per second against ``crmhub up`` on loopback.

    python bench/forms.py [--concurrency 16] [--seconds 10] [--max-requests 5000]

Starts ``crmhub up`` as a subprocess (SQLite store in a temporary directory) with one web
form (``provider = "html"``, rate limit off, spam checks on) and a CSV connection, then
posts urlencoded forms, each with a different address and a valid signed issue time, from
``--concurrency`` clients in a closed loop, for at most ``--seconds`` and ``--max-requests``.
Latency is measured per request, from sending to the 200 thank-you page; every accepted
submission is committed to the inbox before its answer. Afterwards it waits (at most
``--drain`` seconds) until the daemon's inbox processor has synced every submission into a
contact, and reports how long that took.

Prints figures, never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx

from connectors.webforms import TOKEN_FIELD, issue_token

KEY = "bench-form-key-0123456789abcdef"
SECRET = "bench-form-secret-0123456789"
CRMHUB = str(Path(sys.executable).with_name("crmhub"))


def _config(directory: Path) -> str:
    return (
        f'[hub]\ndatabase = "{directory / "crmhub.db"}"\n\n'
        f'[connections.people]\nconnector = "csv"\npath = "{directory / "people.csv"}"\n\n'
        f'[connections.bench]\nconnector = "webforms"\ndirection = "pull"\nkey = "{KEY}"\n'
        f'form_secret = "{SECRET}"\nrate_limit = 0\n'
    )


def _start(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    (directory / "crmhub.toml").write_text(_config(directory))
    (directory / "people.csv").write_text("id,email,first_name,last_name\n")
    log = directory / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [CRMHUB, "up", "--config", str(directory / "crmhub.toml"), "--port", "0"],
            cwd=directory,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "CRMHUB_CONFIG": ""},
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"crmhub up on (http://[\d.]+:\d+)", log.read_text())
        if found:
            return proc, found.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"crmhub up did not start:\n{log.read_text()[-2000:]}")


def _count(db: Path, sql: str) -> int:
    with sqlite3.connect(db, timeout=30) as conn:
        return int(conn.execute(sql).fetchone()[0])


async def _load(url: str, concurrency: int, seconds: float, max_requests: int) -> dict[str, float]:
    token = issue_token(SECRET, "bench", time.time() - 10)
    headers = {"content-type": "application/x-www-form-urlencoded"}
    latencies: list[float] = []
    failures = 0
    issued = 0
    stop_at = time.monotonic() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failures, issued
        while time.monotonic() < stop_at and issued < max_requests:
            n = issued
            issued += 1
            body = urlencode(
                {
                    "email": f"bench{n}@example.com",
                    "first_name": f"Bench{n}",
                    "consent": "yes",
                    "website": "",
                    TOKEN_FIELD: token,
                }
            )
            began = time.perf_counter()
            try:
                answer = await client.post(f"{url}/forms/{KEY}", content=body, headers=headers)
            except httpx.HTTPError:
                failures += 1
                continue
            if answer.status_code == 200:
                latencies.append(time.perf_counter() - began)
            else:
                failures += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    began = time.perf_counter()
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [0.0] * 99
    return {
        "accepted": len(latencies),
        "failed": failures,
        "seconds": elapsed,
        "per_second": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=5000)
    parser.add_argument("--drain", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        proc, url = _start(directory)
        try:
            figures = asyncio.run(_load(url, args.concurrency, args.seconds, args.max_requests))
            db = directory / "crmhub.db"
            stored = _count(db, "select count(*) from inbox where source = 'bench'")
            began = time.monotonic()
            contacts = 0
            while time.monotonic() - began < args.drain:
                contacts = _count(db, "select count(*) from entities where type = 'contact'")
                if contacts >= stored:
                    break
                time.sleep(0.2)
            drained = time.monotonic() - began
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(
        f"form posts: {figures['accepted']:.0f} accepted, {figures['failed']:.0f} failed in "
        f"{figures['seconds']:.1f} s with {args.concurrency} clients: "
        f"{figures['per_second']:.0f}/s, p50 {figures['p50_ms']:.1f} ms, "
        f"p99 {figures['p99_ms']:.1f} ms"
    )
    print(f"inbox rows: {stored}; contacts synced: {contacts} ({drained:.1f} s after the load)")


if __name__ == "__main__":
    main()
