"""What the commands say about installed plugins in trouble: a broken declaration named
with its keys (by `crmhub connectors` and `crmhub sandbox`), a plugin that takes a built-in
connector's name, and the auth kind a declaration names."""

from __future__ import annotations

import json
import logging
from importlib.metadata import EntryPoint
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

import hub.registry
from hub.cli import app, commands  # noqa: F401  (registers the commands)
from hub.cli.app import console
from hub.registry import GROUP, Registry
from hub.rest import create_sandbox, declared
from tests.rest.kit import declaration

ACME = """\
name = "{name}"

[client]
base_url = "https://acme.example/api"
auth = "bearer"

[streams.contacts]
entity = "contact"
path = "/contacts"
{extra}"""


def plugin(folder: Path, name: str, extra: str = "") -> EntryPoint:
    """An installed plugin package shipping ``<name>.toml``, from ``crmhub-connector-<name>``."""
    package = folder / f"crmhub_connector_{name}"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / f"{name}.toml").write_text(ACME.format(name=name, extra=extra))
    ep = EntryPoint(name, f"crmhub_connector_{name}:{name}.toml", GROUP)
    dist = SimpleNamespace(name=f"crmhub-connector-{name}", version="0.2.0")
    return ep._for(dist)  # type: ignore[attr-defined]


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[EntryPoint]:
    """Entry points beside the real ones; the test adds plugins to the list."""
    monkeypatch.syspath_prepend(str(tmp_path))
    real = list(hub.registry.entry_points(group=GROUP))
    extra: list[EntryPoint] = []

    def points(**_: Any) -> list[EntryPoint]:
        return [*real, *extra]

    monkeypatch.setattr(hub.registry, "entry_points", points)
    return extra


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_a_broken_declaration_is_named_with_its_keys(
    installed: list[EntryPoint], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "_width", 1000)  # a row a line
    installed.append(plugin(tmp_path, "acme", 'recods = "$.data"\n'))
    where = f"{tmp_path / 'crmhub_connector_acme' / 'acme.toml'}:10 [streams.contacts.recods]"
    code, out = invoke("connectors", "--json")
    [row] = [r for r in json.loads(out) if r["name"] == "acme"]
    assert row["status"] == "broken" and row["error"].startswith(f"{where}: unknown key")
    code, out = invoke("connectors")
    [line] = [line for line in out.splitlines() if " acme " in line]
    assert f"broken: {where}: unknown key 'recods'" in line
    code, out = invoke("sandbox", "acme")
    assert code == 1 and "no sandbox for acme" not in out
    assert f"the acme sandbox is broken: {where}: unknown key 'recods'" in " ".join(out.split())


def test_a_plugin_named_like_a_built_in_is_shadowed_and_said_so(
    installed: list[EntryPoint], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    installed.append(plugin(tmp_path, "csv"))
    with caplog.at_level(logging.WARNING, "crmhub.registry"):
        registry = Registry.discover()
    assert registry.get("csv").__module__.startswith("connectors.csv")  # the built-in
    [lost] = registry.shadowed
    assert lost.package == "crmhub-connector-csv" and lost.status == "shadowed"
    assert caplog.messages == [
        "two connectors are named 'csv': the built-in csv connector is used, "
        "crmhub_connector_csv:csv.toml of package crmhub-connector-csv 0.2.0 is shadowed "
        "(built-in connectors keep their names); rename the plugin's entry point"
    ]
    code, out = invoke("connectors", "--json")
    rows = [(r["package"], r["status"], r["note"]) for r in json.loads(out) if r["name"] == "csv"]
    assert rows == [
        (
            "crmhub",
            "ok",
            "used; crmhub_connector_csv:csv.toml of package crmhub-connector-csv 0.2.0 names "
            "'csv' too and is shadowed (built-in connectors keep their names)",
        ),
        (
            "crmhub-connector-csv",
            "shadowed",
            "not used: the built-in csv connector keeps the name 'csv' (built-in connectors "
            "keep their names); give this plugin's entry point another name",
        ),
    ]
    code, out = invoke("connectors")
    assert code == 0 and "shadowed" in out


def test_two_plugins_of_one_name_the_first_keeps_it(
    installed: list[EntryPoint], tmp_path: Path
) -> None:
    first = plugin(tmp_path, "acme")
    second = EntryPoint("acme", "crmhub_connector_acme:acme.toml", GROUP)._for(  # type: ignore[attr-defined]
        SimpleNamespace(name="acme-fork", version="9.0")
    )
    installed.extend([first, second])
    registry = Registry.discover()
    assert registry.plugins["acme"].package == "crmhub-connector-acme"
    assert [p.package for p in registry.shadowed] == ["acme-fork"]
    assert "(it was found first)" in str(registry.shadowed[0].note)


def test_connections_show_the_auth_kind_the_declaration_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "acme.toml").write_text(ACME.format(name="acme", extra=""))
    (tmp_path / "crmhub.toml").write_text(
        f'[hub]\ndatabase = "{tmp_path / "hub.db"}"\n\n[connections.crm]\nconnector = "acme.toml"\n'
    )
    monkeypatch.setenv("CRMHUB_SECRET_KEY_FILE", str(tmp_path / "crmhub.key"))
    code, out = invoke("--config", str(tmp_path / "crmhub.toml"), "connections", "--json")
    assert code == 0, out
    [row] = json.loads(out)
    assert (row["connection"], row["auth"], row["status"]) == ("crm", "bearer", "not connected")


