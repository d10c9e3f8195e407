"""End to end: a contacts file whose company column refers to companies, a companies file as
its own connection, and a web form; the timeline through ``crmhub entities show``."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
from sqlalchemy import select

from hub.config import load_config
from hub.engine import sync_connection
from hub.relations.views import find_duplicates
from hub.runtime import Hub
from hub.store.schema import entities
from hub.web import create_app

CONFIG = """\
[hub]
database = "hub.db"
phone_region = "GB"

[connections.signup]
connector = "webforms"
direction = "pull"
provider = "json"
key = "signup-form-key-0123456789"
require_token = false

[connections.people]
connector = "csv"
path = "people.csv"

[connections.firms]
connector = "csv"
path = "firms.csv"
entity = "company"
key = "id"
"""


def crmhub(folder: Path, *args: str) -> str:
    env = {**os.environ, "CRMHUB_CONFIG": str(folder / "crmhub.toml"), "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "hub", *args], capture_output=True, text=True, env=env,
        timeout=120, cwd=folder,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


async def test_company_column_companies_file_and_form_make_one_timeline(tmp_path: Path) -> None:
    (tmp_path / "crmhub.toml").write_text(CONFIG)
    (tmp_path / "people.csv").write_text(
        "email,first_name,company\nann@acme.com,Ann,Acme\nbob@acme.com,Bob, acme\n"
        "cy@globex.com,Cy,Globex\n"
    )
    (tmp_path / "firms.csv").write_text("id,name,domain,city\nf1,Acme,,Leeds\n")
    hub = await Hub.open(load_config(tmp_path / "crmhub.toml"))
    try:
        for name in ("firms", "people"):
            assert (await sync_connection(hub, name)).status == "ok"
        transport = httpx.ASGITransport(app=create_app(hub), client=("198.51.100.7", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            for subject in ("first", "second"):
                body = {"email": "ann@acme.com", "first_name": "Ann", "message": subject}
                answer = await client.post("/forms/signup-form-key-0123456789", json=body)
                assert answer.status_code == 200, answer.text
        for name in ("signup", "firms", "people", "firms"):
            assert (await sync_connection(hub, name)).status == "ok"
        async with hub.store.connect() as db:
            found = (
                await db.execute(select(entities.c.id, entities.c.type, entities.c.fields))
            ).all()
    finally:
        await hub.close()
    companies = {f["name"]: i for i, t, f in found if t == "company"}
    assert set(companies) == {"Acme", "Globex"}  # the file's Acme, the column's Globex
    ann = next(i for i, t, f in found if t == "contact" and f.get("email") == "ann@acme.com")
    assert {r["name"] for r in rows(tmp_path / "firms.csv")} == {"Acme", "Globex"}

    shown = json.loads(crmhub(tmp_path, "entities", "show", "--json", ann))
    [company] = shown["relations"]["points_at"]
    assert (company["field"], company["id"]) == ("company", companies["Acme"])
    timeline = shown["relations"]["pointed_at_by"]["activity"]
    assert len(timeline) == 2 and timeline[0]["occurred_at"] >= timeline[1]["occurred_at"]
    text = crmhub(tmp_path, "entities", "show", companies["Acme"])
    assert "people" in text and "Ann <ann@acme.com>" in text and "Bob <bob@acme.com>" in text

    # Renaming the company in the companies file changes what every contact row shows.
    (tmp_path / "firms.csv").write_text(
        (tmp_path / "firms.csv").read_text().replace("f1,Acme,", "f1,Acme Group,", 1)
    )
    hub = await Hub.open(load_config(tmp_path / "crmhub.toml"))
    try:
        for name in ("firms", "people"):
            assert (await sync_connection(hub, name)).status == "ok"
        async with hub.store.connect() as db:
            assert await find_duplicates(db) == []
    finally:
        await hub.close()
    shown_rows = {r["email"]: r["company"] for r in rows(tmp_path / "people.csv")}
    assert shown_rows == {
        "ann@acme.com": "Acme Group",
        "bob@acme.com": "Acme Group",
        "cy@globex.com": "Globex",
    }
