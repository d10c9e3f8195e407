"""``crmhub up`` with a CSV file and a Mailchimp audience, every piece a real process.

The Mailchimp sandbox runs in its own process (``mailchimp_sandbox.py``) and is reached over
HTTP only; ``crmhub up`` runs in another, on a SQLite store, and is stopped with SIGTERM or
killed with SIGKILL like a crashed host. The tests read the store with ``sqlite3`` and the
audience through the sandbox's API, as an operator would.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from connectors.mailchimp.sandbox import LIST_ID
from tests.e2e.conftest import HubProcess, Sandbox, read_csv, wait_until

StartSandbox = Callable[..., Sandbox]

HEADER = "email,first_name,last_name,consent\n"
FORM = {"content-type": "application/x-www-form-urlencoded"}


def write_people(path: Path, rows: list[dict[str, str]]) -> None:
    """Replace the CSV file atomically, as a spreadsheet program saving it would."""
    out = io.StringIO()
    fields = list(rows[0]) if rows else HEADER.strip().split(",")
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(out.getvalue(), encoding="utf-8")
    os.replace(tmp, path)


def csv_by_email(path: Path) -> dict[str, dict[str, str]]:
    rows = read_csv(path)
    emails = Counter(r["email"].strip().lower() for r in rows)
    assert max(emails.values(), default=1) == 1, f"duplicate rows in {path.name}: {emails}"
    return {r["email"].strip().lower(): r for r in rows}


def contact(hub: HubProcess, email: str) -> dict[str, Any] | None:
    return next((c for c in hub.contacts() if c.get("email") == email), None)


def entity_id(hub: HubProcess, email: str) -> str:
    rows = hub.q("select id, fields from entities where type = 'contact'")
    found = [r[0] for r in rows if json.loads(r[1]).get("email") == email]
    assert len(found) == 1, f"{email}: {len(found)} contacts"
    return str(found[0])


def assert_no_duplicate_contacts(hub: HubProcess) -> list[str]:
    emails = [str(c.get("email")) for c in hub.contacts()]
    twice = {e: n for e, n in Counter(emails).items() if n > 1}
    assert not twice, f"duplicate contacts in the hub: {twice}"
    return emails


def ok_runs_since(hub: HubProcess, connection: str, since: str) -> int:
    return int(
        hub.one(
            "select count(*) from runs where connection = ? and status = 'ok' and started_at > ?",
            connection,
            since,
        )
        or 0
    )


def store_now(hub: HubProcess) -> str:
    """The store's latest run start: later runs compare greater (same text format)."""
    return str(hub.one("select max(started_at) from runs") or "")


def status_of(sandbox: Sandbox, email: str) -> str:
    member = sandbox.member(email)
    assert member is not None, f"{email} is not in the audience"
    return str(member["status"])


def subscribed(sandbox: Sandbox) -> list[dict[str, Any]]:
    return sorted(sandbox.members(status="subscribed"), key=lambda m: m["email_address"])


# -- 1. a scheduled run --------------------------------------------------------------------


def test_scheduled_runs_pull_the_audience_into_the_hub(
    start_sandbox: StartSandbox, hub: HubProcess
) -> None:
    sandbox = start_sandbox(size=30)
    hub.csv.write_text(HEADER + "zoe@e2e.example,Zoe,Quinn,yes\n")
    hub.configure(sandbox)
    members = {m["email_address"]: m for m in sandbox.members()}
    assert len(members) == 30
    hub.start()

    wait_until(lambda: hub.runs("newsletter") >= 1, 30, "an ok newsletter run", hub.log)
    wait_until(
        lambda: set(members) <= {c.get("email") for c in hub.contacts()},
        30,
        "every member in the hub",
        hub.log,
    )
    wait_until(lambda: sandbox.member("zoe@e2e.example"), 30, "the CSV row in Mailchimp")

    failed = hub.q("select status, error from runs where status not in ('ok', 'running')")
    assert failed == []
    emails = assert_no_duplicate_contacts(hub)
    assert sorted(emails) == sorted([*members, "zoe@e2e.example"])
    someone = next(iter(members.values()))
    held = contact(hub, someone["email_address"])
    assert held is not None
    assert held["first_name"] == someone["merge_fields"]["FNAME"]
    assert held["last_name"] == someone["merge_fields"]["LNAME"]
    assert held["consent"] is (someone["status"] == "subscribed")
    assert status_of(sandbox, "zoe@e2e.example") == "subscribed"
    assert hub.terminate() < 10
    assert hub.proc is not None and hub.proc.returncode == 0


