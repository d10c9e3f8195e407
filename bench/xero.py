"""Xero connector against its sandbox: the first sync of a big organisation under Xero's
limit, then the push of changed contacts.

    python bench/xero.py [--contacts 20000] [--invoices 50000] [--push 1000]
                         [--scale 10] [--checked]

The sandbox serves one organisation over HTTP on loopback (in a thread of this process)
and enforces Xero's per-organisation limit of 60 calls a minute; ``--scale`` multiplies
that limit on both sides (the sandbox's and the connector's pacing), so a run the real
limit would make last 12 minutes takes about 70 s at ``--scale 10``: the ratio to the
bound is the same. ``--checked`` holds every request and answer to Xero's description
(slower; the checks, not the connector). A crmhub folder on a SQLite store holds the
connection, its grant in the vault (tokens refresh and rotate as against Xero).

1. first sync: ``--contacts`` contacts (a quarter organisations with two contact persons)
   and ``--invoices`` invoices; the run's length against the bound the limit sets (calls
   needed / calls allowed a minute, the minimum being one call per 100 records listed);
2. push: ``--push`` people's last names changed in the hub, then one sync: an incremental
   pull and the writes, counted by method and path against the minimum (50 contacts a
   ``POST /Contacts``).

Prints figures, never asserts. Targets (the issue): first sync within 1.2 x the bound;
push within 1.1 x the minimum calls.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

CONFIG = """\
[hub]
database = "sqlite+aiosqlite:///{db}"

[connections.books]
connector = "xero"
api_base = "{url}"

[connections.books.oauth]
authorize_url = "{url}/oauth/authorize"
token_url = "{url}/oauth/token"
client_id = "sandbox-client"
client_secret = "sandbox-secret"
"""


def _calls(requests: list[dict[str, Any]]) -> dict[str, int]:
    counted: dict[str, int] = {}
    for r in requests:
        key = f"{r['method']} {r['path'].removeprefix('/api.xro/2.0')}"
        counted[key] = counted.get(key, 0) + 1
    return counted


async def run(args: argparse.Namespace) -> None:
    import auth
    import connectors.xero.client as client
    from auth.credentials import VaultAuth
    from auth.flows import open_vault, resolve, store_oauth_token
    from connectors.xero.sandbox import create_sandbox
    from connectors.xero.sandbox_limits import Limits
    from hub.config import load_config
    from hub.edit import edit_entity
    from hub.engine import sync_connection
    from hub.http import RateLimit
    from hub.runtime import Hub
    from hub.sandbox import serve_sandbox
    from hub.store.schema import links

    per_minute = 60 * args.scale
    client.TENANT_LIMIT = RateLimit(rate=per_minute, per_seconds=60, concurrency=5, daily=100_000)
    started = time.perf_counter()
    app = create_sandbox(
        seed=7,
        size=args.contacts,
        invoices=args.invoices,
        validate=args.checked,
        limits=Limits(minute=per_minute, day=100_000),
    )
    sandbox = app.provider
    org = sandbox.org(0)
    # the records were made over the last 30 days; changes from now on happen now
    assert org.contacts or not args.contacts
    spread = 30 * 86400 / max(1, len(org.contacts) + len(org.invoices))
    for n, item in enumerate([*org.contacts.values(), *org.invoices.values()]):
        item["_updated"] = int((time.time() - 30 * 86400 + n * spread) * 1000)
    print(
        f"sandbox: {args.contacts:,} contacts, {args.invoices:,} invoices "
        f"({time.perf_counter() - started:.1f} s to make); limit {per_minute}/min "
        f"(Xero's 60 x {args.scale})"
    )
    url, server = serve_sandbox(app)
    folder = Path(tempfile.mkdtemp(prefix="crmhub-xero-bench-"))
    (folder / "crmhub.toml").write_text(CONFIG.format(db=folder / "hub.db", url=url))
    (folder / "crmhub.key").write_text(auth.generate_key() + "\n")
    (folder / "crmhub.key").chmod(0o600)
    try:
        hub = await Hub.open(load_config(folder / "crmhub.toml"), auth=VaultAuth())
        try:
            grant = sandbox.oauth.issue_grant(scope="accounting.contacts offline_access")
            await store_oauth_token(open_vault(hub), resolve(hub, "books"), grant)

            sandbox.requests.clear()
            clock = time.perf_counter()
            report = await sync_connection(hub, "books")
            took = time.perf_counter() - clock
            calls = _calls(sandbox.requests)
            needed = math.ceil(args.contacts / 100) + math.ceil(args.invoices / 100)
            made = sum(calls.values())
            bound = needed / per_minute * 60
            print(
                f"first sync: {report.status} in {took:.1f} s, "
                f"{report.counts.get('records', 0):,} records; API calls {made} {calls} "
                f"(+1 GET /connections), minimum {needed}"
            )
            print(f"  refused by the sandbox's limits: {dict(sandbox.limits.refused) or 'none'}")
            print(
                f"  bound at {per_minute}/min: {bound:.1f} s; run / bound = {took / bound:.2f} "
                f"(target <= 1.2); at Xero's real 60/min the bound is {needed / 60:.1f} min"
            )

            async with hub.store.connect() as db:
                from sqlalchemy import select

                rows = await db.execute(
                    select(links.c.entity_id, links.c.remote_id).where(
                        links.c.connection == "books", links.c.stream == "contacts"
                    )
                )
                people = [r.entity_id for r in rows if "#" not in r.remote_id][: args.push]
            for n, entity_id in enumerate(people):
                await edit_entity(hub, entity_id, {"last_name": f"Changed{n}"})
            sandbox.requests.clear()
            sandbox.batch_sizes.clear()
            clock = time.perf_counter()
            report = await sync_connection(hub, "books")
            took = time.perf_counter() - clock
            calls = _calls(sandbox.requests)
            posts = calls.get("POST /Contacts", 0)
            minimum = math.ceil(len(people) / 50)
            print(
                f"push of {len(people):,} changed last names: {report.status} in {took:.1f} s; "
                f"calls {calls}; POST /Contacts {posts} = {posts / minimum:.2f} x the minimum "
                f"{minimum} (target <= 1.1); batch sizes {sorted(set(sandbox.batch_sizes))}"
            )
            print(f"  pushed: {report.counts.get('pushed_update', 0):,}")
        finally:
            await hub.close()
        if args.checked:
            print(f"violations of the description: {len(app.violations.take())}")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--invoices", type=int, default=50_000)
    parser.add_argument("--push", type=int, default=1000)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--checked", action="store_true")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
