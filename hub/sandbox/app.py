"""``SandboxApp``: a provider fake with a request log, fault switches and control endpoints.

A connector's sandbox builds its provider routes as an ordinary ASGI app (usually Starlette,
with state in memory) and wraps it::

    def create_sandbox(seed: int = 0, size: int = 100) -> SandboxApp:
        state = State(seed, size)
        return SandboxApp(Starlette(routes=...), name="acme", seed=seed,
                          throttle=acme_throttle_answer, on_reset=state.reset)

Control endpoints (never logged, never faulted): ``GET /_sandbox/log`` (``?since=N``),
``GET|POST /_sandbox/faults`` (JSON: :class:`~hub.sandbox.faults.Faults` fields),
``POST /_sandbox/reset`` (log, faults, RNG and the sandbox's state back to the start),
``POST /_sandbox/webhooks`` (``{"url": ...}``: where signed webhooks go) and
``GET|DELETE /_sandbox/violations`` (what broke the API description; DELETE also forgets).

With ``spec`` (the provider's :class:`~hub.sandbox.spec.ApiDescription`) every request to
the provider's API is checked before the sandbox sees it, every answer before it leaves, and
every webhook before it is posted; a request the description does not allow is refused with
the provider's error answer. Each breach is kept in ``violations``, which tests assert empty
(``hub.testing.sandboxes``).
"""

from __future__ import annotations

import fnmatch
import itertools
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.sandbox.faults import FaultInjector, Faults, connection_dropper
from hub.sandbox.spec import ApiDescription, Violation, ViolationLog
from hub.sandbox.webhooks import Delivery, WebhookSender

__all__ = ["LogEntry", "RequestLog", "SandboxApp", "opened_sandboxes"]

CONTROL = "/_sandbox"
_OPENED: list[weakref.ref[SandboxApp]] = []
_OPENED_LOCK = threading.Lock()
_SERIALS = itertools.count()


def opened_sandboxes() -> list[SandboxApp]:
    """The sandboxes of this process still alive (tests check what each one recorded)."""
    with _OPENED_LOCK:
        alive = [s for ref in _OPENED if (s := ref()) is not None]
        _OPENED[:] = [weakref.ref(s) for s in alive]
        return alive


@dataclass(frozen=True)
class LogEntry:
    """One request the sandbox answered (or failed on purpose)."""

    method: str
    path: str
    query: str
    status: int | None
    """``None`` when the connection was dropped before any answer."""
    duration_ms: float
    fault: str | None = None


