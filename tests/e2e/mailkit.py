"""End-to-end helpers for the mail connectors: a sandbox process, ``crmhub up``, and what
engine tests read back from a hub's store."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from hub.engine import sync_connection
from hub.runtime import Hub
from hub.store.schema import entities
from hub.testing.sandboxes import describe, remote_violations
from tests.e2e.conftest import HUB, Processes, child_env, free_port, query, wait_until

SCRIPT = Path(__file__).with_name("mail_sandbox.py")


async def count(hub: Hub, kind: str) -> int:
    """Live entities of ``kind`` in the hub's store."""
    async with hub.store.connect() as db:
        query = select(func.count()).where(entities.c.type == kind, entities.c.deleted_at.is_(None))
        return int(await db.scalar(query.select_from(entities)) or 0)


async def sync(hub: Hub, name: str = "mail") -> Any:
    report = await sync_connection(hub, name)
    assert report.status == "ok", report.error
    return report


async def contact(hub: Hub, email: str) -> tuple[str, dict[str, Any]]:
    """(id, fields) of the contact with ``email``."""
    async with hub.store.connect() as db:
        rows = (await db.execute(select(entities.c.id, entities.c.fields))).all()
    return next((i, f) for i, f in rows if f.get("email") == email)


class MailSandbox:
    """A mail sandbox served by its own process, driven over HTTP only."""

    def __init__(self, name: str, processes: Processes, folder: Path, *args: str) -> None:
        self.name = name
        self.log = folder / f"{name}-sandbox.log"
        command = [sys.executable, str(SCRIPT), name, *args]
        self.proc = processes.start(command, self.log, folder, child_env())

        def url() -> str | None:
            if self.proc.poll() is not None:
                pytest.fail(f"the sandbox exited:\n{self.log.read_text()}")
            found = re.search(rf"^{name} (https?://\S+)$", self.log.read_text(), re.MULTILINE)
            return found.group(1) if found else None

        self.url: str = wait_until(url, 60, "the sandbox to listen", self.log)
        self.http = httpx.Client(base_url=self.url, timeout=30, verify=False)

    def post(self, path: str, **body: Any) -> Any:
        response = self.http.post(path, json=body)
        response.raise_for_status()
        return response.json()

    def get(self, path: str) -> Any:
        response = self.http.get(path)
        response.raise_for_status()
        return response.json()

    def close(self, checked: bool = True) -> None:
        """Fail the test on what broke the provider's description, then stop."""
        try:
            if checked and self.proc.poll() is None:
                found = remote_violations(self.url, verify=False)
                if found:
                    pytest.fail(describe(self.name, found), pytrace=False)
        finally:
            self.http.close()
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=30)


class Daemon:
    """``crmhub up`` on a folder of its own."""

    def __init__(self, folder: Path, processes: Processes) -> None:
        self.folder = folder
        self.processes = processes
        self.port = free_port()
        self.config = folder / "crmhub.toml"
        self.db = folder / "crmhub.db"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / f"daemon-{self.starts}.log"

    def start(self, env: dict[str, str] | None = None) -> None:
        self.starts += 1
        command = [*HUB, "up", "--config", str(self.config), "--log-json"]
        environment = child_env(CRMHUB_CONFIG=str(self.config), **(env or {}))
        self.proc = self.processes.start(command, self.log, self.folder, environment)
        proc = self.proc

        def healthy() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"crmhub up exited with {proc.returncode}:\n{self.log.read_text()}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 60, "crmhub up to answer /healthz", self.log)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)

    def q(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return query(self.db, sql, *params)

    def count(self, sql: str, *params: Any) -> int:
        rows = self.q(sql, *params)
        return int(rows[0][0]) if rows else 0

    def activities(self) -> int:
        return self.count(
            "select count(*) from entities where type = 'activity' and deleted_at is null"
        )

    def logs(self) -> list[Path]:
        return sorted(self.folder.glob("daemon-*.log"))
