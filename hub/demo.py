"""The demo: a web form, a spreadsheet and a Mailchimp audience kept in step by a running hub.

``crmhub demo`` needs no accounts and no network. It starts the Mailchimp sandbox (a fake
Mailchimp on loopback), writes a folder with ``sales.csv`` and a ``crmhub.toml`` joining a
sign-up form, the spreadsheet and the audience, stores the sandbox's API key, and runs the
daemon (scheduled syncs, webhooks, forms, the inbox) in the same process. A small driver
then acts like people do: someone fills in the sign-up form, someone edits a member "in
Mailchimp" (the sandbox fires the webhook), someone adds a row to the spreadsheet; the feed
shows each change arriving on the other sides, and every change the hub makes is printed
as it happens (:class:`hub.feed.ChangeFeed`), the person's own edits of ``sales.csv``
included.

The folder is kept between starts: ``sales.csv`` (with the person's edits) and
``crmhub.toml`` stay as they are; only the sandbox's address and the port are brought up to
date. The hub's database starts over on each start, like the sandbox's audience it
describes. ``fresh=True`` (``crmhub demo --fresh``) starts the files over too.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import re
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from auth.credentials import VaultAuth
from hub.config import load_config
from hub.errors import CrmhubError
from hub.feed import ChangeFeed
from hub.runtime import Hub
from hub.store.schema import entities, runs
from hub.store.status import RunStatus

SALES = """\
email,first_name,last_name,phone,company,city
Ann.Lee@Example.com ,Ann,Lee,(415) 555-0100,Acme,San Francisco
bob@example.org,Bob,Stone,+1 212 555 0199,Globex,New York
carla@example.net,Carla,Diaz,,Initech,Austin
"""

HEADER = "# crmhub demo: a CSV file and a (sandbox) Mailchimp audience, kept in step."
CONFIG = (
    HEADER
    + """
# Written by `crmhub demo`, kept between starts (`crmhub demo --fresh` writes it again);
# the demo sets api_base (the sandbox's address changes on every start) and http_port.

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
)

DANA = {
    "email": "dana@example.com",
    "first_name": "Dana",
    "last_name": "Park",
    "phone": "+1 646 555 0142",
    "company": "Umbrella",
    "city": "Boston",
}
SECRET = "demo-webhook-secret-0123456789"
FORM_KEY = "demo-signup-form-key-0123456789"
FORM_SECRET = "demo-form-secret-0123456789"
Say = Callable[[str], None]


def write_demo(
    folder: Path, *, api_base: str, list_id: str, port: int, fresh: bool = False
) -> Path:
    """The demo's files in ``folder``, kept from an earlier start unless ``fresh``; the
    hub's database is always new. Returns the configuration's path."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "crmhub.toml"
    if config.exists() and not config.read_text(encoding="utf-8").startswith(HEADER):
        raise CrmhubError(
            f"{config} is not the demo's configuration: choose another folder (--folder DIR)"
        )
    if fresh:
        config.unlink(missing_ok=True)
        (folder / "sales.csv").unlink(missing_ok=True)
    for name in ("crmhub.db", "crmhub.db-wal", "crmhub.db-shm"):
        (folder / name).unlink(missing_ok=True)
    if not (folder / "sales.csv").exists():
        (folder / "sales.csv").write_text(SALES, encoding="utf-8")
    if not config.exists():
        text = CONFIG.format(
            port=port,
            list_id=list_id,
            api_base=api_base,
            secret=SECRET,
            form_key=FORM_KEY,
            form_secret=FORM_SECRET,
        )
    else:
        text = _set(config, config.read_text(encoding="utf-8"), "api_base", f'"{api_base}"')
        text = _set(config, text, "http_port", str(port))
    config.write_text(text, encoding="utf-8")
    return config


def _set(path: Path, text: str, key: str, value: str) -> str:
    """``text`` with the one line ``key = ...`` set to ``value``."""
    line = re.compile(rf"^{key}\s*=.*$", re.MULTILINE)
    if len(line.findall(text)) != 1:
        raise CrmhubError(
            f"{path} needs one `{key} = ...` line for the demo to set "
            "(crmhub demo --fresh writes the file again)"
        )
    return line.sub(f"{key} = {value}", text)


def check_port(port: int, host: str = "127.0.0.1") -> None:
    """Fail clearly, before anything starts, when the hub's port is taken."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise CrmhubError(
                f"the demo cannot listen on {host}:{port}: {exc.strerror or exc}; choose "
                "another port with `crmhub demo --port N` (--port 0 takes any free one)"
            ) from None


