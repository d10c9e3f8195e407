"""The change feed (what the demo prints) on both databases: creations with their fields,
field changes, deletions, pushes to each system, deliveries and runs, each said once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.config import load_config
from hub.engine import sync_connection
from hub.feed import ChangeFeed
from hub.inbox import Inbox
from hub.runtime import Hub


@pytest.fixture
async def hub(tmp_path: Path, db_url: str) -> AsyncIterator[Hub]:
    (tmp_path / "a.csv").write_text("email,first_name\nann@example.com,Ann\nbob@example.com,Bob\n")
    (tmp_path / "b.csv").write_text("email,first_name\n")
    (tmp_path / "crmhub.toml").write_text(
        f'[hub]\ndatabase = "{db_url}"\ndelete_guard_share = 1.0\n\n'
        '[connections.a]\nconnector = "csv"\npath = "a.csv"\ndelete_policy = "propagate"\n\n'
        '[connections.b]\nconnector = "csv"\npath = "b.csv"\n'
    )
    hub = await Hub.open(load_config(tmp_path / "crmhub.toml"))
    try:
        yield hub
    finally:
        await hub.close()


def has(lines: list[str], *parts: str) -> bool:
    return any(all(p in line for p in parts) for line in lines)


async def test_the_feed_says_each_change_once(hub: Hub, tmp_path: Path) -> None:
    feed = ChangeFeed(hub.store)
    assert await feed.poll() == []
    await sync_connection(hub, "a")
    lines = await feed.poll()
    assert has(lines, 'a: created contact ann@example.com (first_name "Ann")'), lines
    assert has(lines, "a: run ok: created 2"), lines
    assert await feed.poll() == []  # nothing twice
    await sync_connection(hub, "b")
    lines = await feed.poll()
    assert has(lines, "pushed to b: ann@example.com, bob@example.com"), lines
    assert has(lines, "b: run ok: ", "pushed_create 2"), lines

    (tmp_path / "a.csv").write_text("email,first_name\nann@example.com,Annie\n")
    await sync_connection(hub, "a")
    lines = await feed.poll()
    assert has(lines, 'a: updated contact ann@example.com: first_name "Ann" -> "Annie"'), lines
    assert has(lines, "deleted contact bob@example.com"), lines
    await sync_connection(hub, "b")
    lines = await feed.poll()
    assert has(lines, "pushed to b: ann@example.com"), lines
    assert has(lines, "deleted in b: bob@example.com"), lines

    inbox = Inbox(hub.store, max_attempts=2)
    item, _ = await inbox.add("b", "d-1", b"{}", kind="profile")
    await inbox.mark_failed(item, "the remote said no")
    lines = await feed.poll()
    assert has(lines, "b: profile delivery failed (the remote said no); it is tried again")
    await inbox.mark_done(item)
    assert has(await feed.poll(), "b: profile delivery processed")


async def test_a_settled_write_with_nothing_to_send_is_not_called_a_push(
    hub: Hub, tmp_path: Path
) -> None:
    await sync_connection(hub, "a")
    await sync_connection(hub, "b")
    feed = ChangeFeed(hub.store)
    # The same edit on both sides: what a brings is owed to b, which holds it already.
    both = "email,first_name\nann@example.com,Annie\nbob@example.com,Bob\n"
    (tmp_path / "a.csv").write_text(both)
    (tmp_path / "b.csv").write_text(both)
    await sync_connection(hub, "a")
    report = await sync_connection(hub, "b")
    assert not report.counts.get("pushed_update"), report.counts
    lines = await feed.poll()
    assert has(lines, 'a: updated contact ann@example.com: first_name "Ann" -> "Annie"'), lines
    assert not has(lines, "pushed to b"), lines
