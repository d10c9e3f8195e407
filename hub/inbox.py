"""The inbox: received webhooks, stored before they are answered, processed afterwards.

Life of an item: ``add`` writes it ``pending`` (or ``malformed``, kept only for a person to
read) and commits before the web route answers. The ``InboxProcessor`` claims pending items,
oldest first, hands each to its handler and marks it ``done``; a handler that raises marks it
failed: ``attempts`` goes up, the item waits ``retry_delay * 2**(attempts-1)`` seconds (capped
at ``max_delay``) and after ``max_attempts`` it is ``dead`` with its last error, until
``retry`` puts it back.

Exactly once, and what that means: one row per (source, delivery_id), so a provider's
redelivery never makes a second item, and a processed item is never claimed again. An item
whose processing was interrupted by a crash (handler ran, ``done`` not yet committed) is
processed again after the restart, so handlers must be idempotent; queueing a targeted pull
is.

Claiming is safe with several processors. On PostgreSQL a claim is
``SELECT ... FOR UPDATE SKIP LOCKED`` held for the batch, and its marks are committed with it:
a processor that dies releases its rows at once. On SQLite, which has one writer anyway, only
the holder of the ``inbox`` lease processes (``InboxProcessor`` takes it); a claim there
holds no transaction, so the webhook route keeps writing while handlers run.

Ids commit in order. Inserts take turns across processes (``WRITE_TURN``), so no reader ever
sees an id commit before a lower one: a reader that pages a source's items by id, as the web
forms connector does, can keep the last id it read as its cursor and miss nothing, also with
several hub processes writing to one PostgreSQL database.

For a pending item that failed before, ``processed_at`` is the time of its last attempt.
Every failed attempt adds ``{"at", "error"}`` to ``attempt_errors`` (the latest
``MAX_ATTEMPT_ERRORS``), which neither success nor ``retry`` clears: an item that failed and
later went through still shows why it failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import metrics
from hub.errors import LeaseHeld, StoreError
from hub.logging import redact_text
from hub.store import Lease, Store, utcnow
from hub.store.schema import inbox as table
from hub.store.status import InboxStatus
from hub.webhooks import WebhookReceiver, WebhookRejected, receiver_for

if TYPE_CHECKING:
    from hub.runtime import Hub

STATUSES = ("pending", "done", "dead", "malformed")
MAX_GROUP = 200
"""Most deliveries committed in one transaction."""
WRITE_TURN = "inbox"
"""The lock inserts hold (``Store.begin_serialized``) so that ids commit in order."""
MAX_ATTEMPT_ERRORS = 20
"""Failed attempts whose errors an item keeps (the latest)."""


@dataclass
class InboxItem:
    id: int
    source: str
    delivery_id: str
    kind: str
    headers: dict[str, str]
    body: bytes
    status: str
    attempts: int
    error: str | None
    received_at: datetime
    processed_at: datetime | None
    attempt_errors: list[dict[str, str]] = field(default_factory=list)
    """``{"at": ISO time, "error": text}`` per failed attempt, oldest first."""

    @classmethod
    def from_row(cls, row: RowMapping) -> InboxItem:
        values = {name: row[name] for name in cls.__dataclass_fields__}
        values["attempt_errors"] = list(values["attempt_errors"] or [])
        return cls(**values)

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON (raises ``ValueError`` when it is not JSON)."""
        return json.loads(self.body)

    def summary(self) -> dict[str, Any]:
        """Everything but the body, JSON-ready."""
        return {
            "id": self.id,
            "source": self.source,
            "delivery_id": self.delivery_id,
            "kind": self.kind,
            "status": self.status,
            "attempts": self.attempts,
            "error": self.error,
            "received_at": self.received_at.isoformat(),
            "processed_at": self.processed_at.isoformat() if self.processed_at else None,
            "size": len(self.body),
            "attempt_errors": self.attempt_errors,
        }


class Claim:
    """Items claimed by one processor; mark each with ``done`` or ``failed``.

    ``done`` marks are committed when the claim ends (with the claim's transaction on
    PostgreSQL, in one write on SQLite); ``failed`` marks at once.
    """

    def __init__(self, inbox: Inbox, items: list[InboxItem], conn: AsyncConnection | None):
        self.inbox = inbox
        self.items = items
        self._conn = conn
        self._done: list[int] = []

    async def done(self, item: InboxItem) -> None:
        if self._conn is not None:
            await self.inbox.mark_done(item.id, conn=self._conn)
        else:
            self._done.append(item.id)

    async def flush(self) -> None:
        done, self._done = self._done, []
        await self.inbox.mark_done(done)

    async def failed(self, item: InboxItem, error: str) -> str:
        return await self.inbox.mark_failed(item.id, error, conn=self._conn)


