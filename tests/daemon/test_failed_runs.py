"""A scheduled run that cannot start logs one line: the reason and the fix, nothing masked."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from auth.credentials import VaultAuth
from auth.flows import open_vault
from auth.keys import KEY_ENV, KEY_FILE_ENV, generate_key
from hub.config import load_config
from hub.logging import configure_logging
from hub.runtime import Hub
from hub.sync_scheduler import SyncScheduler


@pytest.fixture
def daemon_log() -> Iterator[io.StringIO]:
    """The daemon's JSON log, as ``crmhub up --log-json`` writes it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    configure_logging(json=True, level="INFO", stream=out)
    try:
        yield out
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.fixture
async def hub(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Hub]:
    for name in (KEY_ENV, KEY_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "crmhub.toml").write_text(
        "[connections.newsletter]\n"
        'connector = "mailchimp"\nlist_id = "abc123"\nschedule = "every 5m"\n'
        'api_base = "http://127.0.0.1:9/3.0/"\n'
    )
    config = load_config(tmp_path / "crmhub.toml", {"CRMHUB_DATABASE_URL": db_url})
    monkeypatch.setenv("CRMHUB_DATABASE_URL", db_url)
    h = await Hub.open(config, auth=VaultAuth())
    try:
        yield h
    finally:
        await h.close()


def scheduler_lines(log: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.getvalue().splitlines()]
    return [line for line in lines if line["logger"] == "crmhub.scheduler"]


async def test_a_run_that_needs_reauthorisation_says_why_and_how_to_fix_it(
    hub: Hub, daemon_log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, generate_key())
    vault = open_vault(hub)
    await vault.put("newsletter", "oauth2", {"access_token": "at-0123456789"})
    reason = "the authorization server refused the refresh with invalid_grant: revoked"
    await vault.mark_needs_reauth("newsletter", reason)
    async with SyncScheduler(hub) as scheduler:
        assert await scheduler.run_job("newsletter") == "failed"
    [line] = [
        x
        for x in scheduler_lines(daemon_log)
        if x["msg"].startswith("scheduled run of 'newsletter'")
    ]
    assert line["level"] == "warning" and line["status"] == "failed"
    assert reason in line["msg"] and "`crmhub connect newsletter`" in line["msg"]
    assert "exc" not in line


async def test_a_missing_key_file_is_one_line_with_the_fix(
    hub: Hub, daemon_log: io.StringIO, tmp_path: Path
) -> None:
    async with SyncScheduler(hub) as scheduler:
        assert await scheduler.run_job("newsletter") == "failed"
    [line] = [
        x
        for x in scheduler_lines(daemon_log)
        if x["msg"].startswith("scheduled run of 'newsletter'")
    ]
    assert line["level"] == "error" and "exc" not in line
    key_file = tmp_path / "crmhub.key"
    assert line["msg"] == (
        f"scheduled run of 'newsletter' failed: {key_file}: no key file; create one with "
        f"`crmhub keys init` or set {KEY_ENV}"
    )
    assert "Traceback" not in daemon_log.getvalue() and "***" not in daemon_log.getvalue()
