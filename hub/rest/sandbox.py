"""A sandbox for every declaration: the declared API, served from memory.

``create_sandbox(loaded, seed, size)`` builds a :class:`hub.sandbox.SandboxApp` (request
log, fault switches, ``/_sandbox/`` controls) around the declared routes, with made-up
records (``[sandbox.streams.NAME] fields``) or a seed file. It checks credentials the
declared way: API keys and bearer tokens must be :data:`SANDBOX_KEY`, basic auth
:data:`SANDBOX_USER`/:data:`SANDBOX_PASSWORD`, OAuth2 tokens come from the shared sandbox
authorization server (``/oauth/...``). More requests in flight than the declared
concurrency, and the ``burst_429`` fault, get the throttle answer with ``Retry-After``.

Tests change records as a remote user would through ``app.provider`` (``add``, ``edit``,
``remove``, ``records``) or over HTTP: ``GET|POST /_rest/<stream>``,
``PATCH|DELETE /_rest/<stream>/<id>``. Those changes post the declared webhook, signed with
:data:`SANDBOX_WEBHOOK_SECRET`, when a URL is set (``POST /_sandbox/webhooks``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.rest.auth import ApiKeyAuth, BasicAuth, BearerAuth, NoAuth, OAuth2Auth
from hub.rest.base import resolve_hook
from hub.rest.check import settings_used
from hub.rest.jsonpath import JsonPath
from hub.rest.load import Loaded
from hub.rest.model import Declaration, EndpointDeletes, FakeSpec
from hub.rest.sandbox_api import Refused, StreamApi, json_answer, refusal
from hub.rest.sandbox_limits import Limits
from hub.rest.sandbox_state import Table, seeded_times
from hub.rest.template import Template
from hub.rest.webhooks import HmacSignature, sign
from hub.rest.writes import default_write
from hub.sandbox import SandboxApp, WebhookSender, fake_people, oauth_sandbox

__all__ = [
    "SANDBOX_KEY",
    "SANDBOX_PASSWORD",
    "SANDBOX_USER",
    "SANDBOX_WEBHOOK_SECRET",
    "RestSandbox",
    "RestSandboxApp",
    "create_sandbox",
    "sandbox_credentials",
    "sandbox_settings",
]

SANDBOX_KEY = "sandbox-api-key"
SANDBOX_USER = "sandbox-user"
SANDBOX_PASSWORD = "sandbox-password"
SANDBOX_WEBHOOK_SECRET = "sandbox-webhook-secret"
SANDBOX_SECRET = {"username": SANDBOX_USER, "password": SANDBOX_PASSWORD, "api_key": SANDBOX_KEY}
"""The stored credential a client of the sandbox holds, as basic auth templates see it."""
FAKE_FIELDS = {
    "contact": {"email": "{email}", "first_name": "{first_name}", "last_name": "{last_name}"},
    "company": {"name": "{company}", "domain": "{domain}"},
}
Handler = Callable[[Request], Awaitable[Response]]


SANDBOX_VALUES: dict[str, Any] = {
    "str": "sandbox",
    "secret": "sandbox",
    "int": 1,
    "float": 1.0,
    "bool": False,
}
"""What the sandbox gives a setting it must fill, by the setting's type."""


def sandbox_settings(spec: Declaration) -> dict[str, Any]:
    """Connection settings that fit the sandbox: declared defaults, a value of the declared
    type for required ones and for those a run fills into a template, and the sandbox's
    webhook secret."""
    used = settings_used(spec)
    values: dict[str, Any] = {}
    for name, setting in spec.settings.items():
        if setting.default is not None:
            values[name] = setting.default
        elif setting.required or (name in used and name != "base_url"):
            values[name] = SANDBOX_VALUES[setting.type]
    if spec.webhooks is not None and "webhook_secret" in spec.settings:
        values["webhook_secret"] = SANDBOX_WEBHOOK_SECRET
    return values


