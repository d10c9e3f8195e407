"""Fixtures for end-to-end tests with real processes: the Mailchimp sandbox and ``crmhub up``.

Every process a test starts is registered with :class:`Processes` and killed by its PID
(SIGKILL, then reaped) when the test ends, whatever happened, so no process outlives its
test. The daemon's port is chosen once per test and kept across restarts, so the webhook
URL given to the sandbox stays valid.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.mailchimp.sandbox import LIST_ID, SANDBOX_API_KEY
from hub.testing.sandboxes import describe, remote_violations

HUB = [sys.executable, "-m", "hub"]
SANDBOX_SCRIPT = Path(__file__).with_name("mailchimp_sandbox.py")
SECRET = "e2e-webhook-secret-0123456789"
KEY_VAR = "CRMHUB_E2E_MAILCHIMP_KEY"

CONFIG = """\
[hub]
database = "crmhub.db"
phone_region = "US"
http_port = {port}

[connections.people]
connector = "csv"
path = "people.csv"
schedule = "{csv_schedule}"

[connections.newsletter]
connector = "mailchimp"
list_id = "{list_id}"
api_base = "{api_base}"
webhook_secret = "{secret}"
schedule = "{schedule}"
{extra}
"""


def free_port() -> int:
    """A port free on loopback now (the daemon binds it with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """The environment without outside crmhub settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMHUB_")}
    env.update(extra)
    return env


def wait_until(check: Callable[[], Any], timeout: float, what: str, *logs: Path) -> Any:
    """Poll ``check`` until it returns something truthy (returned); fail with the logs."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}:\n{p.read_text()[-4000:]}" for p in logs if p.exists())
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}\n{tails}")
        time.sleep(0.1)


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on the SQLite store (empty while it or its tables do not exist)."""
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


def scalar(db: Path, sql: str, *params: Any) -> Any:
    rows = query(db, sql, *params)
    return rows[0][0] if rows else None


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


class Processes:
    """Child processes of one test; :meth:`cleanup` kills the ones still running by PID."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, command: list[str], log: Path, cwd: Path, env: dict[str, str]) -> Any:
        with log.open("ab") as out:
            proc = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.started.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


