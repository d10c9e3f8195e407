"""``crmhub up`` killed with SIGKILL while it pushes contacts to Xero, then started again.

People made in the hub through a CSV file are owed to Xero as creates, then edited in the
file and owed as updates; each push takes several ``POST /Contacts`` calls of 50, answered
slowly by the sandbox (its own process), and the daemon is killed as soon as the sandbox
has answered one of them: the answers of the batches already written are lost with the
process. After the restarts every person is in Xero exactly once with the latest values,
the hub holds one link per person and nothing is left owed or dead.
"""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from auth.sandbox import s256
from connectors.xero.sandbox import TENANTS
from tests.e2e.conftest import Processes, wait_until
from tests.e2e.mailkit import Daemon
from tests.e2e.test_daemon_xero import CONFIG, WEBHOOK_KEY, XeroProcess, connect

PEOPLE = 240  # five calls of up to 50 for a whole push
CONTACTS = "/api.xro/2.0/Contacts"
DOMAIN = "@kill.example"
LATENCY = 0.3  # seconds before each answer of the sandbox while the daemon is killed
VERIFIER = "a-verifier-of-at-least-forty-three-characters-0123456789"


def write_people(path: Path, last: str) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["email", "first_name", "last_name"])
        for i in range(PEOPLE):
            out.writerow([f"p{i:03d}{DOMAIN}", f"First{i:03d}", f"{last}{i:03d}"])


def token(url: str) -> str:
    """An access token of a grant of our own (the sandbox approves at once)."""
    redirect = "http://127.0.0.1/callback"
    with httpx.Client(base_url=url, timeout=30) as http:
        params = {"client_id": "sandbox-client", "redirect_uri": redirect}
        params.update(response_type="code", state="test", scope="accounting.contacts")
        params.update(code_challenge=s256(VERIFIER), code_challenge_method="S256")
        answer = http.get("/oauth/authorize", params=params)
        code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect}
        form.update(code_verifier=VERIFIER)
        form.update(client_id="sandbox-client", client_secret="sandbox-secret")
        answer = http.post("/oauth/token", data=form)
        answer.raise_for_status()
        return str(answer.json()["access_token"])


def xero_people(url: str, access: str) -> list[dict[str, Any]]:
    """Every contact of ours in the organisation, archived ones included."""
    headers = {"authorization": f"Bearer {access}", "xero-tenant-id": TENANTS[0][0]}
    found: list[dict[str, Any]] = []
    with httpx.Client(base_url=url, timeout=30, headers=headers) as http:
        page = 1
        while True:
            params = {"page": str(page), "includeArchived": "true"}
            answer = http.get(CONTACTS, params=params)
            answer.raise_for_status()
            contacts = answer.json()["Contacts"]
            found += contacts
            if len(contacts) < 100:
                break
            page += 1
    return [c for c in found if str(c.get("EmailAddress") or "").endswith(DOMAIN)]


def posts(url: str) -> int:
    """``POST /Contacts`` calls the sandbox has answered."""
    entries = httpx.get(f"{url}/_sandbox/log", timeout=10).json()["entries"]
    return sum(1 for e in entries if e["method"] == "POST" and e["path"] == CONTACTS)


def owed(daemon: Daemon) -> int:
    return daemon.count(
        "select count(*) from outbox where connection = 'books' and status != 'done'"
    )


def quiet(url: str, wait: float = LATENCY) -> int:
    """``POST /Contacts`` calls answered, once the call a killed daemon left in flight is."""
    seen = posts(url)
    while True:
        time.sleep(2 * wait)
        now = posts(url)
        if now == seen:
            return now
        seen = now


def last_names(daemon: Daemon) -> set[str]:
    rows = daemon.q("select fields from entities where type = 'contact'")
    return {str(json.loads(f).get("last_name"))[:-3] for (f,) in rows}


