"""The demo: a web form, a spreadsheet and a Mailchimp audience kept in step by a running hub.

``crmhub demo`` needs no accounts and no network. It starts the Mailchimp sandbox (a fake
Mailchimp on loopback), writes a folder with ``sales.csv`` and a ``crmhub.toml`` joining a
sign-up form, the spreadsheet and the audience, stores the sandbox's API key, and runs the
daemon (scheduled syncs, webhooks, forms, the inbox) in the same process. A small driver
then acts like people do: someone fills in the sign-up form, someone edits a member "in
Mailchimp" (the sandbox fires the webhook), someone adds a row to the spreadsheet; the feed
shows each change arriving on the other sides.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from hub.config import load_config
from hub.runtime import Hub
from hub.store.schema import entities, runs

SALES = """\
email,first_name,last_name,phone,company,city
Ann.Lee@Example.com ,Ann,Lee,(415) 555-0100,Acme,San Francisco
bob@example.org,Bob,Stone,+1 212 555 0199,Globex,New York
carla@example.net,Carla,Diaz,,Initech,Austin
"""

CONFIG = """\
# crmhub demo: a CSV file and a (sandbox) Mailchimp audience, kept in step.
# Written by `crmhub demo`; the sandbox's address changes on every start.

[hub]
database = "crmhub.db"
phone_region = "US"
http_port = {port}

[connections.sales]
connector = "csv"
path = "sales.csv"
schedule = "every 5s"

[connections.signup]
connector = "webforms"
direction = "pull"
form_name = "Newsletter sign-up"
key = "{form_key}"
form_secret = "{form_secret}"

[connections.newsletter]
connector = "mailchimp"
list_id = "{list_id}"
api_base = "{api_base}"
webhook_secret = "{secret}"
schedule = "every 5s"
"""

SECRET = "demo-webhook-secret-0123456789"
FORM_KEY = "demo-signup-form-key-0123456789"
FORM_SECRET = "demo-form-secret-0123456789"
Say = Callable[[str], None]


def write_demo(folder: Path, *, api_base: str, list_id: str, port: int) -> Path:
    """Fresh demo files in ``folder``; returns the configuration's path."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("crmhub.db", "crmhub.db-wal", "crmhub.db-shm"):
        (folder / name).unlink(missing_ok=True)
    (folder / "sales.csv").write_text(SALES, encoding="utf-8")
    config = folder / "crmhub.toml"
    config.write_text(
        CONFIG.format(
            port=port,
            list_id=list_id,
            api_base=api_base,
            secret=SECRET,
            form_key=FORM_KEY,
            form_secret=FORM_SECRET,
        ),
        encoding="utf-8",
    )
    return config


