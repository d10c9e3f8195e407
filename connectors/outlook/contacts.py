"""Outlook contacts as remote records: read by Graph's contacts delta, written in ``$batch``.

A record is the contact's id, the properties crmhub maps (names, addresses, phones,
company, job, business address) and, as version, its ``changeKey``: an update is sent with
``If-Match`` on it, so a contact changed in Outlook since the hub last read it is refused
(412) and reported stale; the hub re-reads it (``fetch``, in ``$batch``) and merges.

Cursor: ``{"delta": "<deltaLink>"}``, or ``{"next": "<nextLink>"}`` inside a round. The
first round lists every contact (a full scan); a delta link Graph no longer knows (410)
starts a new one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from connectors.outlook.classify import GraphError
from connectors.outlook.client import GraphApi
from hub.connector import Cursor, Page, RemoteRecord

__all__ = ["CONTACT_FIELDS", "ContactPull", "contact_record"]

CONTACT_FIELDS = (
    "givenName",
    "surname",
    "emailAddresses",
    "mobilePhone",
    "businessPhones",
    "companyName",
    "jobTitle",
    "businessAddress",
)


def contact_record(contact: dict[str, Any]) -> RemoteRecord:
    data = {k: contact.get(k) for k in CONTACT_FIELDS if k in contact}
    modified = None
    if contact.get("lastModifiedDateTime"):
        try:
            modified = datetime.fromisoformat(
                str(contact["lastModifiedDateTime"]).replace("Z", "+00:00")
            )
        except ValueError:
            modified = None
    return RemoteRecord(
        id=str(contact["id"]),
        data=data,
        version=contact.get("changeKey"),
        modified_at=modified,
    )


class ContactPull:
    def __init__(self, api: GraphApi, page_size: int = 999) -> None:
        self.api = api
        self.page_size = page_size

    async def pages(self, cursor: Cursor | None) -> AsyncIterator[Page]:
        cursor = cursor if isinstance(cursor, dict) else {}
        link = cursor.get("next") or cursor.get("delta")
        full = not isinstance(cursor.get("delta"), str) and not cursor.get("incremental")
        if isinstance(link, str) and link:
            try:
                async for page in self._round(link, None, full and "next" in cursor):
                    yield page
                return
            except GraphError as exc:
                if not exc.resync:
                    raise
        params = {"$select": ",".join((*CONTACT_FIELDS, "changeKey", "lastModifiedDateTime"))}
        start = self.api.url("contacts/microsoft.graph.delta()")
        async for page in self._round(start, params, True):
            yield page

    async def _round(
        self, url: str, params: dict[str, Any] | None, full: bool
    ) -> AsyncIterator[Page]:
        prefer = [f"odata.maxpagesize={self.page_size}", 'IdType="ImmutableId"']
        async for page in self.api.rounds(url, "contacts delta", prefer=prefer, params=params):
            records, deleted = [], []
            for item in page.get("value") or []:
                if "@removed" in item:
                    deleted.append(str(item["id"]))
                else:
                    records.append(contact_record(item))
            after: dict[str, Any] = (
                {"next": page["@odata.nextLink"]}
                if page.get("@odata.nextLink")
                else {"delta": page.get("@odata.deltaLink")}
            )
            if not full:
                after["incremental"] = True
            if full or records or deleted or after.get("delta") != url:
                yield Page(records=records, deleted=deleted, cursor=after, full_scan=full)

    async def fetch(self, ids: list[str]) -> list[RemoteRecord]:
        requests = [
            {"id": str(i), "method": "GET", "url": self.api.path(f"contacts/{contact_id}")}
            for i, contact_id in enumerate(ids)
        ]
        answers = await self.api.batch(requests, "contacts get")
        return [
            contact_record(body)
            for status, body in answers.values()
            if status == 200 and isinstance(body, dict)
        ]
