"""``crmhub entities duplicates`` finds two rows that are one person; ``crmhub entities
merge`` makes them one golden record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.cli import app, commands  # noqa: F401  (registers the commands)

runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_duplicates_then_merge_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "people.csv").write_text(
        "email,first_name,last_name,phone,company\n"
        "bo@acme.com,Bo,Berg,+44 20 7946 0958,Acme\n"
        "bo.berg@acme.com,Bo,Berg,+44 20 7946 0958,acme\n"
    )
    (tmp_path / "crmhub.toml").write_text(
        '[hub]\ndatabase = "hub.db"\nphone_region = "GB"\n\n'
        '[connections.people]\nconnector = "csv"\npath = "people.csv"\n'
        'delete_policy = "propagate"\n'
    )
    monkeypatch.setenv("CRMHUB_CONFIG", str(tmp_path / "crmhub.toml"))
    monkeypatch.chdir(tmp_path)
    invoke("sync", "people")
    found = json.loads(invoke("entities", "duplicates", "--json"))
    [group] = found  # one group, listed once whatever the reasons it has
    assert group["type"] == "contact" and group["reason"].startswith("same")
    keep, other = group["ids"]
    merged = json.loads(invoke("entities", "merge", keep, other, "--take", "email", "--json"))
    assert merged["taken"]["email"] == ["bo@acme.com", "bo.berg@acme.com"]
    assert merged["duplicates"] == [
        {"connection": "people", "remote_id": merged["duplicates"][0]["remote_id"],
         "action": "deleted there"}
    ]  # fmt: skip
    invoke("sync", "people")
    rows = (tmp_path / "people.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("bo.berg@acme.com,Bo,Berg")
    assert json.loads(invoke("entities", "duplicates", "--json")) == []
    again = runner.invoke(app, ["entities", "merge", keep, other])
    assert again.exit_code == 1 and "no entity" in again.output
