"""What happened in the hub that a person may want to hear about, read back from the store.

The engine, the outbox and the token vault record these anyway; :func:`read_events` turns
the rows stamped after a moment into :class:`Event` s, oldest first, so whichever process
made them, a notifier (the Slack connector's rules) finds them:

- ``new_contact``: a contact created, with the connection that brought it (its first field's
  provenance), name, e-mail address and company;
- ``conflict``: a field held for a person to settle (``crmhub conflicts``);
- ``needs_reauth``: a connection whose credentials were refused (``crmhub connect NAME``);
- ``held_run``: a run that stopped before deleting more than the guard allows;
- ``dead_letter``: a write the hub gave up on (``crmhub outbox``).

Each event has a stable ``key``, so a reader that looks back a little (a row is stamped
before it commits) can skip what it has seen. Connectors reach this through
``ConnectionServices.events``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from hub.store.schema import conflicts, entities, outbox, runs, tokens

if TYPE_CHECKING:
    from hub.store import Store

__all__ = ["EVENT_KINDS", "Event", "read_events"]

EVENT_KINDS = ("new_contact", "conflict", "needs_reauth", "held_run", "dead_letter")


@dataclass(frozen=True)
class Event:
    """One thing that happened in the hub, as a rule sees it."""

    kind: str
    key: str
    at: datetime
    connection: str
    facts: dict[str, Any]


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _fields(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value)
    return dict(value) if isinstance(value, dict) else {}


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def read_events(store: Store, since: datetime) -> list[Event]:
    """The events recorded after ``since``, oldest first."""
    found: list[Event] = []
    rows: Any
    facts: dict[str, Any]
    async with store.connect() as db:
        rows = await db.execute(
            select(
                entities.c.id, entities.c.fields, entities.c.provenance, entities.c.created_at
            ).where(entities.c.type == "contact", entities.c.created_at > since)
        )
        for eid, fields, provenance, at in rows:
            f, p = _fields(fields), _fields(provenance)
            source = next((str(v[0]) for v in p.values() if isinstance(v, list) and v), "")
            name = " ".join(x for x in (f.get("first_name"), f.get("last_name")) if x)
            facts = {"Name": name, "E-mail": f.get("email") or "", "Company": f.get("company")}
            found.append(
                Event(
                    "new_contact",
                    f"contact:{eid}",
                    _aware(at),
                    source,
                    {k: str(v) for k, v in facts.items() if v},
                )
            )
        rows = await db.execute(
            select(
                conflicts.c.id,
                conflicts.c.entity_id,
                conflicts.c.connection,
                conflicts.c.field,
                conflicts.c.hub_value,
                conflicts.c.remote_value,
                conflicts.c.created_at,
            ).where(conflicts.c.status == "open", conflicts.c.created_at > since)
        )
        for cid, eid, conn, field, hub_value, remote_value, at in rows:
            facts = {
                "Field": field,
                "In the hub": _short(hub_value),
                f"In {conn}": _short(remote_value),
                "Record": eid,
                "Settle with": f"crmhub conflicts resolve {cid} --take hub|remote",
            }
            found.append(Event("conflict", f"conflict:{cid}", _aware(at), conn, facts))
        rows = await db.execute(
            select(tokens.c.connection, tokens.c.last_error, tokens.c.updated_at).where(
                tokens.c.status == "needs_reauth", tokens.c.updated_at > since
            )
        )
        for conn, error, at in rows:
            facts = {
                "Connection": conn,
                "Why": _short(error or "the provider refused"),
                "Fix with": f"crmhub connect {conn}",
            }
            key = f"reauth:{conn}:{_aware(at).isoformat()}"
            found.append(Event("needs_reauth", key, _aware(at), conn, facts))
        rows = await db.execute(
            select(runs.c.id, runs.c.connection, runs.c.error, runs.c.finished_at).where(
                runs.c.status == "held", runs.c.finished_at > since
            )
        )
        for rid, conn, error, at in rows:
            facts = {
                "Connection": conn,
                "Why": _short(error or "too many deletions"),
                "Approve with": f"crmhub runs approve {rid}",
            }
            found.append(Event("held_run", f"run:{rid}", _aware(at), conn, facts))
        rows = await db.execute(
            select(
                outbox.c.id,
                outbox.c.connection,
                outbox.c.stream,
                outbox.c.last_error,
                outbox.c.updated_at,
            ).where(outbox.c.status == "dead", outbox.c.updated_at > since)
        )
        for oid, conn, stream, error, at in rows:
            facts = {
                "Connection": conn,
                "Stream": stream,
                "Why": _short(error or ""),
                "See": "crmhub outbox",
            }
            found.append(Event("dead_letter", f"outbox:{oid}", _aware(at), conn, facts))
    found.sort(key=lambda e: (e.at, e.key))
    return found
