"""Sandboxes held to an API description: a small example provider with a small description,
served over real HTTP. Refusals, recorded violations, known defects, webhooks, the subset
tool, and the check that fails a test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.sandbox import ApiDescription, Defect, SandboxApp, WebhookSender, serve_sandbox
from hub.sandbox.subset import subset, subset_text
from hub.testing.sandboxes import recorded_since, remote_violations, violation_counts

CONTACT = {
    "type": "object",
    "required": ["id", "email"],
    "properties": {
        "id": {"type": "string"},
        "email": {"type": "string"},
        "seen": {"type": "string", "format": "date-time"},
    },
}
DESCRIPTION: dict[str, Any] = {
    "openapi": "3.0.0",
    "info": {"title": "Example", "version": "1"},
    "servers": [{"url": "https://api.example.com/v1"}],
    "paths": {
        "/contacts/{id}": {
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "put": {
                "parameters": [
                    {"name": "notify", "in": "query", "schema": {"type": "boolean"}}
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/New"}}
                    },
                },
                "responses": {
                    "200": {
                        "description": "ok",
                        "content": {"application/json": {"schema": CONTACT}},
                    }
                },
            },
            "get": {"responses": {"200": {"description": "ok"}}},
        },
        "/other": {"get": {"responses": {"200": {"description": "ok"}}}},
    },
    "components": {
        "schemas": {
            "New": {
                "type": "object",
                "required": ["email"],
                "properties": {
                    "email": {"type": "string"},
                    "tag": {"$ref": "#/components/schemas/Tag"},
                },
            },
            "Tag": {"type": "string"},
            "Unused": {"type": "integer"},
        }
    },
}  # fmt: skip


def webhook_problems(body: bytes, headers: Any) -> list[str]:
    return [] if json.loads(body).get("event") == "contact.saved" else ["unknown event"]


@pytest.fixture
def description(tmp_path: Path) -> ApiDescription:
    path = tmp_path / "example.json"
    path.write_text(json.dumps(DESCRIPTION))
    return ApiDescription(
        path,
        defects=(Defect("response", "*", r"seen: '' is not a 'date-time'", why="empty times"),),
        webhooks=webhook_problems,
    )


def make_app(description: ApiDescription) -> tuple[SandboxApp, WebhookSender]:
    """A provider whose answers can be made wrong on purpose (``?answer=bad``)."""

    async def put(request: Request) -> Response:
        body = await request.json()
        answer = {"id": request.path_params["id"], "email": body["email"], "seen": ""}
        if request.query_params.get("notify") == "false":
            answer.pop("email")  # an answer the description does not allow
        return JSONResponse(answer)

    async def control(request: Request) -> Response:
        return JSONResponse({"anything": True})

    hooks = WebhookSender()
    routes = [
        Route("/v1/contacts/{id}", put, methods=["PUT"]),
        Route("/v1/undocumented", control, methods=["GET"]),
        Route("/_example/control", control, methods=["GET"]),
    ]
    app = SandboxApp(Starlette(routes=routes), name="example", webhooks=hooks, spec=description)
    return app, hooks


@pytest.fixture
def served(description: ApiDescription) -> Iterator[tuple[SandboxApp, WebhookSender, str]]:
    app, hooks = make_app(description)
    url, server = serve_sandbox(app)
    try:
        yield app, hooks, url
    finally:
        server.stop()


def test_valid_traffic_records_nothing(served: tuple[SandboxApp, WebhookSender, str]) -> None:
    app, _, url = served
    answer = httpx.put(f"{url}/v1/contacts/7", json={"email": "a@example.com"}, timeout=5)
    assert answer.status_code == 200
    # ``seen: ""`` breaks date-time: a listed defect, so not a violation
    assert app.violations.items() == []
    # outside the description's base path: the sandbox's own controls, not checked
    assert httpx.get(f"{url}/_example/control", timeout=5).status_code == 200
    assert app.violations.items() == []


def test_an_invalid_request_is_refused_and_recorded(
    served: tuple[SandboxApp, WebhookSender, str],
) -> None:
    app, _, url = served
    answer = httpx.put(f"{url}/v1/contacts/7?notify=maybe", json={"tag": 5}, timeout=5)
    assert answer.status_code == 400
    errors = " | ".join(answer.json()["errors"])
    assert "'email' is a required property" in errors and "notify" in errors
    shown = httpx.get(f"{url}/_sandbox/violations", timeout=5).json()
    assert shown["total"] == 1 and shown["checked"] is True
    [violation] = shown["violations"]
    assert violation["direction"] == "request"
    assert violation["operation"] == "PUT /contacts/{id}"
    assert app.log.count("PUT", "/v1/contacts/7", status=400) == 1
    # a path the description does not have is a violation too
    assert httpx.get(f"{url}/v1/undocumented", timeout=5).status_code == 400
    assert remote_violations(url)[-1].startswith("request GET /v1/undocumented")
    taken = httpx.delete(f"{url}/_sandbox/violations", timeout=5).json()
    assert taken["total"] == 2 and app.violations.items() == []


def test_an_answer_that_breaks_the_description_is_recorded(
    served: tuple[SandboxApp, WebhookSender, str],
) -> None:
    app, _, url = served
    answer = httpx.put(f"{url}/v1/contacts/7?notify=false", json={"email": "a@x.example"})
    assert answer.status_code == 200  # the client gets what the sandbox said
    [violation] = app.violations.take()
    assert violation.direction == "response" and violation.status == 200
    assert violation.errors == ("InvalidData: .: 'email' is a required property",)


def test_injected_faults_are_not_held_to_the_description(
    served: tuple[SandboxApp, WebhookSender, str],
) -> None:
    app, _, url = served
    app.set_faults(error_rate=1.0)
    answer = httpx.put(f"{url}/v1/contacts/7", json={"email": "a@x.example"}, timeout=5)
    assert answer.status_code == 503
    assert app.violations.items() == []


def test_webhooks_are_checked_before_they_are_posted(
    served: tuple[SandboxApp, WebhookSender, str],
) -> None:
    app, hooks, url = served
    hooks.url = f"{url}/_example/control"  # any listener will do
    hooks.send_sync({"event": "contact.saved"})
    assert app.violations.items() == []
    hooks.send_sync({"event": "contact.deleted"})
    [violation] = app.violations.take()
    assert violation.direction == "webhook" and violation.errors == ("unknown event",)


async def test_the_check_every_test_runs_sees_violations_of_any_live_sandbox(
    description: ApiDescription,
) -> None:
    app, _ = make_app(description)
    start = violation_counts()
    assert recorded_since(start) == []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sb") as client:
        assert (await client.put("/v1/contacts/1", json={})).status_code == 400
    [problem] = recorded_since(start)
    assert "the example sandbox saw traffic" in problem and "'email' is a required" in problem
    app.violations.take()  # taken on purpose, or this test would fail at teardown
    assert recorded_since(violation_counts()) == []


def test_a_description_without_defects_lists_its_own_errors(tmp_path: Path) -> None:
    broken = json.loads(json.dumps(DESCRIPTION))
    broken["components"]["schemas"]["Tag"] = {"type": "string", "default": False}
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    assert ApiDescription(path).spec_errors() == [".: False is not of type 'string'"]
    excused = ApiDescription(path, defects=(Defect("description", "*", "not of type", why="x"),))
    assert excused.spec_errors() == []


def test_subset_keeps_the_operations_and_what_they_reference(tmp_path: Path) -> None:
    cut = subset(DESCRIPTION, ["PUT /contacts/{id}"])
    assert list(cut["paths"]) == ["/contacts/{id}"]
    assert set(cut["paths"]["/contacts/{id}"]) == {"parameters", "put"}
    assert set(cut["components"]["schemas"]) == {"New", "Tag"}  # Unused is dropped
    with pytest.raises(KeyError, match=r"no operation 'DELETE /contacts/\{id\}'"):
        subset(DESCRIPTION, ["DELETE /contacts/{id}"])
    source = tmp_path / "full.json"
    source.write_text(json.dumps(DESCRIPTION))
    text = subset_text(source, ["PUT /contacts/{id}"])
    assert text == subset_text(source, ["PUT /contacts/{id}"])  # the same bytes every time
    assert json.loads(text)["info"]["x-subset-of"]["file"] == "full.json"
