"""Slack synced by the engine through its sandbox over real HTTP, into a real store on
SQLite and PostgreSQL: people and messages, threads, incremental reads, rotated tokens."""

from __future__ import annotations

from pathlib import Path

from connectors.slack.sandbox import SlackSandboxApp
from tests.connectors.slack_kit import (
    CHANNEL,
    connect,
    contact_ids,
    entities,
    open_hub,
    slack_toml,
    sync,
)
from tests.connectors.slack_kit import served as served  # the fixture

HISTORY = "/api/conversations.history"
REPLIES = "/api/conversations.replies"


async def test_people_and_conversations(
    tmp_path: Path, db_url: str, served: tuple[SlackSandboxApp, str]
) -> None:
    app, url = served
    slack = app.provider
    (tmp_path / "crmhub.toml").write_text(slack_toml(db_url, url))
    await connect(tmp_path)
    staff = slack.workspace.staff()
    customer = sorted(slack.workspace.external)[0]
    question = slack.say(customer, "Can we move our renewal to March?")
    slack.say(staff[0], "Yes, I'll send the new quote today.", thread_ts=question["ts"])
    slack.say(staff[1], "Welcome to the shared channel!")

    await sync(tmp_path)

    people = await entities(tmp_path, "contact")
    assert sorted(p["email"] for p in people) == sorted(
        slack.workspace.users[u]["profile"]["email"] for u in staff
    )  # no bot, no Slackbot, no customer of the other team (not a member of this workspace)
    activities = {a["body"]: a for a in await entities(tmp_path, "activity")}
    assert set(activities) == {
        "Can we move our renewal to March?",
        "Yes, I'll send the new quote today.",
        "Welcome to the shared channel!",
    }
    asked = activities["Can we move our renewal to March?"]
    answered = activities["Yes, I'll send the new quote today."]
    ids = await contact_ids(tmp_path)
    staff_email = slack.workspace.users[staff[0]]["profile"]["email"]
    assert answered["contacts"] == [ids[staff_email]]  # the author, by address
    assert "contacts" not in asked  # the customer is no contact (yet): never made from here
    assert asked["direction"] == "in" and answered["direction"] == "out"
    assert asked["thread_id"] == answered["thread_id"]
    assert asked["kind"] == "slack_message" and asked["source"] == "slack"

    # a quiet workspace: one listing of people, one of the channel, one look at the thread
    app.log.clear()
    await sync(tmp_path)
    assert app.log.count("GET", HISTORY) == 1 and app.log.count("GET", REPLIES) == 1
    assert len(await entities(tmp_path, "activity")) == 3

    # a late reply in the old thread and a new message are read, nothing twice
    slack.say(customer, "Perfect, thanks!", thread_ts=question["ts"])
    slack.say(staff[2], "Lunch?")
    slack.edit_user(staff[1], title="Head of Sales")
    await sync(tmp_path)
    activities = {a["body"]: a for a in await entities(tmp_path, "activity")}
    assert len(activities) == 5
    assert activities["Perfect, thanks!"]["thread_id"] == asked["thread_id"]
    edited = slack.workspace.users[staff[1]]["profile"]["email"]
    [person] = [p for p in await entities(tmp_path, "contact") if p["email"] == edited]
    assert person["job_title"] == "Head of Sales"

    # the thread's first message deleted in Slack: the thread is no longer followed
    del slack.workspace.messages[CHANNEL][question["ts"]]
    await sync(tmp_path)
    app.log.clear()
    await sync(tmp_path)
    assert app.log.count("GET", REPLIES) == 0


async def test_rotated_token_is_refreshed_through_the_vault(
    tmp_path: Path, db_url: str, served: tuple[SlackSandboxApp, str]
) -> None:
    app, url = served
    (tmp_path / "crmhub.toml").write_text(slack_toml(db_url, url))
    await connect(tmp_path)
    await sync(tmp_path)
    app.oauth.expire_access_tokens()  # twelve hours later

    await sync(tmp_path)

    assert app.oauth.refresh_requests == 1
    assert app.provider.workspace.messages[CHANNEL] == {}


