"""The sandbox framework, exercised through a small example provider over real HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.connector import Connector, Cursor, Page, Stream
from hub.registry import Registry
from hub.sandbox import (
    SandboxApp,
    SandboxServer,
    WebhookSender,
    fake_people,
    fake_person,
    find_sandboxes,
    oauth_sandbox,
    serve_sandbox,
)

SECRET = b"example-signing-secret"


def sign(body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    mac = hmac.new(SECRET, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {"x-example-timestamp": ts, "x-example-signature": mac}


def throttled() -> Response:
    return JSONResponse({"error": {"code": "throttled"}}, 429, headers={"X-RateLimit-Reset": "2"})


def create_sandbox(seed: int = 0, size: int = 25, **_: Any) -> SandboxApp:
    """An example provider: pages of contacts, creation, a webhook on each creation."""
    contacts: dict[str, dict[str, Any]] = {}
    hook = WebhookSender(sign=sign)

    def reset() -> None:
        contacts.clear()
        for p in fake_people(seed, size):
            contacts[str(p.index)] = {"id": str(p.index), "email": p.email, "name": p.name}

    async def list_contacts(request: Request) -> JSONResponse:
        page = int(request.query_params.get("page", "0"))
        rows = list(contacts.values())[page * 10 : page * 10 + 10]
        more = (page + 1) * 10 < len(contacts)
        return JSONResponse({"contacts": rows, "next_page": page + 1 if more else None})

    async def create(request: Request) -> JSONResponse:
        body = await request.json()
        contact = {"id": str(len(contacts)), **body}
        contacts[contact["id"]] = contact
        if hook.url:
            await hook.send({"event": "contact.created", "contact": contact})
        return JSONResponse(contact, status_code=201)

    reset()
    routes = [
        Route("/v1/contacts", list_contacts, methods=["GET"]),
        Route("/v1/contacts", create, methods=["POST"]),
    ]
    return SandboxApp(
        Starlette(routes=routes),
        name="example",
        seed=seed,
        throttle=throttled,
        on_reset=reset,
        webhooks=hook,
        oauth=oauth_sandbox(),
    )


class ExampleConnector(Connector):
    name = "example"
    sandbox = staticmethod(create_sandbox)

    def streams(self) -> list[Stream]:
        return [Stream("contacts", "contact")]

    async def pull(self, stream: Stream, cursor: Cursor | None) -> AsyncIterator[Page]:
        yield Page()


class PlainConnector(ExampleConnector):
    name = "plain"
    sandbox = None  # type: ignore[assignment]


@pytest.fixture
def sandbox() -> Iterator[tuple[SandboxApp, str]]:
    app = create_sandbox(seed=7)
    url, server = serve_sandbox(app)
    try:
        yield app, url
    finally:
        server.stop()


@pytest.fixture
def client(sandbox: tuple[SandboxApp, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox[1], timeout=5) as c:
        yield c


def set_faults(client: httpx.Client, **faults: Any) -> dict[str, Any]:
    response = client.post("/_sandbox/faults", json=faults)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_request_log_counts_api_calls(
    sandbox: tuple[SandboxApp, str], client: httpx.Client
) -> None:
    app, _ = sandbox
    page, pages = 0, 0
    while page is not None:
        body = client.get("/v1/contacts", params={"page": page}).json()
        page, pages = body["next_page"], pages + 1
    assert pages == 3
    assert client.post("/v1/contacts", json={"email": "new@example.com"}).status_code == 201
    client.get("/_sandbox/faults")  # control calls are not API calls

    assert app.log.count() == 4
    assert app.log.count("GET", "/v1/contacts") == 3
    assert app.log.count("POST", "/v1/*", status=201) == 1
    log = client.get("/_sandbox/log").json()
    assert log["total"] == 4
    assert [e["query"] for e in log["entries"][:3]] == ["page=0", "page=1", "page=2"]
    assert all(e["status"] in (200, 201) and e["duration_ms"] >= 0 for e in log["entries"])
    assert client.get("/_sandbox/log", params={"since": 3}).json()["entries"][0]["method"] == "POST"


def test_burst_429_answers_with_the_providers_throttle(client: httpx.Client) -> None:
    set_faults(client, burst_429=2)
    first, second, third = (client.get("/v1/contacts") for _ in range(3))
    assert [first.status_code, second.status_code, third.status_code] == [429, 429, 200]
    assert first.headers["X-RateLimit-Reset"] == "2"
    assert first.json() == {"error": {"code": "throttled"}}
    assert client.get("/_sandbox/faults").json()["burst_429"] == 0


def test_error_rate_is_seeded_and_repeatable(
    sandbox: tuple[SandboxApp, str], client: httpx.Client
) -> None:
    set_faults(client, error_rate=0.5, error_status=502)
    first = [client.get("/v1/contacts").status_code for _ in range(40)]
    assert set(first) == {200, 502}
    assert 8 <= first.count(502) <= 32
    assert sandbox[0].log.count(status=502) == first.count(502)

    client.post("/_sandbox/reset")
    set_faults(client, error_rate=0.5, error_status=502)
    again = [client.get("/v1/contacts").status_code for _ in range(40)]
    assert again == first


def test_latency_slows_every_answer(sandbox: tuple[SandboxApp, str], client: httpx.Client) -> None:
    set_faults(client, latency_ms=250)
    started = time.perf_counter()
    assert client.get("/v1/contacts").status_code == 200
    assert time.perf_counter() - started >= 0.25
    assert sandbox[0].log.entries()[-1].duration_ms >= 250
    with pytest.raises(httpx.ReadTimeout):
        client.get("/v1/contacts", timeout=0.05)


def test_dropped_connection_gets_no_answer(
    sandbox: tuple[SandboxApp, str], client: httpx.Client
) -> None:
    set_faults(client, drop_connections=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/v1/contacts")
    entry = sandbox[0].log.entries()[-1]
    assert (entry.status, entry.fault) == (None, "drop")
    set_faults(client, drop_connections=0.0)
    assert client.get("/v1/contacts").status_code == 200


def test_truncated_body_is_cut_mid_stream(client: httpx.Client) -> None:
    full = client.get("/v1/contacts").content
    set_faults(client, truncate_bodies=1.0)
    received = bytearray()
    with pytest.raises(httpx.RemoteProtocolError), client.stream("GET", "/v1/contacts") as r:
        assert r.status_code == 200
        assert int(r.headers["content-length"]) == len(full)
        for chunk in r.iter_raw():
            received += chunk
    assert 0 < len(received) < len(full)
    assert full.startswith(bytes(received))
    with pytest.raises(json.JSONDecodeError):
        json.loads(received)


def test_fault_switches_settable_from_tests(
    sandbox: tuple[SandboxApp, str], client: httpx.Client
) -> None:
    app, _ = sandbox
    app.set_faults(burst_429=1)
    assert client.get("/v1/contacts").status_code == 429
    assert client.get("/v1/contacts").status_code == 200
    assert app.log.entries()[0].fault == "throttle"


def test_bad_fault_settings_are_refused_with_the_valid_names(client: httpx.Client) -> None:
    response = client.post("/_sandbox/faults", json={"error_rate": 2, "burst": 1})
    assert response.status_code == 422
    body = response.json()
    assert {e["field"] for e in body["errors"]} == {"error_rate", "burst"}
    assert "burst_429" in body["valid"]
    assert client.get("/_sandbox/faults").json()["error_rate"] == 0


def test_reset_restores_state_log_and_faults(
    sandbox: tuple[SandboxApp, str], client: httpx.Client
) -> None:
    client.post("/v1/contacts", json={"email": "x@example.com"})
    set_faults(client, latency_ms=5)
    assert client.post("/_sandbox/reset").json() == {"reset": True, "seed": 7}
    assert len(sandbox[0].log) == 0
    assert client.get("/_sandbox/faults").json()["latency_ms"] == 0
    emails = []
    for page in range(3):
        emails += [c["email"] for c in client.get(f"/v1/contacts?page={page}").json()["contacts"]]
    assert emails == [p.email for p in fake_people(7, 25)]


def test_webhooks_are_signed_and_delivered(client: httpx.Client) -> None:
    received: list[tuple[bytes, dict[str, str]]] = []

    async def hook(request: Request) -> Response:
        received.append((await request.body(), dict(request.headers)))
        return Response(status_code=204)

    hub = Starlette(routes=[Route("/webhooks/example", hook, methods=["POST"])])
    with SandboxServer(hub).start() as hub_server:
        target = f"{hub_server.url}/webhooks/example"
        assert client.post("/_sandbox/webhooks", json={"url": target}).json() == {"url": target}
        client.post("/v1/contacts", json={"email": "hook@example.com"})
    assert len(received) == 1
    body, headers = received[0]
    assert json.loads(body)["contact"]["email"] == "hook@example.com"
    expected = hmac.new(
        SECRET, f"{headers['x-example-timestamp']}.".encode() + body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(headers["x-example-signature"], expected)


def test_webhook_sender_reports_an_unreachable_hub() -> None:
    with SandboxServer(Starlette()).start() as server:
        url = server.url
    delivery = WebhookSender(url=f"{url}/gone", sign=sign, timeout=2).send_sync({"a": 1})
    assert delivery.status is None and delivery.error
    assert "x-example-signature" in delivery.headers


def test_oauth_server_is_mounted_under_oauth(
    sandbox: tuple[SandboxApp, str], client: httpx.Client
) -> None:
    app, _ = sandbox
    assert app.oauth is not None
    token = app.oauth.issue_grant(scope="contacts")["access_token"]
    me = client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert client.get("/oauth/userinfo").status_code == 401
    assert app.log.count("GET", "/oauth/userinfo") == 2


def test_fake_people_are_deterministic_unique_and_lazy() -> None:
    people = list(fake_people(3, 2000))
    assert people == list(fake_people(3, 2000))
    assert people[1234] == fake_person(3, 1234)
    assert list(fake_people(3, 5, start=100)) == people[100:105]
    assert len({p.email for p in people}) == 2000
    phones = [p.phone for p in people if p.phone]
    assert len(set(phones)) == len(phones) > 1000
    assert all(p.phone.startswith("+") and p.phone[1:].isdigit() for p in people if p.phone)
    assert len({p.company for p in people}) < 500  # people share companies
    assert all(p.email.endswith("@" + p.domain) for p in people)
    assert fake_people(4, 10) != people[:10] and next(fake_people(4, 1)) != people[0]
    huge = fake_people(1, 10**9)  # lazy: nothing is made up front
    assert next(huge).index == 0


def test_discovery_finds_connector_sandboxes() -> None:
    registry = Registry.discover(extra={"example": ExampleConnector, "plain": PlainConnector})
    found = find_sandboxes(registry)
    assert "plain" not in found
    info = found["example"]
    assert info.error is None and info.factory is not None
    app = info.factory(seed=1)
    assert isinstance(app, SandboxApp) and app.seed == 1