def csv_people(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        return {row["email"].strip().lower(): row for row in csv.DictReader(f)}


async def _counts(hub: Hub) -> tuple[int, int]:
    async with hub.store.connect() as db:
        people = await db.scalar(
            select(func.count())
            .select_from(entities)
            .where(entities.c.deleted_at.is_(None), entities.c.type == "contact")
        )
        done = await db.scalar(
            select(func.count()).select_from(runs).where(runs.c.status == RunStatus.OK)
        )
    return int(people or 0), int(done or 0)


async def _wait_for(check: Callable[[], Any], timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check() if asyncio.iscoroutinefunction(check) else check():
            return True
        await asyncio.sleep(interval)
    return False


async def run_demo(
    folder: Path,
    *,
    port: int = 8750,
    seconds: float | None = None,
    fresh: bool = False,
    say: Say = print,
) -> bool:
    """Run the demo until SIGINT/SIGTERM (or ``seconds`` after its steps); False when a
    step was not seen. A daemon that cannot start (its port taken) raises its error."""
    from connectors.mailchimp.sandbox import LIST_ID, create_sandbox
    from hub.logging import configure_logging
    from hub.sandbox import serve_sandbox

    check_port(port)
    configure_logging(json=False, level="WARNING")
    logging.getLogger("crmhub.apscheduler").setLevel(logging.ERROR)
    sandbox = create_sandbox(seed=7, size=25)
    url, server = serve_sandbox(sandbox)
    try:
        provider = sandbox.provider
        say(f"Mailchimp sandbox on {url} with {len(provider.audience.members)} members")
        config_path = write_demo(
            folder, api_base=f"{url}/3.0/", list_id=LIST_ID, port=port, fresh=fresh
        )
        hub = await Hub.open(load_config(config_path), auth=VaultAuth())
        try:
            return await _run(hub, provider, folder, config_path, seconds, say)
        finally:
            await hub.close()
    finally:
        server.stop()


async def _run(
    hub: Hub, provider: Any, folder: Path, config_path: Path, seconds: float | None, say: Say
) -> bool:
    from auth.flows import store_api_key
    from connectors.mailchimp.sandbox import SANDBOX_API_KEY
    from hub.daemon import Daemon

    await store_api_key(hub, "newsletter", SANDBOX_API_KEY)
    daemon = Daemon(hub)
    feed = asyncio.create_task(ChangeFeed(hub.store).follow(say), name="crmhub demo feed")
    daemon.install_signal_handlers()
    main = asyncio.create_task(daemon.run(), name="crmhub demo daemon")
    try:
        # The daemon may end before it is ready: its port taken (its error is raised
        # here), or a signal while it starts.
        if not await _first(main, asyncio.create_task(daemon.ready.wait())):
            await main
            return True
        provider.webhooks.url = f"{daemon.base_url}/hooks/newsletter?secret={SECRET}"
        say(f"crmhub up on {daemon.base_url} (configuration: {config_path})")
        form_url = f"{daemon.base_url}/forms/{FORM_KEY}"
        steps = asyncio.create_task(_drive(hub, provider, folder, say, form_url))
        if not await _first(main, steps):
            await main  # stopped by a signal (or failed) while the steps ran
            return True
        ok = steps.result()
        sales = folder / "sales.csv"
        ending = "Ctrl-C stops it" if seconds is None else f"it stops in {seconds:g} s"
        say(f"The hub keeps running: edit {sales} and watch the changes; {ending}.")
        if seconds is not None:
            await asyncio.wait({main}, timeout=max(0.0, seconds))
            daemon.request_stop()
        await main
        return ok
    finally:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if not main.done():
            daemon.request_stop()
            with contextlib.suppress(BaseException):
                await main
        feed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feed


async def _first(main: asyncio.Task[Any], task: asyncio.Task[Any]) -> bool:
    """Wait for ``task`` or for ``main`` to end, whichever comes first; True when ``task``
    finished (its result is left in it), else it is cancelled."""
    await asyncio.wait({main, task}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False


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


def _member_emails(members: Any) -> set[str]:
    with members.lock:
        return {m.email.lower() for m in members.members.values() if not m.archived}


async def _drive(hub: Hub, provider: Any, folder: Path, say: Say, form_url: str) -> bool:
    """Act like people do, on whatever ``sales.csv`` holds (kept from an earlier start or
    not); True when each change reached the other side."""
    sales = folder / "sales.csv"
    members = provider.audience

    def everyone_everywhere() -> bool:
        rows = {e for e in csv_people(sales) if "@" in e}
        return rows == _member_emails(members)

    seen = await _wait_for(everyone_everywhere, 60)
    people, done = await _counts(hub)
    say(
        f"first syncs done ({done} runs): {people} contacts in the hub, "
        f"{len(_member_emails(members))} members in Mailchimp, "
        f"{len(csv_people(sales))} rows in sales.csv"
    )
    if not seen:
        say("the spreadsheet and the audience did not meet within a minute")
        return False
    came_back = await _edit_in_mailchimp(provider, sales, say)
    arrived = await _add_a_row(members, sales, say)
    # A person fills in the sign-up form on the website.
    posted = await _sign_up(form_url, say)

    def erin_everywhere() -> bool:
        member = members.get("erin@example.com")
        subscribed = member is not None and member.status == "subscribed"
        return subscribed and "erin@example.com" in csv_people(sales)

    joined = posted and await _wait_for(erin_everywhere, 30)
    say(
        "erin@example.com is a subscribed member in Mailchimp and a row in sales.csv"
        if joined
        else "the sign-up did not reach Mailchimp and sales.csv within 30 s"
    )
    return came_back and arrived and joined


async def _edit_in_mailchimp(provider: Any, sales: Path, say: Say) -> bool:
    """A person renames a member in Mailchimp (the sandbox fires the webhook); the new
    name must reach sales.csv."""
    who = "ann.lee@example.com"
    if who not in _member_emails(provider.audience):
        who = sorted(_member_emails(provider.audience))[0]
    now = csv_people(sales).get(who, {}).get("first_name", "")
    name = "Annie" if now != "Annie" else "Ann"
    provider.notify(provider.edit(who, {"merge_fields": {"FNAME": name}}))
    say(f"edited in Mailchimp: {who} is now called {name}")
    came_back = await _wait_for(
        lambda: csv_people(sales).get(who, {}).get("first_name") == name, 30
    )
    say(
        "the edit came back into the hub and reached sales.csv"
        if came_back
        else "the edit did not reach sales.csv within 30 s"
    )
    return came_back


async def _add_a_row(members: Any, sales: Path, say: Say) -> bool:
    """A person adds a row to the spreadsheet; it must become a member."""
    who = "dana@example.com"
    if who in csv_people(sales):
        say(f"{who} is in sales.csv already (kept from an earlier start)")
    else:
        text = sales.read_text(encoding="utf-8-sig")
        header = next(csv.reader([text.splitlines()[0]])) if text.strip() else list(DANA)
        with sales.open("a", encoding="utf-8", newline="") as f:
            if text and not text.endswith("\n"):
                f.write("\n")
            csv.DictWriter(f, header, restval="", extrasaction="ignore").writerow(DANA)
        say(f"added to sales.csv: {who}")
    arrived = await _wait_for(lambda: members.get(who) is not None, 30)
    say(
        f"{who} is now a member in Mailchimp"
        if arrived
        else f"{who} did not reach Mailchimp within 30 s"
    )
    return arrived