async def test_messages_refer_to_their_people_once_they_are_contacts(
    tmp_path: Path, db_url: str, served: tuple[SlackSandboxApp, str]
) -> None:
    app, url = served
    slack = app.provider
    staff = slack.workspace.staff()
    first, second = sorted(slack.workspace.external)[:2]
    email = {u: slack.workspace.person(u)["profile"]["email"] for u in (first, second)}
    (tmp_path / "crm.csv").write_text(f"email,first_name\n{email[first]},Customer\n")
    (tmp_path / "crmhub.toml").write_text(
        slack_toml(db_url, url) + '\n[connections.crm]\nconnector = "csv"\npath = "crm.csv"\n'
    )
    await connect(tmp_path)
    await sync(tmp_path, "crm")
    slack.say(first, "Our order is late")
    slack.say(staff[0], f"<@{first}> sorry! <@{second}> can you check?")

    await sync(tmp_path)

    ids = await contact_ids(tmp_path)
    activities = {a["body"]: a for a in await entities(tmp_path, "activity")}
    staff_email = slack.workspace.users[staff[0]]["profile"]["email"]
    assert activities["Our order is late"]["contacts"] == [ids[email[first]]]
    mention = activities[f"<@{first}> sorry! <@{second}> can you check?"]
    assert mention["contacts"] == [ids[staff_email], ids[email[first]]]  # the second: pending

    # the second customer becomes a contact elsewhere: the pending reference is resolved
    # at the next run of the Slack connection
    with (tmp_path / "crm.csv").open("a") as f:
        f.write(f"{email[second]},Other\n")
    await sync(tmp_path, "crm")
    await sync(tmp_path)
    ids = await contact_ids(tmp_path)
    activities = {a["body"]: a for a in await entities(tmp_path, "activity")}
    mention = activities[f"<@{first}> sorry! <@{second}> can you check?"]
    assert sorted(mention["contacts"]) == sorted(
        [ids[staff_email], ids[email[first]], ids[email[second]]]
    )


async def test_the_app_asks_slack_for_its_bot_scopes(
    tmp_path: Path, served: tuple[SlackSandboxApp, str]
) -> None:
    from urllib.parse import parse_qs, urlsplit

    from auth.flows import start_authorization
    from connectors.slack.connector import BOT_SCOPES
    from tests.connectors.slack_kit import open_hub

    _, url = served
    db = f"sqlite+aiosqlite:///{tmp_path / 'crmhub.db'}"
    (tmp_path / "crmhub.toml").write_text(slack_toml(db, url))
    hub = await open_hub(tmp_path)
    try:
        start = await start_authorization(hub, "team")
    finally:
        await hub.close()
    query = parse_qs(urlsplit(start.url).query)
    assert query["scope"] == [",".join(BOT_SCOPES)]
    assert query["client_id"] == ["sandbox-client"] and "code_challenge" not in query


async def test_without_the_email_scope_people_are_matched_by_name_when_asked(
    tmp_path: Path, db_url: str, served: tuple[SlackSandboxApp, str]
) -> None:
    from sqlalchemy import select

    from hub.store.schema import links

    app, url = served
    slack = app.provider
    jose = slack.join("José", "Núñez", "jose@customer.example")["id"]
    (tmp_path / "crm.csv").write_text(
        "email,first_name,last_name\njose@customer.example,JOSE,nunez \n"
    )
    # the workspace approved the app without users:read.email: Slack shows no addresses
    scopes = "users:read,channels:history,groups:history,chat:write"
    (tmp_path / "crmhub.toml").write_text(
        slack_toml(db_url, url, "match_by_name = true")
        + f'authorize_params = {{ scope = "{scopes}" }}\n'
        + '\n[connections.crm]\nconnector = "csv"\npath = "crm.csv"\n'
    )
    await connect(tmp_path)
    await sync(tmp_path, "crm")
    [csv_contact] = (await contact_ids(tmp_path)).values()

    report = await sync(tmp_path)

    hub = await open_hub(tmp_path)
    try:
        async with hub.store.connect() as db:
            linked = dict(
                (await db.execute(
                    select(links.c.remote_id, links.c.entity_id).where(
                        links.c.connection == "team", links.c.stream == "users"
                    )
                )).all()
            )  # fmt: skip
    finally:
        await hub.close()
    assert linked[jose] == csv_contact  # the CSV contact of that name, not a new one
    people = await entities(tmp_path, "contact")
    assert [p for p in people if p.get("email")] == [
        {"email": "jose@customer.example", "first_name": "JOSE", "last_name": "nunez"}
    ]
    staff = set(slack.workspace.staff()) - {jose}
    assert len(people) == 1 + len(staff)  # everyone else: a contact of their own
    assert report.counts["matched"] == 1 and not report.errors
