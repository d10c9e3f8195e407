"""Helpers for engine tests: a hub over memory remotes, configured in a temporary folder."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path
from typing import Any

from hub.config import load_config
from hub.engine import RunReport, sync_connection
from hub.registry import Registry
from hub.runtime import Hub
from hub.store.schema import entities, links, outbox
from hub.testing.memory import MemoryConnector, create_remote, remove_remote

MAPPING = """\
entity = "contact"

[[field]]
canonical = "email"
remote = "email"
transforms = ["email"]

[[field]]
canonical = "first_name"
remote = "first_name"
transforms = ["trim"]

[[field]]
canonical = "last_name"
remote = "last_name"
transforms = ["trim"]

[[field]]
canonical = "phone"
remote = "phone"
transforms = [{ name = "phone", region = "US" }]

[[field]]
canonical = "city"
remote = "city"
"""

_ids = itertools.count()


class Setup:
    """N memory connections sharing one hub store; ``sync(name)`` runs the engine."""

    def __init__(
        self,
        tmp: Path,
        db_url: str,
        names: list[str],
        extra: str = "",
        per_connection: dict[str, str] | None = None,
    ) -> None:
        self.tmp = tmp
        self.db_url = db_url
        self.names = names
        suffix = next(_ids)
        self.remotes = {n: create_remote(f"{n}-{suffix}") for n in names}
        (tmp / "contact.toml").write_text(MAPPING)
        body = [f'[hub]\ndatabase = "{db_url}"\nphone_region = "US"\n{extra}']
        for n in names:
            body.append(
                f'[connections.{n}]\nconnector = "memory"\nstore = "{n}-{suffix}"\n'
                f'mapping = "contact.toml"\n' + textwrap.dedent((per_connection or {}).get(n, ""))
            )
        (tmp / "crmhub.toml").write_text("\n".join(body))
        self.hub: Hub | None = None

    async def open(self) -> Hub:
        config = load_config(self.tmp / "crmhub.toml")
        self.hub = await Hub.open(config, Registry.discover(extra={"memory": MemoryConnector}))
        return self.hub

    async def close(self) -> None:
        if self.hub is not None:
            await self.hub.close()
        for remote in self.remotes.values():
            remove_remote(remote.name)

    async def sync(self, name: str, **kw: Any) -> RunReport:
        assert self.hub is not None
        report = await sync_connection(self.hub, name, **kw)
        assert report.status in ("ok", "plan", "held"), (report.status, report.error)
        return report

    async def sync_until_quiet(self, rounds: int = 8) -> None:
        """Sync every connection in turn until a whole round writes nothing and owes nothing."""
        for _ in range(rounds):
            before = sum(r.changes_written for r in self.remotes.values())
            for n in self.names:
                await self.sync(n)
            quiet = sum(r.changes_written for r in self.remotes.values()) == before
            if quiet and await self.count(outbox, status="pending") == 0:
                return
        raise AssertionError("syncs did not settle")

    async def entities(self) -> list[dict[str, Any]]:
        assert self.hub is not None
        async with self.hub.store.connect() as db:
            rows = await db.execute(entities.select().where(entities.c.deleted_at.is_(None)))
            return [dict(r._mapping) for r in rows]

    async def count(self, table: Any, **where: Any) -> int:
        assert self.hub is not None
        from sqlalchemy import func, select

        q = select(func.count()).select_from(table)
        for k, v in where.items():
            q = q.where(table.c[k] == v)
        async with self.hub.store.connect() as db:
            return int(await db.scalar(q) or 0)


__all__ = ["Setup", "links", "outbox"]
