"""Runs held by the delete guard, on SQLite and PostgreSQL.

A held run keeps back the creations its deletions are the other half of; its guard counts
the links that existed before it; approving re-checks each held record against what is
known now, and refuses runs that are not held or that a later held run supersedes.
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.cli import (
    app,
    commands,  # noqa: F401  (registers the commands)
)
from hub.config import load_config
from hub.engine import approve, sync_connection
from hub.engine.holds import ApprovalRefused
from hub.runtime import Hub
from hub.store.schema import entities, links, outbox, runs
from tests.hub.enginekit import Setup


@pytest.fixture
async def held(tmp_path: Path, db_url: str) -> AsyncIterator[Setup]:
    s = Setup(
        tmp_path, db_url, ["crm", "shop"], per_connection={"crm": 'delete_policy = "propagate"\n'}
    )
    await s.open()
    yield s
    await s.close()


async def test_approving_an_old_hold_keeps_records_seen_again(held: Setup) -> None:
    crm, shop = held.remotes["crm"], held.remotes["shop"]
    ids = [crm.add({"email": f"p{i}@x.io", "first_name": f"P{i}"}) for i in range(20)]
    await held.sync_until_quiet()
    gone = {rid: crm.get(rid) for rid in ids[:6]}
    for rid in gone:
        crm.delete(rid)
    report = await held.sync("crm")
    assert report.status == "held" and report.counts["deletes_held"] == 6
    for rid, data in gone.items():  # the records come back (a file restored)
        assert data is not None
        crm.add(data, id=rid)
    assert (await held.sync("crm")).status == "ok"
    assert held.hub is not None
    approval = await approve(held.hub, report.run_id)
    assert approval.applied == 0 and approval.kept == 6
    await held.sync_until_quiet()
    assert len(crm) == len(shop) == 20 and len(await held.entities()) == 20


async def test_a_hold_superseded_by_a_later_hold_is_refused(held: Setup) -> None:
    crm, shop = held.remotes["crm"], held.remotes["shop"]
    ids = [crm.add({"email": f"p{i}@x.io"}) for i in range(20)]
    await held.sync_until_quiet()
    for rid in ids[:6]:
        crm.delete(rid)
    first = await held.sync("crm")
    restored = crm.add({"email": "p0@x.io"}, id=ids[0])  # one comes back
    assert restored == ids[0]
    second = await held.sync("crm")
    assert first.status == second.status == "held"
    assert second.counts["deletes_held"] == 5
    assert held.hub is not None
    assert await held.count(runs, id=first.run_id, status="superseded") == 1
    with pytest.raises(ApprovalRefused) as refused:
        await approve(held.hub, first.run_id)
    assert second.run_id in str(refused.value) and "superseded" in str(refused.value)
    assert (await approve(held.hub, second.run_id)).applied == 5
    with pytest.raises(ApprovalRefused, match="not held"):
        await approve(held.hub, second.run_id)
    await held.sync("shop")
    assert len(shop) == 15


async def test_a_held_run_keeps_back_the_creates_of_a_changed_key(held: Setup) -> None:
    crm, shop = held.remotes["crm"], held.remotes["shop"]
    ids = [crm.add({"email": f"p{i}@x.io", "first_name": f"P{i}"}) for i in range(20)]
    await held.sync_until_quiet()
    # An export that switched its id scheme: every record deleted and created again.
    data = {rid: crm.get(rid) for rid in ids}
    for rid in ids:
        crm.delete(rid)
    for rid, d in data.items():
        assert d is not None
        crm.add({"first_name": d["first_name"]}, id=f"new-{rid}")
    report = await held.sync("crm")
    assert report.status == "held"
    # the guard's share is of the 20 links that existed before the run, not 40
    assert any("20 of 20 linked records" in e for e in report.errors), report.errors
    assert report.counts["creates_held"] == 20
    assert len(await held.entities()) == 20
    assert await held.count(links, connection="crm") == 20
    assert await held.count(outbox, status="pending") == 0
    await held.sync("shop")
    assert len(shop) == 20  # no email-less copies pushed


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


async def test_a_renamed_csv_key_column_is_held_whole_and_put_back_cleanly(
    tmp_path: Path, db_url: str
) -> None:
    people = [f"p{i}@example.com,P{i}" for i in range(200)]
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("email,first_name\n" + "\n".join(people) + "\n")
    b.write_text("email,first_name\n")
    (tmp_path / "crmhub.toml").write_text(
        f'[hub]\ndatabase = "{db_url}"\n\n'
        '[connections.a]\nconnector = "csv"\npath = "a.csv"\n\n'
        '[connections.b]\nconnector = "csv"\npath = "b.csv"\n'
    )
    hub = await Hub.open(load_config(tmp_path / "crmhub.toml"))
    try:
        for name in ("a", "b", "a"):
            assert (await sync_connection(hub, name)).status == "ok"
        assert len(rows(b)) == 200
        a.write_text("Mail Address,first_name\n" + "\n".join(people) + "\n")
        report = await sync_connection(hub, "a")
        assert report.status == "held"
        assert any("200 of 200 linked records" in e for e in report.errors), report.errors
        report_b = await sync_connection(hub, "b")
        assert report_b.status == "ok" and not report_b.counts.get("pushed_create")
        assert len(rows(b)) == 200 and all(r["email"] for r in rows(b))
        a.write_text("email,first_name\n" + "\n".join(people) + "\n")
        assert (await sync_connection(hub, "a")).status == "ok"
        assert (await sync_connection(hub, "b")).status == "ok"
        async with hub.store.connect() as db:
            from sqlalchemy import func, select

            n = await db.scalar(select(func.count()).select_from(entities))
        assert n == 200 and len(rows(b)) == 200
    finally:
        await hub.close()


def test_runs_approve_refuses_a_run_that_is_not_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.csv").write_text("email\nann@example.com\n")
    (tmp_path / "crmhub.toml").write_text(
        '[hub]\ndatabase = "hub.db"\n\n[connections.a]\nconnector = "csv"\npath = "a.csv"\n'
    )
    monkeypatch.setenv("CRMHUB_CONFIG", str(tmp_path / "crmhub.toml"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")  # messages and cells unwrapped
    runner = CliRunner()
    assert runner.invoke(app, ["sync", "a", "--json"]).exit_code == 0
    [report] = json.loads(runner.invoke(app, ["sync", "a", "--json"]).output)
    result = runner.invoke(app, ["runs", "approve", report["run_id"]])
    assert result.exit_code == 1
    assert "is not held" in result.output and "applied" not in result.output
