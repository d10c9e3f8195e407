"""Notifications to the team: hub events posted to Slack by rules, through the sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors.slack.sandbox import SlackSandboxApp
from hub.cli import app as cli
from hub.cli import commands  # noqa: F401  (registers the commands)
from tests.connectors.slack_kit import LEADS, OPS, connect, open_hub, slack_toml, sync
from tests.connectors.slack_kit import served as served  # the fixture

RULES = f"""
[[connections.team.notify]]
name = "leads"
on = "new_contact"
connections = ["website"]
channel = "{LEADS}"
text = "Someone filled in the contact form."

[[connections.team.notify]]
name = "leads-archive"
on = "new_contact"
connections = ["website"]
channel = "C0GONE0001"

[[connections.team.notify]]
name = "conflicts"
on = "conflict"
channel = "{OPS}"
"""


def folder_with_rules(tmp_path: Path, db_url: str, url: str) -> Path:
    (tmp_path / "website.csv").write_text("email,first_name,last_name\n")
    (tmp_path / "import.csv").write_text("email,first_name\nold@customer.example,Old\n")
    toml = slack_toml(db_url, url, RULES.replace("[[", "PLACEHOLDER[["))
    head, _, tail = toml.partition("[connections.team.oauth]")
    rules_start = head.index("PLACEHOLDER")
    body = head[:rules_start] + "[connections.team.oauth]" + tail + head[rules_start:]
    body = body.replace("PLACEHOLDER", "")
    body += (
        '\n[connections.website]\nconnector = "csv"\npath = "website.csv"\n'
        '\n[connections.import]\nconnector = "csv"\npath = "import.csv"\n'
    )
    (tmp_path / "crmhub.toml").write_text(body)
    return tmp_path


async def upkeep(folder: Path) -> None:
    """One turn of the daemon's upkeep job for the Slack connection."""
    from hub.renewals import renew_connection

    hub = await open_hub(folder)
    try:
        await renew_connection(hub, "team", force=True)
    finally:
        await hub.close()


async def test_each_form_lead_posts_one_message(
    tmp_path: Path, db_url: str, served: tuple[SlackSandboxApp, str]
) -> None:
    app, url = served
    folder = folder_with_rules(tmp_path, db_url, url)
    await connect(folder)
    await upkeep(folder)  # the first turn starts from now: nothing older is announced
    await sync(folder, "import")
    (folder / "website.csv").write_text(
        "email,first_name,last_name\n"
        "ada@lead.example,Ada,Lovelace\ngrace@lead.example,Grace,Hopper\n"
    )
    await sync(folder, "website")

    await upkeep(folder)
    await upkeep(folder)  # a second turn posts nothing again

    posted = app.provider.workspace.posted
    assert [p["channel"] for p in posted] == [LEADS, LEADS]
    texts = sorted(p["text"] for p in posted)
    assert "ada@lead.example" in texts[0] and "grace@lead.example" in texts[1]
    blocks = json.loads(posted[0]["blocks"])
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": "New lead"}}
    assert blocks[1]["text"]["text"] == "Someone filled in the contact form."
    assert app.provider.throttled == 0  # one message a second per channel, as Slack allows
    # the rule whose channel Slack does not know was tried once per lead, and said so
    assert [e.status for e in app.log.entries() if e.path == "/api/chat.postMessage"] == [200] * 4


def test_a_rule_is_tried_with_crmhub_slack_test(
    tmp_path: Path, served: tuple[SlackSandboxApp, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    app, url = served
    folder = folder_with_rules(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}", url)
    asyncio.run(connect(folder))
    monkeypatch.setenv("CRMHUB_CONFIG", str(folder / "crmhub.toml"))

    result = CliRunner().invoke(cli, ["slack", "test", "conflicts"])
    assert result.exit_code == 0, result.output
    assert f"posted a test conflicts message to {OPS}" in result.output
    [posted] = app.provider.workspace.posted
    assert posted["channel"] == OPS and "A conflict to settle" in posted["text"]

    result = CliRunner().invoke(cli, ["slack", "test", "nope"])
    assert result.exit_code == 1
    assert "no Slack connection has a notification rule named 'nope'" in result.output


async def test_every_kind_of_event_is_read_once_with_what_to_do(
    tmp_path: Path, store: object
) -> None:
    from datetime import timedelta

    from sqlalchemy import insert

    from hub.events import read_events
    from hub.store import Store, utcnow
    from hub.store.bulk import new_id
    from hub.store.schema import conflicts, entities, outbox, runs, tokens

    assert isinstance(store, Store)
    before = utcnow() - timedelta(seconds=1)
    now = utcnow()
    person, run, owed = new_id(), new_id(), new_id()
    async with store.begin() as db:
        await db.execute(
            insert(entities).values(
                id=person,
                type="contact",
                created_at=now,
                updated_at=now,
                fields={"email": "ada@lead.example", "first_name": "Ada"},
                provenance={"email": ["website", now.isoformat()]},
            )
        )
        await db.execute(
            insert(conflicts).values(
                entity_id=person,
                connection="crm",
                field="phone",
                base_value=None,
                hub_value="+1 1",
                remote_value="+1 2",
                status="open",
                created_at=now,
            )
        )
        await db.execute(
            insert(runs).values(
                id=run,
                connection="crm",
                status="held",
                full=False,
                started_at=now,
                finished_at=now,
                counts={},
                error="12 deletions held",
            )
        )
        await db.execute(
            insert(outbox).values(
                id=owed,
                connection="crm",
                stream="contacts",
                entity_id=person,
                op="upsert",
                status="dead",
                attempts=5,
                last_error="422 invalid phone",
                created_at=now,
                updated_at=now,
            )
        )
        await db.execute(
            insert(tokens).values(
                connection="crm",
                version=1,
                kind="oauth2",
                ciphertext=b"x",
                key_id="k",
                status="needs_reauth",
                last_error="invalid_grant",
                updated_at=now,
            )
        )

    found = await read_events(store, before)

    assert sorted(e.kind for e in found) == [
        "conflict",
        "dead_letter",
        "held_run",
        "needs_reauth",
        "new_contact",
    ]
    by_kind = {e.kind: e for e in found}
    assert by_kind["new_contact"].connection == "website"
    assert by_kind["new_contact"].facts["E-mail"] == "ada@lead.example"
    assert by_kind["needs_reauth"].facts["Fix with"] == "crmhub connect crm"
    assert by_kind["held_run"].facts["Approve with"] == f"crmhub runs approve {run}"
    assert "crmhub conflicts resolve" in by_kind["conflict"].facts["Settle with"]
    assert await read_events(store, utcnow() + timedelta(seconds=1)) == []