# -- 2. webhook durability -----------------------------------------------------------------


def test_a_webhook_acknowledged_then_killed_is_processed_once_after_restart(
    start_sandbox: StartSandbox, hub: HubProcess
) -> None:
    sandbox = start_sandbox(size=20)
    hub.csv.write_text(HEADER)
    # Hourly schedules: after the first runs, only the delivery makes the hub look again.
    hub.configure(sandbox, schedule="every 1h", csv_schedule="every 1h")
    hub.start()
    member = subscribed(sandbox)[0]
    email = member["email_address"]
    wait_until(lambda: contact(hub, email), 30, "the first pull", hub.log)

    # A change in Mailchimp; no webhook URL is set, so the delivery is the test's to send.
    answer = sandbox.edit(email, merge_fields={"FNAME": "Webhooked"})
    assert answer["webhook_status"] is None and answer["webhook"]["type"] == "profile"
    body = urlencode(answer["webhook"])
    response = httpx.post(hub.hook, content=body, headers=FORM, timeout=10)
    hub.kill()
    assert response.status_code == 200, response.text

    # Acknowledged means stored: the row was committed before the 200 left.
    items = hub.q("select id, status from inbox where source = 'newsletter'")
    assert len(items) == 1, items

    hub.start()
    wait_until(
        lambda: hub.one("select status from inbox where id = ?", items[0][0]) == "done",
        30,
        "the delivery to be processed",
        *hub.logs(),
    )
    wait_until(
        lambda: (contact(hub, email) or {}).get("first_name") == "Webhooked",
        30,
        "the change in the hub",
        *hub.logs(),
    )
    rows = hub.q("select id, status, attempts, error from inbox where source = 'newsletter'")
    assert len(rows) == 1
    _, status, attempts, error = rows[0]
    assert (status, error) == ("done", None)
    # A failed attempt is possible (a resumed run held the lease), never a second success.
    assert attempts <= 1

    def first_name_changes() -> list[Any]:
        found = hub.q(
            "select changes from change_log where entity_id = ? and connection = 'newsletter'",
            entity_id(hub, email),
        )
        return [json.loads(r[0])["first_name"] for r in found if "first_name" in json.loads(r[0])]

    assert first_name_changes() == [[member["merge_fields"]["FNAME"], "Webhooked"]]

    # Mailchimp delivers again: acknowledged, not stored twice, not processed again.
    processed_at = hub.one("select processed_at from inbox where id = ?", items[0][0])
    again = httpx.post(hub.hook, content=body, headers=FORM, timeout=10)
    assert again.status_code == 200, again.text
    time.sleep(2)
    rows_after = hub.q("select id, status, attempts, processed_at from inbox")
    assert rows_after == [(items[0][0], "done", attempts, processed_at)]
    assert first_name_changes() == [[member["merge_fields"]["FNAME"], "Webhooked"]]
    assert hub.terminate() < 10


# -- 3. SIGTERM in the middle of a run -----------------------------------------------------


