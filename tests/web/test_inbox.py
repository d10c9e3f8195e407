"""The inbox store operations and its processor, on SQLite and PostgreSQL; the CLI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hub.cli import inbox_commands
from hub.cli.app import app as cli
from hub.inbox import Inbox, InboxItem, InboxProcessor
from hub.runtime import Hub
from hub.store import Store
from tests.web import SlackStyleReceiver, open_hub


@pytest.fixture
async def hub(db_url: str, tmp_path: Path) -> AsyncIterator[Hub]:
    h = await open_hub(tmp_path, database=db_url)
    SlackStyleReceiver.handled.clear()
    try:
        yield h
    finally:
        await h.close()


async def test_add_dedupes_on_source_and_delivery_id(store: Store) -> None:
    inbox = Inbox(store)
    first = await inbox.add("shop", "d1", b"{}", {"x": "1"})
    again = await inbox.add("shop", "d1", b"{}", {"x": "2"})
    other_source = await inbox.add("desk", "d1", b"{}")
    assert first == (first[0], False)
    assert again == (first[0], True)
    assert other_source[1] is False and other_source[0] != first[0]
    assert (await inbox.depth())["pending"] == 2


async def test_claim_is_oldest_first_and_skips_malformed(store: Store) -> None:
    inbox = Inbox(store)
    ids = [(await inbox.add("shop", f"d{n}", b"{}"))[0] for n in range(5)]
    await inbox.add("shop", "bad", b"{", status="malformed", error="not JSON")
    async with inbox.claim(3) as claim:
        assert [i.id for i in claim.items] == ids[:3]
    async with inbox.claim(10) as claim:
        assert [i.id for i in claim.items] == ids


async def test_failures_back_off_then_go_dead_and_retry_revives(store: Store) -> None:
    inbox = Inbox(store, max_attempts=3, retry_delay=0.2)
    item_id, _ = await inbox.add("shop", "d1", b"{}")
    assert await inbox.mark_failed(item_id, "TransientError: 503") == "pending"
    async with inbox.claim() as claim:
        assert claim.items == []  # waiting out its back-off
    await asyncio.sleep(0.25)
    async with inbox.claim() as claim:
        assert [i.id for i in claim.items] == [item_id]
        assert await claim.failed(claim.items[0], "TransientError: 503 again") == "pending"
    await asyncio.sleep(0.45)  # second back-off doubles
    async with inbox.claim() as claim:
        assert await claim.failed(claim.items[0], "PermanentError: gone") == "dead"
    dead = await inbox.show(item_id)
    assert dead is not None
    assert (dead.status, dead.attempts, dead.error) == ("dead", 3, "PermanentError: gone")
    async with inbox.claim() as claim:
        assert claim.items == []
    assert await inbox.retry(item_id) is True
    revived = await inbox.show(item_id)
    assert revived is not None and (revived.status, revived.attempts) == ("pending", 0)
    assert await inbox.retry(99999) is False


async def test_two_postgres_claims_never_share_items(pg_schema_url: str) -> None:
    store = await Store.open(pg_schema_url)
    try:
        inbox = Inbox(store)
        for n in range(6):
            await inbox.add("shop", f"d{n}", b"{}")
        async with inbox.claim(4) as first, inbox.claim(4) as second:
            a = {i.id for i in first.items}
            b = {i.id for i in second.items}
            assert len(a) == 4 and len(b) == 2 and not a & b
            for item in first.items:
                await first.done(item)
        assert (await inbox.depth())["done"] == 4
    finally:
        await store.close()


async def test_ids_commit_in_order_across_processes(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second process's delivery waits while the first one's insert is uncommitted, so a
    reader paging by id (the web forms cursor) never sees id 2 while id 1 can still appear."""
    first, second = await Store.open(db_url), await Store.open(db_url)
    inserted, release = asyncio.Event(), asyncio.Event()
    real = first.begin_serialized

    @asynccontextmanager
    async def held_open(key: str) -> AsyncIterator[Any]:
        async with real(key) as conn:
            yield conn
            inserted.set()
            await release.wait()

    monkeypatch.setattr(first, "begin_serialized", held_open)
    try:
        async with asyncio.timeout(30):
            early = asyncio.create_task(Inbox(first).add("form", "early", b"{}"))
            await inserted.wait()
            late = asyncio.create_task(Inbox(second).add("form", "late", b"{}"))
            await asyncio.sleep(0.5)
            assert not late.done()
            assert await Inbox(second).list(source="form") == []
            release.set()
            (early_id, _), (late_id, _) = await early, await late
        assert early_id < late_id
    finally:
        release.set()
        await first.close()
        await second.close()


