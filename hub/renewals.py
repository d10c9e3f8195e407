"""Push subscriptions kept alive: the daemon's renewal job and the state connectors keep.

A connector whose provider's push subscriptions expire (Gmail's ``watch``: 7 days; Graph's
change notifications: about 3 days) sets ``renew_every`` and implements ``renew(state)``.
The daemon's renewal job (:func:`renew_all`, every few minutes) calls it for each enabled
connection when ``renew_every`` has passed since the last success, and stores what it
returns. The state is a JSON object kept in the store beside the connection's cursors
(under the reserved stream name ``@push``), so every node of a scale-out sees it; a webhook
receiver reads it with :func:`load_state` (a Graph receiver checks that a notification
names a subscription the connection made).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from hub.errors import CrmhubError
from hub.store.lease import Lease
from hub.store.schema import cursors

if TYPE_CHECKING:
    from hub.runtime import Hub
    from hub.store import Store

__all__ = ["STATE_STREAM", "load_state", "renew_all", "renew_connection", "save_state"]

log = logging.getLogger("crmhub.renewals")

STATE_STREAM = "@push"
RENEWED_AT = "renewed_at"


async def load_state(store: Store, connection: str) -> dict[str, Any]:
    async with store.connect() as db:
        value = await db.scalar(
            select(cursors.c.value).where(
                cursors.c.connection == connection, cursors.c.stream == STATE_STREAM
            )
        )
    return dict(value) if isinstance(value, dict) else {}


async def save_state(store: Store, connection: str, state: dict[str, Any]) -> None:
    from hub.engine.writes import upsert_cursor

    async with store.begin() as db:
        await upsert_cursor(db, connection, STATE_STREAM, state)


def _due(state: dict[str, Any], every: Any, now: datetime) -> bool:
    try:
        last = datetime.fromisoformat(str(state[RENEWED_AT]))
    except (KeyError, ValueError):
        return True
    return bool(now - last >= every)


async def renew_connection(hub: Hub, name: str, *, force: bool = False) -> bool:
    """Renew one connection's subscriptions when due (or ``force``); True when renewed.

    A lease keeps two nodes (or the job and a lifecycle notification) from renewing the
    same connection at once."""
    connector = hub.connector(name)
    every = type(connector).renew_every
    if every is None:
        await connector.aclose()
        return False
    try:
        async with Lease(hub.store, f"renew:{name}"):
            state = await load_state(hub.store, name)
            now = datetime.now(UTC)
            if not force and not _due(state, every, now):
                return False
            kept = {k: v for k, v in state.items() if k != RENEWED_AT}
            renewed = await connector.renew(kept)
            await save_state(hub.store, name, {**renewed, RENEWED_AT: now.isoformat()})
            return True
    finally:
        await connector.aclose()


async def renew_all(hub: Hub) -> list[str]:
    """Renew every enabled connection that is due; returns the names renewed. A failure is
    logged and tried again at the next turn, never fatal to the others."""
    renewed = []
    for name, conn in hub.config.connections.items():
        if not conn.hub.enabled:
            continue
        plugin = hub.registry.plugins.get(conn.hub.connector)
        if plugin is None or getattr(plugin.cls, "renew_every", None) is None:
            continue
        try:
            if await renew_connection(hub, name):
                renewed.append(name)
                log.info("renewal turn of %r done", name)
        except CrmhubError as exc:
            log.warning("the renewal turn of %r failed: %s", name, exc)
    return renewed
