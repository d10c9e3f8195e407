"""``crmhub connect``, ``connections`` and ``keys`` from a clean configuration.

The OAuth commands run as real processes against the sandbox authorization server; the
browser is played with httpx. The connectors come from a small bootstrap that sets the
command module's registry hook.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

import hub.cli.auth_commands as auth_commands
from auth.flows import open_vault, start_authorization
from auth.keys import KEY_ENV, KEY_FILE_ENV, Keyring, create_key_file, load_keyring, rotate_key_file
from auth.sandbox import SandboxOAuthServer, serve
from auth.vault import TokenVault
from hub.cli.app import app
from hub.config import load_config
from hub.registry import Registry
from hub.store import Store
from hub.web.oauth import router
from tests.auth.test_flows import DemoConnector

ROOT = Path(__file__).resolve().parents[2]


class CliOAuth(DemoConnector):
    """Endpoints, client and scopes all come from the configuration."""

    name = "clioauth"
    auth_kind = "generic_oauth2"


class CliKey(DemoConnector):
    name = "clikey"
    auth_kind = "api_key"


class CliNone(DemoConnector):
    name = "clinone"
    auth_kind = "none"


CONNECTORS: dict[str, Any] = {"clioauth": CliOAuth, "clikey": CliKey, "clinone": CliNone}

BOOTSTRAP = """
import sys
from hub.cli import auth_commands
from hub.registry import Registry
from tests.auth.test_connect_cli import CONNECTORS

auth_commands.registry_factory = lambda: Registry.discover(extra=CONNECTORS)
from hub.cli import main
main()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sandbox() -> Iterator[tuple[SandboxOAuthServer, str]]:
    server = SandboxOAuthServer()
    with serve(server.app) as url:
        yield server, url


@pytest.fixture
def workdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sandbox: tuple[SandboxOAuthServer, str]
) -> Path:
    """A clean configuration: no database, no key file yet."""
    for name in (KEY_ENV, KEY_FILE_ENV, "CRMHUB_CONFIG", "CRMHUB_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CRMHUB_CONNECTIONS__CRM__OAUTH__CLIENT_SECRET", "sandbox-secret")
    base = sandbox[1]
    (tmp_path / "crmhub.toml").write_text(
        f"""
[hub]
database = "hub.db"
http_port = {free_port()}

[connections.crm]
connector = "clioauth"

[connections.crm.oauth]
authorize_url = "{base}/oauth/authorize"
token_url = "{base}/oauth/token"
scopes = ["contacts.read"]
client_id = "sandbox-client"

[connections.desk]
connector = "clikey"

[connections.people]
connector = "clinone"
""",
        encoding="utf-8",
    )
    (tmp_path / "crmhub_cli.py").write_text(BOOTSTRAP, encoding="utf-8")
    monkeypatch.setattr(
        auth_commands, "registry_factory", lambda: Registry.discover(extra=CONNECTORS)
    )
    return tmp_path


