"""Incremental pulls: ``If-Modified-Since`` with an overlap, 100 records a page.

The first pull lists everything (``page=1, 2, ...`` until a page holds fewer than 100).
Later pulls send ``If-Modified-Since`` ``overlap`` seconds before the newest change seen,
ordered by ``UpdatedDateUTC``, and skip, by version, the records at that boundary that
were already pulled (:class:`hub.rest.window.Window`), so a quiet organisation pulls
nothing. Archived contacts and voided or deleted invoices reach the hub as deletions (the
connection's delete policy decides what they do there).

The cursor is ``{"since", "seen"}``; while a pull is under way its pages also carry
``resume`` (the page to ask next and the window so far), so an interrupted pull resumes.
One listing of ``/Contacts`` feeds both the ``contacts`` and the ``companies`` stream: the
second stream of a run reads the pages the first one fetched when their cursors agree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.xero.client import PAGE_SIZE, XeroApi
from connectors.xero.records import (
    GONE_CONTACT,
    GONE_INVOICE,
    XERO_ID,
    company_record,
    invoice_record,
    is_organisation,
    ms_date,
    person_id,
    person_records,
)
from hub.connector import Cursor, Page, RemoteRecord
from hub.rest.window import Window, parse_iso

__all__ = ["Found", "ListingCache", "StreamPull", "companies_of", "invoices_of", "people_of"]

Found = tuple[str, RemoteRecord | None, datetime | None]
Convert = Callable[[dict[str, Any]], Iterable[Found]]


def people_of(contact: dict[str, Any]) -> Iterable[Found]:
    changed = ms_date(contact.get("UpdatedDateUTC"))
    cid = str(contact["ContactID"])
    if contact.get("ContactStatus") in GONE_CONTACT:
        if not is_organisation(contact):
            return [(cid, None, changed)]
        persons = contact.get("ContactPersons") or []
        return [(person_id(cid, p, n), None, changed) for n, p in enumerate(persons)]
    return [(r.id, r, changed) for r in person_records(contact)]


def companies_of(contact: dict[str, Any]) -> Iterable[Found]:
    if not is_organisation(contact):
        return []
    changed = ms_date(contact.get("UpdatedDateUTC"))
    if contact.get("ContactStatus") in GONE_CONTACT:
        return [(str(contact["ContactID"]), None, changed)]
    return [(str(contact["ContactID"]), company_record(contact), changed)]


def invoices_of(invoice: dict[str, Any]) -> Iterable[Found]:
    changed = ms_date(invoice.get("UpdatedDateUTC"))
    if invoice.get("Status") in GONE_INVOICE:
        return [(str(invoice["InvoiceID"]), None, changed)]
    return [(str(invoice["InvoiceID"]), invoice_record(invoice), changed)]


class ContactKinds:
    """Whether each contact seen in this run is an organisation, and its e-mail address: an
    invoice names its contact by id only, and its reference points at a company (the
    record's ``CompanyID``) or carries the person's address (``ContactEmail``)."""

    def __init__(self) -> None:
        self.known: dict[str, tuple[bool, str | None]] = {}

    def observe(self, contacts: list[dict[str, Any]]) -> None:
        for contact in contacts:
            email = str(contact.get("EmailAddress") or "") or None
            self.known[str(contact["ContactID"])] = (is_organisation(contact), email)

    async def annotate(self, api: XeroApi, records: list[RemoteRecord]) -> None:
        """Say of each invoice's contact what it is; unknown ones read by id, 50 a call."""
        ids = {str(r.data["ContactID"]) for r in records if r.data.get("ContactID")}
        unknown = sorted(i for i in ids if i not in self.known and XERO_ID.match(i))
        for start in range(0, len(unknown), 50):
            self.observe(await api.listing("Contacts", ids=unknown[start : start + 50]))
        for record in records:
            found = self.known.get(str(record.data.get("ContactID")))
            if found is None:
                continue
            organisation, email = found
            if organisation:
                record.data["CompanyID"] = record.data["ContactID"]
            elif email and not record.data.get("ContactEmail"):
                record.data["ContactEmail"] = email


class ListingCache:
    """Pages of one listing fetched in this run, by (kind, If-Modified-Since, page), with
    the listing's page count: each stream reads a page once from it, a second read of the
    same stream asks Xero again."""

    def __init__(self) -> None:
        self.pages: dict[tuple[str, str | None, int], tuple[list[dict[str, Any]], set[str]]] = {}
        self.counts: dict[tuple[str, str | None, int], int | None] = {}
        self.kinds = ContactKinds()

    async def page(
        self, api: XeroApi, kind: str, since: str | None, number: int, reader: str
    ) -> tuple[list[dict[str, Any]], int | None]:
        key = (kind, since, number)
        cached = self.pages.get(key)
        if cached is not None and reader not in cached[1]:
            cached[1].add(reader)
            return cached[0], self.counts.get(key)
        params = {"order": "UpdatedDateUTC ASC"} if since else None
        found = await api.listing(kind, page=number, since=since, extra=params)
        self.pages[key] = (found, {reader})
        self.counts[key] = api.page_count
        if kind == "Contacts":
            self.kinds.observe(found)
        return found, api.page_count

    async def by_ids(
        self, api: XeroApi, kind: str, ids: list[str], reader: str
    ) -> list[dict[str, Any]]:
        key = (f"{kind}?IDs", ",".join(ids), 0)
        cached = self.pages.get(key)
        if cached is not None and reader not in cached[1]:
            cached[1].add(reader)
            return cached[0]
        found = await api.listing(kind, ids=ids)
        self.pages[key] = (found, {reader})
        if kind == "Contacts":
            self.kinds.observe(found)
        return found

    def clear(self) -> None:
        self.pages.clear()
        self.counts.clear()


def _header(moment: datetime) -> str:
    # "modified since" at whole seconds: ask from the second before the floor
    return (moment - timedelta(seconds=1)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StreamPull:
    """One pull of one stream from ``kind`` (``Contacts`` or ``Invoices``)."""

    def __init__(
        self,
        api: XeroApi,
        kind: str,
        convert: Convert,
        overlap: timedelta,
        cache: ListingCache,
        reader: str,
    ) -> None:
        self.reader = reader
        self.api = api
        self.kind = kind
        self.convert = convert
        self.overlap = overlap
        self.cache = cache

    async def pages(self, cursor: Cursor | None) -> AsyncIterator[Page]:
        state = cursor if isinstance(cursor, dict) else {}
        since = parse_iso(state.get("since"))
        seen: dict[str, str] = state.get("seen") or {}
        resume: dict[str, Any] = state.get("resume") or {}
        window = Window(overlap=self.overlap, step=timedelta(seconds=1), cap=10_000)
        window.restore(resume.get("window"))
        number = int(resume.get("page") or 1)
        header = _header(since) if since else None
        while True:
            raw, pages = await self.cache.page(self.api, self.kind, header, number, self.reader)
            page = Page()
            found = (item for contact in raw for item in self.convert(contact))
            window.take(found, page, seen if since else None, keyed=True)
            if self.kind == "Invoices":
                await self.cache.kinds.annotate(self.api, page.records)
            # a full page is followed by another, unless Xero said this was the last one
            if len(raw) >= PAGE_SIZE and (pages is None or number < pages):
                number += 1
                page.cursor = {
                    "since": state.get("since"),
                    "seen": seen,
                    "resume": {"page": number, "window": window.to_json()},
                }
                yield page
                continue
            nxt, kept = window.settle(since, seen, lambda t: t.replace(microsecond=0))
            page.cursor = {
                "since": nxt.isoformat() if nxt else None,
                "seen": kept,
                "listed_at": datetime.now(UTC).isoformat(),
            }
            yield page
            return

    async def fetch(self, ids: list[str]) -> Page:
        """The records with these ids (deletions included), as the stream would list
        them, 50 ids a call."""
        page = Page()
        for start in range(0, len(ids), 50):
            chunk = sorted(ids[start : start + 50])
            raw = await self.cache.by_ids(self.api, self.kind, chunk, self.reader)
            for item in raw:
                for record_id, record, _ in self.convert(item):
                    if record is None:
                        page.deleted.append(record_id)
                    else:
                        page.records.append(record)
        if self.kind == "Invoices":
            await self.cache.kinds.annotate(self.api, page.records)
        return page
