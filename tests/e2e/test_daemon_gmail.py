"""``crmhub up`` with a Gmail connection, the sandbox in a process of its own: the daemon's
renewal job sets up the watch, new mail is pushed through Pub/Sub and becomes an activity
within seconds, forged and unknown pushes are refused and leave nothing behind, and a
daemon killed in the middle of a first sync of 20,000 messages makes each one activity once
it runs again."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from connectors.gmail.sandbox import MAILBOX
from tests.e2e.conftest import Processes, wait_until
from tests.e2e.mailkit import Daemon, MailSandbox

TOKEN = "push-token-0123456789"
CONFIG = """\
[hub]
database = "crmhub.db"
http_port = {port}

[connections.mail]
connector = "gmail"
api_root = "{url}"
service_account_file = "key.json"
mailboxes = ["{mailbox}"]
units_per_second = {units}
pubsub_topic = "projects/crmhub-sandbox/topics/gmail"
push_token = "{token}"
push_subscription = "projects/crmhub-sandbox/subscriptions/gmail-push"
schedule = "{schedule}"
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "hub"
    path.mkdir()
    return path


def setup(
    folder: Path, processes: Processes, *args: str, schedule: str = "every 1h", units: int = 5000
) -> tuple[MailSandbox, Daemon]:
    sandbox = MailSandbox("gmail", processes, folder.parent, *args)
    daemon = Daemon(folder, processes)
    key = sandbox.post("/_gmail/service_account")
    (folder / "key.json").write_text(json.dumps(key))
    (folder / "crmhub.toml").write_text(
        CONFIG.format(
            port=daemon.port,
            url=sandbox.url,
            mailbox=MAILBOX,
            token=TOKEN,
            schedule=schedule,
            units=units,
        )
    )
    sandbox.http.post("/_sandbox/webhooks", json={"url": f"{daemon.url}/hooks/mail?token={TOKEN}"})
    return sandbox, daemon


@pytest.fixture
def mail(folder: Path, processes: Processes) -> Iterator[tuple[MailSandbox, Daemon]]:
    sandbox, daemon = setup(folder, processes, "--size", "40", "--contacts", "5")
    try:
        yield sandbox, daemon
    finally:
        daemon.stop()
        sandbox.close()


def test_new_mail_is_pushed_and_forged_pushes_leave_nothing(
    mail: tuple[MailSandbox, Daemon],
) -> None:
    sandbox, daemon = mail
    daemon.start()
    wait_until(lambda: daemon.activities() == 40, 60, "the first sync", *daemon.logs())
    watches = wait_until(lambda: sandbox.get("/_gmail/stats")["watches"], 30, "the watch")
    assert MAILBOX in watches  # set up by the daemon's renewal job

    sandbox.post(
        "/_gmail/deliver",
        **{"from": "Vera Novak <vera@client.example>", "subject": "Contract", "body": "Signed."},
    )
    wait_until(lambda: daemon.activities() == 41, 15, "the pushed message", *daemon.logs())
    (subject,) = daemon.q(
        "select json_extract(fields, '$.subject') from entities "
        "where json_extract(fields, '$.subject') = 'Contract'"
    )[0]
    assert subject == "Contract"
    pushes = daemon.count("select count(*) from inbox where source = 'mail'")
    assert pushes >= 1

    stats = sandbox.get("/_gmail/stats")
    data = {"emailAddress": MAILBOX, "historyId": 1}
    envelope = {
        "message": {
            "data": base64.b64encode(json.dumps(data).encode()).decode(),
            "messageId": "999",
            "message_id": "999",
            "publishTime": "2024-05-01T10:40:00Z",
            "publish_time": "2024-05-01T10:40:00Z",
        },
        "subscription": "projects/crmhub-sandbox/subscriptions/gmail-push",
    }
    hook = f"{daemon.url}/hooks/mail"
    forged = [
        (hook, envelope),  # no token
        (f"{hook}?token=guess", envelope),  # wrong token
        (f"{hook}?token={TOKEN}", {**envelope, "subscription": "projects/x/subscriptions/y"}),
    ]
    other = json.loads(json.dumps(envelope))
    data = {"emailAddress": "boss@elsewhere.example", "historyId": 1}
    other["message"]["data"] = base64.b64encode(json.dumps(data).encode()).decode()
    forged.append((f"{hook}?token={TOKEN}", other))  # a mailbox this connection does not read
    for url, body in forged:
        answer = httpx.post(url, json=body, timeout=10)
        assert answer.status_code in (401, 404), answer.text
    assert daemon.count("select count(*) from inbox where source = 'mail'") == pushes
    assert daemon.activities() == 41
    assert sandbox.get("/_gmail/stats")["pushes"] == stats["pushes"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_during_a_first_sync_of_20000_messages(folder: Path, processes: Processes) -> None:
    sandbox, daemon = setup(
        folder,
        processes,
        "--size",
        "20000",
        "--contacts",
        "0",
        "--unchecked",
        schedule="every 2s",
        units=1_000_000,
    )
    try:
        sandbox.post("/_gmail/quota", units=10_000_000, window=60)
        daemon.start()
        wait_until(lambda: daemon.activities() > 3000, 240, "part of the first sync", daemon.log)
        daemon.kill()
        part = daemon.activities()
        assert part < 20_000, "the sync ended before the kill: nothing was interrupted"
        daemon.start()
        wait_until(
            lambda: daemon.activities() >= 20_000, 280, "the resumed first sync", *daemon.logs()
        )
        assert daemon.activities() == 20_000
        assert (
            daemon.count(
                "select count(distinct json_extract(fields, '$.message_id')) from entities "
                "where type = 'activity'"
            )
            == 20_000
        )
        assert (
            daemon.count(
                "select count(*) from links where connection = 'mail' and stream = 'messages'"
            )
            == 20_000
        )
    finally:
        daemon.stop()
        sandbox.close(checked=False)
