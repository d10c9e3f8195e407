"""A fake Xero on loopback, for tests, benchmarks and the demo.

``create_sandbox(seed, size=..., invoices=..., tenants=...)`` serves organisations
(:class:`~connectors.xero.sandbox_org.Organisation`) behind the shared OAuth server
(``/oauth/``: PKCE, 30-minute access tokens, refresh tokens rotated on every use):

- ``GET /connections``: the organisations the grant reaches;
- ``/api.xro/2.0``: ``GET /Contacts``, ``POST /Contacts`` (``summarizeErrors=false``: errors
  per contact), ``GET /Contacts/{id}``, ``GET /Invoices``, ``POST /Invoices`` (drafts),
  ``GET /Invoices/{id}``, ``GET /CreditNotes/{id}``, each with ``xero-tenant-id``, held to
  Xero's description (:mod:`connectors.xero.sandbox_spec`);
- Xero's limits and headers (:mod:`connectors.xero.sandbox_limits`), ``Idempotency-Key``
  (a key seen before gets the first answer again);
- webhooks signed with ``WEBHOOK_KEY`` for changes made through the controls, and Xero's
  intent-to-receive check (:meth:`XeroSandbox.intent_to_receive`).

Controls: the :class:`XeroSandbox` methods (``org``, ``edit``, ``archive``, ``pay``,
``credit``, ``notify``), over HTTP ``POST /_xero/edit`` (``{"tenant", "id", "changes"}``),
``/_xero/pay``, ``/_xero/credit`` and ``/_xero/limits`` (new limit values).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from auth.sandbox import SandboxOAuthServer
from connectors.xero.sandbox_controls import XeroControls
from connectors.xero.sandbox_limits import Limits
from connectors.xero.sandbox_org import Organisation, XeroError, not_found
from connectors.xero.sandbox_spec import XERO_API
from hub.sandbox import SandboxApp, WebhookSender

__all__ = ["TENANTS", "WEBHOOK_KEY", "XeroSandbox", "XeroSandboxApp", "create_sandbox"]

WEBHOOK_KEY = "sandbox-webhook-key"
TENANTS = (
    ("0a8f0e2c-6a6d-4e8e-9f64-1c6e36a2b001", "Demo Company (NZ)"),
    ("0a8f0e2c-6a6d-4e8e-9f64-1c6e36a2b002", "Demo Company (UK)"),
    ("0a8f0e2c-6a6d-4e8e-9f64-1c6e36a2b003", "Demo Company (US)"),
)
API = "/api.xro/2.0"
_UNAUTHORIZED = {
    "Type": None,
    "Title": "Unauthorized",
    "Status": 401,
    "Detail": "AuthenticationUnsuccessful",
}
_FORBIDDEN = {
    "Type": None,
    "Title": "Forbidden",
    "Status": 403,
    "Detail": "AuthenticationUnsuccessful",
}


def _since(value: str | None) -> float | None:
    """``If-Modified-Since`` (ISO, or an HTTP date) as epoch milliseconds."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            raise XeroError(
                400, {"Message": f"If-Modified-Since {value!r} is not a time"}
            ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() * 1000


def _envelope(key: str, items: list[dict[str, Any]], page: dict[str, int] | None = None) -> dict:
    body: dict[str, Any] = {
        "Id": "0f0e0d0c-0b0a-4909-8807-060504030201",
        "Status": "OK",
        "ProviderName": "crmhub sandbox",
        "DateTimeUTC": f"/Date({int(time.time() * 1000)})/",
    }
    if page is not None:
        body["pagination"] = page
    body[key] = items
    return body


