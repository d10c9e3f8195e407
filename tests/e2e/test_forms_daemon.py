"""Web forms end to end with real processes: ``crmhub up`` takes an HTML form post, the
contact reaches the hub and the CSV file, with consent and an activity; rate limit per IP."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from connectors.webforms import TOKEN_FIELD, issue_token

CRMHUB = str(Path(sys.executable).with_name("crmhub"))
KEY = "e2e-form-key-0123456789abcdef"
SECRET = "e2e-form-secret-0123456789"
CONFIG = f"""\
[hub]
database = "crmhub.db"

[connections.people]
connector = "csv"
path = "people.csv"
key = "id"
schedule = "every 1s"

[connections.enquiries]
connector = "webforms"
direction = "pull"
form_name = "Enquiry"
key = "{KEY}"
form_secret = "{SECRET}"
rate_limit = 3
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    (tmp_path / "crmhub.toml").write_text(CONFIG)
    (tmp_path / "people.csv").write_text(
        "id,email,first_name,last_name,phone,company,consent\n1,old@example.com,Old,Timer,,,no\n"
    )
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [CRMHUB, "up", "--config", str(tmp_path / "crmhub.toml"), "--port", "0", "--log-json"],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "CRMHUB_CONFIG": ""},
        )
    try:
        wait_until(lambda: base_url(log) is not None, 30, "the web server", log)
        yield str(base_url(log)), tmp_path
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def base_url(log: Path) -> str | None:
    found = re.search(r"crmhub up on (http://[\d.]+:\d+)", log.read_text())
    return found.group(1) if found else None


def wait_until(check: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; log:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def query(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db, timeout=10) as conn:
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise


def csv_rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        return {row["email"]: row for row in csv.DictReader(f)}


def post(url: str, fields: dict[str, str], ip: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if ip:  # uvicorn trusts X-Forwarded-For from loopback, as from a local reverse proxy
        headers["x-forwarded-for"] = ip
    body = {"website": "", TOKEN_FIELD: issue_token(SECRET, "enquiries", time.time() - 10)}
    return httpx.post(f"{url}/forms/{KEY}", content=urlencode({**body, **fields}), headers=headers)


def test_html_form_post_reaches_the_hub_and_the_csv_file(daemon: tuple[str, Path]) -> None:
    url, folder = daemon
    db, log = folder / "crmhub.db", folder / "daemon.log"
    fields = {
        "email": "Nia@Example.com",
        "first_name": "Nia",
        "last_name": "Okafor",
        "phone": "+1 415 555 0100",
        "company": "Acme",
        "consent": "yes",
        "message": "Please call me",
    }
    answer = post(url, fields)
    assert answer.status_code == 200 and "Thank you" in answer.text, answer.text
    assert query(db, "select status from inbox where source = 'enquiries'") != []

    def contact() -> dict[str, Any] | None:
        found = query(db, "select fields from entities where type = 'contact'")
        people = [json.loads(f) for (f,) in found]
        return next((p for p in people if p.get("email") == "nia@example.com"), None)

    wait_until(lambda: contact() is not None, 20, "the contact in the hub", log)
    person = contact()
    assert person is not None
    assert person["consent"] is True and person["phone"] == "+14155550100"
    assert person["custom.message"] == "Please call me"

    def stored_activities() -> list[dict[str, Any]]:
        found = query(db, "select fields from entities where type = 'activity'")
        return [json.loads(f) for (f,) in found]

    # the run writes the contacts stream, then the activities stream, in transactions of their own
    wait_until(lambda: stored_activities() != [], 20, "the activity in the hub", log)
    activities = stored_activities()
    assert len(activities) == 1 and activities[0]["subject"] == "Enquiry"
    [(nia,)] = query(
        db,
        "select id from entities where type = 'contact' "
        "and json_extract(fields, '$.email') = 'nia@example.com'",
    )
    assert activities[0]["contacts"] == [nia]
    assert json.loads(activities[0]["body"]) == fields
    wait_until(
        lambda: query(db, "select count(*) from inbox where status = 'done'")[0][0] == 1,
        10,
        "the inbox item processed",
        log,
    )

    wait_until(lambda: "nia@example.com" in csv_rows(folder / "people.csv"), 20, "the CSV row", log)
    row = csv_rows(folder / "people.csv")["nia@example.com"]
    assert (row["first_name"], row["company"], row["consent"]) == ("Nia", "Acme", "yes")
    assert "old@example.com" in csv_rows(folder / "people.csv")


def test_rate_limit_per_client_address(daemon: tuple[str, Path]) -> None:
    url, folder = daemon
    codes = [post(url, {"email": f"r{i}@example.com"}, "203.0.113.9").status_code for i in range(4)]
    assert codes == [200, 200, 200, 429]
    assert post(url, {"email": "s@example.com"}, "203.0.113.10").status_code == 200
    assert query(folder / "crmhub.db", "select count(*) from inbox")[0][0] == 4
    metrics = httpx.get(f"{url}/metrics").text
    assert 'crmhub_form_rejected_total{form="enquiries",reason="rate_limited"} 1' in metrics
