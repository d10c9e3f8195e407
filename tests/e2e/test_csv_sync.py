"""Two CSV files synced through the ``crmhub`` command, as a person would run it."""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

CRMHUB = [sys.executable, "-m", "hub"]

SALES = """\
email,first_name,last_name,phone,city
Ann@Example.com ,Ann,Lee,(415) 555-0100,Paris
bob@example.org,Bob,Stone,+1 212 555 0199,Oslo
"""
NEWS = """\
email,first_name,last_name,phone,city
ann@example.com,Ann,Lee,+14155550100,Paris
  CARLA@example.net,Carla,Diaz,,Lima
"""


def crmhub(folder: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRMHUB_CONFIG": str(folder / "crmhub.toml"), "COLUMNS": "200"}
    proc = subprocess.run(
        [*CRMHUB, *args], capture_output=True, text=True, env=env, timeout=120, cwd=folder
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"crmhub {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def write_setup(folder: Path, extra: str = "") -> None:
    (folder / "sales.csv").write_text(SALES)
    (folder / "news.csv").write_text(NEWS)
    (folder / "crmhub.toml").write_text(
        '[hub]\ndatabase = "hub.db"\nphone_region = "US"\n\n'
        '[connections.sales]\nconnector = "csv"\npath = "sales.csv"\n'
        + extra
        + '\n[connections.news]\nconnector = "csv"\npath = "news.csv"\n'
        + extra
    )


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def by_email(path: Path) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for row in rows(path):
        key = row["email"].strip().lower()
        assert key not in out, f"duplicate row for {key} in {path.name}"
        out[key] = row
    return out


def sync_twice(folder: Path) -> None:
    for _ in range(2):
        crmhub(folder, "sync")


def test_overlapping_people_become_one_contact_each(tmp_path: Path) -> None:
    write_setup(tmp_path)
    sync_twice(tmp_path)
    listing = crmhub(tmp_path, "entities", "--json").stdout
    import json

    ents = json.loads(listing)
    assert sorted(e["fields"]["email"] for e in ents) == [
        "ann@example.com",
        "bob@example.org",
        "carla@example.net",
    ]
    ann = next(e for e in ents if e["fields"]["email"] == "ann@example.com")
    shown = json.loads(crmhub(tmp_path, "entities", "show", ann["id"], "--json").stdout)
    assert sorted(link["connection"] for link in shown["links"]) == ["news", "sales"]
    # people only in one file appear in the other
    assert set(by_email(tmp_path / "sales.csv")) == {
        "ann@example.com",
        "bob@example.org",
        "carla@example.net",
    }
    assert by_email(tmp_path / "news.csv")["bob@example.org"]["city"] == "Oslo"


def test_phone_change_reaches_the_other_file(tmp_path: Path) -> None:
    write_setup(tmp_path)
    sync_twice(tmp_path)
    text = (tmp_path / "sales.csv").read_text().replace("(415) 555-0100", "+1 415 555 0177")
    (tmp_path / "sales.csv").write_text(text)
    sync_twice(tmp_path)
    assert by_email(tmp_path / "news.csv")["ann@example.com"]["phone"] == "+14155550177"


def _conflicting_edit(folder: Path) -> None:
    sync_twice(folder)
    sales = (folder / "sales.csv").read_text().replace("Paris", "Rome")
    (folder / "sales.csv").write_text(sales)
    time.sleep(0.05)  # the newer file is news.csv
    news = (folder / "news.csv").read_text().replace("Paris", "Berlin")
    (folder / "news.csv").write_text(news)
    sync_twice(folder)


def test_manual_policy_lists_the_conflict(tmp_path: Path) -> None:
    write_setup(tmp_path, 'field_policies = { city = "manual" }\n')
    _conflicting_edit(tmp_path)
    import json

    open_conflicts = json.loads(crmhub(tmp_path, "conflicts", "--json").stdout)
    assert [(c["field"], c["status"]) for c in open_conflicts] == [("city", "open")]
    assert by_email(tmp_path / "sales.csv")["ann@example.com"]["city"] == "Rome"
    assert by_email(tmp_path / "news.csv")["ann@example.com"]["city"] == "Berlin"
    crmhub(tmp_path, "conflicts", "resolve", str(open_conflicts[0]["id"]), "--take", "Madrid")
    sync_twice(tmp_path)
    assert by_email(tmp_path / "sales.csv")["ann@example.com"]["city"] == "Madrid"
    assert by_email(tmp_path / "news.csv")["ann@example.com"]["city"] == "Madrid"


@pytest.mark.parametrize(
    ("extra", "winner"),
    [
        ('conflict_policy = "newest"\n', "Berlin"),
        ('conflict_policy = "prefer"\nprefer = ["sales", "news"]\n', "Rome"),
    ],
)
def test_newest_and_prefer_settle_without_conflict(tmp_path: Path, extra: str, winner: str) -> None:
    write_setup(tmp_path, extra)
    _conflicting_edit(tmp_path)
    import json

    assert json.loads(crmhub(tmp_path, "conflicts", "--json").stdout) == []
    assert by_email(tmp_path / "sales.csv")["ann@example.com"]["city"] == winner
    assert by_email(tmp_path / "news.csv")["ann@example.com"]["city"] == winner


def _store_snapshot(folder: Path) -> list[tuple[object, ...]]:
    db = folder / "hub.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return sorted(
            conn.execute("SELECT id, fields FROM entities").fetchall()
            + conn.execute("SELECT id, base FROM links").fetchall()
        )


@pytest.mark.parametrize(
    ("breakage", "expect"),
    [
        ("csv", ["news.csv:3", "7 cells"]),
        ("mapping", ["bad.toml:6", "transforms", "valid"]),
        ("connector", ["crmhub.toml", "connector", "nosuch", "installed"]),
    ],
)
def test_bad_input_gives_one_clear_error_and_changes_nothing(
    tmp_path: Path, breakage: str, expect: list[str]
) -> None:
    write_setup(tmp_path)
    sync_twice(tmp_path)
    before = _store_snapshot(tmp_path)
    files_before = {p.name: p.read_bytes() for p in tmp_path.glob("*.csv")}
    if breakage == "csv":
        (tmp_path / "news.csv").write_text(NEWS.replace("Carla,Diaz,,Lima", "Carla,Diaz,,Lima,x,y"))
        files_before["news.csv"] = (tmp_path / "news.csv").read_bytes()
    elif breakage == "mapping":
        (tmp_path / "bad.toml").write_text(
            'entity = "contact"\n\n[[field]]\ncanonical = "email"\nremote = "email"\n'
            'transforms = ["lowercase"]\n'
        )
        config = (tmp_path / "crmhub.toml").read_text()
        (tmp_path / "crmhub.toml").write_text(
            config.replace('path = "news.csv"\n', 'path = "news.csv"\nmapping = "bad.toml"\n')
        )
    else:
        config = (tmp_path / "crmhub.toml").read_text()
        (tmp_path / "crmhub.toml").write_text(
            config.replace('connector = "csv"', 'connector = "nosuch"', 1)
        )
    proc = crmhub(tmp_path, "sync", check=False)
    assert proc.returncode != 0
    message = proc.stderr + proc.stdout
    for word in expect:
        assert word in message, message
    assert "Traceback" not in message
    assert _store_snapshot(tmp_path) == before
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.csv")} == files_before


def _big_setup(folder: Path, n: int) -> None:
    lines_a = ["email,first_name,last_name,phone,city"]
    lines_b = ["email,first_name,last_name,phone,city"]
    for i in range(n):
        lines_a.append(f"person{i}@example.com,First{i},Last{i},+1415555{i % 10000:04d},Paris")
        if i % 2 == 0:
            lines_b.append(f"PERSON{i}@example.com,First{i},Last{i},,Oslo")
        if i % 3 == 0:
            lines_b.append(f"only{i}@example.net,Only{i},B,,Lima")
    (folder / "sales.csv").write_text("\n".join(lines_a) + "\n")
    (folder / "news.csv").write_text("\n".join(lines_b) + "\n")
    (folder / "crmhub.toml").write_text(
        '[hub]\ndatabase = "hub.db"\nphone_region = "US"\ndelete_guard_max = 1000000\n'
        "delete_guard_share = 1.0\n\n"
        '[connections.sales]\nconnector = "csv"\npath = "sales.csv"\nconflict_policy = "prefer"\n'
        'prefer = ["sales", "news"]\n\n'
        '[connections.news]\nconnector = "csv"\npath = "news.csv"\nconflict_policy = "prefer"\n'
        'prefer = ["sales", "news"]\n'
    )


def _final_state(folder: Path) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]], int]:
    for _ in range(3):
        crmhub(folder, "sync")
    with sqlite3.connect(folder / "hub.db") as conn:
        n = conn.execute("SELECT count(*) FROM entities").fetchone()[0]
    return by_email(folder / "sales.csv"), by_email(folder / "news.csv"), n


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_at_any_moment_then_rerun_matches_an_uninterrupted_sync(tmp_path: Path) -> None:
    n = 3000
    reference = tmp_path / "reference"
    reference.mkdir()
    _big_setup(reference, n)
    expected = _final_state(reference)
    env = {**os.environ}
    for i, delay in enumerate((0.8, 2.0, 3.5, 5.0)):
        folder = tmp_path / f"killed{i}"
        folder.mkdir()
        _big_setup(folder, n)
        env["CRMHUB_CONFIG"] = str(folder / "crmhub.toml")
        for _ in range(2):  # kill the first run, then the second one too
            proc = subprocess.Popen(
                [*CRMHUB, "sync"],
                env=env,
                cwd=folder,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert _final_state(folder) == expected