async def test_processor_processes_each_item_once(hub: Hub) -> None:
    inbox = Inbox.shared(hub.store)
    seen: list[str] = []

    async def handler(item: InboxItem) -> None:
        seen.append(item.delivery_id)

    for n in range(5):
        await inbox.add("shop", f"d{n}", b"{}")
    await inbox.add("shop", "d0", b"{}")  # a redelivery
    processor = InboxProcessor(hub, {"shop": handler}, batch=2)
    while await processor.run_once():
        pass
    assert sorted(seen) == [f"d{n}" for n in range(5)]
    assert await processor.run_once() == 0
    assert (await inbox.depth())["done"] == 5


async def test_processor_uses_the_receivers_handle_by_default(hub: Hub) -> None:
    item_id, _ = await Inbox.shared(hub.store).add("shop", "e1", b"{}")
    processor = InboxProcessor(hub)
    assert await processor.run_once() == 1
    assert SlackStyleReceiver.handled == [item_id]
    await processor.aclose()


async def test_failing_handler_retries_then_dead(hub: Hub) -> None:
    inbox = Inbox(hub.store, max_attempts=3, retry_delay=0)
    calls = 0

    async def handler(item: InboxItem) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError(f"remote said no (token=abcdef123, attempt {calls})")

    item_id, _ = await inbox.add("shop", "d1", b"{}")
    processor = InboxProcessor(hub, {"shop": handler}, inbox=inbox)
    for _ in range(5):
        await processor.run_once()
    item = await inbox.show(item_id)
    assert calls == 3
    assert item is not None and (item.status, item.attempts) == ("dead", 3)
    assert item.error == "RuntimeError: remote said no (token=***, attempt 3)"


async def test_an_item_that_failed_then_succeeded_keeps_each_attempts_error(hub: Hub) -> None:
    inbox = Inbox(hub.store, max_attempts=5, retry_delay=0)
    answers = ["TransientError: the server answered 503", "LeaseHeld: busy"]

    async def handler(item: InboxItem) -> None:
        if answers:
            raise RuntimeError(answers.pop(0))

    item_id, _ = await inbox.add("shop", "d1", b"{}")
    processor = InboxProcessor(hub, {"shop": handler}, inbox=inbox)
    for _ in range(3):
        await processor.run_once()
    item = await inbox.show(item_id)
    assert item is not None and (item.status, item.attempts, item.error) == ("done", 2, None)
    assert [f["error"] for f in item.attempt_errors] == [
        "RuntimeError: TransientError: the server answered 503",
        "RuntimeError: LeaseHeld: busy",
    ]
    assert all(
        f["at"] <= (item.processed_at or item.received_at).isoformat() for f in item.attempt_errors
    )
    # A retry by hand starts counting again and keeps the history.
    assert await inbox.retry(item_id)
    again = await inbox.show(item_id)
    assert again is not None and again.attempts == 0 and len(again.attempt_errors) == 2
    assert again.summary()["attempt_errors"] == item.attempt_errors