class XeroSandbox(XeroControls):
    """The provider routes, their state and the test controls."""

    def __init__(
        self,
        orgs: list[Organisation],
        oauth: SandboxOAuthServer,
        webhooks: WebhookSender,
        limits: Limits,
    ) -> None:
        self.orgs = {o.tenant_id: o for o in orgs}
        self.oauth = oauth
        self.webhooks = webhooks
        self.limits = limits
        self.webhook_key = WEBHOOK_KEY
        self.idempotency: dict[tuple[str, str], tuple[int, bytes]] = {}
        self.batch_sizes: list[int] = []
        self.requests: list[dict[str, str | None]] = []
        """The API requests with the headers that matter here (tenant, keys, times)."""
        self.service_time = 0.0
        self.sequence = 0
        self.app = Starlette(
            routes=[
                Route("/connections", self.connections, methods=["GET"]),
                Route(f"{API}/Contacts", self._api(self.get_contacts), methods=["GET"]),
                Route(f"{API}/Contacts", self._api(self.post_contacts), methods=["POST"]),
                Route(f"{API}/Contacts/{{id}}", self._api(self.get_contact), methods=["GET"]),
                Route(f"{API}/Invoices", self._api(self.get_invoices), methods=["GET"]),
                Route(f"{API}/Invoices", self._api(self.post_invoices), methods=["POST"]),
                Route(f"{API}/Invoices/{{id}}", self._api(self.get_invoice), methods=["GET"]),
                Route(
                    f"{API}/CreditNotes/{{id}}", self._api(self.get_credit_note), methods=["GET"]
                ),
                Route("/_xero/edit", self._control_edit, methods=["POST"]),
                Route("/_xero/pay", self._control_pay, methods=["POST"]),
                Route("/_xero/credit", self._control_credit, methods=["POST"]),
                Route("/_xero/limits", self._control_limits, methods=["POST"]),
            ]
        )

    def org(self, which: int | str = 0) -> Organisation:
        """An organisation by position or tenant id."""
        if isinstance(which, int):
            return list(self.orgs.values())[which]
        return self.orgs[which]

    # -- auth, tenants, limits ------------------------------------------------------------

    def _token(self, request: Request) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        return token if scheme.lower() == "bearer" and self.oauth.validate(token) else None

    async def connections(self, request: Request) -> Response:
        if self._token(request) is None:
            return JSONResponse(_UNAUTHORIZED, status_code=401)
        return JSONResponse(
            [
                {
                    "id": f"c0{tenant[2:]}",
                    "authEventId": "d99ecdfe-391d-43d2-b834-17636ba90e8d",
                    "tenantId": tenant,
                    "tenantType": "ORGANISATION",
                    "tenantName": org.name,
                    "createdDateUtc": "2026-01-01T00:00:00.0000000",
                    "updatedDateUtc": "2026-01-01T00:00:00.0000000",
                }
                for tenant, org in self.orgs.items()
            ]
        )

    def _api(
        self, handler: Callable[[Request, Organisation], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if self._token(request) is None:
                return JSONResponse(_UNAUTHORIZED, status_code=401)
            self.requests.append(
                {
                    "method": request.method,
                    "path": request.url.path,
                    "query": request.url.query,
                    "tenant": request.headers.get("xero-tenant-id"),
                    "idempotency_key": request.headers.get("idempotency-key"),
                    "if_modified_since": request.headers.get("if-modified-since"),
                }
            )
            org = self.orgs.get(request.headers.get("xero-tenant-id", ""))
            if org is None:
                return JSONResponse(_FORBIDDEN, status_code=403)
            refusal = self.limits.enter(org.tenant_id)
            if refusal is not None:
                headers = {
                    "Retry-After": str(refusal.retry_after),
                    "X-Rate-Limit-Problem": refusal.problem,
                    **self.limits.headers(org.tenant_id),
                }
                return Response(status_code=429, headers=headers)
            try:
                if self.service_time:
                    await asyncio.sleep(self.service_time)
                response = await handler(request, org)
            except XeroError as exc:
                response = JSONResponse(exc.body, status_code=exc.status)
            finally:
                self.limits.leave(org.tenant_id)
            response.headers.update(self.limits.headers(org.tenant_id))
            return response

        return endpoint

    # -- reading --------------------------------------------------------------------------

    def _paged(self, key: str, found: list[dict[str, Any]], request: Request) -> Response:
        raw = request.query_params.get("page")
        page = None
        if raw is not None:
            try:
                number = max(1, int(raw))
            except ValueError:
                raise XeroError(400, {"Message": "page must be a number"}) from None
            count = len(found)
            found = found[(number - 1) * 100 : number * 100]
            page = {
                "page": number,
                "pageSize": 100,
                "pageCount": -(-count // 100),
                "itemCount": count,
            }
        items = [Organisation.render(i) for i in found]
        return JSONResponse(_envelope(key, items, page))

    async def get_contacts(self, request: Request, org: Organisation) -> Response:
        since = _since(request.headers.get("if-modified-since"))
        found = org.list_contacts(dict(request.query_params), since)
        return self._paged("Contacts", found, request)

    async def get_contact(self, request: Request, org: Organisation) -> Response:
        contact = org.contacts.get(request.path_params["id"])
        if contact is None:
            raise not_found()
        return JSONResponse(_envelope("Contacts", [Organisation.render(contact)]))

    async def get_invoices(self, request: Request, org: Organisation) -> Response:
        since = _since(request.headers.get("if-modified-since"))
        found = org.list_invoices(dict(request.query_params), since)
        return self._paged("Invoices", found, request)

    async def get_invoice(self, request: Request, org: Organisation) -> Response:
        invoice = org.invoices.get(request.path_params["id"])
        if invoice is None:
            raise not_found()
        return JSONResponse(_envelope("Invoices", [Organisation.render(invoice)]))

    async def get_credit_note(self, request: Request, org: Organisation) -> Response:
        note = org.credit_notes.get(request.path_params["id"])
        if note is None:
            raise not_found()
        return JSONResponse(_envelope("CreditNotes", [Organisation.render(note)]))

    # -- writing --------------------------------------------------------------------------

    async def _write(
        self,
        request: Request,
        org: Organisation,
        key: str,
        write: Callable[[dict[str, Any]], tuple[dict[str, Any], list[str]]],
    ) -> Response:
        idem = request.headers.get("idempotency-key")
        if idem is not None and len(idem) > 128:
            raise XeroError(400, {"Message": "Idempotency-Key is longer than 128 characters"})
        if idem and (org.tenant_id, idem) in self.idempotency:
            status, content = self.idempotency[(org.tenant_id, idem)]
            return Response(content, status_code=status, media_type="application/json")
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise XeroError(400, {"Message": "The request body is not JSON"}) from None
        items = body.get(key) if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise XeroError(400, {"Message": f"The request has no {key} list"})
        self.batch_sizes.append(len(items))
        summarize = request.query_params.get("summarizeErrors", "true").lower() != "false"
        answered = []
        failed = False
        with org.lock:
            for item in items:
                done, errors = write(item)
                failed = failed or bool(errors)
                answered.append(
                    done if errors else {**Organisation.render(done), "StatusAttributeString": "OK"}
                )
        if failed and summarize:
            error = {
                "ErrorNumber": 10,
                "Type": "ValidationException",
                "Message": "A validation exception occurred",
                "Elements": answered,
            }
            status, content = 400, json.dumps(error).encode()
        else:
            status, content = 200, json.dumps(_envelope(key, answered)).encode()
        if idem:
            self.idempotency[(org.tenant_id, idem)] = (status, content)
        return Response(content, status_code=status, media_type="application/json")

    async def post_contacts(self, request: Request, org: Organisation) -> Response:
        return await self._write(request, org, "Contacts", org.write_contact)

    async def post_invoices(self, request: Request, org: Organisation) -> Response:
        return await self._write(request, org, "Invoices", org.write_invoice)


class XeroSandboxApp(SandboxApp):
    """The served app; ``provider`` holds the organisations and the test controls."""

    provider: XeroSandbox


def throttle_answer() -> Response:
    """Xero's answer over the minute limit (the fault switch's 429 bursts)."""
    return Response(status_code=429, headers={"Retry-After": "1", "X-Rate-Limit-Problem": "minute"})


def create_sandbox(
    seed: int = 0,
    size: int = 40,
    invoices: int | None = None,
    tenants: int = 1,
    webhook_url: str | None = None,
    validate: bool = True,
    limits: Limits | None = None,
    clock: Callable[[], float] = time.time,
) -> XeroSandboxApp:
    """The Xero sandbox: ``tenants`` organisations, the first with ``size`` contacts and
    ``invoices`` invoices (default ``size``), held to Xero's description (``validate=False``
    only for benchmarks that measure the connector, not the checks)."""
    orgs = []
    for n, (tenant_id, name) in enumerate(TENANTS[: max(1, tenants)]):
        org = Organisation(tenant_id, name, seed=seed, clock=clock)
        if n == 0:
            org.seed_records(size, size if invoices is None else invoices)
        orgs.append(org)
    oauth = SandboxOAuthServer(access_ttl=1800.0, seed=seed)
    webhooks = WebhookSender(url=webhook_url)
    limit = limits or Limits(clock=clock)
    provider = XeroSandbox(orgs, oauth, webhooks, limit)
    webhooks.sign = provider.sign

    def reset() -> None:
        limit.reset()
        provider.idempotency.clear()
        provider.requests.clear()

    app = XeroSandboxApp(
        provider.app,
        name="xero",
        seed=seed,
        on_reset=reset,
        throttle=throttle_answer,
        oauth=oauth,
        webhooks=webhooks,
        spec=XERO_API if validate else None,
    )
    app.provider = provider
    return app