def kill_mid_push(daemon: Daemon, sandbox: XeroProcess, access: str, edit: str = "") -> None:
    """Start the daemon and kill it as soon as Xero has answered one of its pushes; with
    ``edit``, the people are first edited again (last names ``edit``) in the hub, so the
    owed rows the push has in hand get newer values before it dies."""
    url = sandbox.url
    before = quiet(url)
    daemon.start()
    wait_until(lambda: posts(url) > before, 60, "a pushed batch", daemon.log)
    if edit:
        sandbox.post("/_sandbox/faults", {"latency_ms": 3000})  # the push waits meanwhile
        write_people(daemon.folder / "people.csv", edit)
        wait_until(lambda: last_names(daemon) == {edit}, 30, "the edit in the hub", daemon.log)
    daemon.kill()
    sandbox.post("/_sandbox/faults", {"latency_ms": LATENCY * 1000})
    quiet(url, 3 if edit else LATENCY)
    linked = daemon.count(
        "select count(*) from links where connection = 'books' and stream = 'contacts'"
    )
    assert owed(daemon) > 0, "the kill did not land mid-push"
    if linked < PEOPLE:  # creates: Xero made contacts whose answers the hub never saw
        assert len(xero_people(url, access)) > linked


def settle(daemon: Daemon) -> None:
    daemon.start()
    wait_until(lambda: owed(daemon) == 0, 60, "nothing owed to Xero", *daemon.logs())


def check(daemon: Daemon, url: str, access: str, last: str) -> None:
    people = xero_people(url, access)
    counts = Counter(str(c["EmailAddress"]) for c in people)
    assert len(counts) == PEOPLE, f"{PEOPLE - len(counts)} people missing from Xero"
    twice = {e: n for e, n in counts.items() if n > 1}
    assert not twice, f"duplicates in Xero: {twice}"
    for contact in people:
        i = int(str(contact["EmailAddress"])[1:4])
        assert contact["ContactStatus"] == "ACTIVE"
        assert (contact["FirstName"], contact["LastName"]) == (f"First{i:03d}", f"{last}{i:03d}")
        assert contact["Name"] == f"First{i:03d} {last}{i:03d}"
    links = daemon.q(
        "select entity_id, remote_id from links where connection = 'books' and stream = 'contacts'"
    )
    assert len(links) == PEOPLE, len(links)
    assert len({e for e, _ in links}) == PEOPLE
    assert {r for _, r in links} == {str(c["ContactID"]) for c in people}
    emails = [
        json.loads(f).get("email")
        for (f,) in daemon.q("select fields from entities where type = 'contact'")
    ]
    assert sorted(emails) == sorted(f"p{i:03d}{DOMAIN}" for i in range(PEOPLE))
    assert daemon.q("select op, last_error from outbox where status != 'done'") == []


@pytest.mark.slow
async def test_sigkill_mid_push_leaves_every_contact_once_in_xero(
    tmp_path: Path, processes: Processes
) -> None:
    folder = tmp_path / "hub"
    folder.mkdir()
    sandbox = XeroProcess(processes, tmp_path, "--size", "0", "--invoices", "0")
    daemon = Daemon(folder, processes)
    (folder / "crmhub.toml").write_text(
        CONFIG.format(port=daemon.port, url=sandbox.url, key=WEBHOOK_KEY)
    )
    people = folder / "people.csv"
    write_people(people, "Made")
    from auth import generate_key

    (folder / "crmhub.key").write_text(generate_key() + "\n")
    (folder / "crmhub.key").chmod(0o600)
    await connect(folder)
    access = token(sandbox.url)
    # room for the pulls of every run
    sandbox.post("/_xero/limits", {"minute": 10_000, "day": 100_000})
    try:
        # new people owed as creates, the daemon killed twice during the push
        sandbox.post("/_sandbox/faults", {"latency_ms": LATENCY * 1000})
        kill_mid_push(daemon, sandbox, access)
        kill_mid_push(daemon, sandbox, access)
        sandbox.post("/_sandbox/faults", {"latency_ms": 0})
        settle(daemon)
        check(daemon, sandbox.url, access, "Made")
        daemon.stop()

        # the same people edited in the hub, owed as updates: killed twice again, the
        # second time after they were edited once more while their push was under way
        write_people(people, "Edited")
        sandbox.post("/_sandbox/faults", {"latency_ms": LATENCY * 1000})
        kill_mid_push(daemon, sandbox, access)
        kill_mid_push(daemon, sandbox, access, edit="Final")
        sandbox.post("/_sandbox/faults", {"latency_ms": 0})
        settle(daemon)
        check(daemon, sandbox.url, access, "Final")
    finally:
        daemon.stop()
        sandbox.stop()
