"""The CSV connector and other programs sharing its file: concurrent writers, the lock,
symlinks, permissions, the lease check before the rename."""

from __future__ import annotations

import asyncio
import csv
import fcntl
import io
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from connectors.csv import CsvConnector, CsvSettings, files
from connectors.csv import connector as csv_connector
from hub.connector import Change, ConnectorContext, PushResult
from hub.errors import ConnectorError, ErrorKind, TransientError
from hub.testing.contract import pull_pages, records_of

# Appends one row every few milliseconds, opening the file for each row like a script that
# logs sign-ups would; with "lock" it first takes crmhub's lock as the README says.
APPENDER = """
import fcntl, sys, time
path, count, pause, lock = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
for i in range(count):
    if lock == "lock":
        guard = open(path + ".lock", "a")
        fcntl.flock(guard, fcntl.LOCK_EX)
    with open(path, "a", newline="") as f:
        f.write(f"append{i}@example.com,Append{i}\\n")
    if lock == "lock":
        guard.close()
    time.sleep(pause)
"""


def make(tmp_path: Path, file: str = "people.csv", **settings: Any) -> CsvConnector:
    return CsvConnector(
        CsvSettings.model_validate({"path": file, **settings}),
        ConnectorContext(connection="sheet", base_dir=tmp_path),
    )


async def push(connector: CsvConnector, *changes: Change) -> list[PushResult]:
    return await connector.push(connector.streams()[0], list(changes))


def create(key: str, data: dict[str, Any]) -> Change:
    return Change(key=key, op="create", data=data, idempotency_key=f"idem-{key}")


async def pull_all(connector: CsvConnector) -> list[Any]:
    return records_of(await pull_pages(connector, connector.streams()[0], None))


def emails(path: Path) -> list[str]:
    return [row["email"] for row in csv.DictReader(io.StringIO(path.read_text(), newline=""))]


@pytest.mark.slow
@pytest.mark.parametrize("lock", ["lock", "nolock"])
async def test_rows_appended_while_syncs_rewrite_the_file_are_kept(
    tmp_path: Path, lock: str
) -> None:
    path = tmp_path / "people.csv"
    path.write_text("email,first_name\n" + "".join(f"p{i}@example.com,P{i}\n" for i in range(300)))
    appended = 400
    appender = subprocess.Popen(
        [sys.executable, "-c", APPENDER, str(path), str(appended), "0.003", lock]
    )
    connector = make(tmp_path)
    owed = [create(f"n{i}", {"email": f"new{i}@example.com"}) for i in range(2000)]
    written: list[str] = []
    gave_up = 0
    try:
        while appender.poll() is None or not written:
            batch, owed = owed[:3], owed[3:]
            try:
                results = await push(connector, *batch)
            except TransientError:  # the whole write was refused: all of it stays owed
                owed = batch + owed
                gave_up += 1
                continue
            for change, result in zip(batch, results, strict=True):
                if result.ok:
                    written.append(change.data["email"])
                else:
                    assert result.error is ErrorKind.TRANSIENT, result.message
                    owed.insert(0, change)
                    gave_up += 1
    finally:
        appender.wait(timeout=60)
    assert appender.returncode == 0
    rows = emails(path)
    missing = [f"append{i}@example.com" for i in range(appended)]
    missing = [e for e in missing if e not in set(rows)]
    assert missing == [], f"{len(missing)} appended rows lost ({len(written)} writes)"
    assert set(written) <= set(rows)
    assert len(rows) == len(set(rows)) == 300 + appended + len(written)
    print(f"{len(written)} rows written in {len(written) // 3} pushes, {gave_up} given up")


