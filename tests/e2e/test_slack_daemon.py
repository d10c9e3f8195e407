"""Slack end to end with a real ``crmhub up``: a lead from a web form posts one Slack
notification; Slack events with a bad signature or an old timestamp are refused by the
daemon's web server and a signed one is taken."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from connectors.slack.sandbox import SANDBOX_SIGNING_SECRET, SlackSandboxApp, create_sandbox
from connectors.slack.webhook import sign
from connectors.webforms import TOKEN_FIELD, issue_token
from hub.sandbox import serve_sandbox
from tests.connectors.slack_kit import CHANNEL, connect, slack_toml
from tests.e2e.test_forms_daemon import base_url, query, wait_until

CRMHUB = str(Path(sys.executable).with_name("crmhub"))
KEY = "e2e-slack-form-key-0123456789"
SECRET = "e2e-slack-form-secret-0123456789"
LEADS = "C0LEADS001"
RULE = f"""
[[connections.team.notify]]
name = "leads"
on = "new_contact"
connections = ["enquiries"]
channel = "{LEADS}"
"""
FORM = f"""
[connections.enquiries]
connector = "webforms"
direction = "pull"
form_name = "Enquiry"
key = "{KEY}"
form_secret = "{SECRET}"
"""


@pytest.fixture
def slack() -> Iterator[tuple[SlackSandboxApp, str]]:
    app = create_sandbox(seed=4, size=5, customers=1, channels=(CHANNEL, LEADS))
    url, server = serve_sandbox(app)
    try:
        yield app, url
    finally:
        server.stop()


@pytest.fixture
def daemon(tmp_path: Path, slack: tuple[SlackSandboxApp, str]) -> Iterator[tuple[str, Path]]:
    _, url = slack
    toml = slack_toml("crmhub.db", url)  # beside crmhub.toml
    head, _, oauth = toml.partition("[connections.team.oauth]")
    (tmp_path / "crmhub.toml").write_text(head + RULE + "\n[connections.team.oauth]" + oauth + FORM)
    asyncio.run(connect(tmp_path))
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


def first_look_done(db: Path) -> bool:
    rows = query(db, "select value from cursors where connection = 'team' and stream = '@push'")
    return bool(rows) and "since" in json.loads(rows[0][0])


@pytest.mark.slow
def test_a_form_lead_posts_one_slack_message(
    daemon: tuple[str, Path], slack: tuple[SlackSandboxApp, str]
) -> None:
    url, folder = daemon
    app, _ = slack
    db, log = folder / "crmhub.db", folder / "daemon.log"
    # the daemon's first look at the hub's events: what came before is not announced
    wait_until(lambda: first_look_done(db), 30, "the first notification turn", log)
    body = {
        "website": "",
        TOKEN_FIELD: issue_token(SECRET, "enquiries", time.time() - 10),
        "email": "lead@prospect.example",
        "first_name": "Lea",
        "last_name": "Dupont",
    }
    answer = httpx.post(
        f"{url}/forms/{KEY}",
        content=urlencode(body),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200, answer.text
    posted = app.provider.workspace.posted
    wait_until(lambda: len(posted) > 0, 90, "the Slack notification", log)
    time.sleep(1)
    assert len(posted) == 1
    assert posted[0]["channel"] == LEADS and "lead@prospect.example" in posted[0]["text"]


def test_slack_events_with_a_bad_signature_or_an_old_timestamp_are_refused(
    daemon: tuple[str, Path],
) -> None:
    url, folder = daemon
    body = json.dumps(
        {
            "type": "event_callback",
            "event_id": "Ev0E2E00001",
            "team_id": "T0SANDBOX1",
            "event": {"type": "team_join", "user": {"id": "U000000009"}},
        }
    ).encode()

    def deliver(timestamp: int, secret: str = SANDBOX_SIGNING_SECRET) -> int:
        headers = {
            "content-type": "application/json",
            "x-slack-request-timestamp": str(timestamp),
            "x-slack-signature": sign(secret, str(timestamp), body),
        }
        return httpx.post(f"{url}/hooks/team", content=body, headers=headers).status_code

    now = int(time.time())
    assert deliver(now, secret="a-guess") == 401
    assert deliver(now - 600) == 401
    assert query(folder / "crmhub.db", "select count(*) from inbox")[0][0] == 0
    assert deliver(now) == 200
    assert query(folder / "crmhub.db", "select delivery_id from inbox") == [("slack:Ev0E2E00001",)]
