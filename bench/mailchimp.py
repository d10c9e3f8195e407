"""Mailchimp connector against its sandbox: the initial pull of a big audience, then the path
a user takes to push changed last names.

    python bench/mailchimp.py [--members 100000] [--people 1000] [--unchecked]

The sandbox runs in its own process under uvicorn (so it does not share an interpreter lock),
seeded with ``--members`` fake members and holding every request, answer and webhook to
Mailchimp's API description (``--unchecked``: without those checks, to time the connector
alone). Then:

1. pull: a fresh connector pulls every member, as the first sync of a connection does
   (members/s; API calls counted from the sandbox's request log);
2. push, as users run it: a folder with a CSV connection ``people`` (``--people`` rows) and
   a Mailchimp connection ``newsletter``; ``crmhub sync people``, then ``crmhub sync
   newsletter`` three times (creates, then the incremental pulls a user's later syncs make);
   every last name is changed in the CSV; ``crmhub sync people``; and the measured step,
   ``crmhub sync newsletter`` in a process of its own: an incremental pull, then the push of
   every changed last name. Its API calls are counted by method and path and compared with
   the minimum, one batch-subscribe call per 500 members.

Each ``crmhub`` command is a new process, as from a shell. Prints figures, never asserts.
Targets: pull >= 10,000 members/s; push <= 1.1 x the minimum calls; no violations.
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


def _serve(port: int, members: int, checked: bool) -> None:
    from connectors.mailchimp.sandbox import create_sandbox
    from hub.sandbox import serve_sandbox

    app = create_sandbox(seed=1, size=members, validate=checked)
    _, server = serve_sandbox(app, port=port)
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


def _calls(url: str, since: int, by_path: bool = False) -> dict[str, int]:
    log = httpx.get(f"{url}/_sandbox/log", params={"since": since}, timeout=60).json()
    counts: dict[str, int] = {"total": 0}
    for entry in log["entries"]:
        where = f" {_template(entry['path'])}" if by_path else ""
        key = f"{entry['method']}{where} {entry['status']}"
        counts[key] = counts.get(key, 0) + 1
        counts["total"] += 1
    return counts


def _template(path: str) -> str:
    """``/3.0/lists/L/members/<hash>`` -> ``/3.0/lists/L/members/{hash}``."""
    parts = path.split("/")
    if len(parts) > 5 and parts[4] == "members":
        parts[5] = "{hash}"
    return "/".join(parts)


def _log_size(url: str) -> int:
    return int(
        httpx.get(f"{url}/_sandbox/log", params={"since": 10**9}, timeout=60).json()["total"]
    )


async def _pull(url: str) -> None:
    from connectors.mailchimp import MailchimpConnector, MailchimpSettings
    from connectors.mailchimp.sandbox import LIST_ID, SANDBOX_API_KEY
    from hub.connector import ConnectorContext

    settings = MailchimpSettings(list_id=LIST_ID, api_base=f"{url}/3.0/")
    context = ConnectorContext(
        "bench", Path(tempfile.gettempdir()), credentials=Credentials(SANDBOX_API_KEY)
    )
    connector = MailchimpConnector(settings, context)
    stream = connector.streams()[0]
    try:
        before = _log_size(url)
        started = time.perf_counter()
        records = deleted = 0
        async for page in connector.pull(stream, None):
            records += len(page.records)  # the engine too lets each page go once applied
            deleted += len(page.deleted)
        pull_s = time.perf_counter() - started
        calls = _calls(url, before)
        seen = records + deleted
        print(f"pull: {seen} members ({records} records, {deleted} deletions) "
              f"in {pull_s:.2f} s = {seen / pull_s:,.0f} members/s; "
              f"{calls['total']} API calls {calls}")  # fmt: skip
    finally:
        await connector.aclose()


CONFIG = """\
[hub]
database = "crmhub.db"

[connections.people]
connector = "csv"
path = "people.csv"

[connections.newsletter]
connector = "mailchimp"
list_id = "{list_id}"
api_base = "{url}/3.0/"
"""


def _crmhub(folder: Path, *args: str) -> float:
    """One ``crmhub`` command in a process of its own; its wall time in seconds."""
    import os

    from connectors.mailchimp.sandbox import SANDBOX_API_KEY

    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMHUB_")}
    env["CRMHUB_BENCH_KEY"] = SANDBOX_API_KEY
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "hub", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(f"crmhub {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return time.perf_counter() - started


def _push(url: str, people: int) -> None:
    from connectors.mailchimp.sandbox import LIST_ID

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "crmhub.toml").write_text(CONFIG.format(list_id=LIST_ID, url=url))
        rows = "".join(f"bench{i}@people.example,First{i},Last{i},yes\n" for i in range(people))
        csv_file = folder / "people.csv"
        csv_file.write_text("email,first_name,last_name,consent\n" + rows)
        _crmhub(folder, "connect", "newsletter", "--value-from-env", "CRMHUB_BENCH_KEY")
        _crmhub(folder, "sync", "people")
        for _ in range(3):
            _crmhub(folder, "sync", "newsletter")
        csv_file.write_text(csv_file.read_text().replace(",Last", ",Changed"))
        _crmhub(folder, "sync", "people")
        before = _log_size(url)
        took = _crmhub(folder, "sync", "newsletter")
        calls = _calls(url, before, by_path=True)
        minimum = math.ceil(people / 500)
        batches = calls.get(f"POST /3.0/lists/{LIST_ID} 200", 0)
        puts = sum(n for k, n in calls.items() if k.startswith("PUT "))
        listing = sum(n for k, n in calls.items() if k.startswith("GET /3.0/lists/") and
                      k.split()[1].endswith("/members"))  # fmt: skip
        pushed = calls["total"] - listing
        print(f"push ({people} changed last names, fresh `crmhub sync newsletter`): "
              f"{took:.2f} s for the whole command; {calls['total']} API calls {calls}: "
              f"{listing} for the incremental pull, {pushed} for the push ({batches} batch "
              f"calls, {puts} PUTs); minimum {minimum}: {pushed / minimum:.2f} x")  # fmt: skip


def _violations(url: str) -> None:
    answer = httpx.get(f"{url}/_sandbox/violations", timeout=60).json()
    checked = "checked against" if answer["checked"] else "NOT checked against"
    print(f"violations: {answer['total']} (traffic {checked} Mailchimp's API description)")
    for violation in answer["violations"][:5]:
        print(f"  - {violation['text']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--unchecked", action="store_true", help="no description checks")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.members, not args.unchecked)
        return
    port = _free_port()
    started = time.perf_counter()
    command = [sys.executable, __file__, "--serve", str(port), "--members", str(args.members)]
    server = subprocess.Popen(
        command + (["--unchecked"] if args.unchecked else []),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise SystemExit("the sandbox did not start")
        print(f"sandbox: {args.members} members seeded in {time.perf_counter() - started:.1f} s")
        url = f"http://127.0.0.1:{port}"
        asyncio.run(_pull(url))
        _push(url, args.people)
        _violations(url)
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
