"""Pushing changes to members: one ``PUT`` each, or batch subscribe for many.

Consent rules (the hub's ``consent`` maps to the member's ``status``):

- A new member is added with ``status_if_new``: ``subscribed`` when the contact consented,
  ``unsubscribed`` when they declined, ``transactional`` (Mailchimp's "non-subscribed": kept
  in the audience, never sent campaigns) when nobody knows. ``status`` itself is never sent
  for a create, so an address already in the audience keeps its status.
- An opt-out (``unsubscribed``) is always sent.
- ``subscribed`` is sent for an existing member only when Mailchimp holds them as
  ``transactional``. A member who unsubscribed, bounced (cleaned) or has a pending
  confirmation is never subscribed by a sync; the rest of the change is still written.

Every write names the member's address (``email_address``), as Mailchimp's description
requires of ``PUT /lists/{list_id}/members/{subscriber_hash}``: an update takes it from the
change's ``record`` (the member as the hub knows it) when its hash is the member's id, else
reads the member. An address change is a write of the new ``email_address`` to the old
subscriber hash (the member keeps its history); the result names the new hash.

An address merge field (``ADDRESS``) is sent complete (``addr1``, ``city``, ``state`` and
``zip``: Mailchimp refuses or drops a partial one) or not at all. A changed part is completed
from the change's ``record``, else from the member as Mailchimp holds it; an address that is
still incomplete (the default mapping has no ``state``) is left out of the write, and the
pull reads an empty address as unknown, so the hub keeps its own.

More than ``threshold`` upserts in one push go through batch subscribe (500 members a call)
where possible: creates with ``update_existing`` off (an address already there falls back to
its own ``PUT``), and updates with it on, from what each change carries, so a fresh process
batches as well as one that has just listed the audience. Per-member errors of a batch come
back as permanent failures of those changes, with Mailchimp's reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from connectors.mailchimp.classify import mask_emails
from connectors.mailchimp.client import BATCH_MAX, MailchimpApi
from connectors.mailchimp.members import OPTED_OUT, SUBSCRIBED, member_version, subscriber_hash
from hub.connector import Change, PushResult
from hub.errors import ConnectorError, ErrorKind

WRITABLE = frozenset(
    {
        "email_address",
        "email_type",
        "status",
        "merge_fields",
        "interests",
        "language",
        "vip",
        "location",
        "marketing_permissions",
        "ip_signup",
        "timestamp_signup",
        "ip_opt",
        "timestamp_opt",
        "tags",
    }
)
READ_ONLY = frozenset(
    {"id", "unique_email_id", "contact_id", "full_name", "web_id", "last_changed", "list_id"}
    | {"consent_updated_at", "unsubscribe_reason", "source", "email_client", "stats"}
)  # present in pulled records; a mapping may list them with direction = "pull"
ADDRESS_PARTS = ("addr1", "city", "state", "zip")
"""Parts Mailchimp requires of an address merge field (non-blank)."""
EXISTS_CODE = "ERROR_CONTACT_EXISTS"


def _new_status(wanted: Any) -> str:
    if wanted == SUBSCRIBED:
        return SUBSCRIBED
    if wanted is None:
        return "transactional"
    return "unsubscribed" if wanted in OPTED_OUT else str(wanted)


def _fail(
    change: Change, kind: ErrorKind, message: str, retry_after: float | None = None
) -> PushResult:
    return PushResult(key=change.key, error=kind, message=message, retry_after=retry_after)


def _ok(change: Change, member: dict[str, Any]) -> PushResult:
    return PushResult(
        key=change.key, remote_id=str(member.get("id") or ""), version=member_version(member)
    )


def _complete(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(value.get(part), str) and value[part].strip() for part in ADDRESS_PARTS
    )


def _partial_addresses(body: dict[str, Any]) -> list[str]:
    """Address merge fields of ``body`` that Mailchimp would refuse as incomplete."""
    merge = body.get("merge_fields")
    if not isinstance(merge, dict):
        return []
    return [tag for tag, v in merge.items() if isinstance(v, dict) and not _complete(v)]


def _fill_addresses(body: dict[str, Any], source: dict[str, Any] | None) -> None:
    """Complete partial addresses of ``body`` from ``source`` (a member or a record), where
    its address has the missing parts."""
    held = source.get("merge_fields") if isinstance(source, dict) else None
    if not isinstance(held, dict):
        return
    for tag in _partial_addresses(body):
        if isinstance(held.get(tag), dict):
            filled = {**held[tag], **body["merge_fields"][tag]}
            if _complete(filled):
                body["merge_fields"][tag] = filled


def _drop_partial_addresses(body: dict[str, Any]) -> None:
    for tag in _partial_addresses(body):
        del body["merge_fields"][tag]
    if body.get("merge_fields") == {}:
        del body["merge_fields"]


def _take(by_email: dict[str, Change], item: dict[str, Any]) -> Change | None:
    """The change a batch answer's item is about (by address), removed from ``by_email``."""
    email = str(item.get("email_address", "")).strip().lower()
    return by_email.pop(email) if email in by_email else None


