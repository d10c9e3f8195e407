"""Writing contacts with the People API's batch methods, 200 a call (500 for deletes).

- Creates: ``batchCreateContacts``. A create retried after a crash must not make a second
  contact, and People has no idempotency key: before creating, the mailbox's contacts are
  listed once (addresses only, 1,000 a call) and a contact that already has the address is
  answered as created.
- Updates: ``batchUpdateContacts`` with ``updateMask`` = the fields that changed, each
  contact naming the etag its link last saw; a stale one comes back ``FAILED_PRECONDITION``
  and is reported stale, so the hub re-reads and merges it before trying again. People
  replaces a field whole, and one call has one mask: changes are grouped by the fields they
  touch. Singleton fields (names, organizations, birthdays) are sent from
  the change's record; for fields with several values (addresses, phone numbers, email
  addresses) the contact is read first (``people:batchGet``) and only its first value, the
  one crmhub maps, is replaced, so the others stay.
- Deletes: ``batchDeleteContacts``; a contact already gone counts as deleted.
"""

from __future__ import annotations

import copy
from typing import Any

from connectors.gmail.client import GmailApi, GoogleError
from connectors.gmail.contacts import CONTACT_FIELDS, PERSON_FIELDS, source_etag
from hub.connector import Change, PushResult
from hub.errors import ConnectorError, ErrorKind
from hub.records import normalize_email

__all__ = ["ContactPush"]

BATCH_MAX = 200
DELETE_MAX = 500
MULTI = frozenset({"emailAddresses", "phoneNumbers", "addresses"})
"""Fields that may hold more values than the mapping knows (only the first is crmhub's)."""


def _fail(change: Change, kind: ErrorKind, message: str, **kw: Any) -> PushResult:
    return PushResult(key=change.key, error=kind, message=message, **kw)


def _ok(change: Change, person: dict[str, Any]) -> PushResult:
    return PushResult(
        key=change.key, remote_id=str(person["resourceName"]), version=source_etag(person)
    )


def _first_email(data: dict[str, Any]) -> str | None:
    values = data.get("emailAddresses")
    if isinstance(values, list) and values and isinstance(values[0], dict):
        return normalize_email(values[0].get("value"))
    return None