def test_the_sandbox_says_what_credentials_let_a_client_in() -> None:
    from hub.sandbox import serve_sandbox

    bearer = create_sandbox(declaration())
    assert bearer.credentials == ["credentials: header Authorization: Bearer sandbox-api-key"]
    basic = declaration(client={"base_url": "https://p.example", "auth": "basic"})
    assert create_sandbox(basic).credentials == [
        "credentials: HTTP Basic, user sandbox-user and password sandbox-password"
    ]
    oauth = {
        "kind": "oauth2",
        "authorize_url": "https://p.example/authorize",
        "token_url": "https://p.example/token",
    }
    made = create_sandbox(
        declared(declaration(client={"base_url": "https://p.example", "auth": oauth})).loaded
    )
    [line] = made.credentials
    assert line.startswith("credentials: OAuth2 client sandbox-client with secret sandbox-secret")
    url, server = serve_sandbox(made)
    try:  # the steps the line gives let a first request in
        token = httpx.post(
            f"{url}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=("sandbox-client", "sandbox-secret"),
        ).json()["access_token"]
        answer = httpx.get(f"{url}/contacts", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200
    finally:
        server.stop()


def test_connectors_check_loads_a_declaration_and_runs_nothing(
    installed: list[EntryPoint], tmp_path: Path
) -> None:
    good = tmp_path / "acme.toml"
    good.write_text(ACME.format(name="acme", extra=""))
    code, out = invoke("connectors", "check", str(good))
    assert (code, out.strip()) == (
        0,
        f"{good}: acme 0.1.0 OK (auth bearer; streams: contacts -> contact)",
    )
    (tmp_path / "acme_hooks.py").write_text("FIX = 1\n")
    broken = tmp_path / "broken.toml"
    extra = 'transform = "acme_hooks:FIX"\nrecords = "$.data[?(@.x)]"\n'
    broken.write_text(ACME.format(name="broken", extra=extra))
    code, out = invoke("connectors", "check", str(broken))
    lines = " ".join(out.split()).replace(f"{broken}:", "\n")
    assert code == 1 and lines.split("\n")[1:] == [
        "10 [streams.contacts.transform]: hook 'acme_hooks:FIX' is an int, not a function or "
        "class: name something it can call ",
        "11 [streams.contacts.records]: '$.data[?(@.x)]' is not a supported JSON path near "
        "'[?(@.x)]' (supported: $, $.key.key, $['key'], $.list[0], $.list[*]) 2 problem(s)",
    ]
    installed.append(plugin(tmp_path, "gone", 'recods = "$.data"\n'))
    code, out = invoke("connectors", "check", "gone")
    assert code == 1 and "[streams.contacts.recods]: unknown key 'recods'" in out
    code, out = invoke("connectors", "check", "zendesk")
    assert code == 0 and "zendesk 1.0.0 OK (auth basic; streams: users -> contact" in out
    code, out = invoke("connectors", "check", "nosuch")
    assert code == 1 and "no connector named 'nosuch' (installed: csv, " in out
