"""Writing contacts and companies to Xero: ``POST /Contacts``, 50 at a time.

Creates, updates and archivals (Xero's delete) of the ``contacts`` and ``companies``
streams go out together in ``POST /Contacts?summarizeErrors=false`` calls of up to 50
contacts: Xero answers 200 with every contact, each carrying its own validation errors, so
one bad contact fails alone (a dead letter with Xero's reason) and the rest are written.
Each call carries an ``Idempotency-Key`` (:func:`batch_key`): the same for the same writes
retried; an update retried with values edited since its lost answer gets another one.

A contact person of an organisation (id ``<ContactID>#...``) is changed by writing the
organisation with its contact persons changed: the organisations concerned are read first,
in one call. A create that Xero refuses because the name is already taken (a retried
create whose first answer was lost, when the batch changed in between) is matched to the
existing contact when that contact has the same e-mail address, so no duplicate is made.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from connectors.xero.classify import validation_messages
from connectors.xero.client import XeroApi
from connectors.xero.records import XERO_ID, ms_date, person_id, to_xero
from hub.connector import Change, PushResult
from hub.errors import ErrorKind

__all__ = ["ContactPush", "batch_key"]

_TAKEN = "already assigned to another contact"
_GONE = "could not be found"


def batch_key(items: Sequence[tuple[dict[str, Any], Sequence[Change]]]) -> str:
    """The ``Idempotency-Key`` of one call of ``(body, changes it writes)``: the same for
    the same writes retried, so Xero answers them once, and another for other writes.

    The hub keeps one owed row per record and computes its values when it pushes, so a
    change's key stays the same when the record is edited again after an answer was lost.
    An update or archival is therefore known by its key and what it writes (a retry with
    newer values is written, not answered with the stale first answer); a create by its
    key alone, so a create retried with newer values is still answered once.
    """
    changes = [c for _, owners in items for c in owners]
    writes = [
        json.dumps(body, sort_keys=True, default=str)
        for body, owners in items
        if any(c.op != "create" for c in owners)
    ]
    if len(changes) == 1 and not writes:
        return changes[0].idempotency_key
    joined = "\n".join([c.idempotency_key for c in changes] + writes)
    return "crmhub-" + hashlib.sha256(joined.encode()).hexdigest()[:40]


def _failed(change: Change, message: str) -> PushResult:
    return PushResult(change.key, error=ErrorKind.PERMANENT, message=message)


def _version(item: dict[str, Any]) -> str | None:
    moment = ms_date(item.get("UpdatedDateUTC"))
    return str(int(moment.timestamp() * 1000)) if moment else None


def _person_body(data: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    person = dict(old or {})
    for key in ("FirstName", "LastName", "EmailAddress", "IncludeInEmails"):
        if key in data:
            person[key] = data[key] if data[key] is not None else ""
    return person


class ContactPush:
    """One push of contact changes (people and organisations)."""

    def __init__(self, api: XeroApi, batch_size: int = 50) -> None:
        self.api = api
        self.batch_size = batch_size

    async def push(self, changes: list[Change]) -> list[PushResult]:
        results: dict[str, PushResult] = {}
        items: list[tuple[dict[str, Any], list[Change]]] = []
        persons = [c for c in changes if c.remote_id and "#" in c.remote_id]
        person_keys = {c.key for c in persons}
        known = await self._names(changes, person_keys)
        for change in changes:
            if change.key in person_keys:
                continue
            body = self._body(change, results, known.get(str(change.remote_id)))
            if body is not None:
                items.append((body, [change]))
        items += await self._organisations(persons, results)
        for start in range(0, len(items), self.batch_size):
            await self._send(items[start : start + self.batch_size], results)
        return [results[c.key] for c in changes if c.key in results]

    async def _names(self, changes: list[Change], skip: set[str]) -> dict[str, dict[str, Any]]:
        """Contacts whose new Name needs a first or last name the change does not carry
        (an update without ``record``), read in one call per 50."""
        wanted = [
            str(c.remote_id)
            for c in changes
            if c.op == "update"
            and c.key not in skip
            and XERO_ID.match(str(c.remote_id or ""))
            and ("FirstName" in c.data) != ("LastName" in c.data)
            and not all(k in {**(c.record or {}), **c.data} for k in ("FirstName", "LastName"))
        ]
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), 50):
            for contact in await self.api.listing("Contacts", ids=wanted[start : start + 50]):
                found[str(contact["ContactID"])] = contact
        return found

    def _body(
        self, change: Change, results: dict[str, PushResult], current: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        if change.op != "create" and not XERO_ID.match(str(change.remote_id or "")):
            if change.op == "delete":  # no Xero contact has such an id: nothing to delete
                results[change.key] = PushResult(change.key, remote_id=change.remote_id)
            else:
                results[change.key] = _failed(change, f"{change.remote_id!r} is no ContactID")
            return None
        if change.op == "delete":
            return {"ContactID": change.remote_id, "ContactStatus": "ARCHIVED"}
        if change.op == "create" and change.data.get("CompanyID"):
            results[change.key] = _failed(
                change, "a contact person is added in Xero to its organisation, not created"
            )
            return None
        body = to_xero(change.data, change.record)
        now = {k: current.get(k) for k in ("FirstName", "LastName")} if current else {}
        full = {**now, **(change.record or {}), **change.data}
        if ("FirstName" in change.data or "LastName" in change.data) and "Name" not in change.data:
            # a person's Name is their first and last name: it follows them
            name = " ".join(str(full[k]) for k in ("FirstName", "LastName") if full.get(k))
            if name:
                body["Name"] = name
        if change.op == "update":
            body["ContactID"] = change.remote_id
            return body
        if not body.get("Name"):
            first, last = change.data.get("FirstName"), change.data.get("LastName")
            body["Name"] = " ".join(str(p) for p in (first, last) if p) or (
                change.data.get("EmailAddress") or ""
            )
        if not body["Name"]:
            results[change.key] = _failed(change, "a Xero contact needs a name")
            return None
        return body

    async def _organisations(
        self, changes: list[Change], results: dict[str, PushResult]
    ) -> list[tuple[dict[str, Any], list[Change]]]:
        """Changes of contact persons as writes of their organisations."""
        if not changes:
            return []
        org_ids = sorted({str(c.remote_id).split("#")[0] for c in changes})
        orgs = {}
        for start in range(0, len(org_ids), 50):
            chunk = org_ids[start : start + 50]
            orgs.update(
                {str(o["ContactID"]): o for o in await self.api.listing("Contacts", ids=chunk)}
            )
        items = []
        for org_id in org_ids:
            mine = [c for c in changes if str(c.remote_id).split("#")[0] == org_id]
            org = orgs.get(org_id)
            if org is None:
                for change in mine:
                    results[change.key] = _failed(change, "the organisation is not in Xero")
                continue
            people = list(org.get("ContactPersons") or [])
            ids = [person_id(org_id, p, n) for n, p in enumerate(people)]
            for change in mine:
                if change.remote_id not in ids:
                    if change.op == "delete":
                        results[change.key] = PushResult(change.key, remote_id=change.remote_id)
                    else:
                        results[change.key] = _failed(change, "the contact person is gone")
                    continue
                at = ids.index(str(change.remote_id))
                if change.op == "delete":
                    people[at] = {}
                else:
                    people[at] = _person_body(change.data, people[at])
            kept = [p for p in people if p]
            taken = [c for c in mine if c.key not in results]
            if taken:
                items.append(({"ContactID": org_id, "ContactPersons": kept}, taken))
        return items

    async def _send(
        self, batch: list[tuple[dict[str, Any], list[Change]]], results: dict[str, PushResult]
    ) -> None:
        answered = await self.api.post("Contacts", [b for b, _ in batch], batch_key(batch))
        for (body, owners), item in zip(batch, answered, strict=True):
            errors = validation_messages(item)
            if item.get("HasValidationErrors") or item.get("StatusAttributeString") == "ERROR":
                for change in owners:
                    if change.op == "delete" and any(_GONE in e for e in errors):
                        results[change.key] = PushResult(change.key, remote_id=change.remote_id)
                    elif change.op == "create" and any(_TAKEN in e for e in errors):
                        results[change.key] = await self._adopt(change, body, errors)
                    else:
                        text = "; ".join(errors) or "Xero refused the contact"
                        results[change.key] = _failed(change, f"Xero: {text}")
                continue
            for change in owners:
                remote_id = (
                    change.remote_id if "#" in str(change.remote_id) else item.get("ContactID")
                )
                results[change.key] = PushResult(
                    change.key, remote_id=str(remote_id), version=_version(item)
                )

    async def _adopt(self, change: Change, body: dict[str, Any], errors: list[str]) -> PushResult:
        """A create refused for its name: the existing contact when it is the same one."""
        name = str(body.get("Name") or "").replace('"', "")
        found = await self.api.listing("Contacts", extra={"where": f'Name=="{name}"'})
        email = str(body.get("EmailAddress") or "").lower()
        for contact in found:
            if str(contact.get("EmailAddress") or "").lower() == email:
                return PushResult(
                    change.key, remote_id=str(contact["ContactID"]), version=_version(contact)
                )
        return _failed(change, "Xero: " + "; ".join(errors))
