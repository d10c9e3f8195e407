"""Mailchimp connector against its sandbox: initial pull of a big audience, then a bulk push.

    python bench/mailchimp.py [--members 100000] [--changes 10000]

The sandbox runs in its own process under uvicorn (so it does not share this process's
interpreter lock), seeded with ``--members`` fake members. This process:

1. pulls every member with a fresh connector, as the first sync of a connection does
   (records/s; API calls counted from the sandbox's request log);
2. pushes ``--changes`` updated contacts (a changed first name each) through the same
   connector, in chunks of ``MailchimpConnector.push_batch_size`` as the engine hands them
   over, and compares the calls made with the minimum: one batch-subscribe call per 500.

Prints figures, never asserts. Targets: pull >= 10,000 members/s; push <= 1.1 x minimum calls.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _serve(port: int, members: int) -> None:
    from connectors.mailchimp.sandbox import create_sandbox
    from hub.sandbox import serve_sandbox

    _, server = serve_sandbox(create_sandbox(seed=1, size=members), port=port)
    print("ready", flush=True)
    try:
        sys.stdin.read()  # until the parent closes the pipe
    finally:
        server.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Credentials:
    def __init__(self, key: str) -> None:
        self.key = key

    async def secret(self) -> dict[str, Any]:
        return {"api_key": self.key}

    def auth(self) -> httpx.Auth:
        raise NotImplementedError


def _calls(url: str, since: int) -> dict[str, int]:
    log = httpx.get(f"{url}/_sandbox/log", params={"since": since}, timeout=60).json()
    counts: dict[str, int] = {"total": 0}
    for entry in log["entries"]:
        key = f"{entry['method']} {entry['status']}"
        counts[key] = counts.get(key, 0) + 1
        counts["total"] += 1
    return counts


def _log_size(url: str) -> int:
    return int(
        httpx.get(f"{url}/_sandbox/log", params={"since": 10**9}, timeout=60).json()["total"]
    )


async def _run(url: str, members: int, changes: int) -> None:
    from connectors.mailchimp import MailchimpConnector, MailchimpSettings
    from connectors.mailchimp.sandbox import LIST_ID, SANDBOX_API_KEY
    from hub.connector import Change, ConnectorContext

    settings = MailchimpSettings(list_id=LIST_ID, api_base=f"{url}/3.0/")
    context = ConnectorContext(
        "bench", Path(tempfile.gettempdir()), credentials=Credentials(SANDBOX_API_KEY)
    )
    connector = MailchimpConnector(settings, context)
    stream = connector.streams()[0]
    try:
        before = _log_size(url)
        started = time.perf_counter()
        # keep only what the push needs: the engine too lets each page go once applied
        kept: list[tuple[str, str, str | None]] = []
        deleted = 0
        async for page in connector.pull(stream, None):
            kept.extend(
                (r.id, str(r.data.get("status")), r.data["merge_fields"].get("FNAME"))
                for r in page.records
            )
            deleted += len(page.deleted)
        pull_s = time.perf_counter() - started
        calls = _calls(url, before)
        seen = len(kept) + deleted
        print(f"pull: {seen} members ({len(kept)} records, {deleted} deletions) "
              f"in {pull_s:.2f} s = {seen / pull_s:,.0f} members/s; "
              f"{calls['total']} API calls {calls}")  # fmt: skip

        targets = [(rid, name) for rid, status, name in kept if status == "subscribed"]
        batch = [
            Change(
                key=f"c{i}",
                op="update",
                data={"merge_fields": {"FNAME": f"{name} B."}},
                idempotency_key=f"c{i}",
                remote_id=rid,
            )
            for i, (rid, name) in enumerate(targets[:changes])
        ]
        before = _log_size(url)
        started = time.perf_counter()
        failed = 0
        size = connector.push_batch_size
        for i in range(0, len(batch), size):
            results = await connector.push(stream, batch[i : i + size])
            failed += sum(1 for r in results if not r.ok)
        push_s = time.perf_counter() - started
        calls = _calls(url, before)
        minimum = math.ceil(len(batch) / 500)
        print(f"push: {len(batch)} changes ({failed} failed) in {push_s:.2f} s = "
              f"{len(batch) / push_s:,.0f} changes/s; {calls['total']} API calls {calls}; "
              f"minimum {minimum}: {calls['total'] / minimum:.2f} x")  # fmt: skip
    finally:
        await connector.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.members)
        return
    port = _free_port()
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--members", str(args.members)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise SystemExit("the sandbox did not start")
        print(f"sandbox: {args.members} members seeded in {time.perf_counter() - started:.1f} s")
        asyncio.run(_run(f"http://127.0.0.1:{port}", args.members, args.changes))
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
