"""The example plugin ``examples/crmhub-connector-people``: a declaration of at most 60
lines and no Python, installed from its path, passing its own tests (the contract suite
against its generated sandbox), listed by ``crmhub connectors``, served by ``crmhub
sandbox people``."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from hub.rest.sandbox import SANDBOX_KEY
from tests.plugins.layered import Layered

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "crmhub-connector-people"
DECLARATION = EXAMPLE / "crmhub_connector_people" / "people.toml"


def test_the_declaration_is_at_most_60_lines_and_the_package_has_no_code() -> None:
    assert len(DECLARATION.read_text(encoding="utf-8").splitlines()) <= 60
    code = [
        p
        for p in (EXAMPLE / "crmhub_connector_people").rglob("*.py")
        if p.read_text(encoding="utf-8").strip().strip('"').count("\n") > 0
    ]
    assert code == [], f"the connector should be declared, not programmed: {code}"


@pytest.mark.slow
def test_installed_from_its_path_it_passes_its_tests_and_is_listed(tmp_path: Path) -> None:
    project = tmp_path / "crmhub-connector-people"  # a copy: builds leave files behind
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    env = Layered(tmp_path / "venv")
    installed = env.pip_install_editable(f"{project}[test]")  # as its README says
    assert installed.returncode == 0, installed.stderr
    tested = env.run("-m", "pytest", "-p", "no:cacheprovider", str(project), cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "failed" not in tested.stdout and "skipped" not in tested.stdout
    listed = env.run("-m", "hub", "connectors", "--json", cwd=tmp_path)
    people = next(c for c in json.loads(listed.stdout) if c["name"] == "people")
    assert (people["status"], people["package"], people["version"]) == (
        "ok",
        "crmhub-connector-people",
        "1.0.0",
    )
    served = subprocess.Popen(
        [str(env.python), "-m", "hub", "sandbox", "people", "--port-base", "0", "--size", "7"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert served.stdout is not None
        name, url = served.stdout.readline().split()
        assert name == "people"
        headers = {"Authorization": f"Bearer {SANDBOX_KEY}"}
        page = httpx.get(f"{url}/contacts", headers=headers, params={"per_page": 5}, timeout=10)
        assert page.status_code == 200 and len(page.json()["data"]) == 5
        refused = httpx.get(f"{url}/contacts", timeout=10)
        assert refused.status_code == 401
    finally:
        served.send_signal(signal.SIGINT)
        served.wait(timeout=15)
