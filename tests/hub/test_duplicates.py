"""Two records of one connection that are one golden record (same email twice in a file).

On SQLite and PostgreSQL: each record keeps its own link, the run warns, `crmhub entities
duplicates` lists them, and an edit of one is never written into the other.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.cli import (
    app,
    commands,  # noqa: F401  (registers the commands)
)
from hub.config import load_config
from hub.engine import sync_connection
from hub.runtime import Hub
from hub.store.schema import links, outbox
from tests.hub.enginekit import Setup


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


async def test_an_edit_of_one_duplicate_row_is_never_written_into_the_other(
    tmp_path: Path, db_url: str
) -> None:
    crm, other = tmp_path / "crm.csv", tmp_path / "other.csv"
    crm.write_text(
        "email,first_name,city\n"
        "ann@example.com,Ann,Paris\n"
        "bob@example.com,Bob,Oslo\n"
        "ANN@example.com,Annie,Lyon\n"
    )
    other.write_text("email,first_name,city\n")
    (tmp_path / "crmhub.toml").write_text(
        f'[hub]\ndatabase = "{db_url}"\n\n'
        '[connections.crm]\nconnector = "csv"\npath = "crm.csv"\n\n'
        '[connections.other]\nconnector = "csv"\npath = "other.csv"\n'
    )
    hub = await Hub.open(load_config(tmp_path / "crmhub.toml"))
    try:
        report = await sync_connection(hub, "crm")
        assert report.counts["duplicates"] == 1
        [warning] = report.errors
        assert warning.startswith("crm contacts crm.csv:4: ") and "email:ann@example.com" in warning
        async with hub.store.connect() as db:
            from sqlalchemy import func, select

            n = await db.scalar(select(func.count()).select_from(links))
        assert n == 3  # each row keeps its own link
        for name in ("other", "crm"):
            await sync_connection(hub, name)
        assert [r["email"].lower() for r in rows(other)] == ["ann@example.com", "bob@example.com"]
        # the first row is edited; the third (same person) must not receive the edit
        crm.write_text(
            "email,first_name,city\n"
            "ann@example.com,Ann,Berlin\n"
            "bob@example.com,Bob,Oslo\n"
            "ANN@example.com,Annie,Lyon\n"
        )
        errors: list[str] = []
        for name in ("crm", "other", "crm"):
            report = await sync_connection(hub, name)
            assert report.status == "ok"
            errors += report.errors
        assert rows(crm)[2] == {"email": "ANN@example.com", "first_name": "Annie", "city": "Lyon"}
        assert rows(crm)[0]["city"] == "Berlin"
        assert rows(other)[0]["city"] == "Berlin"  # the edit itself travels on
        assert any("several records in crm" in e for e in errors), errors
    finally:
        await hub.close()


async def test_writes_from_elsewhere_wait_while_the_duplicates_last(
    tmp_path: Path, db_url: str
) -> None:
    s = Setup(tmp_path, db_url, ["crm", "shop"], extra="delete_guard_share = 0.9\n")
    await s.open()
    try:
        crm, shop = s.remotes["crm"], s.remotes["shop"]
        first = crm.add({"email": "a@x.io", "city": "Paris"})
        second = crm.add({"email": "A@x.io", "city": "Paris"})
        await s.sync_until_quiet()
        assert await s.count(links, connection="crm") == 2 and len(shop) == 1
        [shop_id] = shop.ids()
        shop.update(shop_id, city="Rome")
        await s.sync("shop")
        report = await s.sync("crm")
        assert crm.get(first)["city"] == crm.get(second)["city"] == "Paris"  # type: ignore[index]
        assert report.counts.get("push_failed") == 1
        assert await s.count(outbox, connection="crm", status="pending") == 1
        # one of the two is removed: the owed write goes to the one that is left
        crm.delete(second)
        await s.sync("crm")
        assert s.hub is not None
        async with s.hub.store.begin() as db:  # the retry's backoff has passed
            await db.execute(outbox.update().values(next_attempt_at=None))
        await s.sync("crm")
        assert crm.get(first)["city"] == "Rome"  # type: ignore[index]
    finally:
        await s.close()


def test_entities_duplicates_lists_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.csv").write_text("email\nann@example.com\nbob@example.com\nAnn@Example.com\n")
    (tmp_path / "crmhub.toml").write_text(
        '[hub]\ndatabase = "hub.db"\n\n[connections.a]\nconnector = "csv"\npath = "a.csv"\n'
    )
    monkeypatch.setenv("CRMHUB_CONFIG", str(tmp_path / "crmhub.toml"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")  # messages and cells unwrapped
    runner = CliRunner()
    result = runner.invoke(app, ["entities", "duplicates"])
    assert result.exit_code == 0 and "no golden record has several" in result.output
    result = runner.invoke(app, ["sync", "a"])
    assert "a.csv:4" in result.output
    [found] = json.loads(runner.invoke(app, ["entities", "duplicates", "--json"]).output)
    assert found["connection"] == "a"
    assert found["remote_ids"] == ["email:ann@example.com", "email:ann@example.com#2"]
    result = runner.invoke(app, ["entities", "duplicates"])
    assert result.exit_code == 0 and "email:ann@example.com#2" in result.output
