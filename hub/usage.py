"""API usage a connector reports (calls left today, a spent limit), shown by ``crmhub
connections``.

A connector whose provider counts calls per day (Xero: 5,000 per organisation) saves what
the provider's headers said at the end of each run: a JSON object with at least
``summary``, one line of text. It is kept beside the connection's cursors (reserved stream
name ``@usage``), so every node of a scale-out shows the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from hub.store.schema import cursors

if TYPE_CHECKING:
    from hub.store import Store

__all__ = ["USAGE_STREAM", "load_usage", "save_usage"]

USAGE_STREAM = "@usage"


async def save_usage(store: Store, connection: str, usage: dict[str, Any]) -> None:
    from hub.engine.writes import upsert_cursor

    async with store.begin() as db:
        await upsert_cursor(db, connection, USAGE_STREAM, usage)


async def load_usage(store: Store) -> dict[str, dict[str, Any]]:
    """Every connection's last reported usage, by connection name."""
    async with store.connect() as db:
        rows = await db.execute(
            select(cursors.c.connection, cursors.c.value).where(cursors.c.stream == USAGE_STREAM)
        )
        return {r.connection: dict(r.value) for r in rows if isinstance(r.value, dict)}
