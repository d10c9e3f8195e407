"""``Change.record``: what the hub hands a connector beside the change itself, on SQLite and
PostgreSQL (through memory remotes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hub.connector import Change
from tests.hub.enginekit import Setup


@pytest.fixture
async def two(tmp_path: Path, db_url: str) -> AsyncIterator[Setup]:
    s = Setup(tmp_path, db_url, ["crm", "shop"])
    await s.open()
    yield s
    await s.close()


async def test_an_update_carries_the_record_as_the_remote_will_hold_it(
    two: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    crm, shop = two.remotes["crm"], two.remotes["shop"]
    rid = crm.add({"email": "ann@example.com", "first_name": "Ann", "last_name": "Lee"})
    await two.sync_until_quiet()
    seen: list[Change] = []
    apply = shop.apply

    def spy(change: Change) -> Any:
        seen.append(change)
        return apply(change)

    monkeypatch.setattr(shop, "apply", spy)
    crm.update(rid, first_name="Anna")
    await two.sync("crm")
    await two.sync("shop")
    [change] = seen
    assert change.op == "update" and change.data == {"first_name": "Anna"}
    assert change.record is not None
    assert {k: change.record.get(k) for k in ("email", "first_name", "last_name")} == {
        "email": "ann@example.com",
        "first_name": "Anna",
        "last_name": "Lee",
    }

    crm.add({"email": "bob@example.com", "first_name": "Bob"})
    await two.sync("crm")
    await two.sync("shop")
    created = seen[-1]
    assert created.op == "create" and created.record == created.data
