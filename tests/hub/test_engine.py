"""The sync engine: merge cases, policies, identity matching, deletes and the guard.

Runs against SQLite and PostgreSQL through memory remotes (the engine is what is tested;
the remote is an in-process fake with versions, cursors and clocks).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub import metrics
from hub.conflicts import resolve_conflict
from hub.engine import approve, sync_connection
from hub.store.schema import conflicts, entities, links, outbox
from tests.hub.enginekit import Setup

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def two(tmp_path: Path, db_url: str) -> AsyncIterator[Setup]:
    s = Setup(tmp_path, db_url, ["crm", "shop"])
    await s.open()
    yield s
    await s.close()


def values(remote, email: str) -> dict:
    for data in remote.all().values():
        if data.get("email", "").strip().lower() == email:
            return data
    raise AssertionError(f"{email} not in {remote.name}")


async def test_identity_matching_links_one_contact_to_both(two: Setup) -> None:
    crm, shop = two.remotes["crm"], two.remotes["shop"]
    crm.add({"email": "Ann@Example.com ", "first_name": "Ann", "phone": "(415) 555-0100"})
    shop.add({"email": "ann@example.com", "last_name": "Lee", "phone": "+1 415 555 0100"})
    crm.add({"email": "bob@example.com", "first_name": "Bob"})
    await two.sync_until_quiet()
    ents = await two.entities()
    assert len(ents) == 2
    ann = next(e for e in ents if e["fields"]["email"] == "ann@example.com")
    assert ann["fields"]["first_name"] == "Ann" and ann["fields"]["last_name"] == "Lee"
    assert ann["fields"]["phone"] == "+14155550100"
    assert await two.count(links, entity_id=ann["id"]) == 2
    # people only in one system appear in the other; values spread both ways
    assert values(shop, "bob@example.com")["first_name"] == "Bob"
    assert values(shop, "ann@example.com")["first_name"] == "Ann"
    assert values(crm, "ann@example.com")["last_name"] == "Lee"


async def test_a_run_adds_its_counts_to_the_process_counters(two: Setup) -> None:
    for n in range(3):
        two.remotes["crm"].add({"email": f"p{n}@example.com", "first_name": f"P{n}"})
    before = {s.labels: s.value for s in metrics.RUN_COUNTS.samples()}
    report = await two.sync("crm")
    after = {s.labels: s.value for s in metrics.RUN_COUNTS.samples()}
    assert report.counts["records"] == 3
    for key, n in report.counts.items():
        labels = (("connection", "crm"), ("key", key))
        assert after[labels] == before.get(labels, 0) + n, key
    plan = await two.sync("crm", plan=True, full=True)
    assert plan.counts  # a plan counts what it would do, and leaves the counters alone
    assert {s.labels: s.value for s in metrics.RUN_COUNTS.samples()} == after


async def test_quiet_after_settling_and_echo_is_no_change(two: Setup) -> None:
    two.remotes["crm"].add({"email": "a@x.io", "first_name": "A"})
    await two.sync_until_quiet()
    written = {n: r.changes_written for n, r in two.remotes.items()}
    for name in two.names:
        report = await two.sync(name)
        assert report.counts.get("updated", 0) == 0
        assert report.counts.get("created", 0) == 0
    assert {n: r.changes_written for n, r in two.remotes.items()} == written
    assert await two.count(outbox, status="pending") == 0


async def test_remote_change_reaches_the_other_system(two: Setup) -> None:
    crm, shop = two.remotes["crm"], two.remotes["shop"]
    rid = crm.add({"email": "a@x.io", "phone": "+14155550100"})
    await two.sync_until_quiet()
    crm.update(rid, phone="+1 (415) 555-0199")
    await two.sync("crm")
    await two.sync("shop")
    assert values(shop, "a@x.io")["phone"] == "+14155550199"


async def test_normalised_equal_values_cause_no_write(two: Setup) -> None:
    crm, shop = two.remotes["crm"], two.remotes["shop"]
    rid = crm.add({"email": "a@x.io", "phone": "+14155550100"})
    await two.sync_until_quiet()
    before = shop.changes_written
    crm.update(rid, phone="+1 415 555 0100")  # same number, other spelling
    await two.sync("crm")
    await two.sync("shop")
    assert shop.changes_written == before


async def test_missing_field_is_unknown_but_emptied_field_is_a_change(two: Setup) -> None:
    crm, shop = two.remotes["crm"], two.remotes["shop"]
    rid = crm.add({"email": "a@x.io", "city": "Paris", "first_name": "A"})
    await two.sync_until_quiet()
    sid = next(iter(shop.all()))
    shop.update(sid, first_name="B")  # city untouched
    await two.sync("shop")
    ent = (await two.entities())[0]
    assert ent["fields"]["city"] == "Paris"
    crm.update(rid, city=None)
    await two.sync("crm")
    await two.sync("shop")
    assert (await two.entities())[0]["fields"]["city"] is None
    assert shop.get(sid)["city"] is None


async def _conflict(two: Setup, crm_at: datetime, shop_at: datetime) -> tuple[str, str]:
    crm, shop = two.remotes["crm"], two.remotes["shop"]
    crm.set_time(T0)
    shop.set_time(T0)
    rid = crm.add({"email": "a@x.io", "city": "Paris"})
    await two.sync_until_quiet()
    sid = next(iter(shop.all()))
    crm.set_time(crm_at)
    crm.update(rid, city="Rome")
    shop.set_time(shop_at)
    shop.update(sid, city="Oslo")
    await two.sync("crm")
    await two.sync("shop")
    await two.sync("crm")
    return rid, sid


async def test_newest_policy_takes_the_later_change(two: Setup) -> None:
    rid, sid = await _conflict(two, T0 + timedelta(hours=2), T0 + timedelta(hours=1))
    assert two.remotes["shop"].get(sid)["city"] == "Rome"
    assert two.remotes["crm"].get(rid)["city"] == "Rome"
    assert await two.count(conflicts) == 0


async def test_newest_policy_other_order(two: Setup) -> None:
    rid, sid = await _conflict(two, T0 + timedelta(hours=1), T0 + timedelta(hours=2))
    assert two.remotes["crm"].get(rid)["city"] == "Oslo"
    assert two.remotes["shop"].get(sid)["city"] == "Oslo"


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("hub", "Rome"), ("remote", "Oslo")],
)
async def test_hub_and_remote_policies(
    tmp_path: Path, db_url: str, policy: str, expected: str
) -> None:
    s = Setup(
        tmp_path,
        db_url,
        ["crm", "shop"],
        per_connection={"shop": f'conflict_policy = "{policy}"\n'},
    )
    await s.open()
    try:
        # crm changes first and is synced first, so the hub holds Rome when shop says Oslo
        rid, sid = await _conflict(s, T0 + timedelta(hours=1), T0 + timedelta(hours=2))
        assert s.remotes["crm"].get(rid)["city"] == expected
        assert s.remotes["shop"].get(sid)["city"] == expected
    finally:
        await s.close()


async def test_prefer_policy_follows_the_list(tmp_path: Path, db_url: str) -> None:
    s = Setup(
        tmp_path,
        db_url,
        ["crm", "shop"],
        per_connection={
            n: 'conflict_policy = "prefer"\nprefer = ["crm", "shop"]\n' for n in ("crm", "shop")
        },
    )
    await s.open()
    try:
        rid, sid = await _conflict(s, T0 + timedelta(hours=1), T0 + timedelta(hours=2))
        # shop's change is newer, but crm is preferred
        assert s.remotes["shop"].get(sid)["city"] == "Rome"
        assert s.remotes["crm"].get(rid)["city"] == "Rome"
    finally:
        await s.close()


async def test_manual_policy_holds_the_field_until_resolved(tmp_path: Path, db_url: str) -> None:
    s = Setup(
        tmp_path,
        db_url,
        ["crm", "shop"],
        per_connection={n: 'field_policies = { city = "manual" }\n' for n in ("crm", "shop")},
    )
    await s.open()
    try:
        rid, sid = await _conflict(s, T0 + timedelta(hours=1), T0 + timedelta(hours=2))
        crm, shop = s.remotes["crm"], s.remotes["shop"]
        assert crm.get(rid)["city"] == "Rome" and shop.get(sid)["city"] == "Oslo"
        assert s.hub is not None
        async with s.hub.store.connect() as db:
            open_rows = (await db.execute(conflicts.select())).all()
        assert len(open_rows) == 1 and open_rows[0].field == "city"
        for _ in range(2):  # held on both sides, however often it syncs
            await s.sync("crm")
            await s.sync("shop")
        assert crm.get(rid)["city"] == "Rome" and shop.get(sid)["city"] == "Oslo"
        await resolve_conflict(s.hub, open_rows[0].id, "Lima")
        await s.sync_until_quiet()
        assert crm.get(rid)["city"] == "Lima" and shop.get(sid)["city"] == "Lima"
        assert await s.count(conflicts, status="open") == 0
    finally:
        await s.close()


async def test_first_sight_values_on_both_sides_go_to_policy(two: Setup) -> None:
    crm, shop = two.remotes["crm"], two.remotes["shop"]
    crm.set_time(T0)
    shop.set_time(T0 + timedelta(minutes=5))
    crm.add({"email": "a@x.io", "city": "Paris"})
    shop.add({"email": "a@x.io", "city": "Berlin"})
    await two.sync_until_quiet()
    assert values(crm, "a@x.io")["city"] == "Berlin"  # newest wins
    assert await two.count(entities) == 1


async def test_deletes_unlink_by_default(two: Setup) -> None:
    crm = two.remotes["crm"]
    ids = [crm.add({"email": f"p{i}@x.io"}) for i in range(20)]
    await two.sync_until_quiet()
    crm.delete(ids[0])
    report = await two.sync("crm")
    assert report.counts.get("deleted") == 1
    assert await two.count(links, connection="crm") == 19
    assert await two.count(entities) == 20  # the contact itself stays


async def test_delete_guard_holds_until_approved(tmp_path: Path, db_url: str) -> None:
    s = Setup(
        tmp_path, db_url, ["crm", "shop"], per_connection={"crm": 'delete_policy = "propagate"\n'}
    )
    await s.open()
    try:
        crm, shop = s.remotes["crm"], s.remotes["shop"]
        ids = [crm.add({"email": f"p{i}@x.io"}) for i in range(20)]
        await s.sync_until_quiet()
        for rid in ids[:5]:  # 25% of linked records
            crm.delete(rid)
        report = await s.sync("crm")
        assert report.status == "held"
        assert len(shop) == 20 and await s.count(links, connection="crm") == 20
        assert s.hub is not None
        assert (await approve(s.hub, report.run_id)).applied == 5
        await s.sync("shop")
        assert len(shop) == 15
        assert len(await s.entities()) == 15
    finally:
        await s.close()


async def test_plan_writes_nothing(two: Setup) -> None:
    crm = two.remotes["crm"]
    crm.add({"email": "a@x.io", "first_name": "A"})
    assert two.hub is not None
    report = await sync_connection(two.hub, "crm", plan=True)
    assert report.status == "plan"
    assert report.plan is not None and len(report.plan["hub"]) == 1
    assert await two.count(entities) == 0
    assert await two.count(outbox) == 0


async def test_failed_push_stays_owed_and_is_retried(two: Setup) -> None:
    crm, shop = two.remotes["crm"], two.remotes["shop"]
    crm.add({"email": "a@x.io", "first_name": "A"})
    await two.sync("crm")
    from hub.errors import TransientError

    shop.fail("push", TransientError("shop is down"))
    await two.sync("shop")
    assert len(shop) == 0
    assert await two.count(outbox, connection="shop", status="pending") == 1
    assert two.hub is not None
    async with two.hub.store.begin() as db:  # the backoff has passed
        await db.execute(outbox.update().values(next_attempt_at=None))
    await two.sync("shop")
    assert len(shop) == 1


async def test_permanent_refusal_is_a_dead_letter_left_for_a_person(two: Setup) -> None:
    crm, shop = two.remotes["crm"], two.remotes["shop"]
    crm.add({"email": "a@x.io", "first_name": "A"})
    await two.sync("crm")
    shop.refuse = lambda change: "invalid address"
    report = await two.sync("shop")
    assert report.counts.get("push_dead") == 1
    shop.refuse = None
    await two.sync("shop")  # a later run does not retry a permanent refusal
    assert len(shop) == 0
    assert two.hub is not None
    async with two.hub.store.connect() as db:
        row = (await db.execute(outbox.select().where(outbox.c.connection == "shop"))).one()
    assert row.status == "dead" and "invalid address" in row.last_error
    assert row.next_attempt_at is None


async def test_exhausted_transient_failure_is_retried_by_a_later_run(two: Setup) -> None:
    from hub.engine.push import MAX_ATTEMPTS
    from hub.errors import TransientError

    crm, shop = two.remotes["crm"], two.remotes["shop"]
    crm.add({"email": "a@x.io", "first_name": "A"})
    await two.sync("crm")
    assert two.hub is not None
    for _ in range(MAX_ATTEMPTS):
        shop.fail("push", TransientError("shop is down"))
        await two.sync("shop")
        async with two.hub.store.begin() as db:  # the backoff has passed
            await db.execute(
                outbox.update().values(next_attempt_at=None).where(outbox.c.status == "pending")
            )
    async with two.hub.store.connect() as db:
        row = (await db.execute(outbox.select().where(outbox.c.connection == "shop"))).one()
    assert row.status == "dead" and row.next_attempt_at is not None
    await two.sync("shop")
    assert len(shop) == 0  # the dead letter's pause has not passed yet
    async with two.hub.store.begin() as db:
        await db.execute(outbox.update().values(next_attempt_at=row.created_at))
    await two.sync("shop")
    assert len(shop) == 1
    assert await two.count(outbox, connection="shop", status="done") == 1


async def test_a_record_changed_elsewhere_after_a_propagated_delete_stays_deleted(
    tmp_path: Path, db_url: str
) -> None:
    s = Setup(
        tmp_path, db_url, ["crm", "shop"], per_connection={"crm": 'delete_policy = "propagate"\n'}
    )
    await s.open()
    try:
        crm, shop = s.remotes["crm"], s.remotes["shop"]
        ids = [crm.add({"email": f"p{i}@x.io", "first_name": f"P{i}"}) for i in range(20)]
        await s.sync_until_quiet()
        crm.delete(ids[0])
        assert (await s.sync("crm")).counts.get("deleted") == 1
        # shop's copy changes before shop is told: its next pull meets a link to a deleted
        # contact, which the pending delete is about to remove
        shop_id = next(rid for rid, d in shop.all().items() if d["email"] == "p0@x.io")
        shop.update(shop_id, first_name="Changed")
        report = await s.sync("shop")
        assert report.status == "ok", report
        assert shop_id not in shop.all(), str(report.counts)
        await s.sync_until_quiet()
        assert len(crm) == 19 and len(shop) == 19
        assert len(await s.entities()) == 19
        assert await s.count(links, connection="shop") == 19
    finally:
        await s.close()
