"""A declared connector against an equivalent hand-written one, pulling the same API.

    python bench/declarative.py [--records 100000] [--rounds 3]

The API is the internal contacts API of plugins.md (page-number paging, an
``updated_since`` filter, versions, tombstones), served by the sandbox crmhub generates from
the declaration, in its own process, with ``--records`` made-up contacts. Each pull runs in
a fresh process (imports, client and connector made anew): a full pull of every record
into ``Page``s of ``RemoteRecord``s, as the first sync of a connection does. Pulls
alternate between the two connectors, ``--rounds`` each; the median of each is compared.

Both parse bodies with orjson, read ids, versions and aware times, report tombstones as
deletions, and send through the hub's retrying client; the hand-written one does exactly
that and nothing else (no boundary bookkeeping, no resumable cursors).

Prints, per connector, the median and the range over the rounds of the process time, pull
time and the pull's CPU time in the connector's process (steadier than wall time on a
shared machine: waiting for the sandbox is not in it), and the range of the ratios of the
rounds. Prints figures, never asserts. Target: declared <= 1.1 x hand-written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAGE = 1000
KEY = "sandbox-api-key"
"""``hub.rest.sandbox.SANDBOX_KEY``, written out: importing the sandbox would burden the
hand-written connector's process with the web stack."""
DECLARATION = f"""\
name = "people"
[client]
base_url = "https://people.internal.example/api/v1"
auth = "bearer"

[streams.contacts]
entity = "contact"
path = "/contacts"
records = "$.data"
version = "version"
modified_at = "updated_at"
paginator = {{ kind = "page_number", page_param = "page", size_param = "per_page", size = {PAGE} }}
incremental = {{ param = "updated_since", overlap = 60 }}
deletes = {{ kind = "tombstone", field = "deleted_at" }}
create = {{}}
update = {{ version = "if_match" }}
delete = {{ version = "if_match" }}

[sandbox.streams.contacts.fields]
email = "{{email}}"
first_name = "{{first_name}}"
last_name = "{{last_name}}"
phone = "{{phone}}"
company = "{{company}}"
"""


def hand_written() -> Any:
    """The same pull, written by hand against the hub's connector interface."""
    import orjson
    from pydantic import BaseModel

    from hub.connector import Connector, Cursor, Page, RemoteRecord, Stream
    from hub.http import RetryingClient, make_client

    class HandSettings(BaseModel):
        base_url: str

    class HandContacts(Connector):
        name = "hand"
        Settings = HandSettings
        settings: HandSettings

        def streams(self) -> list[Stream]:
            return [Stream("contacts", "contact", incremental=True)]

        async def pull(self, stream: Stream, cursor: Cursor | None) -> AsyncIterator[Page]:
            client = make_client(
                base_url=self.settings.base_url.rstrip("/") + "/",
                counters=self.context.counters,
                headers={"Authorization": f"Bearer {KEY}"},
            )
            http = RetryingClient(client, connection=self.connection)
            page = 1
            try:
                while True:
                    params: dict[str, Any] = {"page": page, "per_page": PAGE}
                    if cursor and cursor.get("since"):
                        params["updated_since"] = cursor["since"]
                    body = orjson.loads((await http.get("contacts", params=params)).content)
                    out = Page()
                    for raw in body["data"]:
                        if raw.get("deleted_at"):
                            out.deleted.append(str(raw["id"]))
                            continue
                        out.records.append(
                            RemoteRecord(
                                str(raw["id"]),
                                raw,
                                str(raw["version"]),
                                datetime.fromisoformat(raw["updated_at"]),
                            )
                        )
                    out.cursor = {"page": page}
                    yield out
                    if len(body["data"]) < PAGE:
                        return
                    page += 1
            finally:
                await http.aclose()

    return HandContacts


async def _pull(kind: str, url: str, declaration: Path) -> tuple[float, float, int]:
    """One pull; the time counts making the connector (reading the declaration, for the
    declared one) and the pull, not importing modules (the process time has those)."""
    from hub.connector import ConnectorContext

    if kind == "declared":
        from hub.rest import declared
        from hub.testing.credentials import static_credentials

        started, cpu = time.perf_counter(), time.process_time()
        cls = declared(declaration)
        context = ConnectorContext("bench", credentials=static_credentials(api_key=KEY))
        connector: Any = cls(cls.Settings(base_url=url), context)
    else:
        cls = hand_written()  # its imports are inside; the class itself costs nothing
        started, cpu = time.perf_counter(), time.process_time()
        connector = cls(cls.Settings(base_url=url), ConnectorContext("bench"))
    count = 0
    async for page in connector.pull(connector.streams()[0], None):
        count += len(page.records)
    await connector.aclose()
    return time.perf_counter() - started, time.process_time() - cpu, count


def _child(kind: str, url: str, declaration: Path) -> tuple[float, float, float, int]:
    """Process wall time, the pull's wall and CPU time inside it, records pulled."""
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--pull", kind, "--url", url, "--file", str(declaration)],
        capture_output=True,
        text=True,
        check=True,
    )
    pulled = json.loads(out.stdout)
    return (
        time.perf_counter() - started,
        float(pulled["seconds"]),
        float(pulled["cpu"]),
        int(pulled["records"]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pull", choices=["declared", "hand"])
    parser.add_argument("--url")
    parser.add_argument("--file", type=Path)
    args = parser.parse_args()
    if args.pull:
        took, cpu, count = asyncio.run(_pull(args.pull, args.url, args.file))
        print(json.dumps({"seconds": took, "cpu": cpu, "records": count}))
        return
    with tempfile.TemporaryDirectory() as tmp:
        declaration = Path(tmp) / "people.toml"
        declaration.write_text(DECLARATION, encoding="utf-8")
        command = [sys.executable, "-m", "hub", "sandbox", str(declaration), "--port-base", "0"]
        started = time.perf_counter()
        sandbox = subprocess.Popen(
            [*command, "--size", str(args.records)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert sandbox.stdout is not None
            _, url = sandbox.stdout.readline().split()
            print(f"sandbox: {args.records:,} contacts in {time.perf_counter() - started:.1f} s")
            figures: dict[str, dict[str, list[float]]] = {
                name: {"hand": [], "declared": []} for name in ("pull", "pull CPU", "process")
            }
            for round_ in range(args.rounds):
                # alternate who goes first, so drift in the machine's load hits both alike
                order = ("hand", "declared") if round_ % 2 == 0 else ("declared", "hand")
                for kind in order:
                    wall, took, cpu, count = _child(kind, url, declaration)
                    assert count == args.records, (kind, count)
                    for name, value in (("pull", took), ("pull CPU", cpu), ("process", wall)):
                        figures[name][kind].append(value)
                    print(
                        f"  {kind:9} process {wall:6.2f} s, pull {took:6.2f} s "
                        f"(CPU {cpu:5.2f} s, {count / took:,.0f} records/s)"
                    )
        finally:
            sandbox.terminate()
            sandbox.wait(timeout=30)
    for label, pair in figures.items():
        hand, decl = statistics.median(pair["hand"]), statistics.median(pair["declared"])
        ratios = sorted(d / h for h, d in zip(pair["hand"], pair["declared"], strict=True))
        print(
            f"median {label}: hand-written {hand:.2f} s ({min(pair['hand']):.2f}-"
            f"{max(pair['hand']):.2f}), declared {decl:.2f} s ({min(pair['declared']):.2f}-"
            f"{max(pair['declared']):.2f}), ratio {decl / hand:.3f} (target <= 1.1; "
            f"round by round {ratios[0]:.2f}-{ratios[-1]:.2f})"
        )


if __name__ == "__main__":
    main()
