"""The sandbox authorization server behaves like a strict OAuth2 provider."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from auth.sandbox import SandboxOAuthServer, s256, serve

REDIRECT = "http://127.0.0.1:8750/oauth/callback"
VERIFIER = "v" * 50
CLIENT = {"client_id": "sandbox-client", "client_secret": "sandbox-secret"}


@pytest.fixture
def server() -> SandboxOAuthServer:
    return SandboxOAuthServer(seed=7)


@pytest.fixture
async def client(server: SandboxOAuthServer) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=server.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as c:
        yield c


async def authorize(client: httpx.AsyncClient, **overrides: str) -> dict[str, list[str]]:
    params = {
        "response_type": "code",
        "client_id": "sandbox-client",
        "redirect_uri": REDIRECT,
        "state": "st-123",
        "code_challenge": s256(VERIFIER),
        "code_challenge_method": "S256",
        "scope": "contacts",
    } | overrides
    response = await client.get("/oauth/authorize", params=params)
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return parse_qs(urlsplit(location).query)


async def redeem(client: httpx.AsyncClient, code: str, **overrides: str) -> httpx.Response:
    form = (
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": VERIFIER,
        }
        | CLIENT
        | overrides
    )
    return await client.post("/oauth/token", data=form)


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": token} | CLIENT
    return await client.post("/oauth/token", data=form)


async def test_code_flow_with_pkce_and_state(
    server: SandboxOAuthServer, client: httpx.AsyncClient
) -> None:
    query = await authorize(client)
    assert query["state"] == ["st-123"]
    response = await redeem(client, query["code"][0])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 60
    assert body["scope"] == "contacts" and body["refresh_token"]
    assert server.validate(body["access_token"])
    me = await client.get(
        "/oauth/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.json() == {"sub": "user-1", "scope": "contacts"}
    # A code is single-use.
    again = await redeem(client, query["code"][0])
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")
    assert server.token_requests == 2 and server.refresh_requests == 0


async def test_pkce_is_checked(client: httpx.AsyncClient) -> None:
    code = (await authorize(client))["code"][0]
    wrong = await redeem(client, code, code_verifier="w" * 50)
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    plain = await authorize(client, code_challenge=VERIFIER, code_challenge_method="plain")
    assert plain["error"] == ["invalid_request"] and plain["state"] == ["st-123"]
    missing = await authorize(client, code_challenge="")
    assert missing["error"] == ["invalid_request"]
    other_redirect = await redeem(
        client, (await authorize(client))["code"][0], redirect_uri="http://127.0.0.1/x"
    )
    assert other_redirect.json()["error"] == "invalid_grant"


async def test_client_is_authenticated(client: httpx.AsyncClient) -> None:
    unknown = await client.get(
        "/oauth/authorize", params={"client_id": "nope", "redirect_uri": REDIRECT}
    )
    assert unknown.status_code == 400 and "location" not in unknown.headers
    code = (await authorize(client))["code"][0]
    bad = await redeem(client, code, client_secret="wrong")
    assert (bad.status_code, bad.json()["error"]) == (401, "invalid_client")
    # HTTP Basic client authentication works too.
    code = (await authorize(client))["code"][0]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER,
    }
    basic = await client.post("/oauth/token", data=form, auth=("sandbox-client", "sandbox-secret"))
    assert basic.status_code == 200
    odd = await client.post("/oauth/token", data={"grant_type": "password"} | CLIENT)
    assert odd.json()["error"] == "unsupported_grant_type"


async def test_refresh_rotates_and_reuse_is_refused_and_recorded(
    server: SandboxOAuthServer, client: httpx.AsyncClient
) -> None:
    first = server.issue_grant(scope="contacts")
    second = (await refresh(client, first["refresh_token"])).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert server.validate(second["access_token"]) and server.validate(first["access_token"])
    assert server.reused_refresh_tokens == []
    reused = await refresh(client, first["refresh_token"])
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
    assert server.reused_refresh_tokens == [first["refresh_token"]]
    # A strict server takes reuse for theft: the whole grant is revoked (RFC 9700 4.14.2).
    third = await refresh(client, second["refresh_token"])
    assert (third.status_code, third.json()["error"]) == (400, "invalid_grant")
    assert not server.validate(second["access_token"])
    assert server.refresh_requests == 3 and server.token_requests == 3
    unknown = await refresh(client, "sbx-rt-unknown")
    assert unknown.json()["error"] == "invalid_grant"
    assert server.reused_refresh_tokens == [first["refresh_token"]]


async def test_a_lenient_server_only_refuses_the_reused_token() -> None:
    server = SandboxOAuthServer(revoke_on_reuse=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=server.app), base_url="http://sandbox"
    ) as c:
        first = server.issue_grant()
        second = (await refresh(c, first["refresh_token"])).json()
        assert (await refresh(c, first["refresh_token"])).status_code == 400
        assert (await refresh(c, second["refresh_token"])).status_code == 200
    assert server.reused_refresh_tokens == [first["refresh_token"]]


async def test_without_rotation_the_refresh_token_stays(client: httpx.AsyncClient) -> None:
    server = SandboxOAuthServer(rotate_refresh_tokens=False, revoke_access_on_refresh=True)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=server.app), base_url="http://sandbox"
    ) as c:
        grant = server.issue_grant()
        for _ in range(3):
            body = (await refresh(c, grant["refresh_token"])).json()
            assert "refresh_token" not in body and server.validate(body["access_token"])
        assert not server.validate(grant["access_token"])  # revoked by the refresh
    assert server.reused_refresh_tokens == []


async def test_expire_revoke_and_never_expiring_tokens(
    server: SandboxOAuthServer, client: httpx.AsyncClient
) -> None:
    grant = server.issue_grant()
    server.expire_access_tokens()
    assert not server.validate(grant["access_token"])
    denied = await client.get(
        "/oauth/userinfo", headers={"Authorization": f"Bearer {grant['access_token']}"}
    )
    assert denied.status_code == 401 and "invalid_token" in denied.headers["www-authenticate"]
    fresh = (await refresh(client, grant["refresh_token"])).json()
    assert server.revoke_grant(fresh["access_token"]) == 1
    assert not server.validate(fresh["access_token"])
    assert (await refresh(client, fresh["refresh_token"])).json()["error"] == "invalid_grant"
    assert server.reused_refresh_tokens == []  # revoked is not the same as reused

    forever = SandboxOAuthServer(access_ttl=None, issue_refresh_tokens=False)
    token = forever.issue_grant()
    assert token["expires_in"] == 0 and "refresh_token" not in token
    assert forever.validate(token["access_token"])


async def test_revocation_endpoint(server: SandboxOAuthServer, client: httpx.AsyncClient) -> None:
    grant = server.issue_grant()
    other = server.issue_grant()
    response = await client.post("/oauth/revoke", data={"token": grant["refresh_token"]} | CLIENT)
    assert response.status_code == 200
    assert not server.validate(grant["access_token"]) and server.validate(other["access_token"])
    assert (await refresh(client, grant["refresh_token"])).json()["error"] == "invalid_grant"
    unknown = await client.post("/oauth/revoke", data={"token": "whatever"} | CLIENT)
    assert unknown.status_code == 200
    denied = await client.post("/oauth/revoke", data={"token": other["access_token"]})
    assert denied.status_code == 401 and server.validate(other["access_token"])


async def test_fault_injection(server: SandboxOAuthServer, client: httpx.AsyncClient) -> None:
    grant = server.issue_grant()
    server.fail_next_token_requests(2, status=502)
    assert (await refresh(client, grant["refresh_token"])).status_code == 502
    assert (await refresh(client, grant["refresh_token"])).status_code == 502
    assert (await refresh(client, grant["refresh_token"])).status_code == 200
    assert server.reused_refresh_tokens == []


def test_seeded_servers_issue_the_same_tokens() -> None:
    a, b = SandboxOAuthServer(seed=3), SandboxOAuthServer(seed=3)
    assert a.issue_grant() == b.issue_grant()
    assert SandboxOAuthServer(seed=4).issue_grant() != SandboxOAuthServer(seed=3).issue_grant()


async def test_serve_over_real_http_and_frees_the_port(server: SandboxOAuthServer) -> None:
    grant = server.issue_grant()
    with serve(server.app) as url:
        port = urlsplit(url).port
        assert port
        async with httpx.AsyncClient(base_url=url) as http:
            me = await http.get(
                "/oauth/userinfo", headers={"Authorization": f"Bearer {grant['access_token']}"}
            )
        assert me.status_code == 200
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # the port is free again
