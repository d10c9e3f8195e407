"""``crmhub up`` with a Xero organisation and a CSV file, every piece a real process: the
grant made by the code flow against the sandbox, webhooks signed by the sandbox and
posted to the daemon read by id, and a spent daily limit that holds the Xero connection
until the next day while the CSV connection goes on."""

from __future__ import annotations

import json
import re
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Processes, child_env, wait_until
from tests.e2e.mailkit import Daemon

SCRIPT = Path(__file__).with_name("xero_sandbox.py")
WEBHOOK_KEY = "sandbox-webhook-key"
CONFIG = """\
[hub]
database = "crmhub.db"
http_port = {port}

[connections.people]
connector = "csv"
path = "people.csv"
schedule = "every 2s"

[connections.books]
connector = "xero"
api_base = "{url}"
webhook_key = "{key}"
schedule = "every 2s"

[connections.books.oauth]
authorize_url = "{url}/oauth/authorize"
token_url = "{url}/oauth/token"
client_id = "sandbox-client"
client_secret = "sandbox-secret"
"""


class XeroProcess:
    def __init__(self, processes: Processes, folder: Path, *args: str) -> None:
        self.log = folder / "xero-sandbox.log"
        command = [sys.executable, str(SCRIPT), *args]
        self.proc = processes.start(command, self.log, folder, child_env())

        def url() -> str | None:
            if self.proc.poll() is not None:
                pytest.fail(f"the sandbox exited:\n{self.log.read_text()}")
            found = re.search(r"^xero (http://\S+)$", self.log.read_text(), re.MULTILINE)
            return found.group(1) if found else None

        self.url: str = wait_until(url, 60, "the sandbox to listen", self.log)

    def post(self, path: str, body: dict) -> dict:
        answer = httpx.post(f"{self.url}{path}", json=body, timeout=30)
        answer.raise_for_status()
        return dict(answer.json())

    def stop(self) -> None:
        found = httpx.get(f"{self.url}/_sandbox/violations", timeout=10).json()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        assert found["total"] == 0, found["violations"]


async def connect(folder: Path) -> None:
    """``crmhub connect books`` without the browser: the sandbox approves at once."""
    from auth.credentials import VaultAuth
    from auth.flows import complete_authorization, start_authorization
    from hub.config import load_config
    from hub.runtime import Hub

    hub = await Hub.open(load_config(folder / "crmhub.toml"), auth=VaultAuth())
    try:
        start = await start_authorization(hub, "books")
        async with httpx.AsyncClient() as browser:
            redirect = (await browser.get(start.url)).headers["location"]
        await complete_authorization(hub, redirect)
    finally:
        await hub.close()


@pytest.mark.slow
async def test_webhooks_and_a_spent_daily_limit_through_the_daemon(
    tmp_path: Path, processes: Processes
) -> None:
    folder = tmp_path / "hub"
    folder.mkdir()
    sandbox = XeroProcess(processes, tmp_path)
    daemon = Daemon(folder, processes)
    (folder / "crmhub.toml").write_text(
        CONFIG.format(port=daemon.port, url=sandbox.url, key=WEBHOOK_KEY)
    )
    (folder / "people.csv").write_text("email,first_name,last_name\nann@example.com,Ann,Lee\n")
    from auth import generate_key

    (folder / "crmhub.key").write_text(generate_key() + "\n")
    (folder / "crmhub.key").chmod(0o600)
    await connect(folder)
    daemon.start()
    try:
        wait_until(
            lambda: daemon.count("select count(*) from entities where type = 'invoice'") == 20,
            60,
            "the first Xero sync",
            daemon.log,
        )
        # a contact renamed in Xero: the signed webhook reaches the daemon, which reads it by id
        httpx.post(f"{sandbox.url}/_sandbox/webhooks", json={"url": f"{daemon.url}/hooks/books"})
        rows = daemon.q(
            "select remote_id from links where connection = 'books' and stream = 'companies'"
        )
        company = str(rows[0][0])
        answer = sandbox.post("/_xero/edit", {"id": company, "changes": {"Name": "Hooked Ltd"}})
        assert answer["webhook_status"] == 200
        wait_until(
            lambda: any(
                json.loads(f).get("name") == "Hooked Ltd"
                for (f,) in daemon.q("select fields from entities where type = 'company'")
            ),
            30,
            "the webhook's change in the hub",
            daemon.log,
        )

        # the day's calls are spent: the Xero connection waits, the CSV one goes on
        sandbox.post("/_xero/limits", {"day": 1})
        wait_until(
            lambda: daemon.count(
                "select count(*) from runs where connection = 'books' and status = 'throttled'"
            ),
            30,
            "a throttled Xero run",
            daemon.log,
        )
        [(until, error)] = daemon.q(
            "select throttled_until, error from runs"
            " where connection = 'books' and status = 'throttled'"
        )
        assert "daily limit" in error
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
        assert str(until).startswith(tomorrow) and "00:00:00" in str(until)
        books = daemon.count("select count(*) from runs where connection = 'books'")
        people = daemon.count(
            "select count(*) from runs where connection = 'people' and status = 'ok'"
        )
        time.sleep(6)
        assert daemon.count("select count(*) from runs where connection = 'books'") == books
        assert (
            daemon.count("select count(*) from runs where connection = 'people' and status = 'ok'")
            > people
        )
    finally:
        daemon.stop()
        sandbox.stop()
