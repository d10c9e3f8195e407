"""Pulling declared streams against their generated sandboxes: every paginator kind, every
way of sending the incremental time, the boundary, deletes of every kind, resuming."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from hub.rest.sandbox import SANDBOX_KEY
from tests.rest.kit import connect, cursor_of, declaration, pull, records, served

PAGINATORS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "none": ({"kind": "none"}, {}),
    "offset": ({"kind": "offset", "limit": 4}, {}),
    "offset, total": ({"kind": "offset", "limit": 4, "total": "$.meta.total"}, {}),
    "page_number": ({"kind": "page_number", "size": 4}, {}),
    "page_number, pages": ({"kind": "page_number", "size": 4, "total_pages": "$.pages"}, {}),
    "page_number, has_more": ({"kind": "page_number", "size": 4, "has_more": "$.more"}, {}),
    "cursor": ({"kind": "cursor", "cursor": "$.meta.next", "size_param": "n", "size": 4}, {}),
    "cursor in body": (
        {"kind": "cursor", "cursor": "$.next", "send": "body", "size_param": "n", "size": 4},
        {"method": "POST", "body": {"filter": {}}},
    ),
    "header_cursor": (
        {"kind": "header_cursor", "header": "X-Next", "size_param": "n", "size": 4},
        {},
    ),
    "link": ({"kind": "link"}, {"params": {"limit": 4}}),
    "next_url": ({"kind": "next_url", "next": "$.links.next"}, {"params": {"limit": 4}}),
    "custom": ({"kind": "custom", "hook": "tests.rest.hooks:PageLetters"}, {}),
}


@pytest.mark.parametrize("kind", list(PAGINATORS))
async def test_every_paginator_lists_every_record_once(kind: str) -> None:
    paginator, extra = PAGINATORS[kind]
    spec = declaration({"paginator": paginator, "incremental": None, "deletes": None, **extra})
    with served(spec, size=23) as (cls, app, url):
        connector = connect(cls, app, url)
        pulled = records(await pull(connector))
        await connector.aclose()
        assert sorted(int(r.id) for r in pulled) == list(range(1, 24))
        calls = app.log.count(path="/contacts")
        assert calls == (1 if kind == "none" else 6)  # 23 records, 4 a page: the 6th is short


@pytest.mark.parametrize("kind", list(PAGINATORS))
async def test_every_paginator_pages_an_incremental_pull(kind: str) -> None:
    """Changes filling more than one page come back once each, every page filtered by the
    time asked (a next page's cursor or token is no feed position)."""
    paginator, extra = PAGINATORS[kind]
    spec = declaration({"paginator": paginator, "deletes": None, **extra})
    with served(spec) as (cls, app, url):
        app.provider.frozen = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
        for i in range(13):
            app.provider.add("contacts", {"email": f"p{i}@example.com"})
        connector = connect(cls, app, url)
        first = await pull(connector)
        app.provider.frozen += timedelta(minutes=5)
        for record_id in (2, 4, 6, 8, 10, 12):
            app.provider.edit("contacts", record_id, {"first_name": "Changed"})
        changed = records(await pull(connector, cursor_of(first)))
        await connector.aclose()
    assert sorted(int(r.id) for r in changed) == [2, 4, 6, 8, 10, 12]
    assert {r.data["first_name"] for r in changed} == {"Changed"}


async def test_a_transform_hook_reshapes_and_drops_records() -> None:
    spec = declaration({"transform": "tests.rest.hooks:only_with_email", "incremental": None})
    with served(spec) as (cls, app, url):
        app.provider.add("contacts", {"email": "ann@example.com", "last_name": "Lee"})
        app.provider.add("contacts", {"first_name": "No Email"})
        connector = connect(cls, app, url)
        [only] = records(await pull(connector))
        await connector.aclose()
    assert only.data["last_name"] == "LEE"


@pytest.mark.parametrize(
    ("send", "extra"),
    [
        ("query", {}),
        ("body", {"method": "POST"}),
        ("if_modified_since", {}),
    ],
)
async def test_incremental_pulls_send_the_time_as_declared(send: str, extra: dict) -> None:
    incremental = {"send": send, "param": None if send == "if_modified_since" else "since"}
    spec = declaration({"incremental": {k: v for k, v in incremental.items() if v}, **extra})
    with served(spec, size=9) as (cls, app, url):
        connector = connect(cls, app, url)
        first = await pull(connector)
        assert len(records(first)) == 9
        quiet = await pull(connector, cursor_of(first))
        assert records(quiet) == [] and all(p.deleted == [] for p in quiet)
        app.provider.edit("contacts", 4, {"first_name": "Changed"})
        app.provider.remove("contacts", 5)
        changed = await pull(connector, cursor_of(first))
        assert [(r.id, r.data["first_name"]) for r in records(changed)] == [("4", "Changed")]
        assert [d for p in changed for d in p.deleted] == ["5"]
        again = await pull(connector, cursor_of(changed))
        assert records(again) == [] and all(p.deleted == [] for p in again)
        if send == "if_modified_since":  # nothing later than the time asked: 304, no records
            ahead = {**(cursor_of(again) or {}), "since": "2999-01-01T00:00:00+00:00"}
            assert records(await pull(connector, ahead)) == []
            later = "Tue, 31 Dec 2998 23:59:59 GMT"
            async with httpx.AsyncClient(base_url=url) as client:
                answer = await client.get(
                    "/contacts",
                    headers={"If-Modified-Since": later, "Authorization": f"Bearer {SANDBOX_KEY}"},
                )
            assert answer.status_code == 304
        elif send == "query":
            assert "since=" in app.log.entries()[-1].query
        await connector.aclose()


async def test_the_boundary_settles_when_many_records_share_a_second() -> None:
    """Times with whole seconds, 30 records in the same second, a 10 s overlap: the
    inclusive filter returns them again, the cursor knows them, nothing is pulled twice;
    an edit inside the overlap is still seen."""
    spec = declaration(
        {
            "modified_at": {"field": "updated_at", "format": "%Y-%m-%d %H:%M:%S"},
            "incremental": {"param": "since", "overlap": 10},
        }
    )
    with served(spec) as (cls, app, url):
        app.provider.frozen = datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)
        for i in range(30):
            app.provider.add("contacts", {"email": f"p{i}@example.com"})
        connector = connect(cls, app, url)
        first = await pull(connector)
        assert len(records(first)) == 30
        assert records(await pull(connector, cursor_of(first))) == []
        app.provider.frozen += timedelta(seconds=3)
        app.provider.edit("contacts", 7, {"first_name": "Seven"})
        changed = await pull(connector, cursor_of(first))
        assert [r.id for r in records(changed)] == ["7"]
        assert records(await pull(connector, cursor_of(changed))) == []
        await connector.aclose()


