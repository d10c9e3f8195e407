"""The inbox handler of a web form: bring a stored submission into the hub now.

Forms post to ``/forms/<key>`` (``connectors.webforms.routes``), not to ``/hooks/``; this
receiver refuses the latter. Handling a stored submission runs a sync of the form's
connection unless both of its streams' cursors are already past the item (a run since then
read it), so a burst of submissions costs one run. The sync reads the submission from the
inbox; running it twice for one item changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from hub.store.schema import cursors
from hub.webhooks import Delivery, RequestInfo, WebhookReceiver, WebhookRejected

if TYPE_CHECKING:
    from hub.inbox import InboxItem
    from hub.runtime import Hub

STREAMS = ("submissions", "activities")


class FormReceiver(WebhookReceiver):
    """``WebFormsConnector.webhook``: refuses ``/hooks/`` posts, syncs on stored submissions."""

    async def verify(self, request: RequestInfo, body: bytes) -> Delivery:
        raise WebhookRejected(404, "web forms post to /forms/<key>, not to /hooks/")

    async def handle(self, hub: Hub, item: InboxItem) -> None:
        from hub.engine import sync_connection

        if await self._read_since(hub, item):
            return
        # LeaseHeld (a run is going, maybe from before this item) fails the item, so the
        # inbox tries again shortly; by then the cursors show whether that run read it.
        report = await sync_connection(hub, self.connection)
        if report.status not in ("ok", "skipped"):
            raise RuntimeError(f"sync of {self.connection} ended {report.status}: {report.error}")

    async def _read_since(self, hub: Hub, item: InboxItem) -> bool:
        async with hub.store.connect() as db:
            rows = await db.execute(
                select(cursors.c.stream, cursors.c.value).where(
                    cursors.c.connection == self.connection, cursors.c.stream.in_(STREAMS)
                )
            )
            after = {stream: (value or {}).get("after", 0) for stream, value in rows}
        return all(isinstance(after.get(s), int) and after[s] >= item.id for s in STREAMS)
