"""One sync of several connections: pull all, then push each what it is owed.

One call converges (what the first connection brings in reaches the last one in the same
sync), a plan of several connections is planned as one sequence, and each connection's
failure is its own.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.cli import (
    app,
    commands,  # noqa: F401  (registers the commands)
)
from hub.engine import sync_connections
from hub.errors import NeedsReauth
from hub.store import Lease
from hub.store.schema import outbox
from tests.hub.enginekit import Setup


def emails(remote) -> list[str]:
    return sorted(d["email"] for d in remote.all().values())


async def test_one_sync_of_two_connections_converges(tmp_path: Path, db_url: str) -> None:
    s = Setup(tmp_path, db_url, ["crm", "shop"])
    hub = await s.open()
    try:
        crm, shop = s.remotes["crm"], s.remotes["shop"]
        crm.add({"email": "a@x.io"})
        crm.add({"email": "b@x.io"})
        shop.add({"email": "c@x.io"})
        reports = await sync_connections(hub, ["crm", "shop"])
        assert [r.status for r in reports] == ["ok", "ok"]
        # crm was pulled before shop's record existed in the hub, and still got it.
        assert emails(crm) == emails(shop) == ["a@x.io", "b@x.io", "c@x.io"]
        assert await s.count(outbox, status="pending") == 0
    finally:
        await s.close()


async def test_a_plan_of_two_connections_is_one_sequence(tmp_path: Path, db_url: str) -> None:
    s = Setup(tmp_path, db_url, ["crm", "shop"])
    hub = await s.open()
    try:
        crm, shop = s.remotes["crm"], s.remotes["shop"]
        for e in ("a", "b"):
            crm.add({"email": f"{e}@x.io"})
        for e in ("a", "b", "c"):
            shop.add({"email": f"{e}@x.io"})
        first, second = await sync_connections(hub, ["crm", "shop"], plan=True)
        assert first.status == second.status == "plan"
        assert first.counts["created"] == 2
        # shop's two people that crm would bring in are matched, not created again
        assert second.counts["created"] == 1 and second.counts["matched"] == 2
        assert second.plan is not None and first.plan is not None
        assert [c["op"] for c in first.plan["remote"]] == ["create"]  # c, owed to crm
        assert await s.count(outbox) == 0 and len(await s.entities()) == 0
        # the real sync does what the plan said
        real = await sync_connections(hub, ["crm", "shop"])
        assert [r.counts.get("created", 0) for r in real] == [2, 1]
        assert real[1].counts["matched"] == 2
    finally:
        await s.close()


async def test_each_connections_failure_is_its_own(tmp_path: Path, db_url: str) -> None:
    s = Setup(tmp_path, db_url, ["crm", "shop", "web"])
    hub = await s.open()
    try:
        s.remotes["crm"].add({"email": "a@x.io"})
        s.remotes["shop"].fail("pull", NeedsReauth("token revoked", connection="shop"))
        async with Lease(hub.store, "run:web"):  # another process is syncing web
            crm, shop, web = await sync_connections(hub, ["crm", "shop", "web"])
        assert crm.status == "ok"
        assert shop.status == "failed" and "token revoked" in (shop.error or "")
        assert web.status == "skipped" and "already being synced" in (web.error or "")
        assert len(s.remotes["crm"]) == 1
        # what shop and web are owed waits for their next run
        assert await s.count(outbox, connection="shop", status="pending") == 1
        await sync_connections(hub, ["shop", "web"])
        assert len(s.remotes["shop"]) == len(s.remotes["web"]) == 1
    finally:
        await s.close()


def test_one_crmhub_sync_brings_two_csv_files_into_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("email,first_name\nann@example.com,Ann\nbob@example.com,Bob\n")
    b.write_text("email,first_name\nbob@example.com,Bob\ncarla@example.com,Carla\n")
    (tmp_path / "crmhub.toml").write_text(
        '[hub]\ndatabase = "hub.db"\n\n[connections.a]\nconnector = "csv"\npath = "a.csv"\n\n'
        '[connections.b]\nconnector = "csv"\npath = "b.csv"\n'
    )
    monkeypatch.setenv("CRMHUB_CONFIG", str(tmp_path / "crmhub.toml"))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    plan = json.loads(runner.invoke(app, ["sync", "--plan", "--json"]).output)
    assert [(r["counts"].get("created"), r["counts"].get("matched")) for r in plan] == [
        (2, None),
        (1, 1),
    ]
    result = runner.invoke(app, ["sync", "--json"])
    assert result.exit_code == 0, result.output
    for path in (a, b):
        with path.open(newline="") as f:
            assert sorted(r["email"] for r in csv.DictReader(f)) == [
                "ann@example.com",
                "bob@example.com",
                "carla@example.com",
            ]
    again = json.loads(runner.invoke(app, ["sync", "--json"]).output)
    assert [r["counts"].get("pushed_create", 0) for r in again] == [0, 0]
