"""Run leases: one holder per name at a time, across processes and hosts.

A lease is a row with a holder and an expiry. Taking it is one atomic upsert that succeeds
only when the row is free, expired, or already ours. The holder renews it while working; a
holder that dies stops renewing, and after ``ttl`` anyone may take it. A dead holder on this
same host is noticed at once (its process id no longer exists), so a restart after a crash
does not wait for the expiry.

Each taking bumps the lease's ``epoch``. A holder that stalled past its expiry (stopped,
swapped out, cut off from the database) may find its lease taken when it wakes up: ``holds``
tells, inside the caller's transaction, whether holder and epoch are still this lease's, so
the caller's writes are fenced (see ``hub.engine.lease``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from datetime import timedelta

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.errors import LeaseHeld
from hub.store.db import Store, utcnow
from hub.store.schema import leases

HOST = socket.gethostname()


def make_holder() -> str:
    return f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _holder_is_dead(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != HOST or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Lease:
    """``async with Lease(store, "run:people"):`` holds the lease for the block, renewing it."""

    def __init__(self, store: Store, name: str, *, ttl: float = 60.0, fenced: bool = False) -> None:
        self.store = store
        self.name = name
        self.ttl = ttl
        self.fenced = fenced
        """The holder's writes check ``holds``: an expired lease is then not renewed (it is
        free for the next holder even when this one wakes up first, and this one stops at
        its next write once it is taken). Unfenced holders renew it while nobody took it."""
        self.holder = make_holder()
        self.epoch = 0
        self._renewer: asyncio.Task[None] | None = None

    async def _try_take(self) -> str:
        now = utcnow()
        expires = now + timedelta(seconds=self.ttl)
        values = {"name": self.name, "holder": self.holder, "expires_at": expires, "epoch": 1}
        async with self.store.begin() as conn:
            insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            stmt = insert(leases).values(**values)
            free = or_(leases.c.expires_at < now, leases.c.holder == self.holder)
            stmt = stmt.on_conflict_do_update(
                index_elements=[leases.c.name],
                set_={
                    "holder": stmt.excluded.holder,
                    "expires_at": stmt.excluded.expires_at,
                    "epoch": leases.c.epoch + 1,
                },
                where=free,
            )
            await conn.execute(stmt)
            row = (
                await conn.execute(
                    select(leases.c.holder, leases.c.epoch).where(leases.c.name == self.name)
                )
            ).one()
        if row.holder == self.holder:
            self.epoch = int(row.epoch)
        return str(row.holder)

    async def acquire(self) -> None:
        holder = await self._try_take()
        if holder != self.holder and _holder_is_dead(holder):
            await self._steal_from(holder)
            holder = await self._try_take()
        if holder != self.holder:
            raise LeaseHeld(self.name.partition(":")[2] or self.name, holder)
        self._renewer = asyncio.create_task(self._renew_forever())

    async def _steal_from(self, dead: str) -> None:
        async with self.store.begin() as conn:
            await conn.execute(
                delete(leases).where(and_(leases.c.name == self.name, leases.c.holder == dead))
            )

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            with contextlib.suppress(Exception):
                async with self.store.begin() as conn:
                    now = utcnow()
                    ours = and_(leases.c.name == self.name, leases.c.holder == self.holder)
                    if self.fenced:
                        ours = and_(ours, leases.c.expires_at >= now)
                    await conn.execute(
                        update(leases)
                        .where(ours)
                        .values(expires_at=now + timedelta(seconds=self.ttl))
                    )

    async def holds(self, conn: AsyncConnection) -> str | None:
        """``None`` while this lease is still ours in ``conn``'s transaction, else who holds
        it now (``""``: nobody). On PostgreSQL the row is locked for share until the
        transaction ends, so nobody takes the lease between this check and the commit."""
        query = select(leases.c.holder, leases.c.epoch).where(leases.c.name == self.name)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(read=True)
        row = (await conn.execute(query)).one_or_none()
        if row is not None and row.holder == self.holder and row.epoch == self.epoch:
            return None
        return "" if row is None else str(row.holder)

    async def release(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        async with self.store.begin() as conn:
            await conn.execute(
                delete(leases).where(
                    and_(leases.c.name == self.name, leases.c.holder == self.holder)
                )
            )

    async def __aenter__(self) -> Lease:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()
