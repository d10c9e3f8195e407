"""The pages of a pull: fetched one ahead, applied with the garbage collector held off, each
in its own transaction (fenced by the run's lease)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator

from sqlalchemy.ext.asyncio import AsyncConnection

from hub.connector import Page
from hub.engine.context import DbFactory, RunContext
from hub.engine.lease import fenced
from hub.engine.pull import Prepared

__all__ = ["collector_paused", "page_transaction", "read_ahead"]


@contextlib.asynccontextmanager
async def read_ahead(
    pages: AsyncIterator[Page], prepare: Callable[[Page], Prepared]
) -> AsyncIterator[AsyncGenerator[tuple[Page, Prepared]]]:
    """The connector's pages, each with its :meth:`PageApplier.prepare` result, the next
    one fetched and prepared while the caller applies the current one: the remote's
    answer (or the mapping's work) overlaps the database's. One page at most is held
    ahead; leaving the block cancels it and closes the connector's generator, so a run
    that stops or fails asks nothing more of the remote."""

    async def fetch() -> tuple[Page, Prepared] | None:
        page = await anext(pages, None)
        if page is None:
            return None
        with collector_paused():
            return page, prepare(page)

    task: asyncio.Future[tuple[Page, Prepared] | None] | None = None

    async def iterate() -> AsyncGenerator[tuple[Page, Prepared]]:
        nonlocal task
        task = asyncio.ensure_future(fetch())
        while True:
            item = await task
            if item is None:
                task = None
                return
            task = asyncio.ensure_future(fetch())
            yield item

    items = iterate()
    try:
        yield items
    finally:
        await items.aclose()
        if task is not None:
            task.cancel()
            await asyncio.wait([task])  # a cancellation of this run still comes through
            if not task.cancelled():
                task.exception()  # the caller's own error is the one that counts
        aclose = getattr(pages, "aclose", None)
        if aclose is not None:
            await aclose()


_pauses = 0


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector held off while a page is applied.

    A page builds thousands of records, entities and rows that live until its transaction
    ends and are then freed by reference counting; collecting while they are being built
    walks them again and again for nothing (BENCHMARKS.md has what it costs). Once the last
    page in flight (of any run in this process) is done, collection resumes and catches
    up at once. Nested and concurrent pauses count: the collector stays off until all end.
    """
    global _pauses
    if _pauses == 0 and not gc.isenabled():
        yield  # switched off by someone else: leave it as it is
        return
    if _pauses == 0:
        gc.disable()
    _pauses += 1
    try:
        yield
    finally:
        _pauses -= 1
        if _pauses == 0:
            gc.enable()


def page_transaction(
    ctx: RunContext,
    entity: str,
    db_factory: DbFactory,
) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
    """The transaction a page is applied in. Identity matching reads the match keys and
    then creates the entities it found none for: two runs doing that at once for the same
    entity type would both create the same person, so page transactions of one entity type
    take turns (across processes and hosts). A plan runs in its own rolled-back one."""
    if ctx.plan:
        return db_factory()
    return fenced(ctx.lease, ctx.hub.store.begin_serialized(f"match:{entity}"))