def sandbox_credentials(spec: Declaration, oauth: Any = None) -> list[str]:
    """What a client sends the sandbox of ``spec`` to be let in, a line each: the header
    or query parameter with :data:`SANDBOX_KEY`, the basic user and password, or how to
    get an OAuth2 token from the sandbox's authorization server."""
    auth = spec.client.auth
    lines: list[str] = []
    if isinstance(auth, NoAuth):
        lines.append("credentials: none needed")
    elif isinstance(auth, ApiKeyAuth) and auth.query:
        lines.append(f"credentials: query parameter {auth.query}={auth.prefix}{SANDBOX_KEY}")
    elif isinstance(auth, ApiKeyAuth | BearerAuth) and auth.header:
        lines.append(f"credentials: header {auth.header}: {auth.prefix}{SANDBOX_KEY}")
    elif isinstance(auth, BasicAuth):
        values = {"secret": SANDBOX_SECRET, "settings": sandbox_settings(spec)}
        user = Template(auth.username).render(values)
        password = Template(auth.password).render(values)
        lines.append(f"credentials: HTTP Basic, user {user} and password {password}")
    if oauth is not None:
        lines.append(
            f"credentials: OAuth2 client {oauth.client_id} with secret {oauth.client_secret}: "
            "POST /oauth/token with grant_type=client_credentials, then send "
            "Authorization: Bearer <access_token>"
        )
    return lines