def test_sigterm_during_a_long_run_exits_promptly_and_the_next_start_resumes(
    start_sandbox: StartSandbox, hub: HubProcess
) -> None:
    size = 300
    sandbox = start_sandbox(size=size)
    hub.csv.write_text(HEADER)
    # Pages of 10 members, each answer 150 ms late: a run of several seconds.
    hub.configure(sandbox, csv_schedule="every 1h", extra="page_size = 10\n")
    sandbox.faults(latency_ms=150)
    hub.start()
    listing = f"/3.0/lists/{LIST_ID}/members"
    wait_until(lambda: sandbox.count("GET", listing) >= 5, 30, "a few pages", hub.log)
    running = hub.q("select id from runs where connection = 'newsletter' and status = 'running'")
    assert len(running) == 1, running
    pid = hub.pid

    assert hub.terminate() < 10
    assert hub.proc is not None and hub.proc.returncode == 0, hub.log.read_text()[-3000:]
    assert hub.q("select name, holder from leases where holder like ?", f"%:{pid}:%") == []
    assert hub.q("select * from leases") == []
    assert hub.one("select status from runs where id = ?", running[0][0]) == "interrupted"
    partial = len(hub.contacts())
    assert 0 < partial < size, f"{partial} contacts: the stop did not land mid-run"

    sandbox.faults(latency_ms=0)
    stopped_at = store_now(hub)
    hub.start()
    wait_until(
        lambda: ok_runs_since(hub, "newsletter", stopped_at) >= 1,
        60,
        "an ok run after the restart",
        *hub.logs(),
    )
    emails = assert_no_duplicate_contacts(hub)
    assert sorted(emails) == sorted(m["email_address"] for m in sandbox.members())
    assert hub.terminate() < 10
    assert hub.q("select * from leases") == []


# -- 4. SIGKILL in the middle of a big push ------------------------------------------------


def test_sigkill_mid_push_of_5000_leaves_every_person_once_in_mailchimp(
    start_sandbox: StartSandbox, hub: HubProcess
) -> None:
    people = 5000
    sandbox = start_sandbox(size=20)
    rows = [
        {
            "email": f"person{i:04d}@bulk.example",
            "first_name": f"First{i:04d}",
            "last_name": f"Last{i:04d}",
            "consent": "yes" if i % 2 == 0 else "",
        }
        for i in range(people)
    ]
    write_people(hub.csv, rows)
    hub.configure(sandbox)
    batch_path = f"/3.0/lists/{LIST_ID}"
    sandbox.faults(latency_ms=700)
    hub.start()

    wait_until(
        lambda: sandbox.count("POST", batch_path, status=200) >= 1,
        120,
        "the first batch subscribe",
        hub.log,
    )
    hub.kill()
    batches_before_kill = sandbox.count("POST", batch_path, status=200)
    owed = hub.one(
        "select count(*) from outbox where connection = 'newsletter' and status = 'pending'"
    )
    assert 1 <= batches_before_kill < people // 500, batches_before_kill
    assert owed > 0, "the kill did not land mid-push"

    sandbox.faults(latency_ms=0)
    hub.start()

    def settled() -> bool:
        pending = hub.one(
            "select count(*) from outbox where connection = 'newsletter' and status = 'pending'"
        )
        return pending == 0 and hub.runs("newsletter") >= 1

    wait_until(settled, 60, "the push to finish", *hub.logs())
    members = [m for m in sandbox.members() if m["email_address"].endswith("@bulk.example")]
    counts = Counter(m["email_address"] for m in members)
    assert len(counts) == people, f"{people - len(counts)} people missing from Mailchimp"
    assert max(counts.values()) == 1
    for member in members:
        i = int(member["email_address"][6:10])
        assert member["merge_fields"]["FNAME"] == f"First{i:04d}"
        assert member["merge_fields"]["LNAME"] == f"Last{i:04d}"
        assert member["status"] == ("subscribed" if i % 2 == 0 else "transactional")
    dead = hub.q("select op, last_error from outbox where status = 'dead'")
    assert dead == []
    emails = assert_no_duplicate_contacts(hub)
    assert len(emails) == people + 20
    assert hub.terminate() < 10


# -- 5. an unsubscribe in Mailchimp is kept --------------------------------------------------