class ContactPush:
    def __init__(self, api: GmailApi) -> None:
        self.api = api

    async def push(self, changes: list[Change]) -> list[PushResult]:
        results: dict[str, PushResult] = {}
        creates: list[Change] = []
        updates: list[Change] = []
        deletes: list[Change] = []
        for change in changes:
            unknown = sorted(set(change.data) - set(CONTACT_FIELDS))
            if unknown:
                results[change.key] = _fail(
                    change,
                    ErrorKind.PERMANENT,
                    f"Google contacts have no field {', '.join(map(repr, unknown))}; map only "
                    f"{', '.join(CONTACT_FIELDS)}",
                )
            elif change.op == "delete" and not (change.remote_id or "").startswith("people/"):
                # No contact can have that name: there is nothing left to delete.
                results[change.key] = PushResult(key=change.key, remote_id=change.remote_id)
            elif change.op == "update" and not (change.remote_id or "").startswith("people/"):
                results[change.key] = _fail(
                    change, ErrorKind.PERMANENT, "an update needs a contact's resourceName"
                )
            else:
                {"create": creates, "update": updates, "delete": deletes}[change.op].append(change)
        # one update mask a call: contacts changing other fields go in calls of their own
        by_fields: dict[frozenset[str], list[Change]] = {}
        for change in updates:
            by_fields.setdefault(frozenset(change.data), []).append(change)
        groups = [(creates, self._creates)] + [(g, self._updates) for g in by_fields.values()]
        for group, method in groups:
            for i in range(0, len(group), BATCH_MAX):
                chunk = group[i : i + BATCH_MAX]
                results.update(await self._guarded(chunk, method))
        for i in range(0, len(deletes), DELETE_MAX):
            results.update(await self._guarded(deletes[i : i + DELETE_MAX], self._deletes))
        return [results[c.key] for c in changes]

    async def _guarded(self, chunk: list[Change], method: Any) -> dict[str, PushResult]:
        try:
            found: dict[str, PushResult] = await method(chunk)
            return found
        except ConnectorError as exc:
            return {c.key: _fail(c, exc.kind, str(exc), retry_after=exc.retry_after) for c in chunk}

    # -- creates ----------------------------------------------------------------------------

    async def _existing(self) -> dict[str, dict[str, Any]]:
        """The mailbox's contacts by address (lower case)."""
        people = await self.api.service("people")
        found: dict[str, dict[str, Any]] = {}
        page = None
        while True:
            params: dict[str, Any] = {
                "resourceName": "people/me",
                "personFields": "emailAddresses,metadata",
                "pageSize": 1000,
            }
            if page:
                params["pageToken"] = page
            answer = await self.api.execute(
                people.people().connections().list(**params), "people.connections.list"
            )
            for person in answer.get("connections") or []:
                for value in person.get("emailAddresses") or []:
                    email = normalize_email(value.get("value"))
                    if email:
                        found.setdefault(email, person)
            page = answer.get("nextPageToken")
            if not page:
                return found

    async def _creates(self, chunk: list[Change]) -> dict[str, PushResult]:
        existing = await self._existing()
        results: dict[str, PushResult] = {}
        new: list[Change] = []
        for change in chunk:
            email = _first_email(change.data)
            if email and email in existing:
                results[change.key] = _ok(change, existing[email])
            else:
                new.append(change)
        if not new:
            return results
        people = await self.api.service("people")
        body = {
            "contacts": [{"contactPerson": dict(c.data)} for c in new],
            "readMask": PERSON_FIELDS,
        }
        answer = await self.api.execute(
            people.people().batchCreateContacts(body=body), "people.batchCreateContacts"
        )
        created = answer.get("createdPeople") or []
        for change, item in zip(new, created, strict=False):
            person = item.get("person") if isinstance(item, dict) else None
            if isinstance(person, dict) and person.get("resourceName"):
                results[change.key] = _ok(change, person)
            else:
                message = ((item or {}).get("status") or {}).get("message", "not created")
                results[change.key] = _fail(change, ErrorKind.PERMANENT, str(message))
        for change in new[len(created) :]:
            results[change.key] = _fail(change, ErrorKind.TRANSIENT, "no answer for this contact")
        return results

    # -- updates ----------------------------------------------------------------------------

    async def _current(self, names: list[str]) -> dict[str, dict[str, Any]]:
        if not names:
            return {}
        people = await self.api.service("people")
        answer = await self.api.execute(
            people.people().getBatchGet(resourceNames=names, personFields=PERSON_FIELDS),
            "people.getBatchGet",
        )
        return {
            str(item["requestedResourceName"]): item["person"]
            for item in answer.get("responses") or []
            if isinstance(item.get("person"), dict)
        }

    async def _updates(self, chunk: list[Change]) -> dict[str, PushResult]:
        results: dict[str, PushResult] = {}
        needs_read = [c.remote_id for c in chunk if c.remote_id and MULTI & set(c.data)]
        current = await self._current([n for n in needs_read if n])
        bodies: dict[str, dict[str, Any]] = {}
        fields: set[str] = set()
        for change in chunk:
            assert change.remote_id is not None
            body_or_fail = self._body(change, current.get(change.remote_id))
            if isinstance(body_or_fail, PushResult):
                results[change.key] = body_or_fail
                continue
            if not set(change.data):
                results[change.key] = PushResult(
                    key=change.key, remote_id=change.remote_id, version=change.version
                )
                continue
            bodies[change.remote_id] = body_or_fail
            fields |= set(change.data)
        if not bodies:
            return results
        people = await self.api.service("people")
        body = {
            "contacts": bodies,
            "updateMask": ",".join(sorted(fields)),
            "readMask": PERSON_FIELDS,
        }
        try:
            answer = await self.api.execute(
                people.people().batchUpdateContacts(body=body), "people.batchUpdateContacts"
            )
        except GoogleError as exc:
            if exc.status == 400 and "failedPrecondition" in exc.reasons and len(bodies) == 1:
                change = next(c for c in chunk if c.remote_id in bodies)
                results[change.key] = self._stale(change)
                return results
            raise
        updated = answer.get("updateResult") or {}
        for change in chunk:
            if change.key in results:
                continue
            item = updated.get(change.remote_id) or {}
            person = item.get("person")
            code = (item.get("status") or {}).get("code")
            if isinstance(person, dict):
                results[change.key] = _ok(change, person)
            elif code == 9 or item.get("httpStatusCode") == 412:
                results[change.key] = self._stale(change)
            else:
                message = (item.get("status") or {}).get("message") or "not updated"
                results[change.key] = _fail(change, ErrorKind.PERMANENT, str(message))
        return results

    def _body(self, change: Change, current: dict[str, Any] | None) -> dict[str, Any] | PushResult:
        """The person to send: the changed fields whole, and the etag the link saw."""
        record = change.record or change.data
        person: dict[str, Any] = {}
        for name in change.data:
            value = record.get(name)
            if name in MULTI:
                if current is None:
                    return _fail(change, ErrorKind.PERMANENT, "the contact is gone")
                if source_etag(current) != change.version:
                    return self._stale(change)
                person[name] = self._first_replaced(current.get(name), value)
            else:
                person[name] = copy.deepcopy(value) if isinstance(value, list) else []
        etag = change.version
        if not etag:
            return _fail(change, ErrorKind.PERMANENT, "no etag known for this contact")
        resource_id = str(change.remote_id).removeprefix("people/")
        person["etag"] = etag
        person["metadata"] = {"sources": [{"type": "CONTACT", "id": resource_id, "etag": etag}]}
        return person

    @staticmethod
    def _first_replaced(held: Any, wanted: Any) -> list[dict[str, Any]]:
        """``held`` with its first value replaced by crmhub's (or removed when emptied)."""
        others = [
            {k: v for k, v in item.items() if k != "metadata"}
            for item in (held or [])[1:]
            if isinstance(item, dict)
        ]
        first = wanted[0] if isinstance(wanted, list) and wanted else None
        if isinstance(first, dict) and any(v not in (None, "") for v in first.values()):
            return [first, *others]
        return others

    @staticmethod
    def _stale(change: Change) -> PushResult:
        return _fail(
            change,
            ErrorKind.TRANSIENT,
            "the contact changed in Google since it was read (stale etag)",
            stale=True,
        )

    # -- deletes ----------------------------------------------------------------------------

    async def _deletes(self, chunk: list[Change]) -> dict[str, PushResult]:
        people = await self.api.service("people")
        names = [str(c.remote_id) for c in chunk]
        await self.api.execute(
            people.people().batchDeleteContacts(body={"resourceNames": names}),
            "people.batchDeleteContacts",
        )
        return {c.key: PushResult(key=c.key, remote_id=c.remote_id) for c in chunk}
