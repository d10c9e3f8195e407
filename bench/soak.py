"""Memory soak: the demo configuration under steady edits, the daemon's RSS sampled.

    python bench/soak.py [--minutes 10] [--interval 3] [--sample 10] [--add-every 10] [--keep DIR]

Three processes on loopback, for a bounded time: the Mailchimp sandbox (``crmhub sandbox
mailchimp``), ``crmhub up`` on the demo's files (``hub.demo.write_demo``: a CSV connection
and a Mailchimp connection, both ``every 5s``, the Mailchimp webhook pointed at the daemon),
and this driver. Every ``--interval`` seconds the driver edits one side in turn: a member's
first name "in Mailchimp" (the sandbox fires the webhook), or a row's city in ``sales.csv``;
every ``--add-every``-th step (10) appends a new person to the CSV instead; with
``--add-every 0`` nobody is added, so the data stays the same size and any growth in memory
is the daemon's own. The daemon's resident set size is sampled
every ``--sample`` seconds (psutil).

Prints the samples, the growth from the end of the first minute to the end, and the runs and
inbox items by status. Figures, never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import os
import random
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil

from connectors.mailchimp.sandbox import LIST_ID, SANDBOX_API_KEY
from hub.demo import SECRET, write_demo

MiB = 1024 * 1024
HUB = [sys.executable, "-m", "hub"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def process(command: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """A child process, stopped (SIGTERM, then SIGKILL) by its PID when the block ends."""
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for(pattern: str, log: Path, proc: subprocess.Popen[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text())
        if found:
            return found.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise SystemExit(f"{proc.args!r} did not start:\n{log.read_text()[-3000:]}")


class Driver:
    """Acts like people editing both sides."""

    def __init__(self, sandbox: str, sales: Path, add_every: int) -> None:
        self.sandbox = sandbox
        self.add_every = add_every
        self.sales = sales
        self.rng = random.Random(1)
        self.step = 0
        self.edits = {"mailchimp": 0, "csv_edit": 0, "csv_add": 0, "failed": 0}

    async def members(self, client: httpx.AsyncClient) -> list[str]:
        response = await client.get(
            f"{self.sandbox}/3.0/lists/{LIST_ID}/members",
            params={"count": 1000, "status": "subscribed"},
            auth=("soak", SANDBOX_API_KEY),
        )
        response.raise_for_status()
        return [m["email_address"] for m in response.json()["members"]]

    async def once(self, client: httpx.AsyncClient) -> None:
        self.step += 1
        try:
            if self.step % 2:
                emails = await self.members(client)
                body = {
                    "email": self.rng.choice(emails),
                    "merge_fields": {"FNAME": f"Soak{self.step}"},
                }
                response = await client.post(f"{self.sandbox}/_mailchimp/edit", json=body)
                response.raise_for_status()
                self.edits["mailchimp"] += 1
            elif self.add_every and self.step % self.add_every == 0:
                await asyncio.to_thread(self._append)
                self.edits["csv_add"] += 1
            else:
                await asyncio.to_thread(self._edit_city)
                self.edits["csv_edit"] += 1
        except (httpx.HTTPError, OSError, ValueError, IndexError):
            self.edits["failed"] += 1

    def _append(self) -> None:
        with self.sales.open("a", encoding="utf-8") as f:
            f.write(f"soak{self.step}@example.com,Soak,Person{self.step},,Soakco,Leeds\n")

    def _edit_city(self) -> None:
        # Read, change and replace atomically, as an editor saving the file would.
        text = self.sales.read_text(encoding="utf-8-sig")
        reader = csv.DictReader(io.StringIO(text))
        fields, rows = list(reader.fieldnames or []), list(reader)
        if not rows or "city" not in fields:
            return
        self.rng.choice(rows)["city"] = f"City{self.step}"
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        tmp = self.sales.with_suffix(".soak-tmp")
        tmp.write_text(out.getvalue(), encoding="utf-8")
        os.replace(tmp, self.sales)


def counts(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(sql).fetchall()


async def soak(
    folder: Path, minutes: float, interval: float, sample: float, add_every: int
) -> None:
    env = {**os.environ, "CRMHUB_CONFIG": str(folder / "crmhub.toml"), "SOAK_MC_KEY": ""}
    sandbox_port, hub_port = free_port(), free_port()
    sandbox_cmd = [*HUB, "sandbox", "mailchimp", "--port-base", str(sandbox_port)]
    with process(sandbox_cmd, folder / "sandbox.log", env) as sandbox_proc:
        sandbox = wait_for(r"mailchimp\s+(http://\S+)", folder / "sandbox.log", sandbox_proc)
        config = write_demo(folder, api_base=f"{sandbox}/3.0/", list_id=LIST_ID, port=hub_port)
        env["SOAK_MC_KEY"] = SANDBOX_API_KEY
        subprocess.run(
            [*HUB, "connect", "newsletter", "--value-from-env", "SOAK_MC_KEY"],
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        up = [*HUB, "up", "--config", str(config), "--log-json", "--log-level", "warning"]
        log = folder / "daemon.log"
        with process(up, log, env) as daemon:
            base = f"http://127.0.0.1:{hub_port}"
            async with httpx.AsyncClient(timeout=30) as client:
                await _until_healthy(client, base, daemon, log)
                hook = f"{base}/hooks/newsletter?secret={SECRET}"
                (
                    await client.post(f"{sandbox}/_sandbox/webhooks", json={"url": hook})
                ).raise_for_status()
                driver = Driver(sandbox, folder / "sales.csv", add_every)
                samples = await _drive_and_sample(client, driver, daemon, minutes, interval, sample)
            daemon.terminate()
            daemon.wait(timeout=20)
        _report(samples, driver, folder / "crmhub.db", daemon.returncode, minutes, interval)


async def _until_healthy(
    client: httpx.AsyncClient, base: str, daemon: subprocess.Popen[str], log: Path
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise SystemExit(f"crmhub up exited:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get(f"{base}/healthz")).status_code == 200:
                return
        await asyncio.sleep(0.2)
    raise SystemExit(f"crmhub up did not answer /healthz within 60 s:\n{log.read_text()[-3000:]}")


async def _drive_and_sample(
    client: httpx.AsyncClient,
    driver: Driver,
    daemon: subprocess.Popen[str],
    minutes: float,
    interval: float,
    sample: float,
) -> list[tuple[float, int]]:
    proc = psutil.Process(daemon.pid)
    began = time.monotonic()
    end = began + minutes * 60
    samples: list[tuple[float, int]] = []
    next_sample = began
    next_edit = began + interval
    while time.monotonic() < end and daemon.poll() is None:
        now = time.monotonic()
        if now >= next_sample:
            rss = proc.memory_info().rss
            samples.append((now - began, rss))
            print(f"  t={now - began:6.0f}s  rss={rss / MiB:7.1f} MiB", flush=True)
            next_sample += sample
        if now >= next_edit:
            await driver.once(client)
            next_edit += interval
        await asyncio.sleep(max(0.0, min(next_sample, next_edit, end) - time.monotonic()))
    if daemon.poll() is None:
        samples.append((time.monotonic() - began, proc.memory_info().rss))
    return samples


def _report(
    samples: list[tuple[float, int]],
    driver: Driver,
    db: Path,
    returncode: int | None,
    minutes: float,
    interval: float,
) -> None:
    print(f"\nsoak: {minutes:g} min, an edit every {interval:g} s; daemon exit code {returncode}")
    print(f"edits: {driver.edits}")
    if not samples:
        print("no samples")
        return
    first_minute = [rss for t, rss in samples if t <= 60] or [samples[0][1]]
    baseline, last = first_minute[-1], samples[-1][1]
    peak = max(rss for _, rss in samples)
    growth = (last - baseline) / MiB
    print(
        f"rss: at 1 min {baseline / MiB:.1f} MiB, at end ({samples[-1][0]:.0f} s) "
        f"{last / MiB:.1f} MiB, peak {peak / MiB:.1f} MiB; "
        f"growth after the first minute {growth:+.1f} MiB ({growth * MiB / baseline:+.1%})"
    )
    half = samples[-1][0] / 2
    middle = next((rss for t, rss in samples if t >= half), last)
    hours = (samples[-1][0] - half) / 3600
    if hours > 0:
        print(f"rss in the second half: {(last - middle) / MiB / hours:+.1f} MiB per hour")
    size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
    print(f"database with its WAL: {size / MiB:.1f} MiB")
    print("runs by connection and status:")
    for connection, status, n in counts(
        db, "select connection, status, count(*) from runs group by 1, 2 order by 1, 2"
    ):
        print(f"  {connection:<12} {status:<12} {n}")
    inbox = {str(s): n for s, n in counts(db, "select status, count(*) from inbox group by 1")}
    print("inbox by status:", inbox)
    people = counts(db, "select count(*) from entities where deleted_at is null")[0][0]
    print(f"contacts in the hub: {people}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between edits")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument(
        "--add-every", type=int, default=10, help="steps between new people (0: none)"
    )
    parser.add_argument("--keep", type=Path, help="keep the files in this folder")
    args = parser.parse_args()
    if args.add_every < 0:
        parser.error("--add-every: 0 or more steps")
    timing = (args.minutes, args.interval, args.sample, args.add_every)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        asyncio.run(soak(args.keep.resolve(), *timing))
        return
    with tempfile.TemporaryDirectory(prefix="crmhub-soak-") as tmp:
        asyncio.run(soak(Path(tmp), *timing))


if __name__ == "__main__":
    main()
