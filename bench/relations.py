"""The relations case of bench/engine.py (``--relations``): contacts naming companies,
activities naming contacts, all by the remote's own ids, in one connection of three streams.

The same records are synced twice, each time into a new store: with the references
resolved (hub ids, ``entity_refs``), and with the same ids copied into plain custom fields.
The referencing records' initial sync is compared, then a 1% incremental, each with the
peak RSS during it. The remotes are generated (``MemoryRemote.generate``): a remote system's
records are not in the hub's process, so they are made from their index when pulled.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.config import load_config
from hub.engine import sync_connection
from hub.registry import Registry
from hub.runtime import Hub
from hub.testing.memory import MemoryConnector, MemoryRemote, create_remote, remove_remote

COMPANIES = """\
entity = "company"
[[field]]
canonical = "name"
remote = "name"
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
canonical = "city"
remote = "city"
"""
ACTIVITIES = """\
entity = "activity"
[[field]]
canonical = "kind"
remote = "kind"
[[field]]
canonical = "subject"
remote = "subject"
[[field]]
canonical = "occurred_at"
remote = "at"
"""
PEOPLE_REF = (
    '[[field]]\ncanonical = "company"\nremote = "company_id"\nreference = "company"\nby = "id"\n'
)
PEOPLE_TEXT = '[[field]]\ncanonical = "custom.company_id"\nremote = "company_id"\n'
ACTIVITY_REF = (
    '[[field]]\ncanonical = "contacts"\nremote = "contact_id"\nreference = "contact"\nby = "id"\n'
)
ACTIVITY_TEXT = '[[field]]\ncanonical = "custom.contact_id"\nremote = "contact_id"\n'


def company(i: int) -> dict[str, Any]:
    return {"name": f"Company {i}", "domain": f"c{i}.example"}


def seed(remotes: dict[str, MemoryRemote], n: int) -> None:
    """Generated remotes: each record is made from its index when pulled, and only those the
    incremental changes are kept, so the hub's process holds (almost) nothing of them."""
    companies, people = max(1, n // 10), n

    def person(i: int) -> dict[str, Any]:
        return {
            "email": f"person{i}@example.com",
            "first_name": f"First{i}",
            "city": ("Paris", "Oslo", "Lima", "Rome")[i % 4],
            "company_id": f"c{i % companies}",
        }

    def activity(i: int) -> dict[str, Any]:
        return {
            "kind": "call",
            "subject": f"Call {i}",
            "at": f"2026-01-{1 + i % 28:02d}T10:00:00Z",
            "contact_id": f"p{i % people}",
        }

    remotes["companies"].generate(companies, company, prefix="c")
    remotes["people"].generate(people, person, prefix="p")
    remotes["activities"].generate(2 * people, activity, prefix="a")


async def one_case(n: int, url: str, tmp: Path, references: bool) -> float:
    """Runs one case; returns the highest peak RSS of its two syncs."""
    from bench.engine import current_mb, peak_mb, reset_peak

    label = "references" if references else "plain ids"
    store = f"bench-rel-{'refs' if references else 'plain'}"
    remotes = {s: create_remote(f"{store}/{s}") for s in ("companies", "people", "activities")}
    seed(remotes, n)
    gc.freeze()
    (tmp / "companies.toml").write_text(COMPANIES)
    (tmp / "people.toml").write_text(PEOPLE + (PEOPLE_REF if references else PEOPLE_TEXT))
    (tmp / "activities.toml").write_text(
        ACTIVITIES + (ACTIVITY_REF if references else ACTIVITY_TEXT)
    )
    (tmp / "crmhub.toml").write_text(
        f'[hub]\ndatabase = "{url}"\n'
        f'[connections.crm]\nconnector = "memory"\nstore = "{store}"\n'
        'streams = { companies = "company", people = "contact", activities = "activity" }\n'
        'mapping = { companies = "companies.toml", people = "people.toml", '
        'activities = "activities.toml" }\n'
    )
    hub = await Hub.open(
        load_config(tmp / "crmhub.toml"), Registry.discover(extra={"memory": MemoryConnector})
    )
    try:
        before = current_mb()
        reset_peak()
        start = time.perf_counter()
        report = await sync_connection(hub, "crm")
        took = time.perf_counter() - start
        initial_peak = peak_mb()
        assert report.status == "ok", (report.status, report.error)
        counts: dict[str, Any] = report.counts
        print(
            f"{label}: initial sync of {counts.get('records', 0):,} records "
            f"({n // 10:,} companies, {n:,} contacts, {2 * n:,} activities) in {took:.2f}s "
            f"({counts.get('records', 0) / took:,.0f} records/s); "
            f"pending {counts.get('references_pending', 0)}; peak RSS {initial_peak:.0f} MB "
            f"({before:.0f} MB before it)"
        )
        changed = n // 100
        for i in range(changed):
            remotes["people"].update(f"p{i}", company_id=f"c{(i + 1) % max(1, n // 10)}")
            remotes["activities"].update(f"a{i}", contact_id=f"p{(i + 1) % n}")
        before = current_mb()
        reset_peak()
        start = time.perf_counter()
        report = await sync_connection(hub, "crm")
        took = time.perf_counter() - start
        assert report.status == "ok", (report.status, report.error)
        incremental_peak = peak_mb()
        print(
            f"{label}: incremental, 1% changed ({changed:,} contacts and {changed:,} "
            f"activities point elsewhere): {took:.2f}s, {report.counts.get('updated', 0):,} "
            f"updated; peak RSS {incremental_peak:.0f} MB ({before:.0f} MB before it)"
        )
        return max(initial_peak, incremental_peak)
    finally:
        await hub.close()
        for remote in remotes.values():
            remove_remote(remote.name)
        gc.unfreeze()
        gc.collect()


async def run_relations(
    n: int,
    given: str | None,
    tmp: Path,
    database: Callable[[str | None, Path], contextlib.AbstractContextManager[str]],
    reverse: bool = False,
) -> None:
    print(
        f"crmhub relations benchmark: {n:,} contacts, {n // 10:,} companies, {2 * n:,} activities"
    )
    order = (True, False) if reverse else (False, True)
    peaks = []
    for references in order:
        folder = tmp / ("refs" if references else "plain")
        folder.mkdir()
        with database(given, folder) as url:
            peaks.append(await one_case(n, url, folder, references))
    print(f"peak RSS of the process: {max(peaks):.0f} MB")
