"""Declarations in a running hub: a local declaration file named in ``crmhub.toml``, synced
both ways through the engine into a real store; entry points that name a declaration;
``crmhub sandbox`` for a declaration file."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import httpx
import pytest

from auth.credentials import VaultAuth
from auth.flows import store_api_key
from hub.config import load_config
from hub.connector import ConnectorContext
from hub.engine import sync_connection
from hub.errors import ConfigError
from hub.registry import GROUP, Registry, _load
from hub.rest.sandbox import SANDBOX_KEY
from hub.runtime import Hub
from hub.testing.memory import MemoryConnector, create_remote, remove_remote
from tests.rest.kit import served

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "crmhub-connector-people"
PACKAGE = EXAMPLE / "crmhub_connector_people"


def copy_declaration(folder: Path) -> Path:
    shutil.copytree(PACKAGE, folder / "directory", ignore=shutil.ignore_patterns("*.py*"))
    return folder / "directory" / "people.toml"


def write_config(folder: Path, db_url: str, url: str, store: str, extra: str = "") -> Path:
    path = folder / "crmhub.toml"
    path.write_text(
        f'[hub]\ndatabase = "{db_url}"\n\n'
        '[connections.directory]\nconnector = "directory/people.toml"\n'
        f'base_url = "{url}"\n{extra}\n'
        f'[connections.mem]\nconnector = "memory"\nstore = "{store}"\n'
    )
    return path


def registry() -> Registry:
    return Registry.discover(extra={"memory": MemoryConnector})


async def open_hub(path: Path) -> Hub:
    return await Hub.open(load_config(path), registry(), auth=VaultAuth())


async def test_a_declaration_file_named_in_crmhub_toml_syncs_both_ways(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRMHUB_SECRET_KEY_FILE", str(tmp_path / "crmhub.key"))
    from hub.rest import declared

    cls = declared(copy_declaration(tmp_path))
    remote = create_remote(f"mem-{tmp_path.name}")
    with served(cls, size=5) as (_, app, url):
        hub = await open_hub(write_config(tmp_path, db_url, url, remote.name))
        try:
            await store_api_key(hub, "directory", SANDBOX_KEY)
            for name in ("directory", "mem"):
                report = await sync_connection(hub, name)
                assert report.status == "ok", report.error
            assert len(remote) == 5  # the directory's contacts reached the other system
            rid = remote.add({"email": "new@example.com", "first_name": "New"})
            await sync_connection(hub, "mem")
            await sync_connection(hub, "directory")
            made = app.provider.find("contacts", "email", "new@example.com")
            assert made is not None  # created in the directory, with the idempotency key
            remote.update(rid, first_name="Renamed")
            await sync_connection(hub, "mem")
            report = await sync_connection(hub, "directory")
            assert report.status == "ok", report.error
            [record] = [
                r for r in app.provider.records("contacts") if r["email"] == "new@example.com"
            ]
            assert record["first_name"] == "Renamed" and record["version"] == 2
            patches = [e for e in app.log.entries() if e.method == "PATCH"]
            assert [e.status for e in patches] == [200]
            before = len(app.log)
            quiet = await sync_connection(hub, "directory")
            assert quiet.status == "ok" and not any(
                e.method != "GET" for e in app.log.entries(before)
            )
        finally:
            await hub.close()
            remove_remote(remote.name)


async def test_problems_of_a_local_declaration_are_named_where_they_are(tmp_path: Path) -> None:
    people = copy_declaration(tmp_path)
    path = write_config(tmp_path, "x.db", "http://127.0.0.1:1", "s", extra="colour = 'red'\n")
    with pytest.raises(ConfigError) as raised:
        registry().validate(load_config(path))
    [problem] = raised.value.problems
    assert problem.file == str(path) and problem.line == 7
    assert problem.key == "connections.directory.colour"
    assert "unknown setting for connector 'people' (valid: base_url)" in problem.message
    people.write_text(people.read_text().replace('kind = "page_number"', 'kind = "pagenumber"'))
    with pytest.raises(ConfigError) as raised:
        registry().validate(load_config(write_config(tmp_path, "x.db", "u", "s")))
    [problem] = raised.value.problems
    assert problem.file == str(people) and problem.line == 25  # the kind line
    assert "unknown paginator kind 'pagenumber'" in problem.message
    people.unlink()
    with pytest.raises(ConfigError, match=r"declaration file .* not found"):
        registry().validate(load_config(write_config(tmp_path, "x.db", "u", "s")))


def test_entry_points_that_name_a_declaration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    good = _load(EntryPoint("people", "crmhub_connector_people:people.toml", GROUP))
    assert good.status == "ok" and good.cls is not None and good.cls.name == "people"
    made = good.cls(good.cls.Settings(), ConnectorContext("p"))
    assert made.default_mapping(made.streams()[0]) == PACKAGE / "mappings" / "contacts.toml"
    renamed = _load(EntryPoint("staff", "crmhub_connector_people:people.toml", GROUP))
    assert renamed.status == "broken" and "use the same name" in str(renamed.error)
    missing = _load(EntryPoint("people", "crmhub_connector_people:nope.toml", GROUP))
    assert missing.status == "broken" and "nope.toml" in str(missing.error)


def test_an_entry_point_may_name_a_dict(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "dict_plugin.py").write_text(
        "DECLARATION = {'name': 'tiny', 'client': {'base_url': 'https://t.example'},\n"
        "  'streams': {'things': {'entity': 'company', 'path': '/things'}}}\n"
        "BROKEN = {'name': 'tiny', 'client': {}, 'streams': {}}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    ok = _load(EntryPoint("tiny", "dict_plugin:DECLARATION", GROUP))
    assert ok.status == "ok" and ok.cls is not None and ok.cls.name == "tiny"
    broken = _load(EntryPoint("tiny", "dict_plugin:BROKEN", GROUP))
    assert broken.status == "broken" and "dict_plugin:BROKEN [client.base_url]" in str(broken.error)


def test_crmhub_sandbox_serves_a_declaration_file(tmp_path: Path) -> None:
    people = copy_declaration(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "sandbox", str(people), "--port-base", "0", "--size", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        name, url = proc.stdout.readline().split()
        assert name == str(people)
        said = proc.stdout.readline().strip()  # what a first curl must send
        assert said == f"{people} credentials: header Authorization: Bearer {SANDBOX_KEY}"
        headers = {"Authorization": f"Bearer {SANDBOX_KEY}"}
        answer = httpx.get(f"{url}/contacts", headers=headers, timeout=10)
        assert answer.status_code == 200 and len(answer.json()["data"]) == 3
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "x"\n')
    failed = subprocess.run(
        [sys.executable, "-m", "hub", "sandbox", str(broken)], capture_output=True, text=True
    )
    assert failed.returncode == 1 and "sandbox is broken" in failed.stderr
    assert "broken.toml [client]: Field required" in failed.stderr  # the key, not eaten as markup
