"""The authorization-code flow, over real HTTP against the sandbox authorization server."""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from auth.credentials import VaultAuth
from auth.flows import (
    AuthorizationError,
    complete_authorization,
    connection_kind,
    disconnect,
    exchange_code,
    open_vault,
    resolve,
    start_authorization,
    store_api_key,
    token_manager,
)
from auth.google import GOOGLE_OAUTH, GoogleAdapter
from auth.keys import KEY_ENV, KEY_FILE_ENV
from auth.microsoft import MicrosoftAdapter
from auth.providers import resolve_oauth
from auth.sandbox import SandboxOAuthServer, serve
from hub.authspec import OAuthSettings
from hub.config import load_config
from hub.connector import Connector, Page, Stream
from hub.errors import ConfigError, NeedsReauth
from hub.registry import Registry
from hub.runtime import Hub
from hub.store.schema import oauth_states, tokens


class DemoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DemoConnector(Connector):
    """A connector that only needs credentials; its endpoints come from the test."""

    name = "oauthdemo"
    Settings = DemoSettings
    auth_kind: ClassVar[str] = "oauth2"
    oauth: ClassVar[OAuthSettings | None] = None

    def streams(self) -> list[Stream]:
        return [Stream("people", "contact")]

    async def pull(self, stream: Stream, cursor: Any) -> AsyncIterator[Page]:
        yield Page()


class GenericConnector(DemoConnector):
    name = "generic"
    auth_kind = "none"


class KeyConnector(DemoConnector):
    name = "keyed"
    auth_kind = "api_key"


def demo_connector(base: str, **overrides: Any) -> type[Connector]:
    settings = OAuthSettings(
        authorize_url=f"{base}/oauth/authorize",
        token_url=f"{base}/oauth/token",
        revocation_url=f"{base}/oauth/revoke",
        scopes=["contacts.read", "offline_access"],
        rotates_refresh_tokens=True,
        **overrides,
    )
    return type("SandboxDemoConnector", (DemoConnector,), {"oauth": settings})


@pytest.fixture
def sandbox() -> Iterator[tuple[SandboxOAuthServer, str]]:
    server = SandboxOAuthServer()
    with serve(server.app) as url:
        yield server, url


@pytest.fixture(autouse=True)
def _key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)


async def open_hub(tmp_path: Path, toml: str, connectors: dict[str, type[Connector]]) -> Hub:
    path = tmp_path / "crmhub.toml"
    path.write_text(toml, encoding="utf-8")
    return await Hub.open(
        load_config(path), registry=Registry.discover(extra=connectors), auth=VaultAuth()
    )


DEMO_TOML = """
[hub]
database = "hub.db"
http_port = 8765

[connections.crm]
connector = "oauthdemo"

[connections.crm.oauth]
client_id = "sandbox-client"
client_secret = "sandbox-secret"
"""


@pytest.fixture
async def hub(tmp_path: Path, sandbox: tuple[SandboxOAuthServer, str]) -> AsyncIterator[Hub]:
    h = await open_hub(tmp_path, DEMO_TOML, {"oauthdemo": demo_connector(sandbox[1])})
    try:
        yield h
    finally:
        await h.close()


async def approve(url: str) -> str:
    """Play the browser: the sandbox approves at once and redirects back with the code."""
    async with httpx.AsyncClient() as browser:
        response = await browser.get(url)
    assert response.status_code == 302, response.text
    return response.headers["location"]


