"""Property: with a company reference in every system, random edits on three systems and in
the hub settle: every system's contacts point at the same golden companies, nobody and no
company is duplicated, and one more round of syncs writes nothing."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.edit import edit_entity
from hub.relations.model import normalize_name
from hub.store.schema import entities
from tests.hub.enginekit import MAPPING, Setup

NAMES = ["a", "b", "c"]
PEOPLE = [f"p{i}@x.io" for i in range(3)]
COMPANIES = ["Acme", "Globex", " acme ", None]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
REFERENCE = """
[[field]]
canonical = "company"
remote = "company"
transforms = ["trim"]
reference = "company"
by = "name"
create_missing = true
"""

edit = st.tuples(
    st.just("edit"),
    st.sampled_from([*NAMES, "hub"]),
    st.sampled_from(PEOPLE),
    st.integers(0, len(COMPANIES) - 1),
)
add = st.tuples(st.just("add"), st.sampled_from(NAMES), st.sampled_from(PEOPLE))
sync = st.tuples(st.just("sync"), st.sampled_from(NAMES))
ops = st.lists(st.one_of(edit, add, sync), min_size=1, max_size=20)


async def _scenario(steps: list[tuple[Any, ...]]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="crmhub-refprop-"))
    s = Setup(tmp, f"sqlite+aiosqlite:///{tmp / 'hub.db'}", NAMES)
    (tmp / "contact.toml").write_text(MAPPING + REFERENCE)
    await s.open()
    assert s.hub is not None
    clock = T0
    try:
        for step in steps:
            clock += timedelta(minutes=1)
            for remote in s.remotes.values():
                remote.set_time(clock)
            if step[0] == "add":
                _, name, email = step
                remote = s.remotes[name]
                if not any(d.get("email") == email for d in remote.all().values()):
                    remote.add({"email": email, "company": "Acme"})
            elif step[0] == "sync":
                await s.sync(step[1])
            else:
                _, where, email, idx = step
                company = COMPANIES[idx]
                if where == "hub":
                    rows = [r for r in await _rows(s)]
                    person = next((r for r in rows if r[2].get("email") == email), None)
                    target = next(
                        (r[0] for r in rows if r[1] == "company" and company is not None
                         and normalize_name(r[2].get("name")) == normalize_name(company)),
                        None,
                    )  # fmt: skip
                    if person is None or (company is not None and target is None):
                        continue
                    await edit_entity(s.hub, person[0], {"company": target}, at=clock)
                else:
                    remote = s.remotes[where]
                    rid = next(
                        (k for k, d in remote.all().items() if d.get("email") == email), None
                    )
                    if rid is not None:
                        remote.update(rid, company=company)
        await s.sync_until_quiet()
        before = {n: r.changes_written for n, r in s.remotes.items()}
        for n in NAMES:
            report = await s.sync(n)
            assert report.counts.get("updated", 0) == 0, report.counts
        assert {n: r.changes_written for n, r in s.remotes.items()} == before
        rows = await _rows(s)
        names = {i: normalize_name(f.get("name")) for i, t, f in rows if t == "company"}
        assert len(set(names.values())) == len(names), f"a company became two: {names}"
        people = [(f["email"], f.get("company")) for _, t, f in rows if t == "contact"]
        assert len({e for e, _ in people}) == len(people), "a person became two contacts"
        for email, company in people:
            for name, remote in s.remotes.items():
                copies = [d for d in remote.all().values() if d.get("email") == email]
                assert len(copies) == 1, f"{email} is {len(copies)} times in {name}"
                shown = normalize_name(copies[0].get("company"))
                assert shown == (names[company] if company else None), (name, email)
    finally:
        await s.close()


async def _rows(s: Setup) -> list[tuple[str, str, dict[str, Any]]]:
    assert s.hub is not None
    async with s.hub.store.connect() as db:
        found = await db.execute(
            entities.select().where(entities.c.deleted_at.is_(None)).order_by(entities.c.id)
        )
        return [(r.id, r.type, r.fields) for r in found]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_random_edits_with_references_settle_everywhere(steps: list[tuple[Any, ...]]) -> None:
    asyncio.run(_scenario(steps))