async def test_epoch_times_and_a_status_delete() -> None:
    spec = declaration(
        {
            "modified_at": {"field": "changed", "format": "epoch"},
            "deletes": {"kind": "status", "field": "state", "values": ["archived"]},
        }
    )
    with served(spec, size=5) as (cls, app, url):
        connector = connect(cls, app, url)
        first = await pull(connector)
        assert all(r.modified_at and r.modified_at.tzinfo for r in records(first))
        app.provider.remove("contacts", 2)
        assert app.provider.tables["contacts"].rows["2"]["state"] == "archived"
        changed = await pull(connector, cursor_of(first))
        assert [d for p in changed for d in p.deleted] == ["2"] and records(changed) == []
        assert [d for p in await pull(connector, cursor_of(changed)) for d in p.deleted] == []
        await connector.aclose()


async def test_a_deleted_records_endpoint() -> None:
    deletes = {"kind": "endpoint", "path": "/contacts/deleted", "records": "$.items",
               "id": "id", "time": "deleted_at"}  # fmt: skip
    spec = declaration({"deletes": deletes})
    with served(spec, size=6) as (cls, app, url):
        connector = connect(cls, app, url)
        first = await pull(connector)
        app.provider.remove("contacts", 3)
        changed = await pull(connector, cursor_of(first))
        assert [d for p in changed for d in p.deleted] == ["3"]
        again = await pull(connector, cursor_of(changed))
        assert [d for p in again for d in p.deleted] == [] and records(again) == []
        await connector.aclose()
        assert app.log.count("GET", "/contacts/deleted") == 2


async def test_full_scans_find_deletes_by_absence_when_due() -> None:
    spec = declaration({"deletes": {"kind": "full_scan", "every_hours": 24}})
    with served(spec, size=7) as (cls, app, url):
        connector = connect(cls, app, url)
        first = await pull(connector)
        assert first and all(p.full_scan for p in first)
        app.provider.remove("contacts", 2)
        later = await pull(connector, cursor_of(first))
        assert not any(p.full_scan for p in later)  # not due yet: an incremental pull
        cursor = dict(cursor_of(later) or {})
        cursor["full_at"] = (datetime.now(UTC) - timedelta(hours=25)).isoformat()
        due = await pull(connector, cursor)
        assert due and all(p.full_scan for p in due)
        assert "2" not in {r.id for r in records(due)} and len(records(due)) == 6
        await connector.aclose()


async def test_an_interrupted_pull_resumes_from_its_last_page() -> None:
    with served(declaration(), size=12) as (cls, app, url):
        connector = connect(cls, app, url)
        stream = connector.streams()[0]
        pages = connector.pull(stream, None)
        first_page = await anext(pages)
        await pages.aclose()  # the run stops (a crash loses the rest)
        assert first_page.cursor and "resume" in first_page.cursor
        rest = await pull(connector, first_page.cursor)
        ids = [r.id for r in first_page.records] + [r.id for r in records(rest)]
        assert sorted(map(int, ids)) == list(range(1, 13))
        final = cursor_of(rest)
        assert final is not None and "resume" not in final
        assert records(await pull(connector, final)) == []
        await connector.aclose()


async def test_an_unreadable_cursor_starts_over() -> None:
    with served(declaration(), size=3) as (cls, app, url):
        connector = connect(cls, app, url)
        for cursor in ({}, {"since": "yesterday", "seen": [1]}, {"resume": {"request": 5}}):
            assert len(records(await pull(connector, cursor))) == 3
        await connector.aclose()