def crmhub(workdir: Path, *args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "COLUMNS": "1000",
    }
    return subprocess.Popen(
        [sys.executable, str(workdir / "crmhub_cli.py"), "--config", "crmhub.toml", *args],
        cwd=workdir,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_url(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("http"):
            return line.strip()
    error = process.stderr.read() if process.stderr else ""
    raise AssertionError(f"no URL printed; stderr: {error}")


async def stored(workdir: Path, connection: str) -> Any:
    store = await Store.open(f"sqlite+aiosqlite:///{workdir / 'hub.db'}")
    try:
        return await TokenVault(store, load_keyring(workdir)).get(connection)
    finally:
        await store.close()


def cli(
    workdir: Path, *args: str, env: dict[str, str] | None = None, input: str | None = None
) -> Any:
    return CliRunner().invoke(
        app, ["--config", str(workdir / "crmhub.toml"), *args], env=env, input=input
    )


async def test_connect_paste_from_a_clean_configuration(
    workdir: Path, sandbox: tuple[SandboxOAuthServer, str]
) -> None:
    server, _ = sandbox
    process = crmhub(workdir, "connect", "crm", "--paste")
    try:
        url = read_url(process)
        async with httpx.AsyncClient() as browser:
            redirect = (await browser.get(url)).headers["location"]
        out, err = process.communicate(redirect + "\n", timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "Connected 'crm' (oauth2" in out
    assert "sbx-" not in out + err and "sandbox-secret" not in out + err
    token = await stored(workdir, "crm")
    assert token is not None and server.validate(token.data["access_token"])
    assert (workdir / "crmhub.key").exists()


async def test_connect_waits_for_the_callback(
    workdir: Path, sandbox: tuple[SandboxOAuthServer, str]
) -> None:
    server, _ = sandbox
    process = crmhub(workdir, "connect", "crm", "--timeout", "30")
    try:
        url = read_url(process)
        async with httpx.AsyncClient(follow_redirects=True) as browser:
            page = await browser.get(url)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert page.status_code == 200 and "connected to &#x27;crm&#x27;" in page.text
    assert "sbx-" not in page.text
    assert process.returncode == 0, err
    assert "Connected 'crm'" in out
    token = await stored(workdir, "crm")
    assert token is not None and server.validate(token.data["access_token"])


async def test_callback_route_completes_once_and_refuses_forgeries(
    workdir: Path, sandbox: tuple[SandboxOAuthServer, str]
) -> None:
    server, _ = sandbox
    hub = await auth_commands.open_hub(load_config(workdir / "crmhub.toml"))
    web = FastAPI()
    web.state.hub = hub
    web.include_router(router)
    transport = httpx.ASGITransport(app=web)
    try:
        start = await start_authorization(hub, "crm")
        async with httpx.AsyncClient() as browser:
            redirect = (await browser.get(start.url)).headers["location"]
        path = "/oauth/callback?" + urlsplit(redirect).query
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            forged = await client.get(path.replace(start.state, "forged"))
            page = await client.get(path)
            replay = await client.get(path)
        assert forged.status_code == 400 and "already used" in forged.text
        assert page.status_code == 200 and "connected to &#x27;crm&#x27;" in page.text
        assert replay.status_code == 400 and "already used" in replay.text
        assert page.headers["cache-control"] == "no-store"
        for answer in (forged, page, replay):
            assert "sbx-" not in answer.text and "sandbox-secret" not in answer.text
        token = await open_vault(hub).get("crm")
        assert token is not None and server.validate(token.data["access_token"])
    finally:
        await hub.close()


def test_connections_lists_status_without_secrets(workdir: Path) -> None:
    before = cli(workdir, "connections", "--json")
    assert before.exit_code == 0, before.output
    rows = {row["connection"]: row for row in json.loads(before.stdout)}
    assert rows["crm"]["auth"] == "generic_oauth2" and rows["crm"]["status"] == "not connected"
    assert rows["people"]["status"] == "no credentials needed"
    assert rows["desk"]["connector"] == "clikey"

    stored_key = cli(
        workdir, "connect", "desk", "--value-from-env", "DESK_KEY", env={"DESK_KEY": "k-4815162342"}
    )
    assert stored_key.exit_code == 0, stored_key.output
    assert "k-4815162342" not in stored_key.output

    after = cli(workdir, "connections", "--json")
    rows = {row["connection"]: row for row in json.loads(after.stdout)}
    assert rows["desk"]["status"] == "ok" and rows["desk"]["auth"] == "api_key"
    assert "k-4815162342" not in after.stdout

    table = cli(workdir, "connections")
    assert table.exit_code == 0 and "not connected" in table.stdout and "k-48" not in table.stdout

    missing = cli(workdir, "connect", "desk", "--value-from-env", "NOT_SET_ANYWHERE")
    assert missing.exit_code == 1 and "NOT_SET_ANYWHERE is not set" in missing.output
    none = cli(workdir, "connect", "people")
    assert none.exit_code == 1 and "needs no credentials" in none.output


async def _mark_refused(workdir: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{workdir / 'hub.db'}")
    try:
        await TokenVault(store, load_keyring(workdir)).mark_needs_reauth("desk", "key revoked")
    finally:
        await store.close()


def test_needs_reauth_shows_with_its_reason(workdir: Path) -> None:
    assert cli(workdir, "connect", "desk", input="k-1234567890\n").exit_code == 0
    asyncio.run(_mark_refused(workdir))
    rows = {r["connection"]: r for r in json.loads(cli(workdir, "connections", "--json").stdout)}
    assert rows["desk"]["status"] == "needs_reauth" and rows["desk"]["last_error"] == "key revoked"


async def _read_with(workdir: Path, keys: str) -> Any:
    store = await Store.open(f"sqlite+aiosqlite:///{workdir / 'hub.db'}")
    try:
        return await TokenVault(store, Keyring.from_text(keys, source="test")).get("desk")
    finally:
        await store.close()


def test_keys_rotate_reencrypts_every_credential(workdir: Path) -> None:
    assert cli(workdir, "keys", "init").exit_code == 0
    again = cli(workdir, "keys", "init")
    assert again.exit_code == 1 and "already exists" in again.output
    old_id = load_keyring(workdir).current_id
    assert cli(workdir, "connect", "desk", input="k-1234567890\n").exit_code == 0

    rotated = cli(workdir, "keys", "rotate")
    assert rotated.exit_code == 0, rotated.output
    assert "re-encrypted 1 credential" in rotated.stdout

    keyring = load_keyring(workdir)
    assert keyring.current_id != old_id and old_id in keyring.key_ids
    lines = [
        line
        for line in (workdir / "crmhub.key").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert len(lines) == 2
    # The new key alone now reads the credential: nothing is left under the old one.
    token = asyncio.run(_read_with(workdir, lines[0]))
    assert token is not None and token.data == {"api_key": "k-1234567890"}


def test_keys_rotate_check_reports_without_adding_a_key(workdir: Path) -> None:
    assert cli(workdir, "keys", "init").exit_code == 0
    assert cli(workdir, "connect", "desk", input="k-1234567890\n").exit_code == 0
    clean = cli(workdir, "keys", "rotate", "--check")
    assert clean.exit_code == 0, clean.output
    assert "all 1 stored credential(s) are under the current key" in clean.stdout
    # A new key in the file, the credential not yet re-encrypted (another host rotated).
    rotate_key_file(workdir / "crmhub.key")
    key_file = (workdir / "crmhub.key").read_text()
    left = cli(workdir, "keys", "rotate", "--check")
    assert left.exit_code == 1
    old_id = load_keyring(workdir).key_ids[1]
    assert f"desk: under key {old_id}, not the current one" in left.stdout
    assert "1 of 1 stored credential(s) not under key" in left.output
    assert (workdir / "crmhub.key").read_text() == key_file  # no key added
    assert cli(workdir, "keys", "rotate").exit_code == 0
    assert cli(workdir, "keys", "rotate", "--check").exit_code == 0


def test_a_credential_the_key_cannot_decrypt_is_not_usable(workdir: Path) -> None:
    assert cli(workdir, "connect", "desk", input="k-1234567890\n").exit_code == 0

    def desk() -> dict[str, Any]:
        listed = cli(workdir, "connections", "--json")
        assert listed.exit_code == 0, listed.output
        return {r["connection"]: r for r in json.loads(listed.stdout)}["desk"]

    assert desk()["status"] == "ok"
    (workdir / "crmhub.key").unlink()
    row = desk()
    assert row["status"] == "not usable" and "no key file" in row["last_error"]
    create_key_file(workdir / "crmhub.key")  # a different key
    row = desk()
    assert row["status"] == "not usable"
    assert "cannot decrypt the credentials of connection 'desk'" in row["last_error"]
    table = cli(workdir, "connections")
    assert "not usable" in table.stdout