def _recorded_address(change: Change) -> str | None:
    """The member's address as the change's record has it, if its hash is the member's id."""
    email = (change.record or {}).get("email_address")
    if isinstance(email, str) and subscriber_hash(email) == change.remote_id:
        return email
    return None


class MemberPush:
    """Applies one ``push`` call's changes; never raises for a single change's failure."""

    def __init__(self, api: MailchimpApi, threshold: int = 20) -> None:
        self.api = api
        self.threshold = threshold

    async def push(self, changes: list[Change]) -> list[PushResult]:
        results: dict[str, PushResult] = {}
        singles: list[tuple[Change, dict[str, Any]]] = []
        upserts: list[tuple[Change, dict[str, Any]]] = []
        for change in changes:
            body, problem = self._checked(change)
            if problem is not None:
                results[change.key] = _fail(change, ErrorKind.PERMANENT, problem)
            elif change.op == "delete":
                singles.append((change, body))
            else:
                upserts.append((change, body))
        batched: list[tuple[Change, dict[str, Any]]] = []
        if len(upserts) > self.threshold:
            batched = [(c, b) for c, b in upserts if self._batchable(c, b)]
        in_batch = {c.key for c, _ in batched}
        singles += [(c, b) for c, b in upserts if c.key not in in_batch]
        work: list[Awaitable[list[PushResult]]] = [self._one(c, b) for c, b in singles]
        creates = [(c, b) for c, b in batched if c.op == "create"]
        updates = [(c, b) for c, b in batched if c.op == "update"]
        for group, update_existing in ((creates, False), (updates, True)):
            for i in range(0, len(group), BATCH_MAX):
                work.append(self._batch(group[i : i + BATCH_MAX], update_existing))
        for done in await asyncio.gather(*work):
            results.update((r.key, r) for r in done)
        return [results[c.key] for c in changes]

    # -- checks ---------------------------------------------------------------------------

    def _checked(self, change: Change) -> tuple[dict[str, Any], str | None]:
        """The request body for the change (read-only fields dropped, emptied merge fields
        as Mailchimp's ``""``, addresses completed from the record or left out), or what is
        wrong with it."""
        body = {k: v for k, v in change.data.items() if k not in READ_ONLY}
        merge = body.get("merge_fields")
        if isinstance(merge, dict):
            body["merge_fields"] = {k: "" if v is None else v for k, v in merge.items()}
        unknown = sorted(set(body) - WRITABLE)
        if unknown:
            return body, (
                f"Mailchimp members have no writable field {', '.join(map(repr, unknown))}; "
                "map only member fields (email_address, status, merge_fields.TAG, tags, ...)"
            )
        if change.op != "create" and not change.remote_id:
            return body, f"an {change.op} needs the member's id (subscriber hash)"
        if change.op == "create":
            if not isinstance(body.get("email_address"), str):
                return body, "a new member needs an email_address (map the hub's email field)"
            _drop_partial_addresses(body)  # a new member has no address to complete from
        elif change.op == "update":
            _fill_addresses(body, change.record)
        return body, None

    def _batchable(self, change: Change, body: dict[str, Any]) -> bool:
        if "tags" in body or _partial_addresses(body):
            return False
        if change.op == "create":
            return True
        moving = "email_address" in body  # batch subscribe would add the new address
        return not moving and body.get("status") != SUBSCRIBED and bool(_recorded_address(change))

    # -- one member at a time -------------------------------------------------------------

    async def _one(self, change: Change, body: dict[str, Any]) -> list[PushResult]:
        try:
            if change.op == "delete":
                assert change.remote_id is not None
                await self.api.archive_member(change.remote_id)
                return [PushResult(key=change.key, remote_id=change.remote_id)]
            return [await self._upsert(change, dict(body))]
        except ConnectorError as exc:
            return [_fail(change, exc.kind, str(exc), exc.retry_after)]

    async def _upsert(self, change: Change, body: dict[str, Any]) -> PushResult:
        tags = body.pop("tags", None)
        wanted = body.pop("status", None)
        if change.op == "create":
            target = subscriber_hash(str(body["email_address"]))
        else:
            assert change.remote_id is not None
            target = change.remote_id
            known = _recorded_address(change)
            current: dict[str, Any] | None = None
            moving = "email_address" in body
            if wanted == SUBSCRIBED or _partial_addresses(body) or not (known or moving):
                current = await self.api.get_member(target)
            if current is None and not (known or moving):
                return _fail(
                    change,
                    ErrorKind.PERMANENT,
                    "the member is no longer in the audience and the change does not say "
                    "its address",
                )
            if wanted == SUBSCRIBED:
                # only a transactional member may be subscribed by a sync
                if current is not None and current.get("status") == "transactional":
                    body["status"] = SUBSCRIBED
            elif wanted is not None:
                body["status"] = wanted
            _fill_addresses(body, current)
            _drop_partial_addresses(body)
            if "email_address" not in body:
                held = current.get("email_address") if current else None
                body["email_address"] = known or held
        body["status_if_new"] = _new_status(wanted)
        member = await self.api.put_member(target, body)
        if isinstance(tags, list):
            member = await self._tags(member, [str(t) for t in tags if t])
        return _ok(change, member)

    async def _tags(self, member: dict[str, Any], tags: list[str]) -> dict[str, Any]:
        held = {t.get("name") for t in member.get("tags") or [] if isinstance(t, dict)}
        changes = [{"name": t, "status": "active"} for t in tags if t not in held]
        changes += [{"name": str(t), "status": "inactive"} for t in held if t not in tags]
        if not changes:
            return member
        await self.api.set_tags(str(member["id"]), changes)
        # the tag write moved last_changed: let the next pull read the new version
        return {**member, "last_changed": None}

    # -- batch subscribe ------------------------------------------------------------------

    async def _batch(
        self, group: list[tuple[Change, dict[str, Any]]], update_existing: bool
    ) -> list[PushResult]:
        members: list[dict[str, Any]] = []
        by_email: dict[str, Change] = {}
        bodies = {change.key: body for change, body in group}
        results: list[PushResult] = []
        later: list[tuple[Change, dict[str, Any]]] = []
        for change, body in group:
            entry = dict(body)
            if change.op == "create":
                entry["status"] = _new_status(entry.get("status"))
            else:
                entry["email_address"] = _recorded_address(change)
            email = str(entry["email_address"]).strip().lower()
            if email in by_email:
                later.append((change, body))  # Mailchimp refuses an address twice in a batch
                continue
            by_email[email] = change
            members.append(entry)
        try:
            answer = await self.api.batch_subscribe(members, update_existing=update_existing)
        except ConnectorError as exc:
            failed = [_fail(c, exc.kind, str(exc), exc.retry_after) for c in by_email.values()]
            return failed + [r for c, b in later for r in await self._one(c, b)]
        for member in [*answer.get("new_members", []), *answer.get("updated_members", [])]:
            if not isinstance(member, dict):
                continue
            found = _take(by_email, member)
            if found is not None:
                results.append(_ok(found, member))
        for error in answer.get("errors", []):
            if not isinstance(error, dict):
                continue
            refused = _take(by_email, error)
            if refused is None:
                continue
            if error.get("error_code") == EXISTS_CODE:
                later.append((refused, bodies[refused.key]))  # already there: PUT keeps status
                continue
            reason = mask_emails(str(error.get("error") or "refused"))
            code = error.get("error_code") or "error"
            results.append(
                _fail(refused, ErrorKind.PERMANENT, f"batch subscribe: {code}: {reason}")
            )
        for change in by_email.values():
            results.append(
                _fail(change, ErrorKind.TRANSIENT, "batch subscribe did not report this member")
            )
        for retried in await asyncio.gather(*(self._one(c, b) for c, b in later)):
            results.extend(retried)
        return results
