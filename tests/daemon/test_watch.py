"""``crmhub up`` watches local files: an edit syncs its connection within about a second, a
burst of edits one run, the hub's own writes none."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.applications import Starlette

from hub.config import load_config
from hub.daemon import Daemon
from hub.engine import sync_connection
from hub.runtime import Hub
from hub.store.schema import entities, runs
from hub.watch import FileWatcher, note_written

SETTLE = 0.5  # the watch starts a moment after the daemon is ready


async def wait_for(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> float:
    """Seconds until ``check()`` is truthy; fails after ``timeout``."""
    began = time.monotonic()
    while not await check():
        if time.monotonic() - began > timeout:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - began


class Recorder:
    """A fake ``run_sync``: records calls; ``hold`` keeps a run going until set."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.running: set[str] = set()
        self.hold = asyncio.Event()
        self.hold.set()
        self.answer = "ok"
        self.watcher: FileWatcher | None = None

    async def __call__(self, name: str) -> str:
        self.calls.append(name)
        self.running.add(name)
        try:
            await self.hold.wait()
        finally:
            self.running.discard(name)
        return self.answer


@pytest.fixture
async def watching(
    tmp_path: Path,
) -> AsyncIterator[Callable[[dict[Path, set[str]]], Awaitable[Recorder]]]:
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def start(files: dict[Path, set[str]]) -> Recorder:
        recorder = Recorder()
        watcher = recorder.watcher = FileWatcher(files, recorder, lambda name: False, stop)
        tasks.append(asyncio.create_task(watcher.run()))
        await asyncio.sleep(SETTLE)
        return recorder

    yield start
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)


async def test_an_edit_starts_one_sync_within_a_second(
    tmp_path: Path, watching: Callable[[dict[Path, set[str]]], Awaitable[Recorder]]
) -> None:
    path = tmp_path / "people.csv"
    path.write_text("email\n")
    (tmp_path / "other.csv").write_text("email\n")
    recorder = await watching({path: {"people"}})
    began = time.monotonic()
    for i in range(10):  # a burst of saves is one run
        path.write_text(f"email\nn{i}@example.com\n")
        time.sleep(0.005)

    async def ran() -> bool:
        return recorder.calls == ["people"]

    assert await wait_for(ran, 2, "a sync") < 1.5
    print(f"sync started {time.monotonic() - began:.2f}s after the first save")
    (tmp_path / "other.csv").write_text("email\nx@example.com\n")  # not watched
    (tmp_path / "people.csv.lock").touch()
    await asyncio.sleep(1.2)
    assert recorder.calls == ["people"]


async def test_the_hubs_own_write_starts_nothing(
    tmp_path: Path, watching: Callable[[dict[Path, set[str]]], Awaitable[Recorder]]
) -> None:
    path = tmp_path / "people.csv"
    path.write_text("email\n")
    recorder = await watching({path: {"people"}})
    data = b"email\nhub@example.com\n"
    note_written(path, hashlib.sha256(data).hexdigest())
    path.write_bytes(data)
    await asyncio.sleep(1.2)
    assert recorder.calls == []
    path.write_bytes(data + b"person@example.com\n")  # then a person edits it

    async def ran() -> bool:
        return recorder.calls == ["people"]

    await wait_for(ran, 2, "a sync after the person's edit")
    path.write_bytes(data)  # and puts back what the hub wrote: a change all the same

    async def ran_again() -> bool:
        return recorder.calls == ["people", "people"]

    await wait_for(ran_again, 2, "a sync after the person's second edit")