class RestSandbox:
    """The provider behind a declaration's sandbox: tables, routes, controls."""

    def __init__(self, loaded: Loaded, webhooks: WebhookSender, oauth: Any = None) -> None:
        self.loaded = loaded
        self.spec = loaded.spec
        self.webhooks = webhooks
        self.oauth = oauth
        self.settings = sandbox_settings(self.spec)
        self.frozen: datetime | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.retry_after = self.spec.sandbox.retry_after
        self.limits = Limits(self.spec)
        fakes = self.spec.sandbox.streams
        self.tables = {
            n: Table(n, s, self.now, *((fakes[n].defaults, fakes[n].moved) if n in fakes else ()))
            for n, s in self.spec.streams.items()
        }
        self.apis = {n: StreamApi(self.spec, n, t, loaded.hooks) for n, t in self.tables.items()}
        self.size: int | None = None
        self.seed = 0
        self.app = Starlette(routes=self._controls() + self._routes())

    def now(self) -> datetime:
        return self.frozen or datetime.now(UTC)

    # -- test controls (a remote user's changes) ----------------------------------------

    def add(self, stream: str, data: dict[str, Any]) -> dict[str, Any]:
        record = self.tables[stream].add(data)
        self._notify(stream, record)
        return record

    def edit(self, stream: str, record_id: str | int, changes: dict[str, Any]) -> dict[str, Any]:
        record = self.tables[stream].update(str(record_id), changes)
        self._notify(stream, record)
        return record

    def remove(self, stream: str, record_id: str | int) -> None:
        table = self.tables[stream]
        record = table.live(str(record_id))
        table.remove(str(record_id))
        if record is not None:
            self._notify(stream, record)

    def records(self, stream: str) -> list[dict[str, Any]]:
        return self.tables[stream].all()

    def find(self, stream: str, path: str, value: Any) -> str | None:
        return self.tables[stream].find(path, value)

    def reset(self) -> None:
        for table in self.tables.values():
            table.reset()
        self.in_flight = self.max_in_flight = 0
        self.limits.clear()
        self.fill(self.seed, self.size)

    def fill(self, seed: int, size: int | None) -> None:
        """Put the seed file's records, or made-up ones, into every stream."""
        self.seed, self.size = seed, size
        seeded = self._seed_file()
        for name, table in self.tables.items():
            if name in seeded:
                for given in seeded[name]:
                    table.add(given)
                continue
            fake = self.spec.sandbox.streams.get(name, FakeSpec())
            count = size if size is not None else fake.size
            fields = fake.fields or FAKE_FIELDS.get(table.spec.entity, {"name": "{name}"})
            templates = {path: Template(text) for path, text in fields.items()}
            for person, when in zip(fake_people(seed, count), seeded_times(count), strict=True):
                values = {**vars(person), "name": person.name}
                record: dict[str, Any] = {}
                for path, template in templates.items():
                    with contextlib.suppress(KeyError):  # a person without a phone has none
                        JsonPath(path).set(record, template.render(values))
                table.add(record, when)

    def _seed_file(self) -> dict[str, list[dict[str, Any]]]:
        name = self.spec.sandbox.seed
        base = self.loaded.base_dir
        if not name or base is None:
            return {}
        data = json.loads((base / name).read_text(encoding="utf-8"))
        return {k: v for k, v in data.items() if isinstance(v, list)}

    def _notify(self, stream: str, record: dict[str, Any]) -> None:
        hooks = self.spec.webhooks
        if hooks is None or not self.webhooks.url:
            return
        shape = self.spec.sandbox.webhook
        if shape is not None:
            values = {
                "event": shape.events.get(stream, f"{stream}.changed"),
                "id": str(self.tables[stream].key.first(record)),
                "uuid": str(uuid.uuid4()),
                "time": self.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                "stream": stream,
            }
            self.webhooks.send_sync(_filled(shape.body, values))
            return
        payload: dict[str, Any] = {}
        event = next((e for e, s in hooks.events.items() if s == stream), f"{stream}.changed")
        if hooks.event:
            JsonPath(hooks.event).set(payload, event)
        record_id = self.tables[stream].key.first(record)
        head, star, tail = hooks.ids.partition("[*]")
        if not star:
            JsonPath(hooks.ids).set(payload, record_id)
        else:
            entry: Any = record_id
            if tail.strip("."):
                entry = JsonPath(tail.lstrip(".")).set({}, record_id)
            JsonPath(head).set(payload, [entry])
        self.webhooks.send_sync(payload)

    # -- auth, limits --------------------------------------------------------------------

    def authorized(self, request: Request) -> Response | None:
        auth = self.spec.client.auth
        if isinstance(auth, NoAuth):
            return None
        bearer = request.headers.get("authorization", "").startswith("Bearer ")
        if isinstance(auth, OAuth2Auth) or (self.spec.client.oauth is not None and bearer):
            return self.oauth.bearer_error(request) if self.oauth is not None else None
        if isinstance(auth, BasicAuth):
            values = {"secret": SANDBOX_SECRET, "settings": self.settings}
            user = Template(auth.username).render(values)
            password = Template(auth.password).render(values)
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            ok = request.headers.get("authorization") == f"Basic {token}"
        elif isinstance(auth, ApiKeyAuth) and auth.query:
            ok = request.query_params.get(auth.query) == f"{auth.prefix}{SANDBOX_KEY}"
        else:
            assert isinstance(auth, ApiKeyAuth | BearerAuth) and auth.header
            ok = request.headers.get(auth.header) == f"{auth.prefix}{SANDBOX_KEY}"
        if ok:
            return None
        status, body = refusal(self.spec.errors, "needs_reauth", "pull", "credentials refused")
        return json_answer(body, status)

    def throttle(self, wait: float | None = None) -> Response:
        """The throttle answer: the declared status, and the wait in the declared header."""
        retry = self.spec.client.retry_after
        status, body = refusal(self.spec.errors, "throttled", "pull", "rate limit exceeded")
        wait = self.retry_after if wait is None else wait
        if retry.format == "epoch":
            value = str(int(time.time() + wait + 0.999))
        elif retry.format == "http_date":
            value = format_datetime(datetime.fromtimestamp(time.time() + wait, UTC), usegmt=True)
        else:
            value = f"{wait:g}"
        return json_answer(body, status, {retry.header: value})

    def _api(self, api: StreamApi, op: str, handler: Handler) -> Handler:
        limit = self.spec.client.rate_limit
        cap = limit.concurrency if limit else None

        async def endpoint(request: Request) -> Response:
            refused = self.authorized(request)
            if refused is not None:
                return refused
            if cap is not None and self.in_flight >= cap:
                return self.throttle()
            wait = self.limits.spent(api.name, api.spec, op)
            if wait is not None:
                return self.limits.tell(self.throttle(wait))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                return self.limits.tell(await handler(request))
            except Refused as exc:
                return self.limits.tell(api.refused(exc, op))
            finally:
                self.in_flight -= 1

        return endpoint

    # -- routes --------------------------------------------------------------------------

    def _path(self, template: str) -> str:
        out = []
        for part in Template(template).parts:
            if isinstance(part, str):
                out.append(part)
            elif part[0] == "settings":
                out.append(
                    str(Template("{" + ".".join(part) + "}").render({"settings": self.settings}))
                )
            elif part[0] == "id":
                out.append("{id}")
            else:
                out.append("{" + "__".join(part) + "}")
        path = "".join(out)
        return path if path.startswith("/") else "/" + path

    def _routes(self) -> list[Route]:
        routes: list[tuple[str, str, Handler]] = []
        for api in self.apis.values():
            spec = api.spec
            routes.append((spec.method, spec.path, self._api(api, "pull", api.listing)))
            fetch_path = spec.fetch.path if spec.fetch and spec.fetch.path else None
            routes.append(
                (
                    "GET",
                    fetch_path or spec.path.rstrip("/") + "/{id}",
                    self._api(api, "fetch", api.fetch),
                )
            )
            for op, handler in (
                ("create", api.create),
                ("update", api.update),
                ("delete", api.delete),
                ("upsert", api.upsert),
            ):
                write = getattr(spec, op)
                if write is not None:
                    method, path = default_write(op, spec.path, write)
                    routes.append((method, path, self._api(api, op, handler)))
            if spec.batch is not None:
                routes.append(
                    (spec.batch.method, spec.batch.path, self._api(api, "batch", api.batch))
                )
            if isinstance(spec.deletes, EndpointDeletes):
                routes.append(("GET", spec.deletes.path, self._api(api, "pull", api.deleted)))
        made = [(m, self._path(p), h) for m, p, h in routes]
        made.sort(key=lambda r: r[1].count("{"))  # fixed paths before ones with parameters
        return [Route(p, h, methods=[m]) for m, p, h in made]

    def _controls(self) -> list[Route]:
        async def listing(request: Request) -> Response:
            return json_answer(self.records(request.path_params["stream"]))

        async def add(request: Request) -> Response:
            return json_answer(self.add(request.path_params["stream"], await request.json()), 201)

        async def edit(request: Request) -> Response:
            p = request.path_params
            return json_answer(self.edit(p["stream"], p["id"], await request.json()))

        async def remove(request: Request) -> Response:
            self.remove(request.path_params["stream"], request.path_params["id"])
            return Response(status_code=204)

        return [
            Route("/_rest/{stream}", listing, methods=["GET"]),
            Route("/_rest/{stream}", add, methods=["POST"]),
            Route("/_rest/{stream}/{id}", edit, methods=["PATCH"]),
            Route("/_rest/{stream}/{id}", remove, methods=["DELETE"]),
        ]