def csv_people(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        return {row["email"].strip().lower(): row for row in csv.DictReader(f)}


async def _counts(hub: Hub) -> tuple[int, int]:
    async with hub.store.connect() as db:
        people = await db.scalar(
            select(func.count()).select_from(entities).where(entities.c.deleted_at.is_(None))
        )
        done = await db.scalar(select(func.count()).select_from(runs).where(runs.c.status == "ok"))
    return int(people or 0), int(done or 0)


async def _wait_for(check: Callable[[], Any], timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check() if asyncio.iscoroutinefunction(check) else check():
            return True
        await asyncio.sleep(interval)
    return False


async def run_demo(
    folder: Path, *, port: int = 8750, seconds: float | None = None, say: Say = print
) -> bool:
    """Run the demo until Ctrl-C (or ``seconds``); True when every step was seen."""
    from auth.flows import store_api_key
    from connectors.mailchimp.sandbox import LIST_ID, SANDBOX_API_KEY, create_sandbox
    from hub.daemon import Daemon
    from hub.logging import configure_logging
    from hub.sandbox import serve_sandbox

    configure_logging(json=False, level="WARNING")
    logging.getLogger("crmhub.apscheduler").setLevel(logging.ERROR)
    sandbox = create_sandbox(seed=7, size=25)
    url, server = serve_sandbox(sandbox)
    provider = sandbox.provider
    say(f"Mailchimp sandbox on {url} with {len(provider.audience.members)} members")
    config_path = write_demo(folder, api_base=f"{url}/3.0/", list_id=LIST_ID, port=port)
    hub = await Hub.open(load_config(config_path))
    ok = True
    try:
        await store_api_key(hub, "newsletter", SANDBOX_API_KEY)
        daemon = Daemon(hub)
        daemon.install_signal_handlers()
        main = asyncio.create_task(daemon.run(), name="crmhub demo daemon")
        await daemon.ready.wait()
        provider.webhooks.url = f"{daemon.base_url}/hooks/newsletter?secret={SECRET}"
        say(f"crmhub up on {daemon.base_url} (configuration: {config_path})")
        ok = await _drive(hub, provider, folder, say, f"{daemon.base_url}/forms/{FORM_KEY}")
        if seconds is None:
            say("The hub keeps running: edit demo/sales.csv and watch; Ctrl-C stops it.")
            await main
        else:
            await asyncio.wait({main}, timeout=max(0.0, seconds))
            daemon.request_stop()
            await main
    finally:
        await hub.close()
        server.stop()
    return ok


async def _sign_up(form_url: str, say: Say) -> bool:
    """Fill in the sign-up form like a browser: fetch the form's signed issue time, take a
    few seconds to type, post it form-encoded."""
    import httpx

    async with httpx.AsyncClient(timeout=10) as client:
        token = (await client.get(f"{form_url}/token")).json()
        await asyncio.sleep(float(token["min_seconds"]) + 0.5)
        answer = await client.post(
            form_url,
            data={
                "email": "erin@example.com",
                "first_name": "Erin",
                "last_name": "Moss",
                "consent": "on",
                "website": "",
                token["field"]: token["token"],
            },
        )
    say(f"signed up on the web form: erin@example.com (answer {answer.status_code})")
    return answer.status_code in (200, 303)


async def _drive(hub: Hub, provider: Any, folder: Path, say: Say, form_url: str) -> bool:
    sales = folder / "sales.csv"
    members = provider.audience

    def everyone_everywhere() -> bool:
        emails = set(csv_people(sales))
        return len(emails) >= 3 + 25 and members.get("ann.lee@example.com") is not None

    seen = await _wait_for(everyone_everywhere, 60)
    people, done = await _counts(hub)
    say(
        f"first syncs done ({done} runs): {people} contacts in the hub, "
        f"{len(members.members)} members in Mailchimp, {len(csv_people(sales))} rows in sales.csv"
    )
    if not seen:
        say("the spreadsheet and the audience did not meet within a minute")
        return False
    # A person edits a member in Mailchimp: the sandbox fires the webhook.
    form = provider.edit("ann.lee@example.com", {"merge_fields": {"FNAME": "Annie"}})
    provider.notify(form)
    say("edited in Mailchimp: ann.lee@example.com is now called Annie")
    came_back = await _wait_for(
        lambda: csv_people(sales).get("ann.lee@example.com", {}).get("first_name") == "Annie",
        30,
    )
    say(
        "the edit came back into the hub and reached sales.csv"
        if came_back
        else "the edit did not reach sales.csv within 30 s"
    )
    # A person adds a row to the spreadsheet.
    with sales.open("a", encoding="utf-8") as f:
        f.write("dana@example.com,Dana,Park,+1 646 555 0142,Umbrella,Boston\n")
    say("added to sales.csv: dana@example.com")
    arrived = await _wait_for(lambda: members.get("dana@example.com") is not None, 30)
    say(
        "dana@example.com is now a member in Mailchimp"
        if arrived
        else "dana@example.com did not reach Mailchimp within 30 s"
    )
    # A person fills in the sign-up form on the website.
    posted = await _sign_up(form_url, say)

    def erin_subscribed() -> bool:
        member = members.get("erin@example.com")
        return member is not None and member.status == "subscribed"

    joined = posted and await _wait_for(erin_subscribed, 30)
    say(
        "erin@example.com is a subscribed member in Mailchimp and a row in sales.csv"
        if joined and "erin@example.com" in csv_people(sales)
        else "the sign-up did not reach Mailchimp and sales.csv within 30 s"
    )
    return came_back and arrived and joined
