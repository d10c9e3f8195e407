"""Contacts matched by name: only for a stream that opts in, only without a stronger key,
and never to one of several contacts of the same name. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.store.schema import entity_keys, links
from tests.hub.enginekit import Setup


@pytest.fixture
async def hub(tmp_path: Path, db_url: str) -> AsyncIterator[Setup]:
    """``crm`` (keys by address; matching by name off) and ``chat`` (matching by name on);
    ``chat`` only pulls, so what it brings is not written back."""
    s = Setup(
        tmp_path,
        db_url,
        ["crm", "chat", "shop"],
        per_connection={
            "chat": 'match_by_name = true\ndirection = "pull"\n',
            "shop": 'direction = "pull"\n',
        },
    )
    await s.open()
    yield s
    await s.close()


async def linked(s: Setup, connection: str) -> dict[str, str]:
    """Remote id -> golden record of each of ``connection``'s links."""
    assert s.hub is not None
    async with s.hub.store.connect() as db:
        rows = await db.execute(links.select().where(links.c.connection == connection))
        return {r.remote_id: r.entity_id for r in rows}


async def ids_of(s: Setup, first: str) -> list[str]:
    return sorted(e["id"] for e in await s.entities() if e["fields"].get("first_name") == first)


async def test_a_stream_that_opts_in_matches_a_name_alone(hub: Setup) -> None:
    hub.remotes["crm"].add({"email": "jose@example.com", "first_name": "José", "last_name": "Cruz"})
    await hub.sync("crm")
    [jose] = await ids_of(hub, "José")
    rid = hub.remotes["chat"].add({"first_name": " jose ", "last_name": "CRUZ", "city": "Lima"})
    report = await hub.sync("chat")
    assert report.counts.get("matched") == 1 and not report.errors
    assert (await linked(hub, "chat"))[rid] == jose
    [ent] = [e for e in await hub.entities() if e["id"] == jose]
    assert ent["fields"]["city"] == "Lima"
    assert len(await hub.entities()) == 1


async def test_a_stream_that_does_not_opt_in_never_matches_by_name(hub: Setup) -> None:
    hub.remotes["crm"].add({"email": "jose@example.com", "first_name": "José", "last_name": "Cruz"})
    await hub.sync("crm")
    [jose] = await ids_of(hub, "José")
    rid = hub.remotes["shop"].add({"first_name": "Jose", "last_name": "Cruz"})
    report = await hub.sync("shop")
    assert report.counts.get("created") == 1
    assert (await linked(hub, "shop"))[rid] != jose
    # its name is kept as a key all the same
    assert await hub.count(entity_keys, kind="full_name", value="jose cruz") == 2


async def test_two_contacts_of_the_name_make_a_new_one_and_a_warning(hub: Setup) -> None:
    crm = hub.remotes["crm"]
    crm.add({"email": "ann@one.example", "first_name": "Ann", "last_name": "Lee"})
    crm.add({"email": "ann@two.example", "first_name": "ANN", "last_name": "Lee"})
    await hub.sync("crm")
    both = set(await ids_of(hub, "Ann")) | set(await ids_of(hub, "ANN"))
    assert len(both) == 2
    rid = hub.remotes["chat"].add({"first_name": "Ann", "last_name": "Lee"}, id="U1")
    report = await hub.sync("chat")
    assert report.counts.get("created") == 1 and report.counts.get("ambiguous_names") == 1
    assert (await linked(hub, "chat"))[rid] not in both
    [warning] = report.errors
    assert "record U1" in warning and "'ann lee'" in warning


async def test_a_stronger_key_wins_over_the_name(hub: Setup) -> None:
    crm = hub.remotes["crm"]
    crm.add({"email": "ann@one.example", "first_name": "Ann", "last_name": "Lee"})
    crm.add({"email": "al@two.example", "first_name": "Al", "phone": "+1 415 555 0100"})
    await hub.sync("crm")
    [ann], [al] = await ids_of(hub, "Ann"), await ids_of(hub, "Al")
    chat = hub.remotes["chat"]
    # the phone number is Al's: the name does not count
    by_phone = chat.add({"first_name": "Ann", "last_name": "Lee", "phone": "415-555-0100"})
    # an address no contact has makes a new contact, though the name is Ann's
    by_email = chat.add({"email": "new@x.example", "first_name": "Ann", "last_name": "Lee"})
    await hub.sync("chat")
    found = await linked(hub, "chat")
    assert found[by_phone] == al
    assert found[by_email] not in (ann, al)


async def test_a_renamed_contact_is_found_by_its_new_name(hub: Setup) -> None:
    crm = hub.remotes["crm"]
    rid = crm.add({"email": "ann@one.example", "first_name": "Ann", "last_name": "Lee"})
    await hub.sync("crm")
    [ann] = await ids_of(hub, "Ann")
    crm.update(rid, last_name="Smith")
    await hub.sync("crm")
    assert await hub.count(entity_keys, kind="full_name", value="ann lee") == 0
    new = hub.remotes["chat"].add({"first_name": "Ann", "last_name": "Smith"})
    await hub.sync("chat")
    assert (await linked(hub, "chat"))[new] == ann


async def test_a_contact_made_earlier_in_the_page_makes_the_name_ambiguous(hub: Setup) -> None:
    hub.remotes["crm"].add({"email": "ann@one.example", "first_name": "Ann", "last_name": "Lee"})
    await hub.sync("crm")
    [ann] = await ids_of(hub, "Ann")
    chat = hub.remotes["chat"]
    chat.add({"email": "ann@two.example", "first_name": "Ann", "last_name": "Lee"}, id="U1")
    chat.add({"first_name": "Ann", "last_name": "Lee"}, id="U2")
    report = await hub.sync("chat")
    found = await linked(hub, "chat")
    assert found["U1"] != ann and found["U2"] not in (ann, found["U1"])
    assert report.counts.get("ambiguous_names") == 1
    # a later page finds it so too
    chat.add({"first_name": "ann", "last_name": "lee"}, id="U3")
    report = await hub.sync("chat")
    assert (await linked(hub, "chat"))["U3"] not in (ann, found["U1"])
    assert report.counts.get("ambiguous_names") == 1
