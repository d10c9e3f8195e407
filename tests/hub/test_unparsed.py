"""A value the hub cannot parse is kept as written and flagged, never overwritten unasked.

On SQLite and PostgreSQL, with two CSV files as in the report: `phone_region` unset (as
`crmhub init` leaves it), `020 7946 0002` in crm.csv cannot be parsed.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from hub.cli import (
    app,
    commands,  # noqa: F401  (registers the commands)
)
from hub.config import load_config
from hub.engine import sync_connection
from hub.runtime import Hub
from hub.store.schema import conflicts, entities


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


async def open_hub(tmp_path: Path, db_url: str, crm_extra: str = "") -> Hub:
    (tmp_path / "crmhub.toml").write_text(
        f'[hub]\ndatabase = "{db_url}"\n\n'
        f'[connections.crm]\nconnector = "csv"\npath = "crm.csv"\n{crm_extra}\n'
        '[connections.other]\nconnector = "csv"\npath = "other.csv"\n'
    )
    return await Hub.open(load_config(tmp_path / "crmhub.toml"))


async def test_an_unparsed_phone_of_a_manual_field_opens_a_conflict(
    tmp_path: Path, db_url: str
) -> None:
    crm, other = tmp_path / "crm.csv", tmp_path / "other.csv"
    crm.write_text("email,phone\nann@example.com,020 7946 0002\n")
    other.write_text("email,phone\nann@example.com,+44 20 7946 9999\n")
    hub = await open_hub(tmp_path, db_url, 'field_policies = { phone = "manual" }\n')
    try:
        report = await sync_connection(hub, "other")
        assert report.status == "ok"
        report = await sync_connection(hub, "crm")
        assert report.status == "ok"
        [message] = report.errors
        assert "crm.csv:2" in message and "020 7946 0002" in message
        assert "kept as written" in message
        for name in ("other", "crm", "other"):
            await sync_connection(hub, name)
        # crm.csv keeps its value; the field waits for a person
        assert rows(crm) == [{"email": "ann@example.com", "phone": "020 7946 0002"}]
        assert rows(other)[0]["phone"] == "+44 20 7946 9999"
        async with hub.store.connect() as db:
            found = (await db.execute(select(conflicts))).all()
        assert len(found) == 1
        assert found[0].field == "phone" and found[0].remote_value == "020 7946 0002"
        assert found[0].status == "open"
    finally:
        await hub.close()


async def test_an_unparsed_value_is_a_value_not_an_absence(tmp_path: Path, db_url: str) -> None:
    crm, other = tmp_path / "crm.csv", tmp_path / "other.csv"
    crm.write_text("email,phone\nann@example.com,020 7946 0002\n")
    other.write_text("email,phone\n")
    hub = await open_hub(tmp_path, db_url)
    try:
        for name in ("crm", "other", "crm", "other"):
            assert (await sync_connection(hub, name)).status == "ok"
        async with hub.store.connect() as db:
            [(fields, provenance)] = (
                await db.execute(select(entities.c.fields, entities.c.provenance))
            ).all()
        assert fields["phone"] == "020 7946 0002"
        assert provenance["phone"][0] == "crm" and provenance["phone"][2] == "unparsed"
        # a later edit in the other file is a change like any other, seen by newest
        other.write_text("email,phone\nann@example.com,+44 20 7946 9999\n")
        for name in ("other", "crm"):
            assert (await sync_connection(hub, name)).status == "ok"
        assert rows(crm)[0]["phone"] == "+442079469999"
        async with hub.store.connect() as db:
            [provenance] = (await db.execute(select(entities.c.provenance))).scalars().all()
        assert provenance["phone"][0] == "other" and provenance["phone"][2:] == []
    finally:
        await hub.close()


async def test_an_invalid_email_in_a_csv_row_is_reported_with_file_and_line(
    tmp_path: Path, db_url: str
) -> None:
    crm, other = tmp_path / "crm.csv", tmp_path / "other.csv"
    crm.write_text("email,first_name\nann@example.com,Ann\nbob(at)example.com,Bob\n")
    other.write_text("email,first_name\n")
    hub = await open_hub(tmp_path, db_url)
    try:
        report = await sync_connection(hub, "crm")
        [message] = report.errors
        assert message.startswith("crm contacts crm.csv:3: ") and "bob(at)example.com" in message
        assert report.counts["field_errors"] == 1
        await sync_connection(hub, "other")
        # the row is not silently stripped of its email: the value travels as written
        assert sorted(r["email"] for r in rows(other)) == ["ann@example.com", "bob(at)example.com"]
    finally:
        await hub.close()


def test_entities_show_marks_a_value_kept_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "crm.csv").write_text("email,phone\nann@example.com,020 7946 0002\n")
    (tmp_path / "crmhub.toml").write_text(
        '[hub]\ndatabase = "hub.db"\n\n[connections.crm]\nconnector = "csv"\npath = "crm.csv"\n'
    )
    monkeypatch.setenv("CRMHUB_CONFIG", str(tmp_path / "crmhub.toml"))
    monkeypatch.chdir(tmp_path)
    from hub.cli.app import console

    monkeypatch.setattr(console, "width", 200)  # the table's cells unwrapped
    runner = CliRunner()
    result = runner.invoke(app, ["sync", "crm"])
    assert "crm.csv:2" in result.output and "kept as written" in result.output
    [entity] = json.loads(runner.invoke(app, ["entities", "--json"]).output)
    result = runner.invoke(app, ["entities", "show", entity["id"]])
    assert result.exit_code == 0
    assert "kept as written: could not be parsed" in result.output
