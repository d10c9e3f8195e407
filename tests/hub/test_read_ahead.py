"""The run's read-ahead: the next page is fetched while the current one is applied, and a run
that stops early leaves nothing running and the connector's generator closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from hub.connector import Page, RemoteRecord
from hub.engine.pages import read_ahead
from hub.engine.pull import Prepared


def prepare(page: Page) -> Prepared:
    return Prepared([(r, dict(r.data)) for r in page.records], {}, [], page.deleted, page.cursor)


class Source:
    """Pages 0..n-1, with a note of what was asked for and whether it was closed."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n, self.fail_at = n, fail_at
        self.asked: list[int] = []
        self.closed = False
        self.release = asyncio.Event()

    async def pages(self) -> AsyncIterator[Page]:
        try:
            for i in range(self.n):
                self.asked.append(i)
                if i == self.fail_at:
                    raise RuntimeError(f"page {i} failed")
                if i >= 2:
                    await self.release.wait()  # a slow remote from the third page on
                yield Page(records=[RemoteRecord(id=str(i), data={"i": i})], cursor={"i": i})
        finally:
            self.closed = True


async def test_the_next_page_is_fetched_while_the_current_one_is_applied() -> None:
    source = Source(4)
    seen = []
    async with read_ahead(source.pages(), prepare) as ahead:
        async for page, prepared in ahead:
            i = page.cursor["i"]
            seen.append(i)
            assert prepared.records[0][1] == {"i": i}
            for _ in range(10):  # applying takes a while; the next page is asked for meanwhile
                await asyncio.sleep(0)
            assert source.asked[-1] == min(i + 1, 3)
            source.release.set()
    assert seen == [0, 1, 2, 3]
    assert source.closed


async def test_leaving_early_cancels_the_page_ahead_and_closes_the_generator() -> None:
    source = Source(10)
    with pytest.raises(KeyError):
        async with read_ahead(source.pages(), prepare) as ahead:
            async for page, _ in ahead:
                if page.cursor["i"] == 1:
                    await asyncio.sleep(0)  # page 2 is asked for and waits on the remote
                    assert source.asked == [0, 1, 2]
                    raise KeyError("the page could not be applied")
    assert source.closed
    assert source.asked == [0, 1, 2]  # nothing after the stop
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_a_failing_fetch_fails_the_run_after_the_pages_before_it() -> None:
    source = Source(5, fail_at=2)
    seen = []
    with pytest.raises(RuntimeError, match="page 2 failed"):
        async with read_ahead(source.pages(), prepare) as ahead:
            async for page, _ in ahead:
                seen.append(page.cursor["i"])
    assert seen == [0, 1]
    assert source.closed


async def test_a_failure_ahead_is_dropped_when_the_current_page_fails_first() -> None:
    source = Source(5, fail_at=1)
    with pytest.raises(KeyError):
        async with read_ahead(source.pages(), prepare) as ahead:
            async for _ in ahead:
                await asyncio.sleep(0)  # page 1 is fetched ahead and fails meanwhile
                raise KeyError("page 0 could not be applied")
    assert source.closed
