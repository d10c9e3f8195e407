"""The README's main command: the demo runs the daemon and shows changes flowing both ways."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_shows_records_flowing(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hub",
            "demo",
            "--folder",
            str(tmp_path / "demo"),
            "--port",
            "0",
            "--seconds",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "crmhub up on http://127.0.0.1:" in out
    assert "28 contacts in the hub, 28 members in Mailchimp, 28 rows in sales.csv" in out
    assert "the edit came back into the hub and reached sales.csv" in out
    assert "dana@example.com is now a member in Mailchimp" in out
    assert "erin@example.com is a subscribed member in Mailchimp and a row in sales.csv" in out
    assert (tmp_path / "demo" / "crmhub.db").exists()
