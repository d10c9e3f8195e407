"""Reading mail folders with Graph's delta function, each folder with its own delta link.

Cursor::

    {"folders": {"inbox": {"delta": "<@odata.deltaLink>"},
                 "sentitems": {"next": "<@odata.nextLink>"}}}   # inside a round

A folder's first round asks for the messages received in the last ``window_days``
(``$filter=receivedDateTime ge ...``, the one filter message delta takes) with only the
properties used (``$select``); its pages are followed through ``@odata.nextLink`` with
``Prefer: odata.maxpagesize`` sent again each time (Graph forgets it), and ids asked for as
immutable (``IdType="ImmutableId"``), so a message keeps its id when it is moved. The round
ends with a delta link, saved; later pulls follow it to what changed. Items marked
``@removed`` (deleted, or moved out of the folder) are reported as deleted. A delta link
Graph no longer knows (410, ``syncStateNotFound``) starts a new round: the messages keep
their ids, so nothing is created twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.outlook.classify import GraphError
from connectors.outlook.client import GraphApi
from connectors.outlook.messages import read_message
from hub.connector import RemoteRecord
from hub.mail import MailMessage

__all__ = ["FolderPull", "Step"]


@dataclass
class Step:
    records: list[RemoteRecord]
    deleted: list[str]
    state: dict[str, Any]


class FolderPull:
    def __init__(
        self,
        api: GraphApi,
        folder: str,
        fields: list[str],
        records: Callable[[list[MailMessage]], list[RemoteRecord]],
        *,
        window_days: int,
        page_size: int,
        body_limit: int | None,
        deletes: bool,
    ) -> None:
        self.api = api
        self.folder = folder
        self.fields = fields
        self.records = records
        self.window_days = window_days
        self.page_size = page_size
        self.body_limit = body_limit
        self.deletes = deletes

    def _prefer(self) -> list[str]:
        prefer = [f"odata.maxpagesize={self.page_size}", 'IdType="ImmutableId"']
        if self.body_limit is not None:
            prefer.append('outlook.body-content-type="text"')
        return prefer

    async def steps(self, state: dict[str, Any] | None) -> AsyncIterator[Step]:
        state = state if isinstance(state, dict) else {}
        link = state.get("next") or state.get("delta")
        if isinstance(link, str) and link:
            try:
                async for step in self._round(link, None):
                    yield step
                return
            except GraphError as exc:
                if not exc.resync:
                    raise
        async for step in self._round(self._start(), self._params()):
            yield step

    def _start(self) -> str:
        return self.api.url(f"mailFolders/{self.folder}/messages/microsoft.graph.delta()")

    def _params(self) -> dict[str, Any]:
        since = datetime.now(UTC) - timedelta(days=self.window_days)
        fields = [*self.fields, "body"] if self.body_limit is not None else self.fields
        return {
            "$select": ",".join(fields),
            "$filter": f"receivedDateTime ge {since.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        }

    async def _round(self, url: str, params: dict[str, Any] | None) -> AsyncIterator[Step]:
        sent = self.folder.lower() == "sentitems"
        what = f"delta of {self.folder}"
        async for page in self.api.rounds(url, what, prefer=self._prefer(), params=params):
            messages, deleted = [], []
            for item in page.get("value") or []:
                if "@removed" in item:
                    deleted.append(str(item["id"]))
                elif not item.get("isDraft"):
                    messages.append(read_message(item, sent, self.body_limit))
            after = (
                {"next": page["@odata.nextLink"]}
                if page.get("@odata.nextLink")
                else {"delta": page.get("@odata.deltaLink")}
            )
            yield Step(self.records(messages), deleted if self.deletes else [], after)
