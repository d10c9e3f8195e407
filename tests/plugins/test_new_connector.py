"""``crmhub new-connector acme && pip install -e './crmhub-connector-acme[test]' && pytest
crmhub-connector-acme`` passes, and ``crmhub connectors`` lists the new connector."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import tomllib
from pathlib import Path

import httpx
import pytest

from hub.rest.sandbox import SANDBOX_KEY
from tests.plugins.layered import Layered

COMMANDS = [
    "crmhub new-connector acme",
    "pip install -e './crmhub-connector-acme[test]'",
    "pytest crmhub-connector-acme",
    "crmhub connectors",
    "crmhub sandbox acme",
]
"""What plugins.md tells an author to run; the test below runs each (the sandbox through
``crmhub sandbox acme --port-base 0``)."""


@pytest.mark.slow
def test_a_generated_plugin_installs_passes_its_tests_and_is_listed(tmp_path: Path) -> None:
    env = Layered(tmp_path / "venv")
    work = tmp_path / "work"
    work.mkdir()
    made = env.run("-m", "hub", "new-connector", "acme", cwd=work)
    assert made.returncode == 0, made.stderr
    assert "wrote crmhub-connector-acme" in made.stdout
    assert f"next: {COMMANDS[1]} && {COMMANDS[2]}" in made.stdout  # the hint is the docs'
    *_, target = shlex.split(COMMANDS[1])
    project = tomllib.loads((work / "crmhub-connector-acme" / "pyproject.toml").read_text())
    extra = target.partition("[")[2].rstrip("]")
    assert {"pytest", "pytest-asyncio"} <= set(project["project"]["optional-dependencies"][extra])
    installed = env.pip_install_editable(str(work / target))
    assert installed.returncode == 0, installed.stderr
    tested = env.run(
        "-m", "pytest", "-p", "no:cacheprovider", *shlex.split(COMMANDS[2])[1:], cwd=work
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert " passed" in tested.stdout and "failed" not in tested.stdout
    assert "mode=Mode.STRICT" in tested.stdout  # pytest-asyncio's default mode
    listed = env.run("-m", "hub", "connectors", "--json", cwd=work)
    assert listed.returncode == 0, listed.stderr
    acme = next(c for c in json.loads(listed.stdout) if c["name"] == "acme")
    assert acme["status"] == "ok", acme["error"]
    assert acme["package"] == "crmhub-connector-acme"
    assert acme["streams"] == ["contacts -> contact"]
    served = subprocess.Popen(
        [str(env.python), "-m", "hub", "sandbox", "acme", "--port-base", "0", "--size", "4"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=work,
    )
    try:
        assert served.stdout is not None
        name, url = served.stdout.readline().split()
        page = httpx.get(f"{url}/contacts", headers={"X-API-Key": SANDBOX_KEY}, timeout=10)
        assert name == "acme" and len(page.json()["results"]) == 4
    finally:
        served.send_signal(signal.SIGINT)
        served.wait(timeout=15)


def test_a_name_that_cannot_be_a_connector_is_refused(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hub.cli import app, commands  # noqa: F401  (registers the commands)

    runner = CliRunner()
    bad = runner.invoke(app, ["new-connector", "Acme-CRM", "--dir", str(tmp_path)])
    assert bad.exit_code == 1 and "cannot name a connector" in bad.output
    assert not list(tmp_path.iterdir())
    assert runner.invoke(app, ["new-connector", "acme", "--dir", str(tmp_path)]).exit_code == 0
    again = runner.invoke(app, ["new-connector", "acme", "--dir", str(tmp_path)])
    assert again.exit_code == 1 and "already exists" in again.output
