"""Pushing what a connection is owed, from the outbox.

Each pending outbox row names an entity; the payload is computed now from the hub's values
against the link's base, so the remote gets exactly what differs. On success the link's
base becomes the pushed values, which makes the echo of our own write in the next pull a
no-op. A failed write leaves the base alone: the value stays owed and is retried.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.connector import Change, Page, PushResult
from hub.engine.context import DbFactory, RunContext, StreamContext
from hub.engine.duplicates import WAITING, duplicated
from hub.engine.merge import MISSING
from hub.engine.pages import page_transaction
from hub.engine.pull import PageApplier
from hub.engine.ref_push import PushReferences
from hub.engine.writes import LINK_COLUMNS
from hub.errors import ConnectorError, ErrorKind, NeedsReauth
from hub.store import utcnow
from hub.store.bulk import insert_rows, select_in, update_rows
from hub.store.schema import conflicts, entities, links, outbox
from hub.store.status import OutboxStatus

MAX_ATTEMPTS = 5
DEAD_LETTER_PAUSE = timedelta(hours=1)


class _EntityRow(NamedTuple):
    id: str
    fields: dict[str, Any]
    deleted_at: datetime | None


class _LinkRow(NamedTuple):
    id: str
    entity_id: str
    remote_id: str
    remote_version: str | None
    base: dict[str, Any]


@dataclass
class _Owed:
    row_id: str
    entity_id: str
    op: str
    change: Change | None
    link: Any
    values: dict[str, Any]
    waiting: list[tuple[str, str]] = field(default_factory=list)
    """Referenced records this system must receive first: ``(stream, hub id)``."""
    read: dict[str, Any] | None = None
    """The golden record's fields as they were when the write was computed."""


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


