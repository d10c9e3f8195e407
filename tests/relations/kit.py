"""A hub over memory remotes with reference fields: a CRM holding companies, people and
tickets (naming each other by the CRM's ids) and a sheet of contacts naming companies."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from hub.config import load_config
from hub.engine import RunReport, sync_connection
from hub.registry import Registry
from hub.runtime import Hub
from hub.store.schema import entities
from hub.testing.memory import MemoryConnector, MemoryRemote, create_remote, remove_remote

COMPANIES = """\
entity = "company"

[[field]]
canonical = "name"
remote = "name"
transforms = ["trim"]

[[field]]
canonical = "domain"
remote = "domain"
"""

PEOPLE = """\
entity = "contact"

[[field]]
canonical = "email"
remote = "email"
transforms = ["email"]

[[field]]
canonical = "first_name"
remote = "first_name"

[[field]]
canonical = "company"
remote = "company_id"
reference = "company"
by = "id"
"""

TICKETS = """\
entity = "ticket"

[[field]]
canonical = "subject"
remote = "subject"

[[field]]
canonical = "requester"
remote = "requester_id"
reference = "contact"
by = "id"
"""

NOTES = """\
entity = "activity"

[[field]]
canonical = "body"
remote = "body"
direction = "pull"

[[field]]
canonical = "contacts"
remote = "ticket_id"
reference = "contact"
via = "ticket.requester"
by = "id"
direction = "pull"
"""
"""Notes on tickets: on the timeline of the ticket's requester, read through the ticket."""

SHEET = """\
entity = "contact"

[[field]]
canonical = "email"
remote = "email"
transforms = ["email"]

[[field]]
canonical = "first_name"
remote = "first_name"

[[field]]
canonical = "company"
remote = "company"
transforms = ["trim"]
reference = "company"
by = "name"
create_missing = true
"""

_ids = itertools.count()


class Relations:
    """``crm`` (streams companies, people, tickets, and with ``notes`` notes on tickets,
    listed first) and ``sheet`` (contacts)."""

    def __init__(
        self,
        tmp: Path,
        db_url: str,
        *,
        page_size: int = 1000,
        extra: str = "",
        sheet: str = "",
        notes: bool = False,
    ) -> None:
        self.tmp = tmp
        n = next(_ids)
        self.store = f"crm-{n}"
        names = ("notes",) * notes + ("companies", "people", "tickets")
        self.crm = {s: create_remote(f"{self.store}/{s}") for s in names}
        self.sheet = create_remote(f"sheet-{n}")
        for name, text in (
            ("companies", COMPANIES),
            ("people", PEOPLE),
            ("tickets", TICKETS),
            ("notes", NOTES),
            ("sheet", SHEET),
        ):
            (tmp / f"{name}.toml").write_text(text)
        first = ('notes = "activity", ', 'notes = "notes.toml", ') if notes else ("", "")
        (tmp / "crmhub.toml").write_text(
            f'[hub]\ndatabase = "{db_url}"\n{extra}\n'
            f'[connections.crm]\nconnector = "memory"\nstore = "{self.store}"\n'
            f"page_size = {page_size}\n"
            f'streams = {{ {first[0]}tickets = "ticket", people = "contact", '
            'companies = "company" }\n'
            f'mapping = {{ {first[1]}companies = "companies.toml", people = "people.toml", '
            'tickets = "tickets.toml" }\n\n'
            f'[connections.sheet]\nconnector = "memory"\nstore = "sheet-{n}"\n'
            f'mapping = "sheet.toml"\n{sheet}\n'
        )
        self.hub: Hub | None = None

    @property
    def remotes(self) -> list[MemoryRemote]:
        return [*self.crm.values(), self.sheet]

    async def open(self) -> Hub:
        config = load_config(self.tmp / "crmhub.toml")
        self.hub = await Hub.open(config, Registry.discover(extra={"memory": MemoryConnector}))
        return self.hub

    async def close(self) -> None:
        if self.hub is not None:
            await self.hub.close()
        for remote in self.remotes:
            remove_remote(remote.name)

    async def sync(self, name: str, **kw: Any) -> RunReport:
        assert self.hub is not None
        report = await sync_connection(self.hub, name, **kw)
        assert report.status in ("ok", "plan", "held"), (report.status, report.error)
        return report

    async def by_type(self, entity_type: str) -> list[dict[str, Any]]:
        assert self.hub is not None
        async with self.hub.store.connect() as db:
            rows = await db.execute(
                select(entities.c.id, entities.c.fields).where(
                    entities.c.type == entity_type, entities.c.deleted_at.is_(None)
                )
            )
            return [{"id": i, **f} for i, f in rows]

    async def count(self, table: Any, **where: Any) -> int:
        assert self.hub is not None
        q = select(func.count()).select_from(table)
        for k, v in where.items():
            q = q.where(table.c[k] == v)
        async with self.hub.store.connect() as db:
            return int(await db.scalar(q) or 0)

    async def rows(self, table: Any) -> list[dict[str, Any]]:
        assert self.hub is not None
        async with self.hub.store.connect() as db:
            return [dict(r._mapping) for r in await db.execute(select(table))]
