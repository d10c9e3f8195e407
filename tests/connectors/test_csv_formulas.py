"""Spreadsheet formula injection: what crmhub writes into a CSV cell never runs as a formula,
reads back as it was given, and causes no second write."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from connectors.csv.cells import TRIGGERS, neutralise, restore
from hub.config import load_config
from hub.engine import sync_connection
from hub.runtime import Hub
from hub.store.schema import entities, outbox
from hub.web import create_app
from tests.connectors.test_csv import create, make, pull_all, push, update

EVIL = '=HYPERLINK("http://evil")'


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (EVIL, "'" + EVIL),
        ("+SUM(A1:A9)", "'+SUM(A1:A9)"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("@SUM(1)", "'@SUM(1)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("'=1+1", "''=1+1"),  # already quoted: one more, so it reads back as given
        ("''@x", "'''@x"),
        ("+44 20 7946 0958", "+44 20 7946 0958"),  # phone numbers and numbers stay as they are
        ("+1 (415) 555-0100", "+1 (415) 555-0100"),
        ("+442079460958", "+442079460958"),
        ("-12.50", "-12.50"),
        ("-1,5", "-1,5"),
        ("'+44 20 7946 0958", "'+44 20 7946 0958"),
        ("+", "'+"),
        ("-", "'-"),
        ("- item", "'- item"),
        ("+44 20 CALL ME", "'+44 20 CALL ME"),
        ("Ann", "Ann"),
        ("", ""),
        ("'quoted", "'quoted"),
        ("a=b", "a=b"),
    ],
)
def test_the_rule(value: str, cell: str) -> None:
    assert neutralise(value) == cell
    assert restore(cell) == value


@given(st.text(alphabet=st.sampled_from("'=+-@\t\r 0123456789().,/aZ|!"), max_size=12))
def test_reading_is_the_inverse_of_writing(value: str) -> None:
    cell = neutralise(value)
    assert restore(cell) == value
    assert neutralise(restore(cell)) == cell
    rest = cell.lstrip("'")
    if cell[:1] in TRIGGERS and cell:
        assert all(ch in "+-0123456789 ().,/" for ch in rest), cell


@given(st.text(max_size=20))
def test_any_text_round_trips(value: str) -> None:
    assert restore(neutralise(value)) == value


def cells(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(), newline="")))


async def test_hostile_values_are_written_neutralised_and_read_back_as_given(
    tmp_path: Path,
) -> None:
    path = tmp_path / "people.csv"
    path.write_text("email,company,phone,notes\nold@example.com,'=kept,,=raw\n")
    connector = make(tmp_path)
    data = {"email": "ann@example.com", "company": EVIL, "phone": "+44 20 7946 0958"}
    [result] = await push(connector, create("c", {**data, "notes": "@cmd"}))
    assert result.ok and result.data == {**data, "notes": "@cmd"}
    assert cells(path)[1] == {
        "email": "ann@example.com",
        "company": "'" + EVIL,
        "phone": "+44 20 7946 0958",
        "notes": "'@cmd",
    }
    records = {r.id: r for r in await pull_all(connector)}
    assert records["email:ann@example.com"].data == {**data, "notes": "@cmd"}
    # A cell someone escaped by hand reads as the value; one left raw reads as it is.
    assert records["email:old@example.com"].data["company"] == "=kept"
    assert records["email:old@example.com"].data["notes"] == "=raw"
    # Written back unchanged it stays as it was: no quote added to what crmhub did not write.
    [again] = await push(
        connector,
        update("email:old@example.com", {"phone": "+1"}, records["email:old@example.com"].version),
    )
    assert again.ok and cells(path)[0]["notes"] == "=raw" and cells(path)[0]["company"] == "'=kept"


async def test_escaping_can_be_switched_off_per_connection(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("email,company\n")
    connector = make(tmp_path, escape_formulas=False)
    [result] = await push(connector, create("c", {"email": "ann@example.com", "company": EVIL}))
    assert result.ok and cells(path)[0]["company"] == EVIL
    path.write_text(path.read_text() + "bo@example.com,'=x\n")
    data = {r.id: r.data["company"] for r in await pull_all(connector)}
    assert data == {"email:ann@example.com": EVIL, "email:bo@example.com": "'=x"}


CONFIG = """\
[hub]
database = "{db_url}"
phone_region = "GB"

[connections.signup]
connector = "webforms"
direction = "pull"
provider = "json"
key = "signup-form-key-0123456789"
require_token = false

[connections.sales]
connector = "csv"
path = "sales.csv"
"""


async def test_a_hostile_form_post_lands_in_the_csv_neutralised_and_settles(
    tmp_path: Path, db_url: str
) -> None:
    (tmp_path / "crmhub.toml").write_text(CONFIG.format(db_url=db_url))
    sales = tmp_path / "sales.csv"
    sales.write_text("email,first_name,company,phone\n")
    hub = await Hub.open(load_config(tmp_path / "crmhub.toml"))
    try:
        transport = httpx.ASGITransport(app=create_app(hub), client=("198.51.100.7", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            body = {
                "email": "mallory@example.com",
                "first_name": "-Mallory",
                "company": EVIL,
                "phone": "+44 20 7946 0958",
            }
            answer = await client.post("/forms/signup-form-key-0123456789", json=body)
            assert answer.status_code == 200, answer.text
        for name in ("signup", "sales"):
            report = await sync_connection(hub, name)
            assert report.status == "ok", report.errors
        [row] = cells(sales)
        assert row == {
            "email": "mallory@example.com",
            "first_name": "'-Mallory",
            "company": "'" + EVIL,
            "phone": "+442079460958",
        }
        written = sales.read_bytes(), os.stat(sales).st_mtime_ns
        for name in ("sales", "signup", "sales"):
            report = await sync_connection(hub, name)
            assert report.status == "ok", report.errors
            assert not any(k.startswith("pushed_") for k in report.counts), report.counts
        assert (sales.read_bytes(), os.stat(sales).st_mtime_ns) == written
        async with hub.store.connect() as db:
            owed = await db.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.status != "done")
            )
            query = select(entities.c.fields).where(entities.c.type == "contact")
            [fields] = (await db.execute(query)).scalars().all()
            query = select(entities.c.fields).where(entities.c.id == fields["company"])
            company = (await db.execute(query)).scalar_one()
        assert owed == 0
        # read back from the file as posted: not escaped twice (the company by its name)
        assert (company["name"], fields["first_name"], fields["phone"]) == (
            EVIL,
            "-Mallory",
            "+442079460958",
        )
    finally:
        await hub.close()
