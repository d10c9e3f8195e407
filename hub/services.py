"""What a connector and its webhook receiver may ask of the hub about their own connection.

A plugin never sees the hub's tables or its sync engine: it gets a
:class:`ConnectionServices`, bound to one connection, from ``ConnectorContext.services``
and as the first argument of ``WebhookReceiver.handle``. What it can change there is
its own connection's, so a plugin cannot damage another connection's state or the hub's
tables:

- run a sync of the connection now (:meth:`~ConnectionServices.sync`), or only when no run
  has read everything since a delivery arrived (:meth:`~ConnectionServices.catch_up`), or
  read a few named records at once (:meth:`~ConnectionServices.fetch`);
- ask whether such a run happened (:meth:`~ConnectionServices.ran_since`);
- read a stream's saved cursor (:meth:`~ConnectionServices.cursor`), and keep state of its
  own (:meth:`~ConnectionServices.state`, :meth:`~ConnectionServices.update_state`);
- move a link to a record's new remote id when the remote re-keyed it
  (:meth:`~ConnectionServices.move_remote_id`: Mailchimp's member id is the hash of the
  address);
- read the deliveries stored in the inbox for the connection
  (:meth:`~ConnectionServices.deliveries`: web forms, whose source is the inbox);
- keep the state of push subscriptions that expire, and renew them now
  (:meth:`~ConnectionServices.push_state`, :meth:`~ConnectionServices.save_push_state`,
  :meth:`~ConnectionServices.renew`), and report the provider's API usage
  (:meth:`~ConnectionServices.report_usage`).

Two reach wider, on purpose: :meth:`~ConnectionServices.peers` gives the services of the
other connections of the same connector (one Xero app's webhooks name any of its
organisations), and :meth:`~ConnectionServices.events` reads, without changing anything,
what happened in the whole hub (Slack's notification rules tell people about it).

The hub makes one per connector it builds. Made from a store alone (a connector built
outside a running hub, as tests do), the store-backed questions work and ``sync``,
``catch_up``, ``fetch``, ``renew`` and ``peers`` raise ``ConnectorConfigError``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.errors import ConnectorConfigError, TransientError
from hub.inbox import InboxItem
from hub.store import runs
from hub.store.schema import cursors, inbox, links
from hub.store.status import InboxStatus

if TYPE_CHECKING:
    from hub.events import Event
    from hub.runtime import Hub
    from hub.store import Store

__all__ = ["ConnectionServices", "SyncResult"]

Cursor = dict[str, Any]


def _state_key(name: str) -> str:
    """A state is kept as a cursor row of a reserved stream name (streams never start
    with ``@``); ``push`` is what ``renew`` returned."""
    if not name or name.startswith("@"):
        raise ValueError(f"a state name is a word such as 'tenant', not {name!r}")
    return f"@{name}"


@dataclass(frozen=True)
class SyncResult:
    """How a sync asked for by a plugin ended: ``status`` is a run status (``ok``,
    ``held``, ``failed``, ``throttled``, ``skipped`` for a disabled connection...)."""

    run_id: str
    status: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        """The run ended without failing (a disabled connection's skipped run counts)."""
        return self.status in ("ok", "skipped")


class ConnectionServices:
    """The hub's services for one connection: every change is scoped to ``connection``."""

    def __init__(self, connection: str, store: Store, hub: Hub | None = None) -> None:
        self.connection = connection
        self._store = store
        self._hub = hub

    def _running_hub(self, what: str) -> Hub:
        if self._hub is None:
            raise ConnectorConfigError(
                f"{what} needs a running hub, and this connector was built without one; "
                "run it through the hub (crmhub sync / crmhub up)",
                connection=self.connection,
            )
        return self._hub

    def peers(self) -> list[ConnectionServices]:
        """The services of the other enabled connections of the same connector, for a
        receiver whose provider sends every account's events to one URL (one Xero app for
        several organisations) and must hand each event to the connection it concerns."""
        hub = self._running_hub("reaching the connections of the same connector")
        connections = hub.config.connections
        connector = connections[self.connection].hub.connector
        return [
            hub.services(name)
            for name, conn in connections.items()
            if name != self.connection and conn.hub.connector == connector and conn.hub.enabled
        ]

    # ---- runs ----------------------------------------------------------------------------

    async def sync(self, *, full: bool = False) -> SyncResult:
        """Run a sync of the connection now and wait for it.

        Raises ``hub.errors.LeaseHeld`` when a run of the connection is going: a receiver
        lets it propagate, and the inbox tries the delivery again after that run."""
        from hub.engine import sync_connection

        report = await sync_connection(self._running_hub("a sync"), self.connection, full=full)
        return SyncResult(report.run_id, str(report.status), report.error)

    async def ran_since(self, when: datetime) -> bool:
        """Whether a run of the connection that started after ``when`` (a delivery's
        arrival) read everything (ended ``ok`` or ``held``)."""
        async with self._store.connect() as db:
            return await runs.ran_since(db, self.connection, when)

    async def catch_up(self, since: datetime) -> SyncResult | None:
        """Sync unless a run that started after ``since`` already read everything (then
        ``None``): what a delivery that only says "something changed" needs."""
        if await self.ran_since(since):
            return None
        return await self.sync()

    async def fetch(self, stream: str, remote_ids: Sequence[str]) -> int:
        """Read these records of ``stream`` now (``Connector.fetch``) and merge them like a
        pulled page; returns how many came back. Not a run: no cursor moves, nothing is
        pushed, and ``ran_since`` does not count it. Raises ``LeaseHeld`` while a run of the
        connection is going, ``ConnectorConfigError`` when the connector has no ``fetch``."""
        from hub.engine.fetch import fetch_records

        hub = self._running_hub("a targeted fetch")
        report = await fetch_records(hub, self.connection, stream, remote_ids)
        return report.found

    # ---- cursors and links ---------------------------------------------------------------

    async def cursor(self, stream: str) -> Cursor | None:
        """The cursor the last run saved for ``stream``, or ``None`` before the first."""
        async with self._store.connect() as db:
            value = await db.scalar(
                select(cursors.c.value).where(
                    cursors.c.connection == self.connection, cursors.c.stream == stream
                )
            )
        return dict(value) if isinstance(value, dict) else None

    async def move_remote_id(self, stream: str, old: str, new: str) -> bool:
        """The remote gave a record of ``stream`` a new id (``old`` -> ``new``): move its
        link, so the record stays the same golden record. Nothing happens when no link has
        ``old`` or one already has ``new`` (a pull linked it first); True when moved."""
        mine = (links.c.connection == self.connection) & (links.c.stream == stream)
        async with self._store.begin() as db:
            taken = await db.scalar(select(links.c.id).where(mine, links.c.remote_id == new))
            if taken is not None:
                return False
            moved = await db.execute(
                update(links).where(mine, links.c.remote_id == old).values(remote_id=new)
            )
        return bool(moved.rowcount)

    # ---- state of the connector's own -----------------------------------------------------

    async def state(self, name: str) -> dict[str, Any]:
        """The JSON object the connector keeps under ``name`` (``{}`` until saved): what
        it must remember between runs and processes beside its cursors (the account it
        reached, records a webhook named). Kept in the store, so every node sees it."""
        async with self._store.connect() as db:
            return await self._read_state(db, name)

    async def save_state(self, name: str, value: dict[str, Any]) -> None:
        """Replace the state ``name`` (an empty object forgets it)."""
        async with self._store.begin() as db:
            await self._write_state(db, name, value)

    async def update_state(
        self, name: str, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        """Read the state ``name``, ``change`` it and save the result, in one transaction
        (two processes adding to it at once both count); returns what was read."""
        lock = f"state:{self.connection}:{name}"
        async with self._store.begin_serialized(lock) as db:
            before = await self._read_state(db, name)
            after = change(dict(before))
            if after != before:
                await self._write_state(db, name, after)
        return before

    async def _write_state(self, db: AsyncConnection, name: str, value: dict[str, Any]) -> None:
        from hub.engine.writes import upsert_cursor  # the engine imports the hub: not at load

        await upsert_cursor(db, self.connection, _state_key(name), dict(value))

    async def _read_state(self, db: AsyncConnection, name: str) -> dict[str, Any]:
        value = await db.scalar(
            select(cursors.c.value).where(
                cursors.c.connection == self.connection, cursors.c.stream == _state_key(name)
            )
        )
        return dict(value) if isinstance(value, dict) else {}

    async def report_usage(self, usage: dict[str, Any]) -> None:
        """What the provider said of the connection's API usage (a JSON object with at least
        ``summary``, one line: "4,812 of 5,000 calls left today"), shown by
        ``crmhub connections`` on every node (``hub.usage``)."""
        from hub.usage import save_usage

        await save_usage(self._store, self.connection, usage)

    # ---- the hub's events ----------------------------------------------------------------

    async def events(self, since: datetime) -> list[Event]:
        """What happened in the whole hub after ``since``, oldest first (``hub.events``:
        new contacts, open conflicts, connections to reconnect, held runs, writes given up),
        read-only: for a connector that tells people (Slack's notification rules)."""
        from hub.events import read_events

        return await read_events(self._store, since)

    # ---- the inbox -----------------------------------------------------------------------

    async def deliveries(self, kind: str, *, after: int = 0, limit: int = 200) -> list[InboxItem]:
        """The connection's stored deliveries of ``kind`` with an inbox id above ``after``,
        oldest first, at most ``limit``; malformed ones are left out. Whatever their
        processing status: a connector whose source is the inbox reads them all."""
        query = (
            select(inbox)
            .where(
                inbox.c.source == self.connection,
                inbox.c.kind == kind,
                inbox.c.status != InboxStatus.MALFORMED,
                inbox.c.id > after,
            )
            .order_by(inbox.c.id)
            .limit(limit)
        )
        try:
            async with self._store.connect() as db:
                rows: Sequence[Any] = (await db.execute(query)).mappings().all()
        except SQLAlchemyError as exc:
            raise TransientError(
                f"reading the inbox failed: {exc}", connection=self.connection
            ) from exc
        return [InboxItem.from_row(row) for row in rows]

    # ---- push subscriptions --------------------------------------------------------------

    async def push_state(self) -> dict[str, Any]:
        """What ``Connector.renew`` returned last (``{}`` before the first renewal)."""
        from hub.renewals import load_state

        return await load_state(self._store, self.connection)

    async def save_push_state(self, state: dict[str, Any]) -> None:
        """Replace the push-subscription state (a subscription the provider removed)."""
        from hub.renewals import save_state

        await save_state(self._store, self.connection, state)

    async def renew(self, *, force: bool = True) -> bool:
        """Renew the connection's push subscriptions now (``force``) or when due; True
        when renewed. A lease keeps two nodes from renewing at once."""
        from hub.renewals import renew_connection

        return await renew_connection(
            self._running_hub("renewing subscriptions"), self.connection, force=force
        )