async def test_run_wakes_on_delivery_and_stops_on_cancel(hub: Hub) -> None:
    inbox = Inbox.shared(hub.store)
    done = asyncio.Event()

    async def handler(item: InboxItem) -> None:
        done.set()

    processor = InboxProcessor(hub, {"shop": handler}, poll_interval=30)
    task = asyncio.create_task(processor.run())
    await asyncio.sleep(0.2)  # waiting, with a poll interval far longer than this test
    await inbox.add("shop", "d1", b"{}")
    await asyncio.wait_for(done.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # the single-processor lease (SQLite) was released: another processor starts at once
    again = InboxProcessor(hub, {"shop": handler}, poll_interval=30)
    second = asyncio.create_task(again.run())
    await inbox.add("shop", "d2", b"{}")
    for _ in range(100):
        if (await inbox.depth())["done"] == 2:
            break
        await asyncio.sleep(0.05)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    assert (await inbox.depth())["done"] == 2


async def test_cancel_arriving_with_a_wakeup_still_stops_the_processor(hub: Hub) -> None:
    # A delivery stored in the same moment as the stop: the wake-up must not swallow the
    # cancellation (the processor then waited its whole poll interval, again and again).
    processor = InboxProcessor(hub, {"shop": lambda item: asyncio.sleep(0)}, poll_interval=30)
    for _ in range(5):
        task = asyncio.create_task(processor.run())
        await asyncio.sleep(0.3)  # waiting for a delivery
        processor.inbox.wakeup.set()
        task.cancel()
        done, _pending = await asyncio.wait([task], timeout=5)
        assert done == {task}, "the processor did not stop"
        assert task.cancelled()


async def test_item_interrupted_mid_processing_is_processed_again(hub: Hub) -> None:
    inbox = Inbox.shared(hub.store)
    started = asyncio.Event()

    async def hangs(item: InboxItem) -> None:
        started.set()
        await asyncio.sleep(3600)

    await inbox.add("shop", "d1", b"{}")
    task = asyncio.create_task(InboxProcessor(hub, {"shop": hangs}).run())
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()  # the process stops while the handler runs
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await inbox.depth())["pending"] == 1
    seen: list[str] = []

    async def works(item: InboxItem) -> None:
        seen.append(item.delivery_id)

    assert await InboxProcessor(hub, {"shop": works}).run_once() == 1
    assert seen == ["d1"]


# ---- crmhub inbox ---------------------------------------------------------------------------


async def _seed(tmp_path: Path) -> tuple[int, int]:
    from tests.web import write_config

    write_config(tmp_path)
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'crmhub.db'}")
    try:
        inbox = Inbox(store, max_attempts=1)
        ok_id, _ = await inbox.add("shop", "d1", b'{"event": "hello"}', {"x-test": "yes"})
        dead_id, _ = await inbox.add("shop", "d2", b"{}")
        await inbox.mark_failed(dead_id, "PermanentError: no such contact")
        await inbox.add("shop", "d3", b"{", status="malformed", error="not JSON")
        return ok_id, dead_id
    finally:
        await store.close()


def _cli(tmp_path: Path, *args: str) -> tuple[int, str]:
    assert inbox_commands.inbox_app.registered_commands  # importing it registered ``inbox``
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "crmhub.toml"), *args])
    return result.exit_code, result.output


def test_cli_list_show_retry(tmp_path: Path) -> None:
    ok_id, dead_id = asyncio.run(_seed(tmp_path))

    code, out = _cli(tmp_path, "inbox", "--json")
    assert code == 0, out
    listed = json.loads(out)
    assert [i["delivery_id"] for i in listed] == ["d3", "d2", "d1"]

    code, out = _cli(tmp_path, "inbox", "--status", "dead", "--json")
    assert [(i["id"], i["error"]) for i in json.loads(out)] == [
        (dead_id, "PermanentError: no such contact")
    ]
    code, out = _cli(tmp_path, "inbox", "--status", "dead")
    assert code == 0 and "no such contact" in out and "d1" not in out

    code, out = _cli(tmp_path, "inbox", "show", str(ok_id), "--json")
    shown = json.loads(out)
    assert shown["body"] == {"event": "hello"}
    assert shown["headers"] == {"x-test": "yes"}
    code, out = _cli(tmp_path, "inbox", "show", str(dead_id))
    assert code == 0 and "failed attempts:" in out
    assert "1. " in out and "PermanentError: no such contact" in out.split("failed attempts:")[1]
    code, out = _cli(tmp_path, "inbox", "show", "999")
    assert code == 1 and "no inbox item 999" in out

    code, out = _cli(tmp_path, "inbox", "retry", str(dead_id))
    assert code == 0 and "1 item queued again" in out
    code, out = _cli(tmp_path, "inbox", "--status", "dead", "--json")
    assert json.loads(out) == []
    code, out = _cli(tmp_path, "inbox", "retry", "--all-dead")
    assert code == 0 and "0 items queued again" in out
    code, out = _cli(tmp_path, "inbox", "retry")
    assert code == 1 and "--all-dead" in out
    code, out = _cli(tmp_path, "inbox", "--status", "bogus")
    assert code == 1 and "unknown status" in out
