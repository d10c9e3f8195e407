"""Token refresh: one request per expiry across coroutines and processes, rotation kept safe,
refused grants not retried, secrets kept out of logs, errors and the database file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from auth.keys import KEY_ENV, Keyring, generate_key
from auth.sandbox import SandboxOAuthServer, serve
from auth.tokens import (
    InvalidGrant,
    OAuth2Auth,
    TokenManager,
    refresh_with_httpx,
)
from auth.vault import TokenVault
from hub.errors import ConnectorConfigError, NeedsReauth, RateLimited, TransientError
from hub.store import Store

WORKER = Path(__file__).with_name("_refresh_worker.py")
CONN = "people"


@pytest.fixture
def sandbox() -> Iterator[tuple[SandboxOAuthServer, str]]:
    # The delay keeps the first refresh in flight while every other caller asks.
    server = SandboxOAuthServer(token_delay=0.2)
    with serve(server.app) as url:
        yield server, url


@pytest.fixture
def key() -> str:
    return generate_key()


@pytest.fixture
def vault(store: Store, key: str) -> TokenVault:
    return TokenVault(store, Keyring.from_text(key, source="test"))


def manager_for(vault: TokenVault, url: str, **kw: Any) -> TokenManager:
    refresher = refresh_with_httpx(f"{url}/oauth/token", "sandbox-client", "sandbox-secret")
    return TokenManager(vault, refresher, connection=CONN, poll_interval=0.02, **kw)


async def seed_expired(vault: TokenVault, server: SandboxOAuthServer) -> dict[str, Any]:
    """Store a grant whose access token expired a second ago."""
    grant = server.issue_grant()
    await vault.put(CONN, "oauth2", grant, datetime.now(UTC) - timedelta(seconds=1))
    return grant


async def test_concurrent_callers_cause_one_refresh(
    vault: TokenVault, sandbox: tuple[SandboxOAuthServer, str]
) -> None:
    server, url = sandbox
    grant = await seed_expired(vault, server)
    # Separate managers, as separate connectors of one process would have.
    got = await asyncio.gather(*(manager_for(vault, url).access_token() for _ in range(100)))
    assert server.refresh_requests == 1 and server.token_requests == 1
    assert len(set(got)) == 1 and got[0] != grant["access_token"] and server.validate(got[0])
    stored = await vault.get(CONN)
    assert stored is not None and stored.status == "ok" and stored.version == 3
    assert stored.data["refresh_token"] != grant["refresh_token"]
    # The new token is fresh: more calls do not refresh again.
    assert await manager_for(vault, url).access_token() == got[0]
    assert server.refresh_requests == 1 and server.reused_refresh_tokens == []


class Workers:
    """Worker processes on one store and sandbox; ``round()`` runs a round in all at once."""

    def __init__(self, db_url: str, key: str, url: str, count: int) -> None:
        env = {**os.environ, KEY_ENV: key}
        args = [sys.executable, str(WORKER), db_url, CONN, url]
        pipe = subprocess.PIPE
        self.procs = [
            subprocess.Popen(args, stdin=pipe, stdout=pipe, text=True, env=env)
            for _ in range(count)
        ]
        for proc in self.procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def round(self, mode: str, n: int) -> list[dict[str, Any]]:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{mode} {n}\n")
            proc.stdin.flush()
        lines = [proc.stdout.readline() for proc in self.procs if proc.stdout is not None]
        assert all(lines), "a worker died"
        return [json.loads(line) for line in lines]

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.write("quit\n")
                proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        assert [proc.returncode for proc in self.procs] == [0] * len(self.procs)


async def test_processes_share_one_refresh_and_never_reuse(
    db_url: str, vault: TokenVault, key: str, sandbox: tuple[SandboxOAuthServer, str]
) -> None:
    server, url = sandbox
    grant = await seed_expired(vault, server)
    workers = await asyncio.to_thread(Workers, db_url, key, url, 4)
    try:
        # 4 processes x 25 concurrent callers find the token expired: one refresh in all.
        results = await asyncio.to_thread(workers.round, "access", 25)
        assert [r["errors"] for r in results] == [[]] * 4
        tokens = {t for r in results for t in r["tokens"]}
        assert sum(len(r["tokens"]) for r in results) == 100
        assert server.refresh_requests == 1, server.refresh_requests
        assert len(tokens) == 1 and grant["access_token"] not in tokens
        assert server.validate(tokens.pop())

        # Rotation rounds: every process holds a token the server no longer accepts, so
        # every call gets a 401; one process refreshes, the others pick up its token.
        server.token_delay = 0.05
        for round_no in range(2, 6):
            server.expire_access_tokens()
            results = await asyncio.to_thread(workers.round, "calls", 5)
            assert [r["errors"] for r in results] == [[]] * 4
            assert [r["statuses"] for r in results] == [{"200": 5}] * 4
            assert server.refresh_requests == round_no
    finally:
        await asyncio.to_thread(workers.close)
    assert server.reused_refresh_tokens == []
    stored = await vault.get(CONN)
    assert stored is not None and stored.status == "ok"


async def test_rotation_rounds_in_one_process(
    vault: TokenVault, sandbox: tuple[SandboxOAuthServer, str]
) -> None:
    server, url = sandbox
    server.token_delay = 0.05
    await seed_expired(vault, server)
    async with httpx.AsyncClient(base_url=url, auth=OAuth2Auth(manager_for(vault, url))) as http:
        for round_no in range(1, 7):
            server.expire_access_tokens()
            answers = await asyncio.gather(*(http.get("/oauth/userinfo") for _ in range(12)))
            assert {a.status_code for a in answers} == {200}
            assert server.refresh_requests == round_no
    assert server.reused_refresh_tokens == []


async def test_refused_grant_needs_reauth_and_is_not_retried(
    vault: TokenVault, sandbox: tuple[SandboxOAuthServer, str]
) -> None:
    server, url = sandbox
    grant = await seed_expired(vault, server)
    server.revoke_grant(grant["refresh_token"])
    results = await asyncio.gather(
        *(manager_for(vault, url).access_token() for _ in range(20)), return_exceptions=True
    )
    assert all(isinstance(r, NeedsReauth) for r in results)
    assert server.token_requests == 1
    status = await vault.status(CONN)
    assert status is not None and status.status == "needs_reauth"
    assert status.last_error and "invalid_grant" in status.last_error
    for _ in range(5):
        with pytest.raises(NeedsReauth, match="crmhub connect people") as again:
            await manager_for(vault, url).access_token()
        assert paren_depth(str(again.value)) <= 1, str(again.value)
        with pytest.raises(NeedsReauth):
            await manager_for(vault, url).refresh(force=True)
    assert server.token_requests == 1
    # Reconnecting (a new grant in the vault) brings the connection back.
    fresh = server.issue_grant()
    await vault.put(CONN, "oauth2", fresh, datetime.now(UTC) + timedelta(seconds=60))
    assert await manager_for(vault, url).access_token() == fresh["access_token"]


async def test_transient_failure_is_reported_to_every_waiter_once(
    vault: TokenVault, sandbox: tuple[SandboxOAuthServer, str]
) -> None:
    server, url = sandbox
    await seed_expired(vault, server)
    server.fail_next_token_requests(1, status=503)
    manager = manager_for(vault, url)
    results = await asyncio.gather(
        *(manager.access_token() for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, TransientError) for r in results), results
    assert server.token_requests == 1
    status = await vault.status(CONN)
    assert status is not None and status.status == "ok" and "503" in (status.last_error or "")
    token = await manager.access_token()  # the next attempt refreshes
    assert server.validate(token) and server.refresh_requests == 2


async def test_stale_claim_of_a_dead_refresher_is_taken_over(
    vault: TokenVault, sandbox: tuple[SandboxOAuthServer, str]
) -> None:
    server, url = sandbox
    await seed_expired(vault, server)
    status = await vault.status(CONN)
    assert status is not None
    assert await vault.claim_refresh(CONN, status.version) is not None  # holder then "dies"
    manager = manager_for(vault, url, claim_timeout=timedelta(seconds=0.5))
    started = time.monotonic()
    token = await manager.access_token()
    assert time.monotonic() - started >= 0.45
    assert server.validate(token) and server.refresh_requests == 1


class StalledRefresher:
    """A worker process that claims the refresh and hangs ``before`` the token request
    leaves or ``after`` the server answered (before the save), until it is killed."""

    def __init__(self, db_url: str, key: str, url: str, stall: str) -> None:
        env = {**os.environ, KEY_ENV: key, "REFRESH_STALL": stall}
        args = [sys.executable, str(WORKER), db_url, CONN, url]
        pipe = subprocess.PIPE
        self.proc = subprocess.Popen(args, stdin=pipe, stdout=pipe, text=True, env=env)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"
        self.proc.stdin.write("access 1\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "stalled"

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: nothing runs on the way out
        self.proc.wait()


async def claimed_by(vault: TokenVault) -> str | None:
    stored = await vault.get(CONN)
    assert stored is not None and stored.status == "refreshing"
    return stored.claimed_by


async def test_refresh_of_a_killed_process_is_taken_over_at_once(
    db_url: str, vault: TokenVault, key: str, sandbox: tuple[SandboxOAuthServer, str]
) -> None:
    """Killed before its request left: the grant is intact and the next caller refreshes
    without waiting for the claim to go stale (here an hour)."""
    server, url = sandbox
    grant = await seed_expired(vault, server)
    worker = await asyncio.to_thread(StalledRefresher, db_url, key, url, "before")
    try:
        holder = await claimed_by(vault)
        assert holder is not None and f":{worker.proc.pid}:" in holder
        manager = manager_for(vault, url, claim_timeout=timedelta(hours=1))
        # While the holder lives, its claim is respected.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(manager.access_token(), 1.0)
    finally:
        worker.kill()
    token = await asyncio.wait_for(manager.access_token(), 30)
    assert server.validate(token) and token != grant["access_token"]
    assert server.refresh_requests == 1 and server.reused_refresh_tokens == []
    stored = await vault.get(CONN)
    assert stored is not None and stored.status == "ok" and stored.claimed_by is None


async def test_killed_after_the_answer_costs_the_grant_and_says_so(
    db_url: str, vault: TokenVault, key: str, sandbox: tuple[SandboxOAuthServer, str]
) -> None:
    """Killed between the server's answer and the save: only the rotated-out refresh token
    is stored. The taker's refresh with it is refused and a strict server revokes the
    grant; the connection needs `crmhub connect`, and the error says why."""
    server, url = sandbox
    grant = await seed_expired(vault, server)
    worker = await asyncio.to_thread(StalledRefresher, db_url, key, url, "after")
    worker.kill()
    assert server.refresh_requests == 1
    manager = manager_for(vault, url, claim_timeout=timedelta(hours=1))
    with pytest.raises(NeedsReauth) as caught:
        await asyncio.wait_for(manager.access_token(), 30)
    assert server.reused_refresh_tokens == [grant["refresh_token"]]
    message = str(caught.value)
    assert f"the refresh by {socket.gethostname()}:{worker.proc.pid}:" in message
    assert "its process is gone" in message and "crmhub connect people" in message
    assert paren_depth(message) <= 1, message
    status = await vault.status(CONN)
    assert status is not None and status.status == "needs_reauth"
    assert status.last_error is not None and "interrupted" in status.last_error
    # Nothing retries it: the next caller is told at once, without asking the server.
    with pytest.raises(NeedsReauth, match="crmhub connect people"):
        await manager_for(vault, url).access_token()
    assert server.token_requests == 2


def paren_depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        deepest = max(deepest, depth)
    return deepest


async def test_a_late_refresher_still_saves_its_rotated_token(vault: TokenVault) -> None:
    """A slow refresher whose claim was taken over keeps the newest refresh token."""
    await vault.put(
        CONN,
        "oauth2",
        {"access_token": "at-0", "refresh_token": "rt-0"},
        datetime.now(UTC) - timedelta(seconds=1),
    )

    async def slow(data: dict[str, Any]) -> dict[str, Any]:
        status = await vault.status(CONN)
        assert status is not None and status.status == "refreshing"
        # Meanwhile another process decides the claim is stale and takes it over.
        assert await vault.claim_refresh(CONN, status.version) is not None
        return {"access_token": "at-1", "refresh_token": "rt-1", "expires_in": 3600}

    manager = TokenManager(vault, slow, connection=CONN)
    assert await manager.access_token() == "at-1"
    stored = await vault.get(CONN)
    assert stored is not None and stored.status == "ok"
    assert stored.data["refresh_token"] == "rt-1"


async def test_never_expiring_tokens_are_never_refreshed(vault: TokenVault) -> None:
    server = SandboxOAuthServer(access_ttl=None, issue_refresh_tokens=False)
    grant = server.issue_grant()
    await vault.put(CONN, "oauth2", grant, None)  # Mailchimp: expires_in 0
    far = datetime.now(UTC) + timedelta(days=3650)

    async def fail(data: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("refreshed a token that never expires")

    manager = TokenManager(vault, fail, connection=CONN, clock=lambda: far)
    assert await manager.access_token() == grant["access_token"]
    assert await manager.refresh(force=True) == grant["access_token"]
    assert await manager.keep_alive_due() is False


async def test_response_without_refresh_token_keeps_the_old_one(vault: TokenVault) -> None:
    server = SandboxOAuthServer(rotate_refresh_tokens=False)
    grant = server.issue_grant()
    with serve(server.app) as url:
        await vault.put(CONN, "oauth2", grant, datetime.now(UTC) - timedelta(seconds=1))
        manager = manager_for(vault, url)
        first = await manager.access_token()
        second = await manager.refresh(force=True)
    stored = await vault.get(CONN)
    assert stored is not None and stored.data["refresh_token"] == grant["refresh_token"]
    assert first != second and stored.data["access_token"] == second
    assert server.refresh_requests == 2


async def test_keep_alive_and_forced_refresh_once(
    vault: TokenVault, sandbox: tuple[SandboxOAuthServer, str]
) -> None:
    server, url = sandbox
    grant = server.issue_grant()
    await vault.put(CONN, "oauth2", grant, datetime.now(UTC) + timedelta(seconds=60))
    manager = manager_for(vault, url)
    assert await manager.keep_alive_due(timedelta(days=30)) is False
    later = TokenManager(
        vault,
        manager.refresher,
        connection=CONN,
        clock=lambda: datetime.now(UTC) + timedelta(days=31),
    )
    assert await later.keep_alive_due(timedelta(days=30)) is True
    # Many simultaneous keep-alives: one refresh satisfies them all.
    got = await asyncio.gather(*(manager.refresh(force=True) for _ in range(10)))
    assert len(set(got)) == 1 and server.refresh_requests == 1
    assert await later.keep_alive_due(timedelta(days=32)) is False


async def test_401_refreshes_once_and_repeats_once(vault: TokenVault) -> None:
    refreshes: list[dict[str, Any]] = []

    async def refresher(data: dict[str, Any]) -> dict[str, Any]:
        refreshes.append(data)
        return {"access_token": f"at-{len(refreshes)}", "expires_in": 3600}

    await vault.put(
        CONN,
        "oauth2",
        {"access_token": "at-0", "refresh_token": "rt-0"},
        datetime.now(UTC) + timedelta(hours=1),
    )
    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        ok = request.headers["authorization"] == "Bearer at-1" and request.content == b"hello"
        return httpx.Response(200 if ok else 401)

    manager = TokenManager(vault, refresher, connection=CONN)
    transport = httpx.MockTransport(api)
    async with httpx.AsyncClient(transport=transport, auth=OAuth2Auth(manager)) as http:
        response = await http.post("https://api.example/x", content=b"hello")
        assert response.status_code == 200
        assert seen == ["Bearer at-0", "Bearer at-1"] and len(refreshes) == 1
        assert refreshes[0]["refresh_token"] == "rt-0"
        stored = await vault.get(CONN)
        assert stored is not None and stored.data["refresh_token"] == "rt-0"  # kept

    # An API that refuses every token: one refresh, one repeat, then the 401 is returned.
    seen.clear()

    def refuse(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(401)

    transport = httpx.MockTransport(refuse)
    async with httpx.AsyncClient(transport=transport, auth=OAuth2Auth(manager)) as http:
        assert (await http.get("https://api.example/y")).status_code == 401
    assert seen == ["Bearer at-1", "Bearer at-2"] and len(refreshes) == 2


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(400, json={"error": "invalid_grant"}), InvalidGrant),
        (httpx.Response(200, json={"ok": False, "error": "invalid_refresh_token"}), InvalidGrant),
        (httpx.Response(401, json={"error": "invalid_client"}), ConnectorConfigError),
        (httpx.Response(503, text="down"), TransientError),
        (httpx.Response(200, text="<html>"), TransientError),
        (httpx.Response(429, headers={"Retry-After": "7"}, json={}), RateLimited),
        (httpx.ReadTimeout("slow"), TransientError),
        (httpx.ConnectError("refused"), TransientError),
    ],
)
async def test_refresh_with_httpx_maps_answers(
    answer: httpx.Response | Exception, error: type[Exception]
) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        refresh = refresh_with_httpx(
            "https://id.example/token", "cid", "csecret-123", client_auth="basic", client=client
        )
        with pytest.raises(error) as caught:
            await refresh({"refresh_token": "rt-secret-value"})
    assert "rt-secret-value" not in str(caught.value) and "csecret-123" not in str(caught.value)
    if isinstance(caught.value, RateLimited):
        assert caught.value.retry_after == 7
    form = sent[0].content.decode()
    assert "grant_type=refresh_token" in form and "refresh_token=rt-secret-value" in form
    assert sent[0].headers["authorization"].startswith("Basic ")
    assert "client_secret" not in form


async def test_no_secret_in_logs_errors_or_database_file(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = generate_key()
    server = SandboxOAuthServer()
    store = await Store.open(sqlite_url)
    errors: list[str] = []
    issued: set[str] = set()
    try:
        vault = TokenVault(store, Keyring.from_text(key, source="test"))
        with serve(server.app) as url:
            grant = await seed_expired(vault, server)
            issued |= {grant["access_token"], grant["refresh_token"]}
            manager = manager_for(vault, url)
            async with httpx.AsyncClient(base_url=url, auth=OAuth2Auth(manager)) as http:
                assert (await http.get("/oauth/userinfo")).status_code == 200
                server.expire_access_tokens()
                assert (await http.get("/oauth/userinfo")).status_code == 200
                stored = await vault.get(CONN)
                assert stored is not None
                issued |= {stored.data["access_token"], stored.data["refresh_token"]}
                errors += [repr(stored), str(stored)]
                server.fail_next_token_requests(1)
                server.expire_access_tokens()
                with pytest.raises(TransientError) as transient:
                    await http.get("/oauth/userinfo")
                server.revoke_grant()
                with pytest.raises(NeedsReauth) as refused:
                    await http.get("/oauth/userinfo")
        errors += [str(transient.value), str(refused.value), repr(refused.value)]
        errors += [str(s) for s in await vault.list_status()]
    finally:
        await store.close()
    secrets = issued | {key, server.client_secret}
    assert len(secrets) == 6
    blobs = {"logs": caplog.text, "errors": "\n".join(errors)}
    blobs |= {f.name: f.read_bytes().decode("latin-1") for f in tmp_path.glob("crmhub.db*")}
    assert "refreshed the access token" in caplog.text  # the logs were captured
    for where, text in blobs.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into {where}"
