"""`crmhub sync --plan` while writes are owed: every owed write is shown once and the plan ends."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hub.engine import sync_connection
from hub.store.schema import outbox
from tests.hub.enginekit import Setup


async def test_plan_of_a_connection_owed_2000_writes_ends_and_shows_each_once(
    tmp_path: Path, db_url: str
) -> None:
    s = Setup(tmp_path, db_url, ["crm", "shop"])
    await s.open()
    try:
        crm, shop = s.remotes["crm"], s.remotes["shop"]
        for i in range(2000):
            crm.add({"email": f"p{i}@x.io", "first_name": f"P{i}"})
        await s.sync("crm")
        assert await s.count(outbox, connection="shop", status="pending") == 2000
        assert s.hub is not None
        # Before the fix the pusher was handed the same batch for ever (memory growing).
        report = await asyncio.wait_for(sync_connection(s.hub, "shop", plan=True), 120)
        assert report.status == "plan" and report.plan is not None
        remote = report.plan["remote"]
        assert len(remote) == 2000
        assert len({r["entity"] for r in remote}) == 2000
        assert {r["op"] for r in remote} == {"create"}
        # Nothing was written: the owed writes are still owed, the remote still empty.
        assert await s.count(outbox, connection="shop", status="pending") == 2000
        assert len(shop) == 0
        await s.sync("shop")
        assert len(shop) == 2000
    finally:
        await s.close()
