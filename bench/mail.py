"""Gmail and Outlook connectors against their sandboxes: the first sync of a big mailbox,
then the push of changed contacts, the way users run them.

    python bench/mail.py [--messages 50000] [--contacts 1000] [--only gmail|outlook]
                          [--unchecked]

Each sandbox runs in its own process under uvicorn (``--unchecked``: without holding the
traffic to the provider's description, to time the connector alone). Every ``crmhub``
command is a new process, as from a shell, on a SQLite store. For each connector:

1. first sync: a mailbox of ``--messages`` messages (a third sent by the mailbox), ``crmhub
   sync mail``; messages/s, and the API calls (and Gmail's quota units) the sandbox counted,
   against the minimum the batch limits allow: Gmail lists 500 ids a call and reads 50
   messages a batch call (5 units each); Graph's message delta returns 999 a page;
2. push: a mailbox of ``--contacts`` contacts and a CSV connection ``people``; ``crmhub sync
   mail`` and ``crmhub sync people`` (the CSV gets every contact); every last name is changed
   in the CSV; ``crmhub sync people``; then the measured step, ``crmhub sync mail``: an
   incremental pull and the push of every changed last name, its calls counted by path
   against the minimum (People: 200 updates a batch call; Graph: 20 a ``$batch``).

Prints figures, never asserts. Targets: push and first-sync calls <= 1.1 x the minimum; a
first sync bound by the provider's quota, not by the hub.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402

GMAIL_UNITS_PER_SECOND = 250  # Google: 15,000 units a minute per user
GRAPH_PER_10_MINUTES = 10_000


def _serve(name: str, port: int, messages: int, contacts: int, checked: bool, tls: str) -> None:
    import importlib

    from hub.sandbox import serve_sandbox

    module = importlib.import_module(f"connectors.{name}.sandbox")
    options: dict[str, Any] = {"tls_folder": Path(tls)} if name == "outlook" else {}
    app = module.create_sandbox(
        seed=1, size=messages, contacts=contacts, validate=checked, **options
    )
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


class Sandbox:
    def __init__(self, name: str, messages: int, contacts: int, checked: bool, folder: Path):
        self.name = name
        self.port = _free_port()
        self.tls = folder / "tls"
        command = [sys.executable, __file__, "--serve", name, "--port", str(self.port)]
        command += ["--messages", str(messages), "--contacts", str(contacts)]
        command += ["--tls", str(self.tls)] + ([] if checked else ["--unchecked"])
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"
        scheme = "https" if name == "outlook" else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.url, timeout=120, verify=False)

    def log(self, since: int = 0) -> list[dict[str, Any]]:
        return list(self.http.get("/_sandbox/log", params={"since": since}).json()["entries"])

    def total(self) -> int:
        return int(self.http.get("/_sandbox/log", params={"since": 10**9}).json()["total"])

    def api_calls(self, since: int = 0) -> tuple[int, int]:
        """(API calls, other calls: sign-in and discovery documents) since the ``since``-th."""
        entries = self.log(since)
        other = sum(1 for e in entries if e["path"].startswith(("/oauth/", "/discovery/")))
        return len(entries) - other, other

    def violations(self) -> int:
        return int(self.http.get("/_sandbox/violations").json()["total"])

    def close(self) -> None:
        self.http.close()
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _config(sandbox: Sandbox, folder: Path, settings: str, extra: str = "") -> None:
    """``crmhub.toml``: the ``mail`` connection with ``settings`` added, then ``extra``."""
    if sandbox.name == "gmail":
        # the hub's own speed is measured: the sandbox's quota is lifted (the provider's
        # bound at Google's quota is printed from the units used)
        sandbox.http.post("/_gmail/quota", json={"units": 10**12, "window": 60})
        key = sandbox.http.post("/_gmail/service_account").json()
        (folder / "key.json").write_text(json.dumps(key))
        mail = (
            '[connections.mail]\nconnector = "gmail"\n'
            f'api_root = "{sandbox.url}"\nservice_account_file = "key.json"\n'
            'mailboxes = ["me@crmhub-sandbox.example"]\nunits_per_second = 1000000\n'
            f"window_days = 3650\n{settings}"
        )
    else:
        mail = (
            '[connections.mail]\nconnector = "outlook"\nmailbox = "me@crmhub-sandbox.example"\n'
            f'graph_url = "{sandbox.url}/v1.0"\nrequests_per_10_minutes = 1000000\n'
            f"window_days = 3650\n{settings}\n[connections.mail.oauth]\n"
            f'authority = "{sandbox.url}/oauth/sandbox-tenant"\nclient_credentials = true\n'
            'client_id = "sandbox-client"\nscopes = ["https://graph.microsoft.com/.default"]\n'
            f'ca_bundle = "{sandbox.tls / "outlook-sandbox.pem"}"\n'
        )
    text = f'[hub]\ndatabase = "hub.db"\nphone_region = "US"\n\n{mail}{extra}'
    (folder / "crmhub.toml").write_text(text)


def _crmhub(folder: Path, *args: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMHUB_")}
    env.update(
        CRMHUB_CONFIG=str(folder / "crmhub.toml"),
        CRMHUB_CONNECTIONS__MAIL__OAUTH__CLIENT_SECRET="sandbox-secret",
    )
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "hub", *args], cwd=folder, env=env, capture_output=True, text=True
    )
    took = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"crmhub {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return took


def _count(folder: Path, sql: str) -> int:
    import sqlite3

    with sqlite3.connect(folder / "hub.db") as db:
        return int(db.execute(sql).fetchone()[0])


def first_sync(name: str, messages: int, checked: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sandbox = Sandbox(name, messages, 0, checked, folder)
        try:
            _config(sandbox, folder, 'contacts = false\ncreate_contacts = "never"\n')
            took = _crmhub(folder, "sync", "mail")
            activities = _count(folder, "select count(*) from entities where type = 'activity'")
            calls, other = sandbox.api_calls()
            print(f"{name} first sync: {activities:,} messages in {took:.1f} s, "
                  f"{activities / took:,.0f} messages/s (one crmhub process, SQLite)")  # fmt: skip
            if name == "gmail":
                stats = sandbox.http.get("/_gmail/stats").json()
                bound = stats["units"] / GMAIL_UNITS_PER_SECOND
                lists = math.ceil(messages / 500)
                minimum = lists + math.ceil(messages / 50)
                units_min = 5 * lists + 5 * messages
                print(
                    f"  API calls {calls:,} (minimum {minimum:,}: {lists} listings of 500, "
                    f"{math.ceil(messages / 50):,} batches of 50) = {calls / minimum:.3f} x; "
                    f"plus {other} for the token and the discovery documents"
                )
                print(f"  quota units {stats['units']:,} (minimum {units_min:,}) = "
                      f"{stats['units'] / units_min:.3f} x; at Google's "
                      f"{GMAIL_UNITS_PER_SECOND} units/s per mailbox that is "
                      f"{bound:,.0f} s, {messages / bound:,.0f} messages/s")  # fmt: skip
            else:
                sent = math.ceil(messages / 3)  # the sandbox's every third message
                inbox = messages - sent
                minimum = math.ceil(inbox / 999) + math.ceil(sent / 999)
                print(f"  API calls {calls:,} (minimum {minimum}: delta pages of 999 per folder) "
                      f"= {calls / minimum:.3f} x; plus {other} for the token; Graph allows "
                      f"{GRAPH_PER_10_MINUTES:,} requests per 10 minutes per mailbox")  # fmt: skip
            if checked:
                print(f"  violations of the description: {sandbox.violations()}")
        finally:
            sandbox.close()


def push(name: str, contacts: int, checked: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sandbox = Sandbox(name, 0, contacts, checked, folder)
        try:
            people = '\n[connections.people]\nconnector = "csv"\npath = "people.csv"\n'
            _config(sandbox, folder, 'create_contacts = "never"\n', people)
            (folder / "people.csv").write_text("email,first_name,last_name\n")
            _crmhub(folder, "sync", "mail")
            _crmhub(folder, "sync", "people")
            with (folder / "people.csv").open(newline="") as f:
                rows = list(csv.DictReader(f))
            for row in rows:
                row["last_name"] = f"{row['last_name']}-changed"
            with (folder / "people.csv").open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
            _crmhub(folder, "sync", "people")
            before = sandbox.total()
            took = _crmhub(folder, "sync", "mail")
            entries = sandbox.log(before)
            by_path: dict[str, int] = {}
            for e in entries:
                key = f"{e['method']} {e['path'].replace('me@crmhub-sandbox.example', '<mailbox>')}"
                by_path[key] = by_path.get(key, 0) + 1
            writes = {
                "gmail": "POST /v1/people:batchUpdateContacts",
                "outlook": "POST /v1.0/$batch",
            }
            per_call = 200 if name == "gmail" else 20
            minimum = math.ceil(len(rows) / per_call)
            pushed = by_path.get(writes[name], 0)
            print(f"{name} push of {len(rows):,} changed last names: {took:.1f} s "
                  f"(a fresh crmhub process: incremental pull, then the push)")  # fmt: skip
            print(
                f"  push calls {pushed} (minimum {minimum}: {per_call} a call) = "
                f"{pushed / minimum:.2f} x; all calls of the run: {dict(sorted(by_path.items()))}"
            )
            if checked:
                print(f"  violations of the description: {sandbox.violations()}")
        finally:
            sandbox.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--contacts", type=int, default=1000)
    parser.add_argument("--only", choices=["gmail", "outlook"])
    parser.add_argument("--unchecked", action="store_true")
    parser.add_argument("--serve", choices=["gmail", "outlook"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tls", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.port, args.messages, args.contacts, not args.unchecked, args.tls)
        return
    checked = not args.unchecked
    print(f"sandboxes {'held to the descriptions' if checked else 'unchecked'}")
    for name in [args.only] if args.only else ["gmail", "outlook"]:
        first_sync(name, args.messages, checked)
        push(name, args.contacts, checked)


if __name__ == "__main__":
    main()