def with_param(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | params
    return urlunsplit(parts._replace(query=urlencode(query)))


async def test_code_flow_stores_encrypted_tokens(
    hub: Hub, sandbox: tuple[SandboxOAuthServer, str]
) -> None:
    server, _ = sandbox
    start = await start_authorization(hub, "crm")
    query = parse_qs(urlsplit(start.url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["state"] == [start.state]
    assert query["redirect_uri"] == ["http://127.0.0.1:8765/oauth/callback"]
    assert query["scope"] == ["contacts.read offline_access"]

    info = await complete_authorization(hub, await approve(start.url))

    assert info.connection == "crm" and info.kind == "oauth2" and info.expires_at is not None
    stored = await open_vault(hub).get("crm")
    assert stored is not None and stored.status == "ok"
    assert server.validate(stored.data["access_token"])
    assert stored.data["refresh_token"].startswith("sbx-rt-")
    assert stored.data["scope"] == "contacts.read offline_access"
    async with hub.store.connect() as db:
        row = (await db.execute(sa.select(tokens))).one()
        pending = (await db.execute(sa.select(oauth_states))).all()
    assert stored.data["access_token"].encode() not in row.ciphertext
    assert stored.data["refresh_token"].encode() not in row.ciphertext
    assert pending == []  # the state was used up
    assert "sbx-" not in repr(stored) and "sandbox-secret" not in repr(resolve(hub, "crm"))


async def test_disconnect_revokes_at_the_provider_and_forgets(
    hub: Hub, sandbox: tuple[SandboxOAuthServer, str]
) -> None:
    server, _ = sandbox
    start = await start_authorization(hub, "crm")
    await complete_authorization(hub, await approve(start.url))
    stored = await open_vault(hub).get("crm")
    assert stored is not None and server.validate(stored.data["access_token"])
    assert await disconnect(hub, "crm") is True
    assert not server.validate(stored.data["access_token"])  # the grant was revoked
    assert await open_vault(hub).get("crm") is None
    assert await disconnect(hub, "crm") is False


async def test_pending_state_is_encrypted(hub: Hub) -> None:
    start = await start_authorization(hub, "crm")
    async with hub.store.connect() as db:
        row = (await db.execute(sa.select(oauth_states))).one()
    assert row.state == start.state and row.connection == "crm"
    assert b"code_verifier" not in row.ciphertext and b"redirect_uri" not in row.ciphertext


async def test_reused_state_is_refused(hub: Hub) -> None:
    start = await start_authorization(hub, "crm")
    callback = await approve(start.url)
    await complete_authorization(hub, callback)
    with pytest.raises(AuthorizationError, match="unknown or was already used"):
        await complete_authorization(hub, callback)


async def test_wrong_state_is_refused_and_the_real_one_still_works(hub: Hub) -> None:
    start = await start_authorization(hub, "crm")
    callback = await approve(start.url)
    with pytest.raises(AuthorizationError, match="unknown or was already used"):
        await complete_authorization(hub, with_param(callback, state="forged-state"))
    with pytest.raises(AuthorizationError, match="no 'state'"):
        await complete_authorization(hub, {"code": "x"})
    info = await complete_authorization(hub, callback)
    assert info.version == 1


async def test_expired_state_is_refused_and_deleted(hub: Hub) -> None:
    start = await start_authorization(hub, "crm")
    callback = await approve(start.url)
    async with hub.store.begin() as db:
        await db.execute(
            sa.update(oauth_states).values(expires_at=start.expires_at.replace(year=2000))
        )
    with pytest.raises(AuthorizationError, match="expired"):
        await complete_authorization(hub, callback)
    with pytest.raises(AuthorizationError, match="already used"):
        await complete_authorization(hub, callback)
    assert await open_vault(hub).get("crm") is None


async def test_tampered_pkce_verifier_is_refused_by_the_server(hub: Hub) -> None:
    start = await start_authorization(hub, "crm")
    code = parse_qs(urlsplit(await approve(start.url)).query)["code"][0]
    with pytest.raises(AuthorizationError, match="PKCE verification failed"):
        await exchange_code(resolve(hub, "crm"), code, "a-verifier-that-was-never-challenged")
    # And without any verifier: the server insists as well.
    start = await start_authorization(hub, "crm")
    code = parse_qs(urlsplit(await approve(start.url)).query)["code"][0]
    with pytest.raises(AuthorizationError, match="PKCE"):
        await exchange_code(resolve(hub, "crm"), code, None)


async def test_provider_refusal_in_the_redirect_is_reported(hub: Hub) -> None:
    start = await start_authorization(hub, "crm")
    callback = f"{start.redirect_uri}?error=access_denied&error_description=user+said+no"
    with pytest.raises(AuthorizationError, match="user said no"):
        await complete_authorization(hub, with_param(callback, state=start.state))


async def test_generic_oauth2_from_configuration_alone(
    tmp_path: Path, sandbox: tuple[SandboxOAuthServer, str]
) -> None:
    server, base = sandbox
    toml = f"""
[hub]
database = "hub.db"

[connections.intranet]
connector = "generic"

[connections.intranet.oauth]
kind = "generic_oauth2"
authorize_url = "{base}/oauth/authorize"
token_url = "{base}/oauth/token"
revocation_url = "{base}/oauth/revoke"
scopes = ["directory.read"]
client_auth = "basic"
client_id = "sandbox-client"
client_secret = "sandbox-secret"
redirect_uri = "https://hub.example.com/oauth/callback"
authorize_params = {{ login_hint = "ada" }}
"""
    hub = await open_hub(tmp_path, toml, {"generic": GenericConnector})
    try:
        start = await start_authorization(hub, "intranet")
        assert "login_hint=ada" in start.url
        await complete_authorization(hub, await approve(start.url))
        stored = await open_vault(hub).get("intranet")
        assert stored is not None and server.validate(stored.data["access_token"])
        async with httpx.AsyncClient() as client:
            me = await client.get(
                f"{base}/oauth/userinfo",
                headers={"Authorization": f"Bearer {stored.data['access_token']}"},
            )
        assert me.json() == {"sub": "ada", "scope": "directory.read"}

        # The stored refresh token works with the standard refresh grant (client auth: basic).
        server.expire_access_tokens()
        manager = token_manager(open_vault(hub), resolve(hub, "intranet"))
        fresh = await manager.refresh(rejected=stored.data["access_token"])
        assert fresh != stored.data["access_token"] and server.validate(fresh)
        rotated = await open_vault(hub).get("intranet")
        assert rotated is not None and rotated.data["access_token"] == fresh
        assert rotated.data["refresh_token"] != stored.data["refresh_token"]
    finally:
        await hub.close()


async def test_non_expiring_token_and_metadata_are_kept(tmp_path: Path) -> None:
    # Mailchimp's habits: expires_in 0, no refresh token, the data centre from a metadata URL.
    server = SandboxOAuthServer(access_ttl=None, issue_refresh_tokens=False)
    with serve(server.app) as base:
        connector = demo_connector(base, metadata_url=f"{base}/oauth/userinfo")
        hub = await open_hub(tmp_path, DEMO_TOML, {"oauthdemo": connector})
        try:
            start = await start_authorization(hub, "crm")
            info = await complete_authorization(hub, await approve(start.url))
            stored = await open_vault(hub).get("crm")
        finally:
            await hub.close()
    assert info.expires_at is None
    assert stored is not None and stored.expires_at is None
    assert stored.data["refresh_token"] is None and stored.data["expires_at"] is None
    assert stored.data["metadata"] == {"sub": "user-1", "scope": "contacts.read offline_access"}


async def test_missing_settings_are_named(tmp_path: Path) -> None:
    toml = """
[connections.intranet]
connector = "generic"

[connections.intranet.oauth]
kind = "generic_oauth2"
authorize_url = "https://id.example.com/authorize"
"""
    hub = await open_hub(tmp_path, toml, {"generic": GenericConnector})
    try:
        with pytest.raises(ConfigError) as caught:
            await start_authorization(hub, "intranet")
    finally:
        await hub.close()
    text = str(caught.value)
    assert "'token_url'" in text and "oauth.token_url" in text
    assert "client_id" in text and "crmhub.toml:5" in text
    assert "authorize_url" not in text.replace("'authorize_url'", "")


async def test_an_unknown_auth_kind_names_file_line_and_full_key(tmp_path: Path) -> None:
    toml = (
        '[connections.intranet]\nconnector = "generic"\n\n'
        '[connections.intranet.oauth]\nkind = "oauth3"\n'
    )
    hub = await open_hub(tmp_path, toml, {"generic": GenericConnector})
    try:
        with pytest.raises(ConfigError) as caught:
            connection_kind(hub, "intranet")
    finally:
        await hub.close()
    where = f"{tmp_path / 'crmhub.toml'}:5 [connections.intranet.oauth.kind]"
    assert str(caught.value).startswith(f"{where}: unknown auth kind 'oauth3'")


def test_resolve_merges_connector_defaults_and_config() -> None:
    connector = demo_connector("https://id.example.com")
    table = {"client_id": "abc", "client_secret": "s3cret", "scopes": ["only.this"]}
    resolved = resolve_oauth(
        connector, {"oauth": {**table, "client_auth": "basic"}}, connection="crm-eu"
    )
    assert resolved.client_secret == "s3cret" and "s3cret" not in repr(resolved)
    assert resolved.settings.scopes == ["only.this"]
    assert resolved.settings.client_auth == "basic"
    assert resolved.token_url == "https://id.example.com/oauth/token"
    assert resolved.redirect_uri == "http://127.0.0.1:8750/oauth/callback"
    with pytest.raises(ConfigError, match=r"oauth\.tokn_url.*unknown OAuth setting"):
        resolve_oauth(connector, {"oauth": {"client_id": "a", "tokn_url": "x"}})
    with pytest.raises(ConfigError, match="unknown auth kind 'oauth3'"):
        resolve_oauth(connector, {"oauth": {"kind": "oauth3"}})


async def test_api_keys_go_through_the_vault(tmp_path: Path) -> None:
    toml = """
[connections.desk]
connector = "keyed"

[connections.crm]
connector = "generic"
"""
    hub = await open_hub(tmp_path, toml, {"keyed": KeyConnector, "generic": GenericConnector})
    try:
        await store_api_key(hub, "desk", "  key-0123456789  ")
        stored = await open_vault(hub).get("desk")
        assert stored is not None and stored.kind == "api_key"
        assert stored.data == {"api_key": "key-0123456789"}
        with pytest.raises(ConfigError, match="uses 'none' credentials"):
            await store_api_key(hub, "crm", "key")
        async with hub.store.connect() as db:
            blob = (await db.execute(sa.select(tokens.c.ciphertext))).scalar_one()
        assert b"key-0123456789" not in blob
        key_file = tmp_path / "crmhub.key"  # made on the first credential stored
        assert key_file.stat().st_mode & 0o077 == 0
    finally:
        await hub.close()


# -- provider adapters ---------------------------------------------------------------------


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1: msal only talks to HTTPS authorities."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "sandbox.pem", tmp_path / "sandbox.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@contextlib.contextmanager
def serve_tls(app: Any, cert: Path, key: Path) -> Iterator[str]:
    """Like ``auth.sandbox.serve``, over HTTPS."""
    import socket
    import threading
    import time

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "TLS sandbox did not start"
        time.sleep(0.01)
    try:
        yield f"https://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def with_discovery(server: SandboxOAuthServer) -> Any:
    """The sandbox plus the OpenID discovery document msal reads from an authority."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route

    async def discovery(request: Request) -> JSONResponse:
        base = f"{request.url.scheme}://{request.url.netloc}"
        tenant = request.path_params["tenant"]
        return JSONResponse(
            {
                "issuer": f"{base}/{tenant}/v2.0",
                "authorization_endpoint": f"{base}/oauth/authorize",
                "token_endpoint": f"{base}/oauth/token",
            }
        )

    return Starlette(
        routes=[
            Route("/{tenant}/v2.0/.well-known/openid-configuration", discovery),
            Mount("/", app=server.app),
        ]
    )


class MicrosoftDemo(DemoConnector):
    name = "msdemo"
    auth_kind = "msal"


async def test_msal_adapter_against_the_sandbox(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server = SandboxOAuthServer(access_ttl=3600)
    with serve_tls(with_discovery(server), cert, key) as base:
        toml = f"""
[connections.mail]
connector = "msdemo"

[connections.mail.oauth]
authority = "{base}/tenant-1"
scopes = ["Mail.Read", "offline_access"]
ca_bundle = "{cert}"
client_id = "sandbox-client"
client_secret = "sandbox-secret"
"""
        hub = await open_hub(tmp_path, toml, {"msdemo": MicrosoftDemo})
        try:
            vault = open_vault(hub, create_key=True)
            start = await start_authorization(hub, "mail")
            assert start.url.startswith(f"{base}/oauth/authorize?")
            trust = ssl.create_default_context(cafile=str(cert))
            async with httpx.AsyncClient(verify=trust) as browser:
                callback = (await browser.get(start.url)).headers["location"]
            info = await complete_authorization(hub, callback)
            assert info.kind == "msal_cache" and info.expires_at is not None

            stored = await vault.get("mail")
            assert stored is not None and stored.kind == "msal_cache"
            cache = json.loads(stored.data["cache"])
            (first_rt,) = [rt["secret"] for rt in cache["RefreshToken"].values()]
            async with hub.store.connect() as db:
                blob = (await db.execute(sa.select(tokens.c.ciphertext))).scalar_one()
            assert first_rt.encode() not in blob

            adapter = MicrosoftAdapter(resolve(hub, "mail"))
            token = await adapter.access_token(vault)
            assert server.validate(token) and server.refresh_requests == 0

            # Twice in a row: the rotated refresh token must have been saved and used.
            for _ in range(2):
                server.expire_access_tokens()
                fresh = await adapter.access_token(vault, force_refresh=True)
                assert fresh != token and server.validate(fresh)
                token = fresh
            assert server.refresh_requests == 2 and server.reused_refresh_tokens == []
            stored = await vault.get("mail")
            assert stored is not None
            rts = json.loads(stored.data["cache"])["RefreshToken"].values()
            assert first_rt not in [rt["secret"] for rt in rts] and len(rts) == 1

            server.revoke_grant()
            with pytest.raises(NeedsReauth, match=r"invalid_grant|revoked"):
                await adapter.access_token(vault, force_refresh=True)
            status = await vault.status("mail")
            assert status is not None and status.status == "needs_reauth"
        finally:
            await hub.close()


class GoogleDemo(DemoConnector):
    name = "googledemo"
    auth_kind = "google"


async def test_google_adapter_refreshes_against_the_sandbox(tmp_path: Path) -> None:
    server = SandboxOAuthServer(access_ttl=3600, rotate_refresh_tokens=False)  # as Google
    with serve(server.app) as base:
        connector = type(
            "SandboxGoogle",
            (GoogleDemo,),
            {
                "oauth": GOOGLE_OAUTH.model_copy(
                    update={
                        "authorize_url": f"{base}/oauth/authorize",
                        "token_url": f"{base}/oauth/token",
                        "scopes": ["https://www.googleapis.com/auth/gmail.readonly"],
                    }
                )
            },
        )
        hub = await open_hub(
            tmp_path, DEMO_TOML.replace("oauthdemo", "googledemo"), {"googledemo": connector}
        )
        try:
            start = await start_authorization(hub, "crm")
            assert "access_type=offline" in start.url and "prompt=consent" in start.url
            await complete_authorization(hub, await approve(start.url))
            vault = open_vault(hub)
            before = await vault.get("crm")
            assert before is not None

            adapter = GoogleAdapter(resolve(hub, "crm"), vault)
            creds = await adapter.credentials()
            assert creds.valid and creds.token == before.data["access_token"]
            assert server.refresh_requests == 0

            server.expire_access_tokens()
            creds = await adapter.credentials(force_refresh=True)
            assert creds.token is not None and creds.token != before.data["access_token"]
            assert server.validate(creds.token)
            after = await vault.get("crm")
            assert after is not None and after.data["access_token"] == creds.token
            assert after.data["refresh_token"] == before.data["refresh_token"]
            assert after.expires_at is not None and after.version == before.version + 2

            server.revoke_grant()
            with pytest.raises(NeedsReauth, match="invalid_grant"):
                await adapter.credentials(force_refresh=True)
            status = await vault.status("crm")
            assert status is not None and status.status == "needs_reauth"
        finally:
            await hub.close()


async def test_keep_alive_refreshes_only_grants_idle_for_half_their_life(
    tmp_path: Path, sandbox: tuple[SandboxOAuthServer, str]
) -> None:
    from datetime import UTC, datetime, timedelta

    from auth.keepalive import keep_alive_all

    server, base = sandbox
    toml = f"""
[hub]
database = "hub.db"

[connections.ledger]
connector = "generic"

[connections.ledger.oauth]
kind = "generic_oauth2"
authorize_url = "{base}/oauth/authorize"
token_url = "{base}/oauth/token"
client_id = "sandbox-client"
client_secret = "sandbox-secret"
refresh_token_max_idle_days = 60

[connections.fresh]
connector = "generic"

[connections.fresh.oauth]
kind = "generic_oauth2"
authorize_url = "{base}/oauth/authorize"
token_url = "{base}/oauth/token"
client_id = "sandbox-client"
client_secret = "sandbox-secret"
refresh_token_max_idle_days = 60
"""
    hub = await open_hub(tmp_path, toml, {"generic": GenericConnector})
    try:
        vault = open_vault(hub, create_key=True)
        for name in ("ledger", "fresh"):
            grant = server.issue_grant()
            await vault.put(name, "oauth2", grant, datetime.now(UTC) + timedelta(hours=1))
        async with hub.store.begin() as db:
            long_ago = datetime.now(UTC) - timedelta(days=31)
            await db.execute(
                tokens.update()
                .where(tokens.c.connection == "ledger")
                .values(refreshed_at=long_ago, updated_at=long_ago)
            )
        before = server.refresh_requests
        assert await keep_alive_all(hub) == ["ledger"]
        assert server.refresh_requests == before + 1
        assert await keep_alive_all(hub) == []  # just refreshed: not due again
        assert server.refresh_requests == before + 1
        assert server.reused_refresh_tokens == []
        # Without the key file the daily task says so per connection and goes on.
        (tmp_path / "crmhub.key").unlink()
        assert await keep_alive_all(hub) == []
    finally:
        await hub.close()
