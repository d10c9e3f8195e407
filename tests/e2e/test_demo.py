"""The README's main command: the demo runs the daemon, shows changes flowing both ways and
prints every change the hub makes, keeps its folder, ends on a signal, and names a taken
port instead of waiting for ever."""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hub.demo import SALES, write_demo

DEMO = [sys.executable, "-m", "hub", "demo"]


class Lines:
    """A process's stdout, line by line, readable with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def until(self, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.seen))

    def text(self) -> str:
        return "\n".join(self.seen)


@contextmanager
def demo(folder: Path, *args: str) -> Iterator[Lines]:
    proc = subprocess.Popen(
        [*DEMO, "--folder", str(folder), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=folder.parent,
    )
    try:
        yield Lines(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def stopped_by(proc: subprocess.Popen[str], sig: int, within: float) -> int:
    """Send ``sig`` and return the exit status, failing when it takes longer than
    ``within`` seconds."""
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"still running {within} s after signal {sig}") from None


def test_demo_prints_every_change_keeps_the_folder_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "demo"
    with demo(folder) as out:
        out.until("The hub keeps running: edit .*sales.csv and watch", 200)
        text = out.text()
        assert "crmhub up on http://127.0.0.1:" in text
        assert "28 contacts in the hub, 28 members in Mailchimp, 28 rows in sales.csv" in text
        assert "the edit came back into the hub and reached sales.csv" in text
        assert "dana@example.com is now a member in Mailchimp" in text
        assert "erin@example.com is a subscribed member in Mailchimp and a row in sales.csv" in text
        # The feed: every change with its fields, the pushes, the webhook that caused one.
        assert re.search(r'sales: created contact dana@example.com \(.*first_name "Dana"', text)
        assert re.search(r"pushed to newsletter: .*dana@example.com", text)
        assert re.search(
            r'newsletter: updated contact ann.lee@example.com: .*first_name "Ann" -> "Annie"', text
        )
        assert "newsletter: profile delivery processed" in text
        assert "signup: created contact erin@example.com" in text
        assert re.search(r"sales: run ok: .*created 3", text)
        # A person's own edit of the spreadsheet is printed, and pushed.
        sales = folder / "sales.csv"
        sales.write_text(sales.read_text().replace(",Bob,Stone,", ",Bob,Stonebridge,"))
        out.until(r'sales: updated contact bob@example.org: last_name "Stone" -> "Stonebridge"', 30)
        out.until(r"pushed to newsletter: .*bob@example.org", 30)
        assert stopped_by(out.proc, signal.SIGTERM, 15) == 0
    # Started again: the folder and the edit are kept, the database starts over.
    with demo(folder, "--seconds", "0") as out:
        out.until("The hub keeps running", 200)
        assert "30 contacts in the hub, 30 members in Mailchimp, 30 rows in sales.csv" in out.text()
        assert out.proc.wait(timeout=30) == 0
    assert ",Bob,Stonebridge," in (folder / "sales.csv").read_text()


def test_a_signal_while_the_demo_acts_ends_it(tmp_path: Path) -> None:
    with demo(tmp_path / "demo") as out:
        out.until("crmhub up on", 120)
        assert stopped_by(out.proc, signal.SIGINT, 20) == 0


@contextmanager
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_taken_port_is_named_with_the_way_out(tmp_path: Path) -> None:
    with taken_port() as port:
        proc = subprocess.run(
            [*DEMO, "--folder", str(tmp_path / "demo"), "--port", str(port), "--seconds", "0"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"127.0.0.1:{port}" in proc.stderr and "--port N" in proc.stderr


def test_a_daemon_that_cannot_listen_ends_the_demo(tmp_path: Path) -> None:
    """The port is taken after the demo looked: the daemon's failure ends the demo."""
    script = (
        "import sys, hub.demo as d; from hub.cli import main; "
        "d.check_port = lambda *a, **k: None; sys.argv[0] = 'crmhub'; main()"
    )
    with taken_port() as port:
        args = ["demo", "--folder", str(tmp_path / "d"), "--port", str(port), "--seconds", "0"]
        proc = subprocess.run(
            [sys.executable, "-c", script, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr and "--port" in proc.stderr


def test_the_folder_is_kept_unless_fresh(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    config = write_demo(folder, api_base="http://127.0.0.1:1/3.0/", list_id="l1", port=0)
    (folder / "crmhub.db").write_text("old state")
    (folder / "sales.csv").write_text(SALES + "zed@example.com,Zed,,,,\n")
    config.write_text(config.read_text() + "\n# my note\n")
    write_demo(folder, api_base="http://127.0.0.1:2/3.0/", list_id="l1", port=8760)
    text = config.read_text()
    assert 'api_base = "http://127.0.0.1:2/3.0/"' in text and "http_port = 8760" in text
    assert "# my note" in text and "zed@example.com" in (folder / "sales.csv").read_text()
    assert not (folder / "crmhub.db").exists()
    write_demo(folder, api_base="http://127.0.0.1:3/3.0/", list_id="l1", port=0, fresh=True)
    assert "# my note" not in config.read_text()
    assert (folder / "sales.csv").read_text() == SALES


def test_a_folder_holding_another_configuration_is_refused(tmp_path: Path) -> None:
    from hub.errors import CrmhubError

    (tmp_path / "crmhub.toml").write_text('[hub]\ndatabase = "crmhub.db"\n')
    (tmp_path / "crmhub.db").write_text("a real hub's data")
    with pytest.raises(CrmhubError, match="not the demo's configuration"):
        write_demo(tmp_path, api_base="http://x/", list_id="l1", port=0, fresh=True)
    assert (tmp_path / "crmhub.db").read_text() == "a real hub's data"