def test_a_member_who_unsubscribed_stays_unsubscribed_whatever_the_csv_says(
    start_sandbox: StartSandbox, hub: HubProcess
) -> None:
    sandbox = start_sandbox(size=10)
    email = subscribed(sandbox)[0]["email_address"]
    hub.csv.write_text(HEADER + "yan@e2e.example,Yan,Ortiz,yes\n")
    hub.configure(sandbox)
    hub.start()
    sandbox.webhooks_to(hub.hook)
    # The member reaches the CSV from Mailchimp, with consent.
    wait_until(
        lambda: csv_by_email(hub.csv).get(email, {}).get("consent") == "yes",
        30,
        "the member in the CSV",
        hub.log,
    )

    answer = sandbox.edit(email, status="unsubscribed")
    assert answer["webhook"]["type"] == "unsubscribe" and answer["webhook_status"] == 200
    wait_until(
        lambda: csv_by_email(hub.csv)[email]["consent"] == "no",
        30,
        "the unsubscribe in the CSV",
        hub.log,
    )

    # Someone sets consent back to yes in the spreadsheet.
    rows = read_csv(hub.csv)
    for row in rows:
        if row["email"].strip().lower() == email:
            row["consent"] = "yes"
    write_people(hub.csv, rows)
    edited = store_now(hub)
    wait_until(
        lambda: (
            ok_runs_since(hub, "newsletter", edited) >= 3
            and ok_runs_since(hub, "people", edited) >= 3
        ),
        60,
        "several syncs after the edit",
        hub.log,
    )
    assert status_of(sandbox, email) == "unsubscribed"
    assert hub.q("select op, last_error from outbox where status = 'dead'") == []
    assert_no_duplicate_contacts(hub)
    assert hub.terminate() < 10


# -- 6. an edit in Mailchimp reaches the hub and the CSV -----------------------------------


def test_a_merge_field_edited_in_mailchimp_reaches_the_hub_and_the_csv(
    start_sandbox: StartSandbox, hub: HubProcess
) -> None:
    sandbox = start_sandbox(size=10)
    hub.csv.write_text(HEADER + "yan@e2e.example,Yan,Ortiz,\n")
    hub.configure(sandbox, schedule="every 30s")
    hub.start()
    sandbox.webhooks_to(hub.hook)
    wait_until(lambda: len(read_csv(hub.csv)) == 11, 30, "the audience in the CSV", hub.log)
    member = subscribed(sandbox)[1]
    email = member["email_address"]

    answer = sandbox.edit(email, merge_fields={"FNAME": "Renamed", "LNAME": "Elsewhere"})
    assert answer["webhook"]["type"] == "profile" and answer["webhook_status"] == 200
    # The schedule is 30 s: arriving within 20 s is the webhook's doing.
    wait_until(
        lambda: csv_by_email(hub.csv)[email]["first_name"] == "Renamed",
        20,
        "the edit in the CSV",
        hub.log,
    )
    held = contact(hub, email)
    assert held is not None
    assert (held["first_name"], held["last_name"]) == ("Renamed", "Elsewhere")
    assert csv_by_email(hub.csv)[email]["last_name"] == "Elsewhere"
    assert len(read_csv(hub.csv)) == 11
    assert len(assert_no_duplicate_contacts(hub)) == 11
    assert hub.terminate() < 10


# -- the same people on both sides at the first start ----------------------------------------


def test_people_in_both_systems_at_the_first_start_become_one_contact_each(
    start_sandbox: StartSandbox, hub: HubProcess
) -> None:
    sandbox = start_sandbox(size=30)
    members = sandbox.members()
    write_people(
        hub.csv,
        [
            {
                "email": m["email_address"],
                "first_name": m["merge_fields"]["FNAME"],
                "last_name": m["merge_fields"]["LNAME"],
                "consent": "yes" if m["status"] == "subscribed" else "no",
            }
            for m in members
        ],
    )
    hub.configure(sandbox)
    hub.start()
    wait_until(
        lambda: hub.runs("newsletter") >= 2 and hub.runs("people") >= 2,
        30,
        "two runs of each connection",
        hub.log,
    )
    emails = assert_no_duplicate_contacts(hub)
    assert sorted(emails) == sorted(m["email_address"] for m in members)
    linked = hub.q("select entity_id, count(distinct connection) from links group by entity_id")
    assert sorted({n for _, n in linked}) == [2], "every contact is linked to both connections"
    assert len(read_csv(hub.csv)) == len(members)
    assert hub.terminate() < 10