class Pusher:
    def __init__(self, ctx: RunContext, sctx: StreamContext) -> None:
        self.ctx = ctx
        self.sctx = sctx
        self.mapping = sctx.mapping
        self.stream = sctx.stream
        self.references = PushReferences(ctx, sctx)
        self.duplicated: set[str] = set()

    async def run(self, db_factory: DbFactory) -> None:
        """Push every due owed write of this stream, in batches.

        Every row handled leaves the due set (done, dead, or rescheduled), except a stale
        answer, which is re-read and retried once in the same run.
        """
        tried: set[str] = set()
        size = max(1, self.ctx.connector.push_batch_size)
        while True:
            async with db_factory() as db:
                owed = await self._next_batch(db, size)
                if not owed:
                    return
                settled = [o for o in owed if o.change is None and not o.waiting]
                await self._finish(db, settled, {})
                await self.references.defer(db, [(o.row_id, o.waiting) for o in owed if o.waiting])
            await self.ctx.wrote(len(owed))
            pending = [o for o in owed if o.change is not None]
            if not pending:
                continue
            if self.ctx.plan:
                for o in pending:
                    assert o.change is not None
                    self.ctx.plan_remote.append(
                        {
                            "connection": self.ctx.name,
                            "op": o.change.op,
                            "entity": o.entity_id,
                            "data": o.change.data,
                        }
                    )
                # Settled inside the plan's transaction (rolled back at its end), so the next
                # batch is the next rows, not these again.
                async with db_factory() as db:
                    await self._finish(db, pending, {})
                continue
            # Several records of this connection for one entity: none is written.
            waiting = [o for o in pending if o.entity_id in self.duplicated]
            sending = [o.change for o in pending if o.change and o.entity_id not in self.duplicated]
            results = await self._send(sending) if sending else {}
            message = WAITING.format(connection=self.ctx.name)
            for o in waiting:
                results[o.row_id] = PushResult(o.row_id, error=ErrorKind.TRANSIENT, message=message)
            stale = [o for o in pending if results[o.row_id].stale and o.row_id not in tried]
            if stale:
                # Re-read and merge once; the row is then retried with the fresh version.
                tried.update(o.row_id for o in stale)
                await self._refetch(db_factory, stale)
            for o in pending:
                if o.row_id in tried and o not in stale:
                    results[o.row_id].stale = False
            async with db_factory() as db:
                await self._finish(db, pending, results)

    async def _send(self, changes: list[Change]) -> dict[str, PushResult]:
        try:
            results = await self.ctx.connector.push(self.stream, changes)
        except NeedsReauth:
            raise
        except ConnectorError as exc:
            if exc.kind in (ErrorKind.CONFIG,):
                raise
            results = [
                PushResult(key=c.key, error=exc.kind, message=str(exc), retry_after=exc.retry_after)
                for c in changes
            ]
        by_key = {r.key: r for r in results}
        for c in changes:
            by_key.setdefault(
                c.key,
                PushResult(key=c.key, error=ErrorKind.TRANSIENT, message="no result returned"),
            )
        self.ctx.count("push_calls")
        return by_key

    async def _next_batch(self, db: AsyncConnection, size: int) -> list[_Owed]:
        now = utcnow()
        # Due: pending rows, and dead letters of transient failures whose pause has passed
        # (a permanent refusal has no next attempt: only a person retries it). Two queries,
        # so each walks the (connection, stream, status, created_at) index.
        columns = (outbox.c.id, outbox.c.entity_id, outbox.c.op)
        mine = (outbox.c.connection == self.ctx.name, outbox.c.stream == self.stream.name)
        rows = list(
            (
                await db.execute(
                    select(*columns)
                    .where(*mine, outbox.c.status == OutboxStatus.PENDING)
                    .where(or_(outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= now))
                    .order_by(outbox.c.created_at)
                    .limit(size)
                )
            ).all()
        )
        if len(rows) < size:
            rows += (
                await db.execute(
                    select(*columns)
                    .where(
                        *mine, outbox.c.status == OutboxStatus.DEAD, outbox.c.next_attempt_at <= now
                    )
                    .order_by(outbox.c.created_at)
                    .limit(size - len(rows))
                )
            ).all()
        if not rows:
            return []
        ids = {r.entity_id for r in rows}
        ents = {
            r[0]: _EntityRow(*r)
            for r in await select_in(db, entities, _EntityRow._fields, {}, "id", ids)
        }
        where = {"connection": self.ctx.name, "stream": self.stream.name}
        link_rows = [
            _LinkRow(*r)
            for r in await select_in(db, links, _LinkRow._fields, where, "entity_id", ids)
        ]
        lks = {r.entity_id: r for r in link_rows}
        self.duplicated = duplicated(link_rows)
        held: dict[str, set[str]] = {}
        for entity_id, f in await select_in(
            db, conflicts, ("entity_id", "field"), {"status": "open"}, "entity_id", ids
        ):
            held.setdefault(entity_id, set()).add(f)
        await self.references.load(
            db, [e.fields for e in ents.values()] + [lk.base for lk in lks.values()]
        )
        return [self._owed(r, ents.get(r.entity_id), lks.get(r.entity_id), held) for r in rows]

    def _owed(self, row: Any, ent: Any, link: Any, held: dict[str, set[str]]) -> _Owed:
        owed = _Owed(row.id, row.entity_id, row.op, None, link, {})
        if row.op == "delete":
            if link is not None and self.stream.can_delete:
                owed.change = Change(
                    key=row.id,
                    op="delete",
                    data={},
                    idempotency_key=row.id,
                    remote_id=link.remote_id,
                    version=link.remote_version,
                )
            return owed
        if ent is None or ent.deleted_at is not None:
            return owed
        fields: dict[str, Any] = ent.fields
        owed.read = fields
        allowed = self.mapping.push_fields - held.get(row.entity_id, set())
        if link is not None:
            if not self.stream.can_update:
                return owed
            base = link.base
            changed = {
                f
                for f in allowed
                if f in fields
                and fields[f] != base.get(f, MISSING)
                and not (fields[f] is None and f not in base)
            }
            if changed:
                owed.values = {f: fields[f] for f in changed}
                shown, owed.waiting = self.references.render(fields, changed)
                if owed.waiting:
                    return owed
                whole, _ = self.references.render({**base, **owed.values})
                owed.change = Change(
                    key=row.id,
                    op="update",
                    data=self.mapping.to_remote(shown, only=changed),
                    idempotency_key=row.id,
                    remote_id=link.remote_id,
                    version=link.remote_version,
                    entity_id=row.entity_id,
                    # base + change: a value the push transforms refuse is left out
                    record=self.mapping.to_remote(whole, errors=[]),
                )
            return owed
        if not self.stream.can_create:
            return owed
        values = {f: fields[f] for f in allowed if fields.get(f) is not None}
        if values:
            owed.values = values
            shown, owed.waiting = self.references.render(values)
            if owed.waiting:
                return owed
            data = self.mapping.to_remote(shown)
            owed.change = Change(
                key=row.id,
                op="create",
                data=data,
                idempotency_key=row.id,
                record=data,
                entity_id=row.entity_id,
            )
        return owed

    async def _refetch(self, db_factory: DbFactory, stale: list[_Owed]) -> None:
        """A stale-version answer: read the records again and merge them before a retry."""
        ids = [o.link.remote_id for o in stale if o.link is not None]
        records = await self.ctx.connector.fetch(self.stream, ids) if ids else []
        if records:
            page = Page(records=records)
            async with page_transaction(self.ctx, self.stream.entity, db_factory) as db:
                await PageApplier(self.ctx, self.sctx).apply(db, page)

    async def _finish(
        self, db: AsyncConnection, owed: list[_Owed], results: dict[str, PushResult]
    ) -> None:
        now = utcnow()
        done: list[str] = []
        succeeded: list[tuple[_Owed, PushResult]] = []
        for o in owed:
            result = results.get(o.row_id)
            if o.change is None or result is None:
                done.append(o.row_id)
            elif result.ok:
                succeeded.append((o, result))
                done.append(o.row_id)
                self.ctx.count(f"pushed_{o.change.op}")
            elif result.stale:
                continue  # merged again just now; the next batch recomputes what is owed
            elif result.error == ErrorKind.NEEDS_REAUTH:
                raise NeedsReauth(result.message or "credentials refused", connection=self.ctx.name)
            else:
                await self._failed(db, o, result, now)
        if succeeded:
            await self._linked(db, succeeded, now)
        again = await self._changed_meanwhile(db, [o for o, _ in succeeded])
        await update_rows(
            db,
            outbox,
            ("status", "updated_at", "last_error"),
            ("id",),
            [(OutboxStatus.PENDING if i in again else "done", now, None, i) for i in done],
        )

    async def _changed_meanwhile(self, db: AsyncConnection, written: list[_Owed]) -> set[str]:
        """Rows whose golden record changed while its write was under way: they stay owed.

        A change made meanwhile (another connection's run) found this row pending and queued
        nothing of its own; settling the row would leave that change unsent. The records
        are read locked (PostgreSQL), so a change committing now is either seen here or
        finds the row settled and queues its own."""
        read = {o.entity_id: o for o in written if o.read is not None}
        if not read:
            return set()
        query = (
            select(entities.c.id, entities.c.fields)
            .where(entities.c.id.in_(list(read)))
            .with_for_update()
        )
        changed = {
            read[entity_id].row_id
            for entity_id, fields in await db.execute(query)
            if fields != read[entity_id].read
        }
        if changed:
            self.ctx.count("push_requeued", len(changed))
        return changed

    async def _failed(self, db: AsyncConnection, o: _Owed, result: PushResult, now: Any) -> None:
        assert o.change is not None
        attempts = await db.scalar(select(outbox.c.attempts).where(outbox.c.id == o.row_id))
        attempts = (attempts or 0) + 1
        retryable = result.error is not None and result.error.retryable
        dead = not retryable or attempts >= MAX_ATTEMPTS
        wait = (
            timedelta(seconds=result.retry_after)
            if result.retry_after is not None
            else _backoff(attempts)
        )
        # A transient failure that used up its budget is a dead letter that a later run
        # tries again (after DEAD_LETTER_PAUSE); a permanent one waits for a person.
        next_attempt = now + (DEAD_LETTER_PAUSE if dead else wait) if retryable else None
        await db.execute(
            update(outbox)
            .where(outbox.c.id == o.row_id)
            .values(
                status=OutboxStatus.DEAD if dead else OutboxStatus.PENDING,
                attempts=attempts,
                last_error=f"{result.error}: {result.message or ''}".strip(),
                next_attempt_at=next_attempt,
                updated_at=now,
            )
        )
        self.ctx.count("push_dead" if dead else "push_failed")
        self.ctx.errors.append(f"{self.ctx.name} {o.change.op} {o.entity_id}: {result.message}")

    async def _linked(
        self, db: AsyncConnection, succeeded: list[tuple[_Owed, PushResult]], now: Any
    ) -> None:
        """Record successful writes: the pushed values become the links' base."""
        removed = [
            o.link.id for o, _ in succeeded if o.change and o.change.op == "delete" and o.link
        ]
        if removed:
            await db.execute(delete(links).where(links.c.id.in_(removed)))
        await update_rows(
            db,
            links,
            ("base", "remote_version", "remote_id", "updated_at"),
            ("id",),
            [
                (
                    {**o.link.base, **o.values},
                    r.version or o.link.remote_version,
                    r.remote_id or o.link.remote_id,
                    now,
                    o.link.id,
                )
                for o, r in succeeded
                if o.change and o.change.op == "update" and o.link is not None
            ],
        )
        created = [(o, r) for o, r in succeeded if o.change and o.change.op == "create"]
        if not created:
            return
        for _, r in created:
            if not r.remote_id:
                raise ConnectorError(
                    f"{self.ctx.connector.name} created a record without returning its id",
                    connection=self.ctx.name,
                )
        taken = {
            remote_id: entity_id
            for remote_id, entity_id in await db.execute(
                select(links.c.remote_id, links.c.entity_id).where(
                    links.c.connection == self.ctx.name,
                    links.c.stream == self.stream.name,
                    links.c.remote_id.in_([r.remote_id for _, r in created]),
                )
            )
        }
        rows: list[tuple[Any, ...]] = []
        for o, r in created:
            assert r.remote_id is not None
            other = taken.get(r.remote_id)
            if other is not None:
                if other != o.entity_id:
                    self.ctx.errors.append(
                        f"{self.ctx.name}: remote record {r.remote_id} is already linked to "
                        f"entity {other}; not linking it to {o.entity_id} too"
                    )
                continue
            taken[r.remote_id] = o.entity_id
            rows.append(
                (
                    o.row_id,
                    o.entity_id,
                    self.ctx.name,
                    self.stream.name,
                    r.remote_id,
                    r.version,
                    o.values,
                    now,
                )
            )
        await insert_rows(
            db,
            links,
            LINK_COLUMNS,
            rows,
        )
