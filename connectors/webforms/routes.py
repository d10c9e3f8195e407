"""``/forms/<key>``: where forms post. Check, store in the inbox, answer.

=========  ==================================================================================
POST       a submission. Accepted: stored in the inbox (committed) before the answer, which
           is a 303 to ``thank_you_url`` (or a thank-you page) for browser posts and
           ``{"status": "accepted", "id": ...}`` for JSON posts and provider webhooks.
           A repeated submission (same id) is acknowledged the same way and stored once.
OPTIONS    CORS preflight: answered for ``allowed_origins`` only.
GET token  ``/forms/<key>/token``: a fresh signed issue time for pages that fetch one.
GET        ``/forms/<key>/snippet``: the embeddable HTML form (as ``crmhub forms snippet``).
=========  ==================================================================================

Refusals (nothing stored, counted in ``crmhub_form_rejected_total{form,reason}``): 404 unknown
key; 401 bad signature; 403 honeypot filled, too fast, issue token missing, invalid or
expired, origin not allowed; 400 a required field missing or an unreadable address; 413 body
or file too large, files on a form that takes none; 429 rate limited (with ``Retry-After``).
A body that cannot be read at all (bad JSON, a provider payload without its ids) is 400 and
kept in the inbox as ``malformed``.
"""

from __future__ import annotations

import hmac
import html
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import APIRouter
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from connectors.webforms import intake
from connectors.webforms.guard import TOKEN_FIELD, FormRefused, RateLimiter, issue_token
from connectors.webforms.settings import WebFormsSettings
from connectors.webforms.snippet import render_snippet
from connectors.webforms.submission import KIND
from hub import metrics
from hub.errors import CrmhubError
from hub.inbox import Inbox
from hub.webhooks import KEPT_HEADERS, MalformedDelivery, WebhookRejected, body_id

if TYPE_CHECKING:
    from connectors.webforms.submission import Submission
    from hub.runtime import Hub

log = logging.getLogger("connectors.webforms")

REJECTED = metrics.REGISTRY.counter(
    "crmhub_form_rejected",
    "Form posts refused, by form (connection) and reason.",
    ("form", "reason"),
)
SUBMISSIONS = metrics.REGISTRY.counter(
    "crmhub_form_submissions",
    "Form posts acknowledged, by form (connection) and outcome (accepted, duplicate, malformed).",
    ("form", "outcome"),
)
UNKNOWN = "-"
_KEEP_HEADERS = (*KEPT_HEADERS, "origin", "referer")  # an allow-list, as for /hooks/
THANK_YOU = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Thank you</title></head>
<body><main><h1>Thank you</h1><p>We received your submission.</p></main></body>
</html>
"""
ERROR_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Not sent</title></head>
<body><main><h1>Your submission was not sent</h1><p role="alert">{message}</p>
<p>Go back to the form and try again.</p></main></body>
</html>
"""


@dataclass
class Form:
    """One configured web form, as the routes see it."""

    connection: str
    settings: WebFormsSettings
    limiter: RateLimiter

    @property
    def name(self) -> str:
        return self.settings.form_name or self.connection

    def cors(self, origin: str | None) -> dict[str, str]:
        """CORS headers for ``origin`` when it is allowed, else none."""
        if origin and origin.lower() in self.settings.allowed_origins:
            return {"access-control-allow-origin": origin, "vary": "Origin"}
        return {}


class FormTable:
    """The hub's web forms by URL key (looked up in constant time per form)."""

    def __init__(self, forms: list[Form]) -> None:
        self.forms = forms
        self._keys = [(f.settings.key.get_secret_value().encode(), f) for f in forms]

    @classmethod
    def of(cls, hub: Hub) -> FormTable:
        forms = []
        for conn in hub.config.connections.values():
            if conn.hub.connector != "webforms" or not conn.hub.enabled:
                continue
            try:
                settings = hub.registry.settings_for(hub.config, conn)
            except CrmhubError as exc:  # Hub.open validated them; a plugin swap may not have
                log.error("web form %r is not served: %s", conn.name, exc)
                continue
            limiter = RateLimiter(settings.rate_limit, settings.rate_window)
            forms.append(Form(conn.name, settings, limiter))
        return cls(forms)

    def find(self, key: str) -> Form | None:
        given = key.encode()
        found = None
        for expected, form in self._keys:
            if hmac.compare_digest(expected, given):
                found = form
        return found


def _wants_json(request: Request) -> bool:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("application/json", "text/json"):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _refusal(request: Request, status: int, message: str, headers: dict[str, str]) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": message}, status_code=status, headers=headers)
    page = ERROR_PAGE.format(message=html.escape(message))
    return HTMLResponse(page, status_code=status, headers=headers)


def _accepted(request: Request, form: Form, sub: Submission, duplicate: bool) -> Response:
    headers = form.cors(request.headers.get("origin"))
    if _wants_json(request) or not form.settings.browser:
        answer = {"status": "accepted", "id": sub.submission_id, "duplicate": duplicate}
        return JSONResponse(answer, headers=headers)
    if form.settings.thank_you_url:
        return RedirectResponse(form.settings.thank_you_url, status_code=303, headers=headers)
    return HTMLResponse(THANK_YOU, headers=headers)