async def test_a_row_appended_to_the_replaced_file_is_carried_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A program that opened the file just before the rename writes a moment after it."""
    path = tmp_path / "people.csv"
    path.write_text("email\na@example.com\n")
    real_replace = os.replace
    late = "late@example.com\n"

    def replace_while_a_program_appends(src: Any, dst: Any) -> None:
        handle = open(path, "a")  # noqa: SIM115  (closed by the thread below)
        real_replace(src, dst)

        def write_later() -> None:
            time.sleep(0.2)
            handle.write(late)
            handle.close()

        threading.Thread(target=write_later).start()

    monkeypatch.setattr(os, "replace", replace_while_a_program_appends)
    [result] = await push(make(tmp_path), create("c", {"email": "b@example.com"}))
    assert result.ok
    assert emails(path) == ["a@example.com", "b@example.com", "late@example.com"]


async def test_a_program_keeping_the_replaced_file_open_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "people.csv"
    path.write_text("email\na@example.com\n")
    real_replace = os.replace
    kept: list[Any] = []

    def replace_while_a_program_holds_the_file(src: Any, dst: Any) -> None:
        kept.append(open(path, "a"))  # noqa: SIM115
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_while_a_program_holds_the_file)
    monkeypatch.setattr(files, "WRITER_WAIT", 0.2)
    try:
        began = time.monotonic()
        [result] = await push(make(tmp_path), create("c", {"email": "b@example.com"}))
        assert result.ok and time.monotonic() - began < 2
    finally:
        kept[0].close()
    assert "keeps" in caplog.text and "open for writing" in caplog.text
    assert "people.csv.lock" in caplog.text


async def test_the_lock_is_waited_for_and_a_lock_held_too_long_leaves_the_write_owed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "people.csv"
    path.write_text("email\na@example.com\n")
    guard = open(tmp_path / "people.csv.lock", "a")  # noqa: SIM115
    fcntl.flock(guard, fcntl.LOCK_EX)
    threading.Timer(0.3, guard.close).start()
    began = time.monotonic()
    [result] = await push(make(tmp_path), create("c", {"email": "b@example.com"}))
    assert result.ok and time.monotonic() - began >= 0.25
    assert emails(path) == ["a@example.com", "b@example.com"]

    monkeypatch.setattr(files, "LOCK_WAIT", 0.2)
    with open(tmp_path / "people.csv.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(TransientError, match=r"stayed locked .*people\.csv\.lock"):
            await push(make(tmp_path), create("d", {"email": "d@example.com"}))
        with pytest.raises(TransientError, match="stayed locked"):
            await pull_all(make(tmp_path))
    assert emails(path) == ["a@example.com", "b@example.com"]


async def test_a_pull_reads_without_the_lock_where_it_cannot_be_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "people.csv"
    path.write_text("email\na@example.com\n")
    real_open = os.open

    def read_only_folder(name: Any, flags: int, *args: Any) -> int:
        if str(name).endswith(".lock"):
            raise PermissionError(13, "Permission denied", str(name))
        return real_open(name, flags, *args)

    monkeypatch.setattr(os, "open", read_only_folder)
    assert [r.id for r in await pull_all(make(tmp_path))] == ["email:a@example.com"]
    with pytest.raises(ConnectorError, match="permission denied"):
        await push(make(tmp_path), create("c", {"email": "b@example.com"}))
    assert emails(path) == ["a@example.com"]


async def test_a_symlinked_file_stays_a_link_and_keeps_mode_and_owner(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    target = real / "people.csv"
    target.write_text("email\na@example.com\n")
    target.chmod(0o640)
    if os.geteuid() == 0:
        os.chown(target, 65534, 65534)
    link = tmp_path / "b.csv"
    link.symlink_to(Path("real") / "people.csv")
    before = target.stat()
    [result] = await push(make(tmp_path, "b.csv"), create("c", {"email": "b@example.com"}))
    assert result.ok
    assert link.is_symlink() and os.readlink(link) == str(Path("real") / "people.csv")
    assert emails(target) == ["a@example.com", "b@example.com"]
    after = target.stat()
    assert after.st_ino != before.st_ino  # replaced atomically, not rewritten in place
    assert stat.S_IMODE(after.st_mode) == 0o640
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert sorted(p.name for p in real.iterdir()) == ["people.csv", "people.csv.lock"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.csv", "real"]


async def test_a_chain_of_links_is_followed_to_the_real_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    target = tmp_path / "data" / "people.csv"
    target.write_text("email\na@example.com\n")
    (tmp_path / "middle.csv").symlink_to(target)
    (tmp_path / "b.csv").symlink_to(tmp_path / "middle.csv")
    connector = make(tmp_path, "b.csv")
    [result] = await push(connector, create("c", {"email": "b@example.com"}))
    assert result.ok
    assert (tmp_path / "b.csv").is_symlink() and (tmp_path / "middle.csv").is_symlink()
    assert emails(target) == ["a@example.com", "b@example.com"]
    assert [p.name for p in connector.watched_files()] == ["b.csv"]


async def test_a_run_that_lost_its_lease_never_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("email\na@example.com\n")
    before = path.read_bytes()
    seen: list[list[str]] = []

    class LeaseLost(ConnectorError):
        pass

    async def lost() -> None:
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        raise LeaseLost("the run lost its lease", connection="sheet")

    connector = CsvConnector(
        CsvSettings(path="people.csv"),
        ConnectorContext(connection="sheet", base_dir=tmp_path, check_lease=lost),
    )
    with pytest.raises(LeaseLost):
        await push(connector, create("c", {"email": "b@example.com"}))
    [names] = seen  # asked once, with the new file already written beside the old one
    assert [n for n in names if n.endswith(".tmp")] and "people.csv" in names
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["people.csv", "people.csv.lock"]
    # The lock was released: a run that holds its lease writes.
    calls: list[int] = []

    async def held() -> None:
        calls.append(1)

    connector.context.check_lease = held
    [result] = await push(connector, create("c", {"email": "b@example.com"}))
    assert result.ok and calls == [1]
    assert emails(path) == ["a@example.com", "b@example.com"]


async def test_nothing_to_write_asks_no_lease_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("email\na@example.com\n")
    mtime = path.stat().st_mtime_ns

    async def never() -> None:
        raise AssertionError("no write, no lease check")

    connector = CsvConnector(
        CsvSettings(path="people.csv"),
        ConnectorContext(connection="sheet", base_dir=tmp_path, check_lease=never),
    )
    [result] = await push(connector, create("c", {"email": "a@example.com"}))
    assert result.ok and path.stat().st_mtime_ns == mtime


def test_the_readmes_shell_append_waits_for_crmhubs_lock(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    [command] = [line for line in readme.splitlines() if line.startswith("flock people.csv")]
    path = tmp_path / "people.csv"
    path.write_text("email,first_name,last_name\na@example.com,Ann,Lee\n")
    with files.FileLock(path, exclusive=True, connection="sheet"):
        shell = subprocess.Popen(["sh", "-c", command], cwd=tmp_path)
        time.sleep(0.5)
        assert shell.poll() is None and emails(path) == ["a@example.com"]
    assert shell.wait(timeout=10) == 0
    assert emails(path) == ["a@example.com", "new@example.com"]


@pytest.mark.parametrize("where", ["render", "replace"])
async def test_a_cancelled_push_releases_the_lock_and_leaves_no_file_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    path = tmp_path / "people.csv"
    path.write_text("email\na@example.com\n")
    slow = {"render": (csv_connector, "render"), "replace": (os, "replace")}[where]
    real = getattr(*slow)
    entered = threading.Event()

    def slowly(*args: Any) -> Any:
        entered.set()
        time.sleep(0.3)
        return real(*args)

    monkeypatch.setattr(*slow, slowly)
    task = asyncio.create_task(push(make(tmp_path), create("c", {"email": "b@example.com"})))
    while not entered.is_set():
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    monkeypatch.setattr(*slow, real)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["people.csv", "people.csv.lock"]
    # Either the write happened whole or not at all, and the lock is free again.
    assert emails(path) in (["a@example.com"], ["a@example.com", "b@example.com"])
    with files.FileLock(path, exclusive=True, wait=0, connection="sheet"):
        pass


PUSHER = """
import asyncio, sys
from pathlib import Path
from connectors.csv import CsvConnector, CsvSettings
from hub.connector import Change, ConnectorContext

