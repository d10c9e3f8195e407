"""``crmhub up`` with an Outlook connection (application permissions, msal against the
sandbox's identity platform over HTTPS): the renewal job makes the change subscriptions
(Graph validates the hub's endpoint), new mail is notified and becomes an activity within
seconds, notifications with a wrong client state or an unknown subscription are refused
and leave nothing behind, and lifecycle events renew or make the subscriptions again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from connectors.outlook.sandbox import MAILBOX, TENANT
from tests.e2e.conftest import Processes, wait_until
from tests.e2e.mailkit import Daemon, MailSandbox

STATE = "client-state-0123456789abcdef"
CONFIG = """\
[hub]
database = "crmhub.db"
http_port = {port}

[connections.mail]
connector = "outlook"
mailbox = "{mailbox}"
graph_url = "{url}/v1.0"
notification_url = "{hook}"
client_state = "{state}"
schedule = "every 1h"

[connections.mail.oauth]
authority = "{url}/oauth/{tenant}"
client_credentials = true
client_id = "sandbox-client"
ca_bundle = "{ca}"
scopes = ["https://graph.microsoft.com/.default"]
"""


@pytest.fixture
def outlook(tmp_path: Path, processes: Processes) -> Iterator[tuple[MailSandbox, Daemon]]:
    folder = tmp_path / "hub"
    folder.mkdir()
    tls = tmp_path / "tls"
    sandbox = MailSandbox(
        "outlook", processes, tmp_path, "--size", "30", "--contacts", "4", "--tls-folder", str(tls)
    )
    daemon = Daemon(folder, processes)
    (folder / "crmhub.toml").write_text(
        CONFIG.format(
            port=daemon.port,
            mailbox=MAILBOX,
            url=sandbox.url,
            hook=f"{daemon.url}/hooks/mail",
            state=STATE,
            tenant=TENANT,
            ca=tls / "outlook-sandbox.pem",
        )
    )
    try:
        yield sandbox, daemon
    finally:
        daemon.stop()
        sandbox.close()


def test_subscriptions_notifications_and_lifecycle(outlook: tuple[MailSandbox, Daemon]) -> None:
    sandbox, daemon = outlook
    daemon.start({"CRMHUB_CONNECTIONS__MAIL__OAUTH__CLIENT_SECRET": "sandbox-secret"})
    wait_until(lambda: daemon.activities() == 30, 60, "the first sync", *daemon.logs())
    subs = wait_until(
        lambda: (
            len(sandbox.get("/_outlook/stats")["subscriptions"]) == 3
            and sandbox.get("/_outlook/stats")["subscriptions"]
        ),
        30,
        "the subscriptions",
        *daemon.logs(),
    )
    assert {s["clientState"] for s in subs} == {STATE}
    assert {s["resource"].split("/", 2)[2] for s in subs} == {
        "mailFolders('inbox')/messages",
        "mailFolders('sentitems')/messages",
        "contacts",
    }

    sandbox.post("/_outlook/deliver", **{"from": "Ida Ek <ida@client.example>", "subject": "Hej"})
    wait_until(lambda: daemon.activities() == 31, 15, "the notified message", *daemon.logs())

    hook = f"{daemon.url}/hooks/mail"
    answer = httpx.post(f"{hook}?validationToken=abc%20123", timeout=10)
    assert answer.status_code == 200 and answer.text == "abc 123"
    assert answer.headers["content-type"].startswith("text/plain")
    stored = daemon.count("select count(*) from inbox where source = 'mail'")
    known = subs[0]
    forged = [
        {**known, "clientState": "guessed"},  # wrong client state
        {**known, "subscriptionId": "0" * 32, "clientState": STATE},  # not ours
    ]
    for item in forged:
        note = {
            "subscriptionId": item.get("subscriptionId", item["id"]),
            "subscriptionExpirationDateTime": known["expirationDateTime"],
            "changeType": "created",
            "resource": "Users/x/Messages/y",
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.Message",
                "@odata.id": "y",
                "id": "y",
            },
            "clientState": item["clientState"],
            "tenantId": TENANT,
        }
        answer = httpx.post(hook, content=json.dumps({"value": [note]}), timeout=10)
        assert answer.status_code == 401, answer.text
    assert daemon.count("select count(*) from inbox where source = 'mail'") == stored
    assert daemon.activities() == 31

    # Graph removes a subscription: the hub makes it again
    sandbox.post("/_outlook/lifecycle", subscription=known["id"], event="subscriptionRemoved")

    def remade() -> bool:
        now = sandbox.get("/_outlook/stats")["subscriptions"]
        return len(now) == 3 and known["id"] not in {s["id"] for s in now}

    wait_until(remade, 20, "the removed subscription made again", *daemon.logs())
    # Graph asks for reauthorization: the hub renews every subscription it keeps
    stats = sandbox.get("/_outlook/stats")
    first = stats["subscriptions"][0]
    sandbox.post("/_outlook/lifecycle", subscription=first["id"], event="reauthorizationRequired")

    def renewed() -> bool:
        now = sandbox.get("/_outlook/stats")
        return now["renewals"] >= stats["renewals"] + 3 and len(now["subscriptions"]) == 3

    wait_until(renewed, 20, "the renewal", *daemon.logs())


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_during_a_first_sync_of_20000_messages(
    tmp_path: Path, processes: Processes
) -> None:
    folder = tmp_path / "hub"
    folder.mkdir()
    tls = tmp_path / "tls"
    sandbox = MailSandbox(
        "outlook", processes, tmp_path, "--size", "20000", "--contacts", "0",
        "--unchecked", "--tls-folder", str(tls),
    )  # fmt: skip
    daemon = Daemon(folder, processes)
    config = CONFIG.format(
        port=daemon.port,
        mailbox=MAILBOX,
        url=sandbox.url,
        hook=f"{daemon.url}/hooks/mail",
        state=STATE,
        tenant=TENANT,
        ca=tls / "outlook-sandbox.pem",
    )
    config = config.replace('schedule = "every 1h"', 'schedule = "every 2s"\npage_size = 100')
    config = config.replace("notification_url", "# notification_url")
    (folder / "crmhub.toml").write_text(config)
    env = {"CRMHUB_CONNECTIONS__MAIL__OAUTH__CLIENT_SECRET": "sandbox-secret"}
    try:
        daemon.start(env)
        wait_until(lambda: daemon.activities() > 2000, 120, "part of the first sync", daemon.log)
        daemon.kill()
        assert daemon.activities() < 20_000, "the sync ended before the kill"
        daemon.start(env)
        wait_until(lambda: daemon.activities() >= 20_000, 240, "the resumed sync", *daemon.logs())
        assert daemon.activities() == 20_000
        assert (
            daemon.count(
                "select count(distinct json_extract(fields, '$.message_id')) from entities "
                "where type = 'activity'"
            )
            == 20_000
        )
    finally:
        daemon.stop()
        sandbox.close(checked=False)