class FormEndpoints:
    """The handlers, bound to the hub and its form table (plain Starlette endpoints: they
    read the raw request themselves, on a path that must answer fast)."""

    def __init__(self, hub: Hub, table: FormTable) -> None:
        self.hub = hub
        self.table = table

    def inbox(self, request: Request) -> Inbox:
        found: Inbox | None = getattr(request.app.state, "inbox", None)
        return found or Inbox.shared(self.hub.store)

    async def submit(self, request: Request) -> Response:
        form = self.table.find(request.path_params["key"])
        if form is None:
            REJECTED.inc(form=UNKNOWN, reason="unknown_form")
            return _refusal(request, 404, "no such form", {})
        cors = form.cors(request.headers.get("origin"))
        try:
            sub = await intake.accept(form.settings, form.connection, form.limiter, request)
        except ClientDisconnect:  # the sender gave up; nothing stored, nobody to answer
            return Response(status_code=400)
        except MalformedDelivery as exc:
            await self._keep_malformed(request, form, exc)
            return _refusal(request, 400, exc.reason, cors)
        except WebhookRejected as exc:
            code = exc.code if isinstance(exc, FormRefused) else "signature"
            REJECTED.inc(form=form.connection, reason=code)
            log.info("form post refused", extra={"form": form.connection, "reason": code})
            headers = dict(cors)
            if isinstance(exc, FormRefused) and exc.retry_after is not None:
                headers["retry-after"] = str(max(int(exc.retry_after + 0.999), 1))
            return _refusal(request, exc.status, exc.reason, headers)
        sub.form = form.name
        try:
            _, duplicate = await self.inbox(request).add(
                form.connection, sub.submission_id, sub.to_json(), _kept(request), kind=KIND
            )
        except (CrmhubError, SQLAlchemyError, OSError) as exc:
            log.error("inbox write failed for form %r: %s", form.connection, exc)
            return _refusal(request, 503, "the submission could not be stored; send it again", cors)
        SUBMISSIONS.inc(form=form.connection, outcome="duplicate" if duplicate else "accepted")
        return _accepted(request, form, sub, duplicate)

    async def _keep_malformed(self, request: Request, form: Form, exc: MalformedDelivery) -> None:
        body = intake.body_read(request)
        try:
            await self.inbox(request).add(
                form.connection,
                exc.delivery_id or body_id(body),
                body,
                _kept(request),
                status="malformed",
                error=exc.reason,
            )
        except (CrmhubError, SQLAlchemyError, OSError):
            log.exception("could not keep a malformed post to form %r", form.connection)
        REJECTED.inc(form=form.connection, reason="malformed")
        log.warning("malformed form post", extra={"form": form.connection, "reason": exc.reason})

    async def preflight(self, request: Request) -> Response:
        form = self.table.find(request.path_params["key"])
        cors = form.cors(request.headers.get("origin")) if form is not None else {}
        if not cors:
            return Response(status_code=403 if form is not None else 404)
        cors.update(
            {
                "access-control-allow-methods": "POST, GET, OPTIONS",
                "access-control-allow-headers": "Content-Type, Accept",
                "access-control-max-age": "600",
            }
        )
        return Response(status_code=204, headers=cors)

    async def token(self, request: Request) -> Response:
        form = self.table.find(request.path_params["key"])
        if form is None or not form.settings.browser or not form.settings.form_secret:
            return JSONResponse({"error": "no such form"}, status_code=404)
        settings = form.settings
        assert settings.form_secret is not None
        answer = {
            "field": TOKEN_FIELD,
            "token": issue_token(settings.form_secret.get_secret_value(), form.connection),
            "min_seconds": settings.min_seconds,
            "expires_in": settings.max_age_seconds,
        }
        headers = {"cache-control": "no-store", **form.cors(request.headers.get("origin"))}
        return JSONResponse(answer, headers=headers)

    async def snippet(self, request: Request) -> Response:
        form = self.table.find(request.path_params["key"])
        if form is None or not form.settings.browser:
            return JSONResponse({"error": "no such form"}, status_code=404)
        page = render_snippet(self.hub.config, form.connection, form.settings)
        return HTMLResponse(page, headers={"cache-control": "no-store"})


def _kept(request: Request) -> dict[str, str]:
    return {k: v for k in _KEEP_HEADERS if (v := request.headers.get(k))}


def form_routes(hub: Hub) -> APIRouter:
    """The web forms' routes (``WebFormsConnector.routes``); the form table is built now,
    from the configuration the hub was opened with."""
    endpoints = FormEndpoints(hub, FormTable.of(hub))
    router = APIRouter()
    for path, endpoint, method in (
        ("/forms/{key}", endpoints.submit, "POST"),
        ("/forms/{key}", endpoints.preflight, "OPTIONS"),
        ("/forms/{key}/token", endpoints.token, "GET"),
        ("/forms/{key}/token", endpoints.preflight, "OPTIONS"),
        ("/forms/{key}/snippet", endpoints.snippet, "GET"),
    ):
        router.add_route(path, endpoint, methods=[method], include_in_schema=False)
    return router
