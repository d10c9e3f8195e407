"""Writing Outlook contacts in JSON ``$batch`` calls of 20.

- Creates: ``POST /contacts``. A create retried after a crash must not make a second
  contact, and Graph has no idempotency key: before creating, the mailbox's contacts are
  listed once (addresses only, 999 a call) and one that already has the address is
  answered as created.
- Updates: ``PATCH`` with the changed properties and ``If-Match`` on the change key the
  link saw (412: stale, the hub re-reads and merges). ``emailAddresses`` is a list Graph
  replaces whole: the contact is read first (in ``$batch``) and only its first address,
  the one crmhub maps, is replaced.
- Deletes: ``DELETE``; a contact already gone counts as deleted.
"""

from __future__ import annotations

from typing import Any

from connectors.outlook.client import GraphApi
from connectors.outlook.contacts import CONTACT_FIELDS
from hub.connector import Change, PushResult
from hub.errors import ConnectorError, ErrorKind
from hub.records import normalize_email

__all__ = ["ContactPush"]

MULTI = frozenset({"emailAddresses"})


def _fail(change: Change, kind: ErrorKind, message: str, **kw: Any) -> PushResult:
    return PushResult(key=change.key, error=kind, message=message, **kw)


def _stale(change: Change) -> PushResult:
    return _fail(
        change,
        ErrorKind.TRANSIENT,
        "the contact changed in Outlook since it was read (stale change key)",
        stale=True,
    )


def _first_email(data: dict[str, Any]) -> str | None:
    values = data.get("emailAddresses")
    if isinstance(values, list) and values and isinstance(values[0], dict):
        return normalize_email(values[0].get("address"))
    return None


class ContactPush:
    def __init__(self, api: GraphApi) -> None:
        self.api = api

    async def push(self, changes: list[Change]) -> list[PushResult]:
        results: dict[str, PushResult] = {}
        good: list[Change] = []
        for change in changes:
            unknown = sorted(set(change.data) - set(CONTACT_FIELDS))
            if unknown:
                results[change.key] = _fail(
                    change, ErrorKind.PERMANENT,
                    f"Outlook contacts have no field {', '.join(map(repr, unknown))}",
                )  # fmt: skip
            elif change.op != "create" and not change.remote_id:
                results[change.key] = _fail(
                    change, ErrorKind.PERMANENT, f"an {change.op} needs an id"
                )
            else:
                good.append(change)
        try:
            results.update(await self._send(good))
        except ConnectorError as exc:
            for change in good:
                results[change.key] = _fail(change, exc.kind, str(exc), retry_after=exc.retry_after)
        return [results[c.key] for c in changes]

    async def _send(self, changes: list[Change]) -> dict[str, PushResult]:
        results: dict[str, PushResult] = {}
        creates = [c for c in changes if c.op == "create"]
        existing = await self._existing() if creates else {}
        current = await self._current(
            [c for c in changes if c.op == "update" and MULTI & set(c.data)]
        )
        requests: dict[str, dict[str, Any]] = {}
        by_id: dict[str, Change] = {}
        for n, change in enumerate(changes):
            rid = str(n)
            if change.op == "create":
                email = _first_email(change.data)
                if email and email in existing:
                    found = existing[email]
                    results[change.key] = PushResult(
                        key=change.key, remote_id=found["id"], version=found.get("changeKey")
                    )
                    continue
                request = {
                    "method": "POST",
                    "url": self.api.path("contacts"),
                    "body": dict(change.data),
                }
            elif change.op == "update":
                body = self._update_body(change, current.get(str(change.remote_id)))
                if isinstance(body, PushResult):
                    results[change.key] = body
                    continue
                headers = {"Content-Type": "application/json"}
                if change.version:
                    headers["If-Match"] = f'W/"{change.version}"'
                request = {
                    "method": "PATCH",
                    "url": self.api.path(f"contacts/{change.remote_id}"),
                    "headers": headers,
                    "body": body,
                }
            else:
                request = {"method": "DELETE", "url": self.api.path(f"contacts/{change.remote_id}")}
            if "body" in request:
                request.setdefault("headers", {"Content-Type": "application/json"})
            requests[rid] = {"id": rid, **request}
            by_id[rid] = change
        answers = await self.api.batch(list(requests.values()), "contacts writes")
        for rid, change in by_id.items():
            status, body = answers[rid]
            results[change.key] = self._result(change, status, body)
        return results

    def _result(self, change: Change, status: int, body: Any) -> PushResult:
        if status in (200, 201) and isinstance(body, dict):
            return PushResult(
                key=change.key, remote_id=str(body.get("id")), version=body.get("changeKey")
            )
        if change.op == "delete" and status in (204, 404):
            return PushResult(key=change.key, remote_id=change.remote_id)
        if status == 412:
            return _stale(change)
        error = (body or {}).get("error") if isinstance(body, dict) else None
        message = f"Graph answered {status}"
        if isinstance(error, dict):
            message += f": {error.get('code')}: {error.get('message')}"
        kind = ErrorKind.TRANSIENT if status >= 500 or status == 429 else ErrorKind.PERMANENT
        return _fail(change, kind, message)

    def _update_body(
        self, change: Change, held: dict[str, Any] | None
    ) -> dict[str, Any] | PushResult:
        body = dict(change.data)
        if MULTI & set(body):
            if held is None:
                return _fail(change, ErrorKind.PERMANENT, "the contact is gone")
            if change.version and held.get("changeKey") != change.version:
                return _stale(change)
            for name in MULTI & set(body):
                others = list(held.get(name) or [])[1:]
                wanted = body[name][0] if isinstance(body[name], list) and body[name] else None
                body[name] = ([wanted] if wanted and any(wanted.values()) else []) + others
        return body

    async def _current(self, changes: list[Change]) -> dict[str, dict[str, Any]]:
        if not changes:
            return {}
        requests = [
            {
                "id": str(c.remote_id),
                "method": "GET",
                "url": self.api.path(f"contacts/{c.remote_id}"),
            }
            for c in changes
        ]
        answers = await self.api.batch(requests, "contacts get")
        return {
            rid: body
            for rid, (status, body) in answers.items()
            if status == 200 and isinstance(body, dict)
        }

    async def _existing(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        params = {"$select": "emailAddresses,changeKey", "$top": 999}
        async for page in self.api.rounds(
            self.api.url("contacts"), "contacts list", prefer=[], params=params
        ):
            for contact in page.get("value") or []:
                for entry in contact.get("emailAddresses") or []:
                    email = normalize_email(entry.get("address"))
                    if email:
                        found.setdefault(email, contact)
        return found