class RequestLog:
    """The requests a sandbox saw, in order; safe to read from another thread."""

    def __init__(self) -> None:
        self._entries: list[LogEntry] = []
        self._lock = threading.Lock()

    def add(self, entry: LogEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self, since: int = 0) -> list[LogEntry]:
        with self._lock:
            return self._entries[since:]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def count(
        self, method: str | None = None, path: str | None = None, status: int | None = None
    ) -> int:
        """How many requests match; ``path`` may be a glob (``/3.0/lists/*/members``)."""
        return sum(
            1
            for e in self.entries()
            if (method is None or e.method == method.upper())
            and (path is None or fnmatch.fnmatchcase(e.path, path))
            and (status is None or e.status == status)
        )

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class SandboxApp:
    """ASGI app: ``app`` behind the request log and the fault switches.

    ``throttle`` makes the provider's own 429 answer (status, body, ``Retry-After`` or
    reset headers); ``on_reset`` puts the sandbox's state back to its seed. ``oauth``, the
    shared authorization server (``auth.sandbox.SandboxOAuthServer`` or its ``.app``),
    answers every path under ``/oauth/``; its routes carry that prefix themselves.
    ``spec`` may name several descriptions (a provider with two APIs on one host): each
    request is held to the one whose base path covers it.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        name: str = "sandbox",
        seed: int = 0,
        throttle: Callable[[], ASGIApp] | None = None,
        on_reset: Callable[[], None] | None = None,
        oauth: Any | None = None,
        webhooks: WebhookSender | None = None,
        spec: ApiDescription | Sequence[ApiDescription] | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.name = name
        self.seed = seed
        self.on_reset = on_reset
        self.webhooks = webhooks
        self.specs: tuple[ApiDescription, ...] = (
            () if spec is None else (spec,) if isinstance(spec, ApiDescription) else tuple(spec)
        )
        self.spec = self.specs[0] if self.specs else None
        self.tls = tls
        """(certificate file, key file): serve over HTTPS (``serve_sandbox`` does)."""
        self.credentials: list[str] = []
        """What a client sends to be let in, a line each (``crmhub sandbox`` prints them)."""
        self.serial = next(_SERIALS)
        self.violations = ViolationLog()
        if self.specs and webhooks is not None:
            webhooks.observer = self._check_webhook
        self.log = RequestLog()
        self.oauth = oauth
        self._oauth_app: ASGIApp | None = getattr(oauth, "app", oauth)
        self.injector = FaultInjector(self._dispatch, seed=seed, throttle=throttle)
        self._control = Router(
            routes=[
                Route(f"{CONTROL}/log", self._get_log, methods=["GET"]),
                Route(f"{CONTROL}/faults", self._get_faults, methods=["GET"]),
                Route(f"{CONTROL}/faults", self._set_faults, methods=["POST"]),
                Route(f"{CONTROL}/reset", self._reset, methods=["POST"]),
                Route(f"{CONTROL}/webhooks", self._set_webhooks, methods=["POST"]),
                Route(f"{CONTROL}/violations", self._get_violations, methods=["GET", "DELETE"]),
            ]
        )
        self._app = app
        with _OPENED_LOCK:
            _OPENED.append(weakref.ref(self))

    @property
    def faults(self) -> Faults:
        return self.injector.faults

    def set_faults(self, **changes: Any) -> Faults:
        """Set fault switches from a test, e.g. ``set_faults(burst_429=3)``."""
        return self.injector.update(**changes)

    def reset(self) -> None:
        self.log.clear()
        self.injector.reset()
        if self.on_reset is not None:
            self.on_reset()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)  # lifespan and websockets: the provider's
            return
        if scope["path"] == CONTROL or scope["path"].startswith(CONTROL + "/"):
            await self._control(scope, receive, send)
            return
        started = time.perf_counter()
        fault = self.injector.draw()
        status: int | None = None
        logged = False

        # The entry is written before the answer's last byte leaves, so a client that has
        # its answer (or lost its connection) always finds its request in the log.
        def record() -> None:
            nonlocal logged
            if logged:
                return
            logged = True
            self.log.add(
                LogEntry(
                    method=scope["method"],
                    path=scope["path"],
                    query=scope.get("query_string", b"").decode("latin-1"),
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 3),
                    fault=fault,
                )
            )

        async def send_logged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                record()
            await send(message)

        dropper = connection_dropper(send)

        async def drop() -> None:
            record()
            await dropper()

        try:
            spec = self.description_for(scope["path"])
            if spec is not None:
                await self._checked(spec, scope, receive, send_logged, fault, drop)
            else:
                await self.injector.apply(fault, scope, receive, send_logged, drop)
        finally:
            record()

    def description_for(self, path: str) -> ApiDescription | None:
        """The description whose base path covers ``path``, if any."""
        return next((spec for spec in self.specs if spec.covers(path)), None)

    async def _checked(
        self,
        spec: ApiDescription,
        scope: Scope,
        receive: Receive,
        send: Send,
        fault: str | None,
        drop: Any,
    ) -> None:
        """The request checked against the description (refused when it breaks it), then
        answered, and the answer checked before its last byte leaves."""
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        method, path = scope["method"], scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        refused = spec.check_request(method, path, query, headers, bytes(body))
        if refused is not None:
            self.violations.add(refused)
            await spec.refuse(refused)(scope, _replay(b"", receive), send)
            return
        started: dict[str, Any] = {}
        chunks = bytearray()

        async def checking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            elif message["type"] == "http.response.body":
                chunks.extend(message.get("body", b""))
                if not message.get("more_body", False) and fault in (None, "throttle"):
                    answer = {
                        k.decode("latin-1"): v.decode("latin-1")
                        for k, v in started.get("headers", [])
                    }
                    broken = spec.check_response(
                        method, path, query, headers, bytes(body),
                        int(started.get("status", 0)), answer, bytes(chunks),
                    )  # fmt: skip
                    if broken is not None:
                        self.violations.add(broken)
            await send(message)

        await self.injector.apply(fault, scope, _replay(bytes(body), receive), checking_send, drop)

    def _check_webhook(self, delivery: Delivery) -> None:
        for spec in self.specs:
            broken = spec.check_webhook(delivery.url, delivery.body, delivery.headers)
            if broken is not None:
                self.violations.add(broken)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._oauth_app is not None and scope["path"].startswith("/oauth/"):
            await self._oauth_app(scope, receive, send)
        else:
            await self._app(scope, receive, send)

    async def _get_log(self, request: Request) -> JSONResponse:
        since = int(request.query_params.get("since", "0") or 0)
        entries = [asdict(e) for e in self.log.entries(since)]
        return JSONResponse({"total": len(self.log), "entries": entries})

    async def _get_faults(self, _: Request) -> JSONResponse:
        return JSONResponse(self.faults.model_dump())

    async def _set_faults(self, request: Request) -> JSONResponse:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            faults = self.set_faults(**changes)
        except ValidationError as exc:
            errors = [
                {"field": ".".join(map(str, e["loc"])), "error": e["msg"]} for e in exc.errors()
            ]
            valid = sorted(Faults.model_fields)
            return JSONResponse({"errors": errors, "valid": valid}, status_code=422)
        except ValueError as exc:
            return JSONResponse({"errors": [{"error": str(exc)}]}, status_code=400)
        return JSONResponse(faults.model_dump())

    async def _get_violations(self, request: Request) -> JSONResponse:
        found = self.violations.take() if request.method == "DELETE" else self.violations.items()
        return JSONResponse(
            {
                "total": len(found),
                "violations": [_shown(v) for v in found],
                "checked": bool(self.spec),
            }
        )

    async def _reset(self, _: Request) -> JSONResponse:
        self.reset()
        return JSONResponse({"reset": True, "seed": self.seed})

    async def _set_webhooks(self, request: Request) -> JSONResponse:
        if self.webhooks is None:
            return JSONResponse({"error": f"the {self.name} sandbox sends no webhooks"}, 404)
        body = await request.json()
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return JSONResponse({"error": 'send {"url": "http://..."}'}, status_code=400)
        self.webhooks.url = url
        return JSONResponse({"url": url})


def _shown(violation: Violation) -> dict[str, Any]:
    return {**asdict(violation), "text": str(violation)}


def _replay(body: bytes, rest: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then the client's own
    messages (a disconnect)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await rest()

    return receive
