"""``newest`` between CSV files: a file cannot say when a row changed, so the hub judges an
edit by when it first saw it, never by the file's modification time."""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path

from hub.config import load_config
from hub.engine import sync_connection
from hub.runtime import Hub
from hub.testing.contract import pull_pages, records_of
from tests.connectors.test_csv import make

HEADER = "email,first_name,city\n"


def city(path: Path, email: str = "ann@example.com") -> str:
    for row in csv.DictReader(io.StringIO(path.read_text(), newline="")):
        if row["email"] == email:
            return row["city"]
    raise AssertionError(f"no row for {email} in {path.name}")


def edit(path: Path, old: str, new: str, mtime: float) -> None:
    path.write_text(path.read_text().replace(old, new))
    os.utime(path, (mtime, mtime))


async def test_rows_claim_no_modification_time(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text(HEADER + "ann@example.com,Ann,Leeds\n")
    connector = make(tmp_path)
    [record] = records_of(await pull_pages(connector, connector.streams()[0], None))
    assert record.modified_at is None and record.field_modified_at is None


async def test_an_earlier_edit_in_a_file_touched_last_loses_to_a_later_edit(
    tmp_path: Path, db_url: str
) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for path in (a, b):
        path.write_text(HEADER + "ann@example.com,Ann,Leeds\nbo@example.com,Bo,Hull\n")
    (tmp_path / "crmhub.toml").write_text(
        f'[hub]\ndatabase = "{db_url}"\n\n'
        '[connections.a]\nconnector = "csv"\npath = "a.csv"\n\n'
        '[connections.b]\nconnector = "csv"\npath = "b.csv"\n'
    )
    hub = await Hub.open(load_config(tmp_path / "crmhub.toml"))
    try:
        for name in ("a", "b", "a", "b"):
            assert (await sync_connection(hub, name)).status == "ok"
        now = time.time()
        edit(a, "Leeds", "Ely", now - 30)  # the earlier edit
        edit(b, "Leeds", "York", now - 20)  # the later edit
        edit(a, "Hull", "Hove", now)  # a.csv is touched last, by an edit of another row
        # The hub sees a.csv's edit first (the daemon's watcher syncs each file as it changes).
        for name in ("a", "b", "a", "b"):
            report = await sync_connection(hub, name)
            assert report.status == "ok", report.errors
        assert (city(a), city(b)) == ("York", "York")
        assert city(b, "bo@example.com") == "Hove"
    finally:
        await hub.close()


async def test_edits_are_ordered_by_when_the_hub_saw_them_not_by_file_times(
    tmp_path: Path, db_url: str
) -> None:
    """A file copied in with an old modification time still carries the newest edit."""
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for path in (a, b):
        path.write_text(HEADER + "ann@example.com,Ann,Leeds\n")
    (tmp_path / "crmhub.toml").write_text(
        f'[hub]\ndatabase = "{db_url}"\n\n'
        '[connections.a]\nconnector = "csv"\npath = "a.csv"\n\n'
        '[connections.b]\nconnector = "csv"\npath = "b.csv"\n'
    )
    hub = await Hub.open(load_config(tmp_path / "crmhub.toml"))
    try:
        for name in ("a", "b", "a", "b"):
            assert (await sync_connection(hub, name)).status == "ok"
        now = time.time()
        edit(a, "Leeds", "Ely", now + 3600)  # a clock ahead, or a copy with a future time
        assert (await sync_connection(hub, "a")).status == "ok"
        edit(b, "Leeds", "York", now - 3600)  # restored from a backup: an old time
        for name in ("b", "a"):
            assert (await sync_connection(hub, name)).status == "ok"
        assert (city(a), city(b)) == ("York", "York")
    finally:
        await hub.close()