async def test_a_change_during_a_run_starts_one_more(
    tmp_path: Path, watching: Callable[[dict[Path, set[str]]], Awaitable[Recorder]]
) -> None:
    path = tmp_path / "people.csv"
    path.write_text("email\n")
    recorder = await watching({path: {"people", "copy"}})
    recorder.hold.clear()
    path.write_text("email\na@example.com\n")

    async def running() -> bool:
        return recorder.running == {"people", "copy"}

    await wait_for(running, 2, "both connections syncing")
    for i in range(3):
        path.write_text(f"email\nb{i}@example.com\n")
        await asyncio.sleep(0.4)

    async def seen() -> bool:  # every save was seen while the runs went on
        assert recorder.watcher is not None
        return recorder.watcher._again == {"people", "copy"}

    await wait_for(seen, 2, "the saves to be seen")
    await asyncio.sleep(0.5)
    recorder.hold.set()

    async def twice() -> bool:
        return sorted(recorder.calls) == ["copy", "copy", "people", "people"]

    await wait_for(twice, 3, "one more run of each")
    await asyncio.sleep(1)
    assert len(recorder.calls) == 4


async def test_a_symlinks_target_is_watched(
    tmp_path: Path, watching: Callable[[dict[Path, set[str]]], Awaitable[Recorder]]
) -> None:
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "people.csv"
    target.write_text("email\n")
    link = tmp_path / "b.csv"
    link.symlink_to(target)
    recorder = await watching({link: {"b"}})
    target.write_text("email\na@example.com\n")

    async def ran() -> bool:
        return recorder.calls == ["b"]

    await wait_for(ran, 2, "a sync after an edit of the link's target")


# -- the daemon, in process, with real syncs ------------------------------------------------


def city(path: Path, email: str = "ann@example.com") -> str:
    rows = csv.DictReader(io.StringIO(path.read_text(), newline=""))
    return next(r["city"] for r in rows if r["email"] == email)


async def idle_inbox(hub: Hub, stop: asyncio.Event) -> None:
    await stop.wait()


async def test_the_daemon_syncs_an_edited_file_and_newest_follows_the_edits(
    tmp_path: Path, db_url: str
) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for path in (a, b):
        path.write_text(
            "email,first_name,city\nann@example.com,Ann,Leeds\nbo@example.com,Bo,Hull\n"
        )
    (tmp_path / "crmhub.toml").write_text(
        f'[hub]\ndatabase = "{db_url}"\n\n'
        '[connections.a]\nconnector = "csv"\npath = "a.csv"\n\n'
        '[connections.b]\nconnector = "csv"\npath = "b.csv"\n'
    )
    hub = await Hub.open(load_config(tmp_path / "crmhub.toml"))
    daemon = Daemon(hub, port=0, app=Starlette(), inbox=idle_inbox)
    running = asyncio.create_task(daemon.run())
    try:
        for name in ("a", "b", "a", "b"):
            assert (await sync_connection(hub, name)).status == "ok"
        await asyncio.wait_for(daemon.ready.wait(), 30)
        await asyncio.sleep(SETTLE)

        async def run_count(name: str) -> int:
            async with hub.store.connect() as db:
                found = await db.execute(select(runs.c.id).where(runs.c.connection == name))
                return len(found.all())

        async def hub_city() -> str:
            async with hub.store.connect() as db:
                rows = (await db.execute(select(entities.c.fields))).scalars().all()
            return next(f["city"] for f in rows if f.get("email") == "ann@example.com")

        a.write_text(a.read_text().replace("Leeds", "Ely"))  # the earlier edit

        async def seen_ely() -> bool:
            return await hub_city() == "Ely"

        latency = await wait_for(seen_ely, 3, "the hub to see a.csv's edit")
        await asyncio.sleep(0.3)
        b.write_text(b.read_text().replace("Leeds", "York"))  # the later edit

        async def seen_york() -> bool:
            return await hub_city() == "York"

        await wait_for(seen_york, 3, "the hub to see b.csv's edit")
        a.write_text(a.read_text().replace("Hull", "Hove"))  # a.csv is touched last

        async def a_says_york() -> bool:
            return city(a) == "York"

        await wait_for(a_says_york, 3, "York to be written into a.csv")
        assert city(b) == "York" and await hub_city() == "York"
        # The hub's own write into a.csv starts no further run.
        count = await run_count("a")
        await asyncio.sleep(1.5)
        assert await run_count("a") == count
        print(f"the hub saw the edit {latency:.2f}s after it was saved")
    finally:
        daemon.request_stop()
        await asyncio.wait_for(running, 15)
        await hub.close()
