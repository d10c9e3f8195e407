"""Listings on both databases: one set of options, sentences for empty lists, short ids
that name one row and are taken back by every command, an entity's history."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from hub.cli import (
    app,
    commands,  # noqa: F401  (registers the commands)
)
from hub.cli.ids import find_id, short_ids
from hub.errors import CrmhubError
from hub.store import Store, utcnow
from hub.store.bulk import new_ids
from hub.store.schema import outbox, runs

runner = CliRunner()
PEOPLE = [f"p{i}@example.com" for i in range(12)]
LISTINGS = ["runs", "inbox", "outbox", "conflicts", "entities"]


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def folder(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    rows = "".join(f"{email},P{i}\n" for i, email in enumerate(PEOPLE))
    (tmp_path / "a.csv").write_text("email,first_name\n" + rows)
    (tmp_path / "b.csv").write_text("email,first_name\n")
    (tmp_path / "crmhub.toml").write_text(
        f'[hub]\ndatabase = "{db_url}"\n\n'
        '[connections.a]\nconnector = "csv"\npath = "a.csv"\n\n'
        '[connections.b]\nconnector = "csv"\npath = "b.csv"\n'
    )
    monkeypatch.setenv("CRMHUB_CONFIG", str(tmp_path / "crmhub.toml"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def first_column(out: str) -> list[str]:
    """The first cell of each body row of a rich table."""
    return re.findall(r"^│ (\S+)", out, flags=re.MULTILINE)


def test_empty_listings_say_so_in_a_sentence(folder: Path) -> None:
    expected = {
        "runs": "no runs yet",
        "inbox": "no inbox items",
        "outbox": "no dead letters",
        "conflicts": "no open conflicts",
        "entities": "no golden records yet",
    }
    for command, sentence in expected.items():
        code, out = invoke(command)
        assert code == 0, out
        assert sentence in out and "│" not in out and "┃" not in out, (command, out)
    code, out = invoke("entities", "search", "nobody")
    assert code == 0 and "no golden records match 'nobody'" in out
    code, out = invoke("runs", "--connection", "a", "--status", "held")
    assert code == 0 and "no held runs of 'a'" in out


@pytest.mark.parametrize("command", LISTINGS)
def test_every_listing_takes_the_same_options(folder: Path, command: str) -> None:
    assert invoke("sync")[0] == 0
    code, out = invoke(command, "-n", "1", "--json")
    assert code == 0, out
    assert len(json.loads(out)) <= 1
    code, out = invoke(command, "--limit", "1", "--json")
    assert code == 0, out
    if command != "entities":
        code, out = invoke(command, "--connection", "b", "-n", "3", "--json")
        assert code == 0, out
        rows = json.loads(out)
        assert all((r.get("connection") or r.get("source")) == "b" for r in rows), rows
    if command == "runs":
        assert len(rows) == 1


def test_short_ids_name_one_row_and_are_taken_back(folder: Path) -> None:
    code, out = invoke("sync")
    assert code == 0, out
    code, out = invoke("entities")
    shown = first_column(out)
    assert len(shown) == len(PEOPLE) and len(set(shown)) == len(PEOPLE), out
    for short in shown:
        code, out = invoke("entities", "show", short, "--json")
        assert code == 0, out
        assert json.loads(out)["id"].startswith(short)
    code, out = invoke("runs")
    run_ids = first_column(out)
    assert len(set(run_ids)) == len(run_ids) >= 2, out

    # A dead letter listed by the outbox is retried by the id the listing shows.
    async def kill_one() -> None:
        store = await Store.open(_url(folder))
        try:
            async with store.begin() as db:
                row = (await db.execute(select(outbox.c.id).limit(1))).scalar_one()
                await db.execute(update(outbox).where(outbox.c.id == row).values(status="dead"))
        finally:
            await store.close()

    asyncio.run(kill_one())
    code, out = invoke("outbox")
    (dead,) = first_column(out)
    code, out = invoke("outbox", "retry", dead)
    assert code == 0 and "1 owed write(s)" in out, out
    code, out = invoke("entities", "show", shown[0][:4])
    assert code == 1 and f"starts {len(PEOPLE)} entity ids: give more of the id" in out, out
    code, out = invoke("entities", "show", "ffff")
    assert code == 1 and "no entity has an id starting 'ffff'" in out, out


def _url(folder: Path) -> str:
    text = (folder / "crmhub.toml").read_text()
    return text.split('database = "', 1)[1].split('"', 1)[0]


async def test_short_ids_grow_until_each_names_one_row(store: Store) -> None:
    ids = new_ids(3)  # one millisecond: they differ only in the sequence part
    other = "ffffffff-0000-7000-8000-000000000000"
    async with store.begin() as db:
        for i, run_id in enumerate([*ids, other]):
            await db.execute(
                runs.insert().values(
                    id=run_id,
                    connection="a",
                    status="ok",
                    full=False,
                    started_at=utcnow(),
                    counts={"n": i},
                )
            )
    async with store.connect() as db:
        short = await short_ids(db, runs.c.id, ids)
        assert len({len(s) for s in short.values()}) == 1 and len(set(short.values())) == 3
        for full, cut in short.items():
            assert not cut.endswith("-")
            assert await find_id(db, runs.c.id, cut.upper(), "run", "crmhub runs") == full
        assert (await short_ids(db, runs.c.id, [other]))[other] == "ffffffff"
        with pytest.raises(CrmhubError, match="starts 3 run ids"):
            await find_id(db, runs.c.id, ids[0][:13], "run", "crmhub runs")
        with pytest.raises(CrmhubError, match="no run has an id starting '0_'"):
            await find_id(db, runs.c.id, "0_", "run", "crmhub runs")


def test_entities_show_prints_history_newest_first(folder: Path) -> None:
    assert invoke("sync", "a")[0] == 0
    for name in ("Ann", "Annie"):
        rows = "".join(f"{e},{name if i == 0 else f'P{i}'}\n" for i, e in enumerate(PEOPLE))
        (folder / "a.csv").write_text("email,first_name\n" + rows)
        assert invoke("sync", "a")[0] == 0
    code, out = invoke("entities", "search", "p0@example.com")
    (short,) = first_column(out)
    code, out = invoke("entities", "show", short)
    assert code == 0, out
    fields, history = out.split("history, newest first", 1)
    assert re.search(r'first_name +│ "Annie" +│ a ', fields), out  # with its provenance
    newest, older = history.split('"P0"')
    assert '"Annie"' in newest and '"Annie"' not in older, out
    assert "(created)" in history
    code, out = invoke("entities", "show", short, "--history", "1")
    assert code == 0 and "1 older change(s) not shown: --history 2 shows all" in out, out
    assert "(created)" not in out
    code, out = invoke("entities", "show", short, "--history", "1", "--json")
    data = json.loads(out)
    assert data["history_total"] == 2 and len(data["history"]) == 1
    assert data["history"][0]["changes"]["first_name"] == ["Ann", "Annie"]