# Built once: the statements are the same for every delivery, only the parameters change.
_INSERT = {
    postgres: insert_fn(table)
    .on_conflict_do_nothing(index_elements=[table.c.source, table.c.delivery_id])
    .returning(table.c.id)
    for postgres, insert_fn in ((False, sqlite_insert), (True, pg_insert))
}
_FIND = select(table.c.id).where(
    table.c.source == bindparam("source"), table.c.delivery_id == bindparam("delivery_id")
)
_Queued = tuple[dict[str, Any], "asyncio.Future[tuple[int, bool]]"]
_shared: weakref.WeakKeyDictionary[Store, Inbox] = weakref.WeakKeyDictionary()


class Inbox:
    """Inbox operations on one store."""

    def __init__(
        self,
        store: Store,
        *,
        max_attempts: int = 5,
        retry_delay: float = 5.0,
        max_delay: float = 600.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.store = store
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.max_delay = max_delay
        self.wakeup = asyncio.Event()
        """Set after every ``add``: a processor in this process starts at once."""
        self._queue: list[_Queued] = []
        self._flusher: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock() if store.is_sqlite else None

    @classmethod
    def shared(cls, store: Store) -> Inbox:
        """The process-wide inbox of ``store``, so the web app can wake the processor."""
        found = _shared.get(store)
        if found is None:
            found = _shared[store] = cls(store)
        return found

    def delay(self, attempts: int) -> float:
        """Seconds to wait before the next attempt after ``attempts`` failed ones."""
        return min(self.retry_delay * 2 ** max(attempts - 1, 0), self.max_delay)

    async def add(
        self,
        source: str,
        delivery_id: str,
        body: bytes,
        headers: dict[str, str] | None = None,
        *,
        kind: str = "event",
        status: str = "pending",
        error: str | None = None,
    ) -> tuple[int, bool]:
        """Store a delivery and commit. Returns ``(id, duplicate)``; a duplicate is not stored.

        Concurrent calls are committed together (group commit): each returns only after the
        transaction holding its row has committed.
        """
        if status not in ("pending", "malformed"):
            raise ValueError(f"a new inbox item is pending or malformed, not {status!r}")
        values = {
            "source": source,
            "delivery_id": delivery_id[:255],
            "kind": kind[:64],
            "headers": headers or {},
            "body": body,
            "status": status,
            "attempts": 0,
            "error": error,
            "received_at": utcnow(),
        }
        future: asyncio.Future[tuple[int, bool]] = asyncio.get_running_loop().create_future()
        self._queue.append((values, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        """Commit queued ``add``s together: one transaction for all that arrived meanwhile."""
        while self._queue:
            batch, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
            try:
                results = await self._insert(batch)
            except Exception:
                # one bad row must not fail the others: try each on its own
                results = []
                for entry in batch:
                    try:
                        results.extend(await self._insert([entry]))
                    except Exception as exc:
                        results.append(exc)
            for (_values, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
            if any(v["status"] == "pending" for v, _ in batch):
                self.wakeup.set()

    async def _insert(self, batch: list[_Queued]) -> list[tuple[int, bool] | BaseException]:
        results: list[tuple[int, bool] | BaseException] = []
        async with self._writing(), self.store.begin_serialized(WRITE_TURN) as conn:
            stmt = _INSERT[conn.dialect.name == "postgresql"]
            for values, _future in batch:
                new_id = (await conn.execute(stmt, values)).scalar()
                if new_id is None:
                    found = await conn.execute(_FIND, values)
                    results.append((int(found.scalar_one()), True))
                else:
                    results.append((int(new_id), False))
        return results

    def _writing(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """On SQLite, this process's inbox writes take turns instead of racing for the file
        lock (whose busy handler sleeps for up to 100 ms at a time)."""
        return self._write_lock if self._write_lock is not None else contextlib.nullcontext()

    def _due(self, now: datetime) -> Any:
        waits = [
            and_(
                table.c.attempts == n,
                table.c.processed_at <= now - timedelta(seconds=self.delay(n)),
            )
            for n in range(1, self.max_attempts)
        ]
        return and_(
            table.c.status == InboxStatus.PENDING,
            or_(table.c.attempts == 0, table.c.processed_at.is_(None), *waits),
        )

    @asynccontextmanager
    async def claim(self, batch: int = 20) -> AsyncIterator[Claim]:
        """Claim up to ``batch`` due items, oldest first, for the block.

        On PostgreSQL the rows stay locked (others skip them) until the block ends, and the
        marks commit together then. On SQLite the caller must be the single processor.
        """
        query = select(table).where(self._due(utcnow())).order_by(table.c.id).limit(batch)
        if self.store.is_sqlite:
            async with self.store.connect() as conn:
                rows = (await conn.execute(query)).mappings().all()
            claim = Claim(self, [InboxItem.from_row(r) for r in rows], None)
            try:
                yield claim
            finally:  # what was handled is recorded even when the processor is stopping
                await asyncio.shield(claim.flush())
            return
        async with self.store.begin() as conn:
            rows = (await conn.execute(query.with_for_update(skip_locked=True))).mappings().all()
            yield Claim(self, [InboxItem.from_row(r) for r in rows], conn)

    @asynccontextmanager
    async def _tx(self, conn: AsyncConnection | None) -> AsyncIterator[AsyncConnection]:
        if conn is not None:
            yield conn
        else:
            async with self._writing(), self.store.begin() as own:
                yield own

    async def mark_done(
        self, item_ids: int | Sequence[int], *, conn: AsyncConnection | None = None
    ) -> None:
        ids = [item_ids] if isinstance(item_ids, int) else list(item_ids)
        if not ids:
            return
        async with self._tx(conn) as c:
            await c.execute(
                update(table)
                .where(table.c.id.in_(ids))
                .values(status=InboxStatus.DONE, error=None, processed_at=utcnow())
            )

    async def mark_failed(
        self, item_id: int, error: str, *, conn: AsyncConnection | None = None
    ) -> str:
        """Count a failed attempt and keep its error; returns the new status (``pending``
        again, or ``dead``)."""
        now = utcnow()
        async with self._tx(conn) as c:
            row = (
                await c.execute(
                    select(table.c.attempts, table.c.attempt_errors).where(table.c.id == item_id)
                )
            ).one()
            status = "dead" if row.attempts + 1 >= self.max_attempts else "pending"
            history = [*(row.attempt_errors or []), {"at": now.isoformat(), "error": error[:1000]}]
            await c.execute(
                update(table)
                .where(table.c.id == item_id)
                .values(
                    status=status,
                    attempts=row.attempts + 1,
                    error=error[:4000],
                    processed_at=now,
                    attempt_errors=history[-MAX_ATTEMPT_ERRORS:],
                )
            )
        return status

    async def retry(self, item_id: int) -> bool:
        """Put a dead (or failed, or done) item back to pending with a fresh attempt count.

        Malformed items cannot be retried: nothing can process them. Returns whether the
        item was found and reset.
        """
        async with self._writing(), self.store.begin() as conn:
            result = await conn.execute(
                update(table)
                .where(table.c.id == item_id, table.c.status != InboxStatus.MALFORMED)
                .values(status=InboxStatus.PENDING, attempts=0, error=None, processed_at=None)
            )
        self.wakeup.set()
        return bool(result.rowcount)

    async def retry_dead(self) -> int:
        """Put every dead item back to pending; returns how many."""
        async with self._writing(), self.store.begin() as conn:
            result = await conn.execute(
                update(table)
                .where(table.c.status == InboxStatus.DEAD)
                .values(status=InboxStatus.PENDING, attempts=0, error=None, processed_at=None)
            )
        self.wakeup.set()
        return int(result.rowcount)

    async def list(
        self,
        status: str | None = None,
        *,
        source: str | None = None,
        limit: int = 100,
    ) -> Sequence[InboxItem]:
        """Newest first."""
        query = select(table).order_by(table.c.id.desc()).limit(limit)
        if status:
            query = query.where(table.c.status == status)
        if source:
            query = query.where(table.c.source == source)
        async with self.store.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [InboxItem.from_row(r) for r in rows]

    async def show(self, item_id: int) -> InboxItem | None:
        async with self.store.connect() as conn:
            row = (
                (await conn.execute(select(table).where(table.c.id == item_id))).mappings().first()
            )
        return InboxItem.from_row(row) if row else None

    async def depth(self) -> dict[str, int]:
        """Item count per status (every status present, zero when none)."""
        async with self.store.connect() as conn:
            rows = await conn.execute(select(table.c.status, func.count()).group_by(table.c.status))
            counts = {str(status): int(n) for status, n in rows}
        return {**dict.fromkeys(STATUSES, 0), **counts}

    async def purge(
        self,
        older_than: timedelta,
        statuses: Sequence[str] = ("done",),
        *,
        now: datetime | None = None,
    ) -> int:
        """Delete items in ``statuses`` last touched (processed, else received) more than
        ``older_than`` before ``now``; returns how many."""
        touched = func.coalesce(table.c.processed_at, table.c.received_at)
        cutoff = (now or utcnow()) - older_than
        async with self._writing(), self.store.begin() as conn:
            result = await conn.execute(
                delete(table).where(table.c.status.in_(list(statuses)), touched < cutoff)
            )
        return int(result.rowcount)


Handler = Callable[[InboxItem], Awaitable[None]]
log = logging.getLogger("hub.inbox")


class InboxProcessor:
    """Processes inbox items in the background: ``task = asyncio.create_task(p.run())``.

    ``handlers`` maps a source (connection name) to ``async def handler(item)``; a source
    without one goes to its connection's ``WebhookReceiver.handle``. ``run`` polls every
    ``poll_interval`` seconds and wakes when the web app in this process stores a delivery
    (after ``linger`` seconds, so a burst is claimed in one batch). Cancelling the task
    stops it cleanly: the item in hand is left pending (it is processed again later), items
    already handled are marked done, connectors it built are closed.
    """

    def __init__(
        self,
        hub: Hub,
        handlers: Mapping[str, Handler] | None = None,
        *,
        inbox: Inbox | None = None,
        batch: int = 100,
        poll_interval: float = 1.0,
        linger: float = 0.05,
        lease_ttl: float = 30.0,
    ) -> None:
        self.hub = hub
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.inbox = inbox or Inbox.shared(hub.store)
        self.batch = batch
        self.poll_interval = poll_interval
        self.linger = linger
        self.lease_ttl = lease_ttl
        self._receivers: dict[str, WebhookReceiver | None] = {}

    def _handler(self, source: str) -> Handler:
        found = self.handlers.get(source)
        if found is not None:
            return found
        if source not in self._receivers:
            try:
                self._receivers[source] = receiver_for(self.hub, source)
            except WebhookRejected:
                self._receivers[source] = None
        receiver = self._receivers[source]
        if receiver is None:
            raise LookupError(f"no handler for inbox source {source!r} (connection not found?)")

        services = self.hub.services(source)

        async def handle(item: InboxItem) -> None:
            await receiver.handle(services, item)

        return handle

    async def _process(self, claim: Claim, item: InboxItem) -> None:
        try:
            await self._handler(item.source)(item)
        except Exception as exc:  # any handler failure is recorded on the item, never fatal
            error = redact_text(f"{type(exc).__name__}: {exc}")
            status = await claim.failed(item, error)
            result = "dead" if status == "dead" else "failed"
            # A run of the connection already going is ordinary: the item is simply retried.
            busy = isinstance(exc, LeaseHeld) and status != "dead"
            log.log(
                logging.INFO if busy else logging.WARNING,
                "inbox item deferred: connection busy" if busy else "inbox item failed",
                extra={"item": item.id, "source": item.source, "status": status, "error": error},
            )
        else:
            await claim.done(item)
            result = "done"
        metrics.INBOX_PROCESSED.inc(source=item.source, result=result)

    async def run_once(self) -> int:
        """Process the items due now (one batch); returns how many were handled."""
        async with self.inbox.claim(self.batch) as claim:
            for item in claim.items:
                await self._process(claim, item)
            return len(claim.items)

    async def _wait(self) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation that
        # arrives as the event is set, and the processor then would not stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll_interval):
                await self.inbox.wakeup.wait()
            # deliveries come in bursts: gather a few before claiming, which costs a query
            await asyncio.sleep(self.linger)

    async def _loop(self) -> None:
        while True:
            self.inbox.wakeup.clear()
            try:
                handled = await self.run_once()
            except StoreError as exc:
                log.error("inbox processing paused: %s", exc)
                handled = 0
            except SQLAlchemyError as exc:
                log.error("inbox processing paused: database error: %s", exc)
                handled = 0
            if handled < self.batch:
                await self._wait()

    async def run(self) -> None:
        """Process until cancelled. On SQLite, waits for the single-processor lease first."""
        try:
            if not self.hub.store.is_sqlite:
                await self._loop()
                return
            lease = Lease(self.hub.store, "inbox", ttl=self.lease_ttl)
            while True:
                try:
                    await lease.acquire()
                    break
                except LeaseHeld:
                    await asyncio.sleep(self.poll_interval)
            try:
                await self._loop()
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(lease.release())
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the connectors built for receivers."""
        receivers = [r for r in self._receivers.values() if r is not None]
        self._receivers.clear()
        for receiver in receivers:
            with contextlib.suppress(Exception):
                await receiver.connector.aclose()
