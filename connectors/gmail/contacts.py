"""Google contacts (People API ``people.connections``) as remote records, and their pull.

A contact's record is its ``resourceName`` (``people/c123``), the fields crmhub maps
(``names``, ``emailAddresses``, ``phoneNumbers``, ``organizations``, ``addresses``,
``birthdays``) without People's per-value metadata, and as version the etag of its contact
source, which an update must name.

Cursor::

    {"sync": "<syncToken>"}                  # settled: changes since the token
    {"sync": "<syncToken>", "page": "..."}   # inside an incremental listing
    {"page": "..."}                          # inside the full listing

The first pull lists every contact (1,000 a page, ``requestSyncToken``) as a full scan, so
contacts deleted while nobody looked are noticed; later pulls ask for changes since the sync
token, deleted contacts coming back with ``metadata.deleted``. An expired token
(``EXPIRED_SYNC_TOKEN``, tokens last 7 days) starts the full listing again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from connectors.gmail.client import GmailApi, GoogleError
from hub.connector import Cursor, Page, RemoteRecord

__all__ = ["CONTACT_FIELDS", "ContactPull", "contact_record", "source_etag"]

CONTACT_FIELDS = (
    "names",
    "emailAddresses",
    "phoneNumbers",
    "organizations",
    "addresses",
    "birthdays",
)
PERSON_FIELDS = ",".join((*CONTACT_FIELDS, "metadata"))
EXPIRED = "EXPIRED_SYNC_TOKEN"


def source_etag(person: dict[str, Any]) -> str | None:
    """The etag of the person's contact source (what an update must name)."""
    for source in (person.get("metadata") or {}).get("sources") or []:
        if isinstance(source, dict) and source.get("type") == "CONTACT" and source.get("etag"):
            return str(source["etag"])
    etag = person.get("etag")
    return str(etag) if etag else None


def _updated(person: dict[str, Any]) -> datetime | None:
    for source in (person.get("metadata") or {}).get("sources") or []:
        if (
            isinstance(source, dict)
            and source.get("type") == "CONTACT"
            and source.get("updateTime")
        ):
            try:
                return datetime.fromisoformat(str(source["updateTime"]).replace("Z", "+00:00"))
            except ValueError:
                return None
    return None


def contact_record(person: dict[str, Any]) -> RemoteRecord:
    data: dict[str, Any] = {}
    for name in CONTACT_FIELDS:
        values = person.get(name)
        if isinstance(values, list):
            data[name] = [
                {k: v for k, v in item.items() if k != "metadata"}
                for item in values
                if isinstance(item, dict)
            ]
        else:
            data[name] = []  # People leaves empty fields out: they are empty, not unknown
    return RemoteRecord(
        id=str(person["resourceName"]),
        data=data,
        version=source_etag(person),
        modified_at=_updated(person),
    )


def is_deleted(person: dict[str, Any]) -> bool:
    return bool((person.get("metadata") or {}).get("deleted"))


class ContactPull:
    def __init__(self, api: GmailApi, page_size: int = 1000) -> None:
        self.api = api
        self.page_size = page_size

    async def pages(self, cursor: Cursor | None) -> AsyncIterator[Page]:
        cursor = cursor if isinstance(cursor, dict) else {}
        sync = cursor.get("sync") if isinstance(cursor.get("sync"), str) else None
        page = cursor.get("page") if isinstance(cursor.get("page"), str) else None
        if sync is not None:
            try:
                async for found in self._listing(sync, page):
                    yield found
                return
            except GoogleError as exc:
                if exc.status != 410 and EXPIRED not in exc.reasons:
                    raise
                page = None  # expired: everything again
        async for found in self._listing(None, page):
            yield found

    async def _listing(self, sync: str | None, page: str | None) -> AsyncIterator[Page]:
        people = await self.api.service("people")
        connections = people.people().connections()
        while True:
            params: dict[str, Any] = {
                "resourceName": "people/me",
                "personFields": PERSON_FIELDS,
                "pageSize": self.page_size,
            }
            if sync:
                params["syncToken"] = sync
            else:
                params["requestSyncToken"] = True
            if page:
                params["pageToken"] = page
            answer = await self.api.execute(connections.list(**params), "people.connections.list")
            records, deleted = [], []
            for person in answer.get("connections") or []:
                if is_deleted(person):
                    deleted.append(str(person["resourceName"]))
                else:
                    records.append(contact_record(person))
            page = answer.get("nextPageToken")
            after: dict[str, Any] = {"sync": answer.get("nextSyncToken") or sync}
            if page:
                after = {"page": page, **({"sync": sync} if sync else {})}
            if sync is None or records or deleted or after.get("sync") != sync:
                yield Page(records=records, deleted=deleted, cursor=after, full_scan=sync is None)
            if not page:
                return

    async def fetch(self, resource_names: list[str]) -> list[RemoteRecord]:
        """The contacts named, as People holds them now (200 a call)."""
        people = await self.api.service("people")
        found: list[RemoteRecord] = []
        for i in range(0, len(resource_names), 200):
            chunk = [r for r in resource_names[i : i + 200] if r.startswith("people/")]
            if not chunk:
                continue
            answer = await self.api.execute(
                people.people().getBatchGet(resourceNames=chunk, personFields=PERSON_FIELDS),
                "people.getBatchGet",
            )
            for item in answer.get("responses") or []:
                person = item.get("person")
                if isinstance(person, dict) and not is_deleted(person):
                    found.append(contact_record(person))
        return found