async def main():
    csv = CsvConnector(CsvSettings(path="people.csv"), ConnectorContext("sheet", Path(sys.argv[1])))
    for n in range(10_000):
        change = Change(key="c", op="create", data={"email": f"new{n}@example.com"},
                        idempotency_key=f"c{n}")
        await csv.push(csv.streams()[0], [change])
        print(n, flush=True)

asyncio.run(main())
"""


@pytest.mark.slow
def test_a_push_killed_at_any_moment_leaves_the_file_whole_and_the_lock_free(
    tmp_path: Path,
) -> None:
    path = tmp_path / "people.csv"
    path.write_text("email\n" + "".join(f"p{i}@example.com\n" for i in range(20_000)))
    root = str(Path(__file__).resolve().parents[2])
    for delay in (0.0, 0.05, 0.2, 0.45, 0.8):
        pusher = subprocess.Popen(
            [sys.executable, "-c", PUSHER, str(tmp_path)],
            cwd=root,
            stdout=subprocess.PIPE,
        )
        assert pusher.stdout is not None
        # the kill lands among writes, however long the interpreter took to start
        pusher.stdout.readline()
        time.sleep(delay)
        pusher.kill()
        pusher.wait()
        rows = emails(path)
        assert rows[:20_000] == [f"p{i}@example.com" for i in range(20_000)]
        assert all(r.startswith("new") and r.endswith("@example.com") for r in rows[20_000:])
        with files.FileLock(path, exclusive=True, wait=0, connection="sheet"):
            pass
    assert len(emails(path)) > 20_000, "no push got through before the kills"
