"""The command line, in process: listings, JSON output, exit codes and clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hub.cli import (
    app,
    commands,  # noqa: F401  (registers the commands)
)
from hub.config import load_config

runner = CliRunner()


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "a.csv").write_text("email,first_name\nann@example.com,Ann\n")
    (tmp_path / "b.csv").write_text("email,first_name\nbob@example.com,Bob\n")
    (tmp_path / "crmhub.toml").write_text(
        '[hub]\ndatabase = "hub.db"\n\n[connections.a]\nconnector = "csv"\npath = "a.csv"\n\n'
        '[connections.b]\nconnector = "csv"\npath = "b.csv"\n'
    )
    monkeypatch.setenv("CRMHUB_CONFIG", str(tmp_path / "crmhub.toml"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_init_writes_a_commented_config_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CRMHUB_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    code, _ = invoke("init")
    written = (tmp_path / "crmhub.toml").read_text()
    assert code == 0 and "[hub]" in written
    assert "env:NEWSLETTER_WEBHOOK_SECRET" in written and "CRMHUB_CONNECTIONS__" in written
    assert load_config(tmp_path / "crmhub.toml", {}).connections == {}
    code, out = invoke("init")
    assert code == 1 and "exists already" in out


def test_connectors_lists_built_ins_as_json() -> None:
    code, out = invoke("connectors", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["csv"]["status"] == "ok" and rows["csv"]["streams"] == ["contacts -> contact"]
    assert rows["mailchimp"]["status"] == "ok"


def test_plan_then_sync_then_listings(folder: Path) -> None:
    code, out = invoke("sync", "--plan", "--json")
    assert code == 0
    plans = json.loads(out)
    assert [p["status"] for p in plans] == ["plan", "plan"]
    assert not (folder / "hub.db").exists() or "bob" not in (folder / "a.csv").read_text()
    code, out = invoke("sync", "--json")
    assert code == 0 and [r["status"] for r in json.loads(out)] == ["ok", "ok"]
    invoke("sync")
    assert "bob@example.com" in (folder / "a.csv").read_text()
    code, out = invoke("runs", "--json")
    assert code == 0 and len(json.loads(out)) >= 4
    code, out = invoke("entities", "search", "ann@example.com", "--json")
    assert code == 0 and [e["fields"]["first_name"] for e in json.loads(out)] == ["Ann"]
    code, out = invoke("outbox", "--status", "all", "--json")
    assert code == 0 and {r["status"] for r in json.loads(out)} == {"done"}
    code, out = invoke("outbox", "retry", "--all-dead")
    assert code == 0 and "0 owed write(s)" in out


def test_unknown_connection_and_bad_option_fail_clearly(folder: Path) -> None:
    code, out = invoke("sync", "nosuch")
    assert code == 1 and "no connection named 'nosuch'" in out and "a, b" in out
    code, out = invoke("outbox", "--status", "lost")
    assert code == 2 and "pending, done, dead" in out


def test_mapping_check_names_file_line_and_key(folder: Path) -> None:
    good = Path(__file__).resolve().parents[2] / "mappings" / "csv" / "contacts.toml"
    code, out = invoke("mapping", "check", str(good))
    assert code == 0 and "OK" in out
    bad = folder / "bad.toml"
    bad.write_text('entity = "contact"\n\n[[field]]\ncanonical = "emial"\nremote = "email"\n')
    code, out = invoke("mapping", "check", str(bad))
    assert code == 1 and "bad.toml:4" in out and "emial" in out
    assert "[field[1].canonical]" in out  # the key as written, not taken for markup


def test_db_prune_reports_what_it_deleted(folder: Path) -> None:
    code, out = invoke("db", "prune", "--json")
    assert code == 0, out
    assert json.loads(out) == {
        "older_than_days": 30,
        "idle_runs_older_than_days": 3,
        "inbox": 0,
        "outbox": 0,
        "runs": 0,
    }
    code, out = invoke("db", "prune", "--older-than", "2")
    assert code == 0, out
    said = " ".join(out.split())  # the console wraps at its width
    assert "more than 2 days ago (runs that changed nothing: 2): 0 inbox, 0 outbox, 0 runs" in said
    code, out = invoke("db", "prune", "--older-than", "0")
    assert code != 0
    assert "older-than" in out


def test_a_configuration_error_names_its_key_as_written(folder: Path) -> None:
    (folder / "crmhub.toml").write_text(
        '[hub]\ndatabase = "hub.db"\n\n[connections.a]\nconnector = "csv"\n'
    )
    code, out = invoke("sync")
    assert code != 0
    # the key in brackets, once escaped for the terminal: no backslash reaches the user
    assert "[connections.a" in out and "\\[" not in out


def test_every_command_summary_is_one_line() -> None:
    """``crmhub --help`` shows each command's first paragraph as written: a line break in
    it breaks the listing mid-sentence."""
    import typer.main

    def summaries(command: Any, path: str) -> list[tuple[str, str]]:
        found = []
        for name, sub in getattr(command, "commands", {}).items():
            first = (sub.help or "").strip().split("\n\n")[0]
            found.append((f"{path} {name}".strip(), first))
            found += summaries(sub, f"{path} {name}")
        return found

    broken = [name for name, first in summaries(typer.main.get_command(app), "") if "\n" in first]
    assert not broken, f"summaries over several lines: {broken}"
