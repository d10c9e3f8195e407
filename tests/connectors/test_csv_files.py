"""The CSV connector and other programs sharing its file: concurrent writers, the lock,
symlinks, permissions, the lease check before the rename."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from connectors.csv import CsvConnector, CsvSettings
from hub.connector import Change, ConnectorContext, PushResult
from hub.errors import ErrorKind, TransientError

# Appends one row every few milliseconds, opening the file for each row like a script that
# logs sign-ups would; with "lock" it first takes crmhub's lock as the README says.
APPENDER = """
import fcntl, sys, time
path, count, pause, lock = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
for i in range(count):
    if lock == "lock":
        guard = open(path + ".lock", "a")
        fcntl.flock(guard, fcntl.LOCK_EX)
    with open(path, "a", newline="") as f:
        f.write(f"append{i}@example.com,Append{i}\\n")
    if lock == "lock":
        guard.close()
    time.sleep(pause)
"""


def make(tmp_path: Path, file: str = "people.csv", **settings: Any) -> CsvConnector:
    return CsvConnector(
        CsvSettings.model_validate({"path": file, **settings}),
        ConnectorContext(connection="sheet", base_dir=tmp_path),
    )


async def push(connector: CsvConnector, *changes: Change) -> list[PushResult]:
    return await connector.push(connector.streams()[0], list(changes))


def create(key: str, data: dict[str, Any]) -> Change:
    return Change(key=key, op="create", data=data, idempotency_key=f"idem-{key}")


def emails(path: Path) -> list[str]:
    return [row["email"] for row in csv.DictReader(io.StringIO(path.read_text(), newline=""))]


@pytest.mark.slow
@pytest.mark.parametrize("lock", ["lock", "nolock"])
async def test_rows_appended_while_syncs_rewrite_the_file_are_kept(
    tmp_path: Path, lock: str
) -> None:
    path = tmp_path / "people.csv"
    path.write_text("email,first_name\n" + "".join(f"p{i}@example.com,P{i}\n" for i in range(300)))
    appended = 400
    appender = subprocess.Popen(
        [sys.executable, "-c", APPENDER, str(path), str(appended), "0.003", lock]
    )
    connector = make(tmp_path)
    owed = [create(f"n{i}", {"email": f"new{i}@example.com"}) for i in range(2000)]
    written: list[str] = []
    gave_up = 0
    try:
        while appender.poll() is None or not written:
            batch, owed = owed[:3], owed[3:]
            try:
                results = await push(connector, *batch)
            except TransientError:  # the whole write was refused: all of it stays owed
                owed = batch + owed
                gave_up += 1
                continue
            for change, result in zip(batch, results, strict=True):
                if result.ok:
                    written.append(change.data["email"])
                else:
                    assert result.error is ErrorKind.TRANSIENT, result.message
                    owed.insert(0, change)
                    gave_up += 1
    finally:
        appender.wait(timeout=60)
    assert appender.returncode == 0
    rows = emails(path)
    missing = [f"append{i}@example.com" for i in range(appended)]
    missing = [e for e in missing if e not in set(rows)]
    assert missing == [], f"{len(missing)} appended rows lost ({len(written)} writes)"
    assert set(written) <= set(rows)
    assert len(rows) == len(set(rows)) == 300 + appended + len(written)
    print(f"{len(written)} rows written in {len(written) // 3} pushes, {gave_up} given up")