class Sandbox:
    """The Mailchimp sandbox in its own process, driven over HTTP only."""

    def __init__(self, url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.proc = proc
        self.log_path = log
        self.http = httpx.Client(base_url=url, timeout=30)

    @property
    def api_base(self) -> str:
        return f"{self.url}/3.0/"

    def members(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every member of the audience (the listing, paged like a client would)."""
        found: list[dict[str, Any]] = []
        while True:
            params: dict[str, Any] = {"count": 1000, "offset": len(found)}
            if status:
                params["status"] = status
            response = self.http.get(
                f"/3.0/lists/{LIST_ID}/members", params=params, auth=("e2e", SANDBOX_API_KEY)
            )
            response.raise_for_status()
            body = response.json()
            found += body["members"]
            if len(found) >= body["total_items"] or not body["members"]:
                return found

    def member(self, email: str) -> dict[str, Any] | None:
        email = email.strip().lower()
        return next((m for m in self.members() if m["email_address"] == email), None)

    def requests(self) -> list[dict[str, Any]]:
        response = self.http.get("/_sandbox/log")
        response.raise_for_status()
        return list(response.json()["entries"])

    def count(self, method: str, path: str, status: int | None = None) -> int:
        return sum(
            1
            for e in self.requests()
            if e["method"] == method
            and e["path"] == path
            and (status is None or e["status"] == status)
        )

    def faults(self, **changes: Any) -> dict[str, Any]:
        response = self.http.post("/_sandbox/faults", json=changes)
        response.raise_for_status()
        return dict(response.json())

    def webhooks_to(self, url: str) -> None:
        self.http.post("/_sandbox/webhooks", json={"url": url}).raise_for_status()

    def edit(self, email: str, **changes: Any) -> dict[str, Any]:
        """A change "in the Mailchimp UI"; fires the webhook when a URL is set."""
        response = self.http.post("/_mailchimp/edit", json={"email": email, **changes})
        response.raise_for_status()
        return dict(response.json())


class HubProcess:
    """``crmhub up`` on a folder of its own, started and stopped like an operator would."""

    def __init__(self, folder: Path, processes: Processes) -> None:
        self.folder = folder
        self.processes = processes
        self.port = free_port()
        self.config = folder / "crmhub.toml"
        self.db = folder / "crmhub.db"
        self.csv = folder / "people.csv"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hook(self) -> str:
        return f"{self.url}/hooks/newsletter?secret={SECRET}"

    @property
    def log(self) -> Path:
        return self.folder / f"daemon-{self.starts}.log"

    def configure(
        self,
        sandbox: Sandbox,
        *,
        schedule: str = "every 2s",
        csv_schedule: str = "every 2s",
        extra: str = "",
    ) -> None:
        """Write ``crmhub.toml`` and store the sandbox's API key with ``crmhub connect``."""
        self.config.write_text(
            CONFIG.format(
                port=self.port,
                list_id=LIST_ID,
                api_base=sandbox.api_base,
                secret=SECRET,
                schedule=schedule,
                csv_schedule=csv_schedule,
                extra=extra,
            )
        )
        env = child_env(CRMHUB_CONFIG=str(self.config), **{KEY_VAR: SANDBOX_API_KEY})
        done = subprocess.run(
            [*HUB, "connect", "newsletter", "--value-from-env", KEY_VAR],
            cwd=self.folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def start(self) -> subprocess.Popen[bytes]:
        """Start the daemon and wait until ``/healthz`` answers 200."""
        assert self.proc is None or self.proc.poll() is not None, "the daemon is running"
        self.starts += 1
        command = [*HUB, "up", "--config", str(self.config), "--log-json", "--log-level", "info"]
        self.proc = self.processes.start(
            command, self.log, self.folder, child_env(CRMHUB_CONFIG=str(self.config))
        )
        proc = self.proc

        def healthy() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"crmhub up exited with {proc.returncode}:\n{self.log.read_text()}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 60, "crmhub up to answer /healthz", self.log)
        return proc

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL, by PID: a crash."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 30) -> float:
        """SIGTERM and wait; returns the seconds it took to exit."""
        assert self.proc is not None
        began = time.monotonic()
        os.kill(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=timeout)
        return time.monotonic() - began

    def q(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return query(self.db, sql, *params)

    def one(self, sql: str, *params: Any) -> Any:
        return scalar(self.db, sql, *params)

    def runs(self, connection: str, status: str = "ok") -> int:
        return int(
            self.one(
                "select count(*) from runs where connection = ? and status = ?",
                connection,
                status,
            )
            or 0
        )

    def contacts(self) -> list[dict[str, Any]]:
        """Live contacts' fields."""
        import json

        rows = self.q("select fields from entities where type = 'contact' and deleted_at is null")
        return [json.loads(r[0]) for r in rows]

    def logs(self) -> list[Path]:
        return sorted(self.folder.glob("daemon-*.log"))


@pytest.fixture
def processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.cleanup()


@pytest.fixture
def start_sandbox(tmp_path: Path, processes: Processes) -> Iterator[Callable[..., Sandbox]]:
    """``start_sandbox(size=50, seed=0)``: the sandbox served by its own process."""
    opened: list[Sandbox] = []

    def start(size: int = 50, seed: int = 0) -> Sandbox:
        log = tmp_path / f"sandbox-{len(opened)}.log"
        command = [sys.executable, str(SANDBOX_SCRIPT), "--size", str(size), "--seed", str(seed)]
        proc = processes.start(command, log, tmp_path, child_env())

        def url() -> str | None:
            if proc.poll() is not None:
                pytest.fail(f"the sandbox exited with {proc.returncode}:\n{log.read_text()}")
            found = re.search(r"^mailchimp (http://\S+)$", log.read_text(), re.MULTILINE)
            return found.group(1) if found else None

        sandbox = Sandbox(wait_until(url, 60, "the sandbox to listen", log), proc, log)
        opened.append(sandbox)
        return sandbox

    yield start
    # The sandbox holds the traffic of the test to Mailchimp's API description.
    broken = [(s, remote_violations(s.url)) for s in opened if s.proc.poll() is None]
    for sandbox in opened:
        sandbox.http.close()
    problems = [describe("mailchimp", found) for _, found in broken if found]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def hub(tmp_path: Path, processes: Processes) -> HubProcess:
    """A folder for ``crmhub up``; ``configure(sandbox)`` then ``start()``."""
    folder = tmp_path / "hub"
    folder.mkdir()
    return HubProcess(folder, processes)
