"""A declared connector against an equivalent hand-written one, pulling the same API.

    python bench/declarative.py [--records 100000] [--rounds 3] [--instructions]

The API is the internal contacts API of plugins.md (page-number paging, an
``updated_since`` filter, versions, tombstones), served by the sandbox crmhub generates from
the declaration, in its own process, with ``--records`` made-up contacts. Each pull runs in
a fresh process (imports, client and connector made anew): a full pull of every record
into ``Page``s of ``RemoteRecord``s, as the first sync of a connection does. Pulls
alternate between the connectors, ``--rounds`` each; the median of each is compared.

All parse bodies with orjson, read ids, versions and aware times, report tombstones as
deletions, and send through the hub's retrying client. Two hand-written ones: ``bare`` does
exactly that and nothing else (its cursor cannot make the next pull incremental);
``hand`` is the equivalent one, incremental as the declaration is: it keeps the newest
change, the ids and versions within the overlap of it (so the next pull, asking from the
overlap, skips what it already has) and a cursor on every page.

Prints, per connector, the median and the range over the rounds of the process time, pull
time and the pull's CPU time in the connector's process (steadier than wall time on a
shared machine: waiting for the sandbox is not in it), and the range of the ratios of the
rounds. With ``--instructions``, also each connector's instructions, counted once by
valgrind's callgrind for a whole process and for one that makes the connector without
pulling (their difference is the pull's): steady where times are not, some fifty times
slower. Prints figures, never asserts. Target: declared <= 1.1 x the equivalent
hand-written pull.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
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
OVERLAP_SECONDS = 60
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
incremental = {{ param = "updated_since", overlap = {OVERLAP_SECONDS} }}
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


KINDS = ("hand", "declared", "bare")
"""The equivalent hand-written pull, the declared one, the hand-written one without the
incremental boundary."""


def hand_written(incremental: bool = True) -> Any:
    """The same pull, written by hand against the hub's connector interface; with
    ``incremental`` the boundary and cursor a hand-written incremental pull keeps."""
    from datetime import timedelta

    import orjson
    from pydantic import BaseModel

    from hub.connector import Connector, Cursor, Page, RemoteRecord, Stream
    from hub.http import RetryingClient, make_client

    overlap = timedelta(seconds=OVERLAP_SECONDS)

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
            since = cursor.get("since") if cursor else None
            seen: dict[str, str] = (cursor or {}).get("seen") or {}
            newest: datetime | None = None
            floor: datetime | None = None
            near: list[tuple[datetime, str, str]] = []  # within the overlap of the newest
            try:
                while True:
                    params: dict[str, Any] = {"page": page, "per_page": PAGE}
                    if since:
                        params["updated_since"] = since
                    body = orjson.loads((await http.get("contacts", params=params)).content)
                    out = Page()
                    for raw in body["data"]:
                        record_id, version = str(raw["id"]), str(raw["version"])
                        moment = datetime.fromisoformat(raw["updated_at"])
                        if incremental:
                            if newest is None or moment > newest:
                                newest, floor = moment, moment - overlap
                            if floor is not None and moment >= floor:
                                near.append((moment, record_id, version))
                            if seen and seen.get(record_id) == version:
                                continue  # pulled before, unchanged: the overlap's records
                        if raw.get("deleted_at"):
                            out.deleted.append(record_id)
                            continue
                        out.records.append(RemoteRecord(record_id, raw, version, moment))
                    last = len(body["data"]) < PAGE
                    if incremental and floor is not None:
                        near = [n for n in near if n[0] >= floor]
                        kept = {record_id: version for _, record_id, version in near}
                        out.cursor = (
                            {"since": floor.isoformat(), "seen": kept}
                            if last
                            else {"since": since, "seen": seen, "page": page + 1, "near": kept}
                        )
                    else:
                        out.cursor = {"page": page}
                    yield out
                    if last:
                        return
                    page += 1
            finally:
                await http.aclose()

    return HandContacts


async def _pull(
    kind: str, url: str, declaration: Path, dry: bool = False
) -> tuple[float, float, int]:
    """One pull; the time counts making the connector (reading the declaration, for the
    declared one) and the pull, not importing modules (the process time has those). ``dry``:
    the connector is made, nothing is pulled (what a process costs besides the pull)."""
    from hub.connector import ConnectorContext

    if kind == "declared":
        from hub.rest import declared
        from hub.testing.credentials import static_credentials

        started, cpu = time.perf_counter(), time.process_time()
        cls = declared(declaration)
        context = ConnectorContext("bench", credentials=static_credentials(api_key=KEY))
        connector: Any = cls(cls.Settings(base_url=url), context)
    else:
        cls = hand_written(kind == "hand")  # its imports are inside; the class costs nothing
        started, cpu = time.perf_counter(), time.process_time()
        connector = cls(cls.Settings(base_url=url), ConnectorContext("bench"))
    count = 0
    if not dry:
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


def _instructions(kind: str, url: str, declaration: Path, dry: bool) -> int:
    """Instructions a child process runs, counted by valgrind's callgrind: the same for the
    same code and input whatever else the machine does (wall and CPU time on a shared
    machine are not), at some fifty times the time."""
    command = [sys.executable, __file__, "--pull", kind, "--url", url, "--file", str(declaration)]
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command]
        + (["--dry"] if dry else []),
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", out.stderr)
    assert found, out.stderr[-2000:]
    return int(found.group(1))


def _count_instructions(url: str, declaration: Path) -> None:
    counted = {
        (kind, dry): _instructions(kind, url, declaration, dry)
        for kind in KINDS
        for dry in (False, True)
    }
    pull = {k: counted[(k, False)] - counted[(k, True)] for k in KINDS}
    process = {k: counted[(k, False)] for k in KINDS}
    for label, by_kind in (("pull", pull), ("process", process)):
        print(
            f"instructions, {label}: "
            + ", ".join(f"{k} {by_kind[k] / 1e9:.3f} G" for k in KINDS)
            + f"; declared / hand {by_kind['declared'] / by_kind['hand']:.3f} (target <= 1.1),"
            f" declared / bare {by_kind['declared'] / by_kind['bare']:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pull", choices=KINDS)
    parser.add_argument("--url")
    parser.add_argument("--file", type=Path)
    parser.add_argument("--dry", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count each connector's instructions once with valgrind (steady, slow)",
    )
    args = parser.parse_args()
    if args.pull:
        took, cpu, count = asyncio.run(_pull(args.pull, args.url, args.file, args.dry))
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
                name: {kind: [] for kind in KINDS} for name in ("pull", "pull CPU", "process")
            }
            for round_ in range(args.rounds):
                # turn who goes first, so drift in the machine's load hits all alike
                order = KINDS[round_ % 3 :] + KINDS[: round_ % 3]
                for kind in order:
                    wall, took, cpu, count = _child(kind, url, declaration)
                    assert count == args.records, (kind, count)
                    for name, value in (("pull", took), ("pull CPU", cpu), ("process", wall)):
                        figures[name][kind].append(value)
                    print(
                        f"  {kind:9} process {wall:6.2f} s, pull {took:6.2f} s "
                        f"(CPU {cpu:5.2f} s, {count / took:,.0f} records/s)"
                    )
            if args.instructions:
                _count_instructions(url, declaration)
        finally:
            sandbox.terminate()
            sandbox.wait(timeout=30)
    for label, by_kind in figures.items():
        for base in ("hand", "bare"):
            hand, decl = statistics.median(by_kind[base]), statistics.median(by_kind["declared"])
            ratios = sorted(d / h for h, d in zip(by_kind[base], by_kind["declared"], strict=True))
            print(
                f"median {label}: {base} {hand:.2f} s ({min(by_kind[base]):.2f}-"
                f"{max(by_kind[base]):.2f}), declared {decl:.2f} s "
                f"({min(by_kind['declared']):.2f}-{max(by_kind['declared']):.2f}), "
                f"ratio {decl / hand:.3f}"
                + (" (target <= 1.1" if base == "hand" else " (no incremental boundary")
                + f"; round by round {ratios[0]:.2f}-{ratios[-1]:.2f})"
            )


if __name__ == "__main__":
    main()
