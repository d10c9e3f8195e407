"""The inbox handler of a web form: bring a stored submission into the hub now.

Forms post to ``/forms/<key>`` (``connectors.webforms.routes``), not to ``/hooks/``; this
receiver refuses the latter. Handling a stored submission runs a sync of the form's
connection unless both of its streams' cursors are already past the item (a run since then
read it), so a burst of submissions costs one run. The sync reads the submission from the
inbox; running it twice for one item changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.webhooks import Delivery, RequestInfo, WebhookReceiver, WebhookRejected

if TYPE_CHECKING:
    from hub.inbox import InboxItem
    from hub.services import ConnectionServices

STREAMS = ("submissions", "activities")


class FormReceiver(WebhookReceiver):
    """``WebFormsConnector.webhook``: refuses ``/hooks/`` posts, syncs on stored submissions."""

    async def verify(self, request: RequestInfo, body: bytes) -> Delivery:
        raise WebhookRejected(404, "web forms post to /forms/<key>, not to /hooks/")

    async def handle(self, services: ConnectionServices, item: InboxItem) -> None:
        if await self._read_since(services, item):
            return
        # LeaseHeld (a run is going, maybe from before this item) fails the item, so the
        # inbox tries again shortly; by then the cursors show whether that run read it.
        result = await services.sync()
        if not result.ok:
            raise RuntimeError(f"sync of {self.connection} ended {result.status}: {result.error}")

    async def _read_since(self, services: ConnectionServices, item: InboxItem) -> bool:
        for stream in STREAMS:
            after = (await services.cursor(stream) or {}).get("after", 0)
            if not (isinstance(after, int) and after >= item.id):
                return False
        return True
