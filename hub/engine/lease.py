"""A run's lease, and the fence on every write the run makes.

A run holds its connection's lease (``run:NAME``) from start to end. The lease alone does
not stop a run that stalled past its expiry (a stopped process, a machine that slept) from
waking up and writing while a newer run holds the lease. So every transaction a run commits
(each pulled page, each outbox settlement, its deletions) checks, as its last statement,
that the lease is still the run's own (holder and epoch): a run that lost it fails with
``LeaseLost`` and its transaction is rolled back. On PostgreSQL the check locks the lease
row for share until the commit, so nobody takes the lease between check and commit; SQLite
has one writer at a time anyway. Connectors ask through ``ConnectorContext.check_lease``
right before a write the hub cannot roll back (the CSV connector's final rename). A run's
lease that expired is not renewed when the run wakes up: the next run may take it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.errors import LeaseLost
from hub.store import Lease, Store


class RunLease:
    """``async with RunLease(store, "people", ttl=60):`` holds connection ``people``'s run
    lease; raises ``LeaseHeld`` when another run has it."""

    def __init__(self, store: Store, connection: str, *, ttl: float) -> None:
        self.store = store
        self.connection = connection
        self.lease = Lease(store, f"run:{connection}", ttl=ttl, fenced=True)

    async def __aenter__(self) -> RunLease:
        await self.lease.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.lease.release()

    @property
    def epoch(self) -> int:
        return self.lease.epoch

    async def check(self, db: AsyncConnection) -> None:
        """Raise ``LeaseLost`` unless the lease is still this run's, in ``db``'s transaction."""
        holder = await self.lease.holds(db)
        if holder is not None:
            raise LeaseLost(self.connection, holder or None)

    async def check_now(self) -> None:
        """The same check in a transaction of its own (for a connector about to write)."""
        async with self.store.begin() as db:
            await self.check(db)


@contextlib.asynccontextmanager
async def fenced(
    lease: RunLease | None, transaction: contextlib.AbstractAsyncContextManager[AsyncConnection]
) -> AsyncIterator[AsyncConnection]:
    """``transaction``, whose commit is refused (``LeaseLost``, rolled back) when ``lease``
    has passed to another run meanwhile. ``None``: not fenced (plans write nothing)."""
    async with transaction as db:
        try:
            yield db
        except IntegrityError:
            # A row the other run wrote first (a link, a key): the lost lease is the reason.
            if lease is not None:
                await lease.check_now()
            raise
        if lease is not None:
            await lease.check(db)
