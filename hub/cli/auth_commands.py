"""Credential commands: ``connect``, ``disconnect``, ``connections``, ``keys init|rotate``.

``crmhub connect NAME`` authorizes an OAuth2 connection (prints the URL to open, then waits
for the hub's ``/oauth/callback``; with ``--paste`` it reads the redirect URL from stdin) or
stores an API key / password for the others. No command prints a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import typer
from rich.markup import escape
from rich.table import Table

from auth.credentials import VaultAuth
from auth.flows import (
    TokenInfo,
    complete_authorization,
    connection_kind,
    disconnect,
    open_vault,
    pending_exists,
    start_authorization,
    store_api_key,
    store_basic,
)
from auth.keys import (
    KEY_ENV,
    SecretKeyError,
    create_key_file,
    key_file_path,
    load_keyring,
    rotate_key_file,
)
from auth.vault import KeyCheck, TokenVault
from hub.authspec import OAUTH_KINDS
from hub.cli.app import JsonOption, app, console, err_console, fail, get_config, print_json, run
from hub.config import Config
from hub.errors import CrmhubError
from hub.registry import Registry
from hub.runtime import Hub
from hub.usage import load_usage

registry_factory: Callable[[], Registry] | None = None
"""Where commands get their connectors; ``None``: the installed entry points. Tests and
embedding applications set it to add connector classes."""

keys_app = typer.Typer(help="Manage the secret keys that encrypt stored credentials.")
app.add_typer(keys_app, name="keys")

COMPLETION_GRACE = 30.0
"""How long a consumed state may wait for its tokens (the code exchange in flight)."""


async def open_hub(config: Config) -> Hub:
    registry = registry_factory() if registry_factory else None
    return await Hub.open(config, registry=registry, auth=VaultAuth())


def _listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _callback_server(hub: Hub, host: str, port: int) -> Any:
    """A temporary server for ``/oauth/callback`` when no ``crmhub up`` serves it."""
    import uvicorn
    from fastapi import FastAPI

    from hub.web.oauth import router

    web = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    web.state.hub = hub
    web.include_router(router)
    config = uvicorn.Config(web, host=host, port=port, log_level="warning", lifespan="off")
    return uvicorn.Server(config)


async def _wait_for_callback(hub: Hub, state: str, timeout: float) -> None:
    """Poll the store until the callback consumes ``state`` (or time runs out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not await pending_exists(hub, state):
            return
        await asyncio.sleep(0.5)
    raise fail(
        "no answer from the browser within the time allowed; run 'crmhub connect' again, "
        "or use --paste when the browser cannot reach this machine"
    )


async def _connect_oauth(hub: Hub, name: str, paste: bool, timeout: float) -> TokenInfo:
    vault = open_vault(hub, create_key=True)
    before = await vault.status(name)
    start = await start_authorization(hub, name)
    server, serving = None, None
    if not paste:
        parts = urlsplit(start.redirect_uri)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        if host in ("127.0.0.1", "localhost", "::1") and not _listening(host, port):
            # Listening before the URL is shown, so a quick browser finds the callback.
            server = _callback_server(hub, host, port)
            serving = asyncio.create_task(server.serve())
            while not server.started and not serving.done():
                await asyncio.sleep(0.05)
            if serving.done():
                raise fail(f"cannot listen on {host}:{port} for the redirect; use --paste")
    err_console.print(f"Open this URL in a browser and approve access for {name!r}:")
    console.print(start.url, soft_wrap=True, highlight=False, markup=False)
    if paste:
        err_console.print("Then paste the full URL the browser was sent to:")
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line.strip():
            raise fail("no redirect URL given")
        return await complete_authorization(hub, line)
    err_console.print(f"Waiting for the redirect to {start.redirect_uri} ...")
    try:
        await _wait_for_callback(hub, start.state, timeout)
        return await _await_token(vault, name, before.version if before else None)
    finally:
        if server is not None and serving is not None:
            server.should_exit = True
            await serving


async def _await_token(vault: TokenVault, name: str, old_version: int | None) -> TokenInfo:
    deadline = time.monotonic() + COMPLETION_GRACE
    while time.monotonic() < deadline:
        status = await vault.status(name)
        if status is not None and status.version != old_version and status.status == "ok":
            return TokenInfo(
                connection=name,
                kind=status.kind,
                version=status.version,
                expires_at=status.expires_at,
            )
        await asyncio.sleep(0.3)
    raise fail(
        "the authorization was not completed (the browser page says why); "
        "run 'crmhub connect' again"
    )


def _secret(value_from_env: str | None, prompt: str) -> str:
    if value_from_env:
        value = os.environ.get(value_from_env)
        if not value:
            raise fail(f"environment variable {value_from_env} is not set or empty")
        return value
    value = typer.prompt(prompt, hide_input=True, err=True)
    return str(value)


@app.command()
def connect(
    connection: str = typer.Argument(..., help="The connection to authorize."),
    paste: bool = typer.Option(
        False, "--paste", help="Read the redirect URL from stdin instead of waiting for it."
    ),
    value_from_env: str | None = typer.Option(
        None,
        "--value-from-env",
        metavar="VAR",
        help="API key or password from this environment variable instead of a prompt.",
    ),
    username: str | None = typer.Option(None, "--username", help="User name (basic auth)."),
    timeout: float = typer.Option(600.0, "--timeout", help="Seconds to wait for the redirect."),
) -> None:
    """Connect a connection: authorize it (OAuth2) or store its API key or password."""
    config = get_config()

    async def body() -> TokenInfo:
        hub = await open_hub(config)
        try:
            kind = connection_kind(hub, connection)
            if kind in OAUTH_KINDS:
                return await _connect_oauth(hub, connection, paste, timeout)
            if kind == "api_key":
                key = _secret(value_from_env, f"API key for {connection}")
                return await store_api_key(hub, connection, key)
            if kind == "basic":
                user = username or typer.prompt(f"User name for {connection}", err=True)
                password = _secret(value_from_env, f"Password for {connection}")
                return await store_basic(hub, connection, str(user), password)
            raise fail(f"connection {connection!r} needs no credentials")
        finally:
            await hub.close()

    info = run(body)
    expiry = f", expires {info.expires_at:%Y-%m-%d %H:%M} UTC" if info.expires_at else ""
    console.print(f"Connected {info.connection!r} ({info.kind}{expiry}).", highlight=False)


@app.command("disconnect")
def disconnect_command(
    connection: str = typer.Argument(..., help="The connection whose credentials to forget."),
) -> None:
    """Revoke (where the provider allows) and delete a connection's stored credentials."""
    config = get_config()

    async def body() -> bool:
        hub = await open_hub(config)
        try:
            config.connection(connection)
            return await disconnect(hub, connection)
        finally:
            await hub.close()

    if run(body):
        console.print(f"Disconnected {connection!r}.")
    else:
        console.print(f"{connection!r} had no stored credentials.")


async def connection_rows(hub: Hub) -> list[dict[str, Any]]:
    """One row per configured connection: connector, auth kind and credential status.

    A stored credential the current keys cannot decrypt is ``not usable``, with the reason.
    """
    statuses = {s.connection: s for s in await _status_vault(hub).list_status()}
    unusable = await _unusable(hub, list(statuses))
    usage = await load_usage(hub.store)
    rows = []
    for name, conn in sorted(hub.config.connections.items()):
        try:
            kind: str = connection_kind(hub, name)
        except CrmhubError as exc:  # a broken plugin still gets its row
            kind = f"unknown ({type(exc).__name__})"
        status = statuses.get(name)
        state = "not connected" if status is None else status.status
        last_error = status.last_error if status else None
        if name in unusable:
            state, last_error = "not usable", unusable[name]
        if kind == "none":
            state = "no credentials needed"
        rows.append(
            {
                "connection": name,
                "connector": conn.hub.connector,
                "auth": _declared_kind(hub, conn.hub.connector, kind),
                "status": state,
                "expires_at": status.expires_at.isoformat()
                if status and status.expires_at
                else None,
                "refreshed_at": status.refreshed_at.isoformat()
                if status and status.refreshed_at
                else None,
                "last_error": last_error,
                "usage": (usage.get(name) or {}).get("summary") or None,
            }
        )
    return rows


def _declared_kind(hub: Hub, connector: str, kind: str) -> str:
    """The auth kind a declaration names (``bearer``), where ``crmhub connect`` knows it by
    what it asks for (``api_key``); a connection's own ``oauth.kind`` is shown as it is."""
    from hub.rest.connector import RestConnector

    info = hub.registry.plugins.get(connector)
    cls = info.cls if info is not None else None
    if isinstance(cls, type) and issubclass(cls, RestConnector) and kind == cls.auth_kind:
        return cls.declaration.client.auth.kind
    return kind


async def _unusable(hub: Hub, stored: list[str]) -> dict[str, str]:
    """Why each stored credential cannot be decrypted (by connection), if it cannot."""
    if not stored:
        return {}
    try:
        keyring = load_keyring(hub.config.base_dir)
    except SecretKeyError as exc:  # no key, an unsafe or malformed key file: none can be
        return dict.fromkeys(stored, str(exc))
    checks = await TokenVault(hub.store, keyring).check_keys()
    return {c.connection: c.problem for c in checks if c.problem}


def _status_vault(hub: Hub) -> TokenVault:
    # list_status needs no key: a placeholder keyring lets it work before one exists.
    from auth.keys import Keyring

    return TokenVault(hub.store, Keyring.generate())


@app.command()
def connections(as_json: bool = JsonOption) -> None:
    """Every configured connection with its auth kind and credential status (no secrets)."""
    config = get_config()

    async def body() -> list[dict[str, Any]]:
        hub = await open_hub(config)
        try:
            return await connection_rows(hub)
        finally:
            await hub.close()

    rows = run(body)
    if as_json:
        print_json(rows)
        return
    usage = any(row["usage"] for row in rows)  # API usage reported by connectors (Xero)
    columns = ["connection", "connector", "auth", "status", "expires", "last error"]
    table = Table(*columns, *(["usage"] if usage else []))
    for row in rows:
        style = {"ok": "green", "needs_reauth": "red", "not usable": "red"}.get(row["status"], "")
        table.add_row(
            row["connection"],
            row["connector"],
            row["auth"],
            f"[{style}]{row['status']}[/]" if style else row["status"],
            (row["expires_at"] or "")[:16].replace("T", " "),
            escape(row["last_error"] or ""),
            *([row["usage"] or ""] if usage else []),
        )
    console.print(table)


@keys_app.command("init")
def keys_init() -> None:
    """Create the key file (mode 0600) next to crmhub.toml, unless one exists."""
    config = get_config()
    path = key_file_path(config.base_dir)
    try:
        key_id = create_key_file(path)
    except CrmhubError as exc:
        raise fail(str(exc)) from None
    console.print(f"Created {path} (key {key_id}). Keep it private and backed up.")
    if os.environ.get(KEY_ENV):
        err_console.print(f"note: {KEY_ENV} is set and takes precedence over the key file.")


@keys_app.command("rotate")
def keys_rotate(
    check: bool = typer.Option(
        False,
        "--check",
        help="Only report credentials not under the current key; add no key, change nothing. "
        "Exit status 1 when any remain.",
    ),
) -> None:
    """Put a new key first in the key file and re-encrypt every stored credential with it.

    With ``CRMHUB_SECRET_KEY`` set, put the new key first in it yourself (old keys after,
    comma-separated): this command then only re-encrypts.
    """
    config = get_config()
    if check:
        _check_keys(config)
        return

    async def body() -> tuple[str, int]:
        if os.environ.get(KEY_ENV):
            note = f"keys come from {KEY_ENV}; re-encrypting under its first key"
        else:
            key_id = rotate_key_file(key_file_path(config.base_dir))
            note = f"new key {key_id} in {key_file_path(config.base_dir)}"
        hub = await open_hub(config)
        try:
            vault = TokenVault(hub.store, load_keyring(config.base_dir))
            return note, await vault.reencrypt_all()
        finally:
            await hub.close()

    note, count = run(body)
    console.print(f"{note}; re-encrypted {count} credential(s).", highlight=False)


def _check_keys(config: Config) -> None:
    """``keys rotate --check``: list credentials under older keys; exit 1 when there are any."""

    async def body() -> tuple[str, list[KeyCheck]]:
        hub = await open_hub(config)
        try:
            vault = TokenVault(hub.store, load_keyring(config.base_dir))
            return vault.keyring.current_id, await vault.check_keys()
        finally:
            await hub.close()

    current, checks = run(body)
    left = [c for c in checks if not c.current]
    for c in left:
        fix = f": {c.problem}" if c.problem else "; `crmhub keys rotate` re-encrypts it"
        console.print(
            f"{c.connection}: under key {c.key_id}, not the current one{fix}", markup=False
        )
    if left:
        raise fail(f"{len(left)} of {len(checks)} stored credential(s) not under key {current}")
    console.print(
        f"all {len(checks)} stored credential(s) are under the current key {current}",
        highlight=False,
    )
