"""SIGKILL during a first sync that pushes new contacts with new companies: after the rerun
no contact points at a missing or duplicated company, in the hub or in the files."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

CRMHUB = [sys.executable, "-m", "hub"]
N = 2000
FIRMS = 150


def _setup(folder: Path) -> None:
    lines = ["email,first_name,company"]
    lines += [f"p{i}@example.com,P{i},Firm {i % FIRMS}" for i in range(N)]
    (folder / "source.csv").write_text("\n".join(lines) + "\n")
    (folder / "people.csv").write_text("email,first_name,company\n")
    (folder / "firms.csv").write_text("id,name,domain\n")
    (folder / "crmhub.toml").write_text(
        '[hub]\ndatabase = "hub.db"\n\n'
        '[connections.source]\nconnector = "csv"\npath = "source.csv"\n\n'
        '[connections.people]\nconnector = "csv"\npath = "people.csv"\n\n'
        '[connections.firms]\nconnector = "csv"\npath = "firms.csv"\nentity = "company"\n'
        'key = "id"\n'
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _check(folder: Path) -> None:
    env = {**os.environ, "CRMHUB_CONFIG": str(folder / "crmhub.toml")}
    for _ in range(2):
        subprocess.run([*CRMHUB, "sync"], env=env, cwd=folder, check=True, capture_output=True)
    with sqlite3.connect(folder / "hub.db") as db:
        found = db.execute(
            "SELECT id, type, fields FROM entities WHERE deleted_at IS NULL"
        ).fetchall()
    fields = {i: (t, json.loads(f)) for i, t, f in found}
    names = Counter(f["name"] for t, f in fields.values() if t == "company")
    assert len(names) == FIRMS and set(names.values()) == {1}, names.most_common(3)
    people = [f for t, f in fields.values() if t == "contact"]
    assert len(people) == N
    for person in people:
        assert fields[person["company"]][0] == "company", person  # never a dangling id
    firms = Counter(r["name"] for r in _rows(folder / "firms.csv"))
    assert len(firms) == FIRMS and set(firms.values()) == {1}, firms.most_common(3)
    rows = _rows(folder / "people.csv")
    assert len(rows) == N and {r["company"] for r in rows} == set(firms)


@pytest.mark.slow
def test_sigkill_while_pushing_contacts_and_their_new_companies(tmp_path: Path) -> None:
    for i, delay in enumerate((1.5, 3.0, 5.0)):
        folder = tmp_path / f"killed{i}"
        folder.mkdir()
        _setup(folder)
        env = {**os.environ, "CRMHUB_CONFIG": str(folder / "crmhub.toml")}
        proc = subprocess.Popen(
            [*CRMHUB, "sync"], env=env, cwd=folder,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _check(folder)
