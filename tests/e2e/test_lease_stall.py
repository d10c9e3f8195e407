"""A run stopped (SIGSTOP) past its lease while another run of the same connection goes on.

Two `crmhub sync b` processes over one database: the first is stopped in the middle of
writing 3,000 rows into b.csv, stays stopped longer than the lease (`run_lease_seconds = 1`),
a second run takes the lease and goes on, then the first is continued. The first must stop
at its next write with a clear error, and the file must end up with every row once.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

CRMHUB = [sys.executable, "-m", "hub"]
N = 3000


def crmhub(folder: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "CRMHUB_CONFIG": str(folder / "crmhub.toml"), "COLUMNS": "300"}
    return subprocess.Popen(
        [*CRMHUB, *args],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def lease_epoch(db_url: str) -> int:
    """The epoch of connection b's run lease: it moves when a run takes the lease."""
    engine = create_engine(db_url.replace("+aiosqlite", ""))
    try:
        with engine.connect() as conn:
            found = conn.execute(text("SELECT epoch FROM leases WHERE name = 'run:b'")).scalar()
        return int(found or 0)
    finally:
        engine.dispose()


def data_rows(path: Path) -> int:
    try:
        with path.open(newline="") as f:
            return max(sum(1 for _ in f) - 1, 0)
    except OSError:
        return 0


@pytest.mark.slow
def test_a_run_stopped_past_its_lease_stops_at_its_next_write(tmp_path: Path, db_url: str) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("email,first_name\n" + "".join(f"p{i}@example.com,P{i}\n" for i in range(N)))
    b.write_text("email,first_name\n")
    (tmp_path / "crmhub.toml").write_text(
        f'[hub]\ndatabase = "{db_url}"\nrun_lease_seconds = 1\n\n'
        '[connections.a]\nconnector = "csv"\npath = "a.csv"\n\n'
        '[connections.b]\nconnector = "csv"\npath = "b.csv"\n'
    )
    code, out = finish(crmhub(tmp_path, "sync", "a"))
    assert code == 0, out
    first = crmhub(tmp_path, "sync", "b")
    deadline = time.monotonic() + 120
    while data_rows(b) == 0 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    first.send_signal(signal.SIGSTOP)
    try:
        assert first.poll() is None and data_rows(b) < N, "the first run ended too soon"
        taken = lease_epoch(db_url)
        time.sleep(2.5)  # past the lease
        second = crmhub(tmp_path, "sync", "b")
        # It may wait for a lock the stopped run holds (the file's, or the database's for
        # the one transaction it was in): that is released when it continues. Otherwise
        # it takes the lease, however long it took to start.
        deadline = time.monotonic() + 30
        while lease_epoch(db_url) == taken and second.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        with contextlib.suppress(subprocess.TimeoutExpired):
            second.wait(timeout=2)
    finally:
        first.send_signal(signal.SIGCONT)
    code1, out1 = finish(first)
    code2, out2 = finish(second)
    assert code2 == 0, out2
    assert code1 == 1 and "lost its lease" in out1, out1
    # One more sync settles anything the stopped run left owed; nothing is lost, nothing
    # doubled, nothing deleted.
    code, out = finish(crmhub(tmp_path, "sync"))
    assert code == 0 and "held" not in out and "deleted" not in out, out
    with b.open(newline="") as f:
        emails = [r["email"] for r in csv.DictReader(f)]
    assert len(emails) == N and len(set(emails)) == N
