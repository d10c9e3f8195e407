"""The contract suite's failures show their values wherever crmhub is installed: crmhub's
``pytest11`` plugin has pytest rewrite the asserts of ``hub.testing``, as it does a test
module's (a plugin's tests import the suite from the installed package)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FAILING = """
from hub.connector import Page
from hub.testing.contract import check_page


def test_an_empty_deleted_id():
    check_page(Page(records=[], deleted=[""]))
"""


def _run(folder: Path, *options: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *options, "test_plugin.py"],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    return done.stdout


def test_a_failing_contract_check_shows_the_values_compared(tmp_path: Path) -> None:
    (tmp_path / "test_plugin.py").write_text(FAILING, encoding="utf-8")
    shown = _run(tmp_path)
    assert "deleted ids ['']" in shown
    assert "where False = all(" in shown, shown  # pytest's explanation of the assert
    plain = _run(tmp_path, "-p", "no:crmhub")  # without the plugin: the bare message
    assert "deleted ids ['']" in plain and "where False = all(" not in plain
    assert "already imported" not in shown  # registered before hub.testing was imported
