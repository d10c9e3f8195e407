"""One worker process of the cross-process refresh tests.

Usage: ``python _refresh_worker.py DB_URL CONNECTION SANDBOX_URL`` with the secret key in
``CRMHUB_SECRET_KEY``. The worker opens the store and prints ``ready``. Then it runs one round
for every line ``MODE N`` on stdin (the test writes to every worker at once, so they start
together) until ``quit`` or the end of input:

* ``access N``: N concurrent ``access_token()`` calls;
* ``calls N``: N concurrent calls of the sandbox's protected ``/oauth/userinfo``
  through ``OAuth2Auth`` (the test expires the access tokens between rounds).

After each round it prints one JSON line: the tokens it got, HTTP statuses seen, error texts.

With ``REFRESH_STALL=before`` (after claiming, before the token request leaves) or
``REFRESH_STALL=after`` (after the server answered, before the new token is saved) the
worker's refresh prints ``stalled`` and hangs there, for the test to kill it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from auth.keys import load_keyring
from auth.tokens import OAuth2Auth, Refresher, TokenManager, refresh_with_httpx
from auth.vault import TokenVault
from hub.store import Store

CLIENT_ID = "sandbox-client"
CLIENT_SECRET = "sandbox-secret"
MODES = ("access", "calls")


async def one_round(
    mode: str, manager: TokenManager, client: httpx.AsyncClient, n: int
) -> dict[str, Any]:
    result: dict[str, Any] = {"tokens": [], "statuses": {}, "errors": []}
    got: list[str | httpx.Response | BaseException]
    if mode == "access":
        got = list(
            await asyncio.gather(
                *(manager.access_token() for _ in range(n)), return_exceptions=True
            )
        )
    else:
        got = list(
            await asyncio.gather(
                *(client.get("/oauth/userinfo") for _ in range(n)), return_exceptions=True
            )
        )
    statuses: Counter[str] = Counter()
    for item in got:
        if isinstance(item, BaseException):
            result["errors"].append(f"{type(item).__name__}: {item}")
        elif isinstance(item, httpx.Response):
            statuses[str(item.status_code)] += 1
        else:
            result["tokens"].append(item)
    result["statuses"] = dict(statuses)
    return result


def stalling(refresher: Refresher) -> Refresher:
    stall = os.environ.get("REFRESH_STALL")

    async def refresh(data: dict[str, Any]) -> dict[str, Any]:
        if stall == "before":
            print("stalled", flush=True)
            await asyncio.Event().wait()
        answer = await refresher(data)
        if stall == "after":
            print("stalled", flush=True)
            await asyncio.Event().wait()
        return answer

    return refresh


async def run(url: str, connection: str, sandbox: str) -> None:
    store = await Store.open(url, migrate=False)
    vault = TokenVault(store, load_keyring(Path.cwd(), os.environ))
    refresher = stalling(refresh_with_httpx(f"{sandbox}/oauth/token", CLIENT_ID, CLIENT_SECRET))
    manager = TokenManager(
        vault,
        refresher,
        connection=connection,
        margin=timedelta(seconds=5),
        poll_interval=0.02,
    )
    try:
        async with httpx.AsyncClient(base_url=sandbox, auth=OAuth2Auth(manager)) as client:
            print("ready", flush=True)
            while True:
                mode, _, n = (await asyncio.to_thread(sys.stdin.readline)).strip().partition(" ")
                if mode not in MODES:
                    break
                result = await one_round(mode, manager, client, int(n))
                print(json.dumps(result), flush=True)
    finally:
        await store.close()


if __name__ == "__main__":
    url, connection, sandbox = sys.argv[1:4]
    asyncio.run(run(url, connection, sandbox))