def _filled(shape: Any, values: dict[str, Any]) -> Any:
    """``shape`` with every text's placeholders filled."""
    if isinstance(shape, dict):
        return {k: _filled(v, values) for k, v in shape.items()}
    if isinstance(shape, list):
        return [_filled(v, values) for v in shape]
    return Template(shape).render(values) if isinstance(shape, str) else shape


def _signer(sandbox: RestSandbox) -> Callable[[bytes], dict[str, str]] | None:
    hooks = sandbox.spec.webhooks
    if hooks is None:
        return None
    signature = hooks.signature
    if not isinstance(signature, HmacSignature):
        return None

    def signed(body: bytes) -> dict[str, str]:
        return sign(signature, SANDBOX_WEBHOOK_SECRET, body, url=sandbox.webhooks.url)

    return signed


class RestSandboxApp(SandboxApp):
    """The served app; ``provider`` holds the records and the test controls."""

    provider: RestSandbox


def create_sandbox(
    source: Loaded | str | Path | dict[str, Any],
    *,
    seed: int = 0,
    size: int | None = None,
    webhook_url: str | None = None,
) -> RestSandboxApp:
    """The sandbox of a declaration, with ``size`` made-up records per stream (default:
    the declaration's ``[sandbox.streams.NAME] size``) unless it names a seed file."""
    from hub.rest.load import load_declaration

    loaded = source if isinstance(source, Loaded) else load_declaration(source)
    client = loaded.spec.client
    offers = isinstance(client.auth, OAuth2Auth) or client.oauth is not None
    oauth = oauth_sandbox(seed=seed) if offers else None
    webhooks = WebhookSender(url=webhook_url)
    provider = RestSandbox(loaded, webhooks, oauth)
    webhooks.sign = _signer(provider)
    provider.fill(seed, size)
    described = loaded.spec.sandbox.description
    app = RestSandboxApp(
        provider.app,
        spec=resolve_hook(described, loaded.base_dir, call=False) if described else None,
        name=loaded.spec.name,
        seed=seed,
        throttle=provider.throttle,
        on_reset=provider.reset,
        oauth=oauth,
        webhooks=webhooks,
    )
    app.provider = provider
    app.credentials = sandbox_credentials(loaded.spec, oauth)
    return app
