"""``hub.services.ConnectionServices``: what a connector and its receiver may ask of the hub,
each question scoped to their own connection. Against SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hub.connector import ConnectorContext
from hub.engine.lease import RunLease
from hub.errors import ConnectorConfigError, LeaseHeld
from hub.inbox import Inbox
from hub.services import ConnectionServices
from hub.store import Store, utcnow
from hub.store.schema import cursors, links, runs
from tests.hub.enginekit import Setup


@pytest.fixture
async def two(tmp_path: Path, db_url: str) -> AsyncIterator[Setup]:
    s = Setup(tmp_path, db_url, ["crm", "shop"])
    await s.open()
    yield s
    await s.close()


async def remote_ids(store: Store, connection: str) -> list[str]:
    async with store.connect() as db:
        rows = await db.execute(select(links.c.remote_id).where(links.c.connection == connection))
        return sorted(r for (r,) in rows)


async def test_sync_and_catch_up_follow_what_runs_read(two: Setup) -> None:
    assert two.hub is not None
    crm = two.hub.services("crm")
    two.remotes["crm"].add({"email": "ann@example.com", "first_name": "Ann"})
    before = utcnow()
    assert not await crm.ran_since(before)
    result = await crm.sync()
    assert result.ok and result.status == "ok" and result.run_id
    assert await crm.ran_since(before)
    assert await crm.catch_up(before) is None  # that run read everything since
    assert not await two.hub.services("shop").ran_since(before)  # another connection's runs
    later = await crm.catch_up(utcnow())
    assert later is not None and later.ok and later.run_id != result.run_id
    async with RunLease(two.hub.store, "crm", ttl=30):
        with pytest.raises(LeaseHeld):
            await crm.sync()


async def test_a_cursor_is_read_for_the_own_connection_only(two: Setup) -> None:
    assert two.hub is not None
    two.remotes["crm"].add({"email": "ann@example.com"})
    crm, shop = two.hub.services("crm"), two.hub.services("shop")
    assert await crm.cursor("records") is None
    await two.sync("crm")
    async with two.hub.store.connect() as db:
        saved = await db.scalar(
            select(cursors.c.value).where(
                cursors.c.connection == "crm", cursors.c.stream == "records"
            )
        )
    assert saved and await crm.cursor("records") == saved
    assert await shop.cursor("records") is None


async def test_a_remote_id_moves_within_the_own_connection(two: Setup) -> None:
    assert two.hub is not None
    ann = two.remotes["crm"].add({"email": "ann@example.com"})
    bob = two.remotes["crm"].add({"email": "bob@example.com"})
    await two.sync_until_quiet()
    shop_before = await remote_ids(two.hub.store, "shop")
    crm = two.hub.services("crm")
    assert await crm.move_remote_id("records", ann, "ann-2")
    assert await remote_ids(two.hub.store, "crm") == sorted(["ann-2", bob])
    assert not await crm.move_remote_id("records", "ann-2", bob)  # taken: a pull linked it
    assert not await crm.move_remote_id("records", "nobody", "x")
    assert not await crm.move_remote_id("other", bob, "x")  # another stream
    assert await remote_ids(two.hub.store, "crm") == sorted(["ann-2", bob])
    assert await remote_ids(two.hub.store, "shop") == shop_before


async def test_a_targeted_fetch_merges_the_named_records_and_is_no_run(two: Setup) -> None:
    assert two.hub is not None
    remote = two.remotes["crm"]
    ann = remote.add({"email": "ann@example.com", "first_name": "Ann"})
    remote.add({"email": "bob@example.com", "first_name": "Bob"})
    await two.sync("crm")
    crm = two.hub.services("crm")
    cursor = await crm.cursor("records")
    runs_before = await two.count(runs)
    remote.update(ann, first_name="Annie")
    remote.add({"email": "cy@example.com", "first_name": "Cy"})  # not named: not read
    asked = utcnow()

    assert await crm.fetch("records", [ann, "gone"]) == 1

    names = sorted(e["fields"].get("first_name") for e in await two.entities())
    assert names == ["Annie", "Bob"]
    assert await crm.cursor("records") == cursor  # the next sync still reads from there
    assert await two.count(runs) == runs_before
    assert not await crm.ran_since(asked)  # a fetch has not read everything
    assert await two.count(links, connection="crm") == 2  # "gone" deleted nothing
    with pytest.raises(ConnectorConfigError, match="no stream 'members'"):
        await crm.fetch("members", [ann])
    async with RunLease(two.hub.store, "crm", ttl=30):
        with pytest.raises(LeaseHeld):
            await crm.fetch("records", [ann])
    await two.sync("crm")
    assert len(await two.entities()) == 3


async def test_deliveries_are_the_own_connections_of_one_kind(store: Store) -> None:
    inbox = Inbox(store)
    first, _ = await inbox.add("form", "d1", b"1", kind="submission")
    await inbox.add("form", "d2", b"2", kind="event")
    await inbox.add("other", "d3", b"3", kind="submission")
    await inbox.add("form", "d4", b"4", kind="submission", status="malformed", error="bad")
    last, _ = await inbox.add("form", "d5", b"5", kind="submission")
    services = ConnectionServices("form", store)
    found = await services.deliveries("submission")
    assert [(i.id, i.delivery_id, i.body) for i in found] == [
        (first, "d1", b"1"),
        (last, "d5", b"5"),
    ]
    assert [i.id for i in await services.deliveries("submission", after=first)] == [last]
    assert [i.id for i in await services.deliveries("submission", limit=1)] == [first]


async def test_services_made_from_a_store_alone_start_no_runs(store: Store, tmp_path: Path) -> None:
    assert ConnectorContext("x", tmp_path).services is None
    context = ConnectorContext("x", tmp_path)
    context.store = store  # set after construction, as a unit test may
    services = context.services
    assert services is not None and services.connection == "x"
    assert await services.cursor("records") is None
    assert await services.push_state() == {}
    await services.save_push_state({"subscriptions": {"inbox": {"id": "s1"}}})
    assert await services.push_state() == {"subscriptions": {"inbox": {"id": "s1"}}}
    for start in (services.sync(), services.catch_up(utcnow()), services.renew()):
        with pytest.raises(ConnectorConfigError, match="needs a running hub"):
            await start
    with pytest.raises(ConnectorConfigError, match="needs a running hub"):
        await services.fetch("records", ["1"])


async def test_state_is_kept_per_connection_and_updated_in_one_step(store: Store) -> None:
    import asyncio

    one, other = ConnectionServices("one", store), ConnectionServices("other", store)
    assert await one.state("tenant") == {}
    await one.save_state("tenant", {"id": "t-1"})
    assert await one.state("tenant") == {"id": "t-1"}
    assert await other.state("tenant") == {}

    def adding(n: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return lambda current: {"ids": sorted({*current.get("ids", []), f"r{n}"})}

    await asyncio.gather(*(one.update_state("hints", adding(n)) for n in range(8)))
    assert await one.state("hints") == {"ids": [f"r{n}" for n in range(8)]}
    taken = await one.update_state("hints", lambda current: {})
    assert taken == {"ids": [f"r{n}" for n in range(8)]} and await one.state("hints") == {}
    assert await one.cursor("tenant") is None  # a state is no stream's cursor
    for wrong in ("", "@tenant"):
        with pytest.raises(ValueError, match="state name"):
            await one.state(wrong)


async def test_peers_are_the_other_enabled_connections_of_the_connector(
    two: Setup, tmp_path: Path
) -> None:
    assert two.hub is not None
    assert [p.connection for p in two.hub.services("crm").peers()] == ["shop"]
    two.hub.config.connections["shop"].hub.enabled = False
    assert two.hub.services("crm").peers() == []
    with pytest.raises(ConnectorConfigError, match="needs a running hub"):
        ConnectionServices("crm", two.hub.store).peers()


async def test_events_and_usage_reach_the_hub(two: Setup) -> None:
    from hub.usage import load_usage

    assert two.hub is not None
    crm = two.hub.services("crm")
    before = utcnow()
    assert await crm.events(before) == []
    two.remotes["crm"].add({"email": "ann@example.com", "first_name": "Ann"})
    await two.sync("crm")
    [event] = await two.hub.services("shop").events(before)  # the whole hub's, read-only
    assert (event.kind, event.connection, event.facts["E-mail"]) == (
        "new_contact",
        "crm",
        "ann@example.com",
    )
    await crm.report_usage({"summary": "4,812 of 5,000 calls left today"})
    assert (await load_usage(two.hub.store))["crm"]["summary"].startswith("4,812")
