"""A golden record changed while its write is under way stays owed: the change is sent too.

Another connection's run (here a hub edit) changing the record finds its write already
pending and queues nothing of its own; the push settling that write must not swallow it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.connector import Change, PushResult, Stream
from hub.edit import edit_entity
from hub.testing.memory import MemoryConnector
from tests.hub.enginekit import Setup, outbox


async def test_a_change_made_during_a_push_is_pushed_too(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Setup(tmp_path, db_url, ["crm", "shop"])
    hub = await s.open()
    original = MemoryConnector.push
    edited: list[str] = []

    async def push_while_edited(
        self: MemoryConnector, stream: Stream, changes: list[Change]
    ) -> list[PushResult]:
        if self.context.connection == "shop" and not edited:
            [entity] = await s.entities()
            edited.append(entity["id"])
            await edit_entity(hub, entity["id"], {"city": "Later"})  # while the write is out
        return await original(self, stream, changes)

    monkeypatch.setattr(MemoryConnector, "push", push_while_edited)
    try:
        s.remotes["crm"].add({"email": "ann@x.io", "first_name": "Ann", "city": "First"})
        await s.sync("crm")
        report = await s.sync("shop")
        assert edited and report.counts.get("push_requeued") == 1
        [(_, copy)] = s.remotes["shop"].all().items()
        assert copy["city"] == "Later"  # sent in the same run, after the create
        assert await s.count(outbox, connection="shop", status="pending") == 0
        await s.sync_until_quiet()
        [(_, copy)] = s.remotes["shop"].all().items()
        assert copy["city"] == "Later" and s.remotes["crm"].all()
    finally:
        await s.close()
