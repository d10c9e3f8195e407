"""A fake Microsoft Graph (Outlook mail and contacts) and identity platform on loopback.

``create_sandbox(seed, size=..., contacts=...)`` serves, over HTTPS (msal talks to HTTPS
authorities only; the certificate is ``app.tls[0]``, which clients trust as their CA):

- the identity platform: ``/oauth/<tenant>/v2.0/.well-known/openid-configuration`` and the
  token endpoint, so msal with ``authority = <sandbox>/oauth/<tenant>`` runs unchanged
  (authorization code for a user, client credentials for an application);
- ``/v1.0/{me|users/{id}}/mailFolders/{folder}/messages/microsoft.graph.delta()`` per folder
  (``inbox``, ``sentitems``), and ``/contacts/microsoft.graph.delta()``: pages of 10 unless
  ``Prefer: odata.maxpagesize=N`` (forgotten on the next page unless sent again),
  ``@odata.nextLink`` with a ``$skiptoken``, then ``@odata.deltaLink`` with a
  ``$deltatoken``; ``@removed`` for deleted items; expired tokens answer 410;
- contacts: list, get, create, ``PATCH`` with ``If-Match`` on the change key (412 when it
  is stale), delete;
- ``/v1.0/$batch``: up to 20 requests, each answered (and checked) on its own, each able to
  be throttled on its own (``POST /_outlook/throttle``);
- more than 4 requests of one mailbox in flight: 429 ``ApplicationThrottled`` with
  ``Retry-After`` (Outlook's limit);
- ``/v1.0/subscriptions``: a new subscription is validated by calling its notification URL
  (``validationToken``, answered as text within 10 s) and then receives change
  notifications; lifecycle events on request (``POST /_outlook/lifecycle``).

Controls: :mod:`connectors.outlook.sandbox_controls`.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import threading
import weakref
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from auth.sandbox import SandboxOAuthServer
from connectors.outlook.sandbox_spec import GRAPH_API, graph_error
from connectors.outlook.sandbox_store import (
    CONTACTS,
    Item,
    Mailbox,
    decode_token,
    encode_token,
    iso,
    seed,
)
from hub.sandbox import SandboxApp, WebhookSender
from hub.sandbox.inner import InnerRequest, call
from hub.sandbox.tls import self_signed

__all__ = ["MAILBOX", "TENANT", "OutlookSandbox", "OutlookSandboxApp", "create_sandbox"]

MAILBOX = "me@crmhub-sandbox.example"
TENANT = "sandbox-tenant"
FOLDERS = ("inbox", "sentitems", "deleteditems", "archive")
CONCURRENCY = 4
MAX_LIFETIME = timedelta(minutes=4230)
BATCH_MAX = 20
DEFAULT_PAGE = 10


class OutlookSandbox:
    def __init__(self, seed_value: int, size: int, contacts: int, webhooks: WebhookSender) -> None:
        self.seed, self.size, self.contact_count = seed_value, size, contacts
        self.webhooks = webhooks
        self.oauth = SandboxOAuthServer(access_ttl=3600, seed=seed_value)
        self.lock = threading.RLock()
        self.app: SandboxApp | None = None
        self.reset()
        v = "/v1.0/{base:path}"
        self.routes = Starlette(
            routes=[
                Route(
                    v + "/mailFolders/{folder}/messages/microsoft.graph.delta()",
                    self.api(self.message_delta),
                ),
                Route(v + "/contacts/microsoft.graph.delta()", self.api(self.contact_delta)),
                Route(v + "/contacts", self.api(self.list_contacts), methods=["GET"]),
                Route(v + "/contacts", self.api(self.create_contact), methods=["POST"]),
                Route(v + "/contacts/{id}", self.api(self.get_contact), methods=["GET"]),
                Route(v + "/contacts/{id}", self.api(self.patch_contact), methods=["PATCH"]),
                Route(v + "/contacts/{id}", self.api(self.delete_contact), methods=["DELETE"]),
                Route("/v1.0/subscriptions", self.create_subscription, methods=["POST"]),
                Route("/v1.0/subscriptions/{id}", self.renew_subscription, methods=["PATCH"]),
                Route("/v1.0/subscriptions/{id}", self.delete_subscription, methods=["DELETE"]),
                Route("/v1.0/$batch", self.batch, methods=["POST"]),
                *controls(self),
            ]
        )

    def reset(self) -> None:
        with self.lock:
            self.boxes: dict[str, Mailbox] = {}
            self.subscriptions: dict[str, dict[str, Any]] = {}
            self.in_flight: dict[str, int] = {}
            self.max_in_flight = 0
            self.batch_throttle = 0
            self.throttled = 0
            self.batch_items = 0
            self.notifications = 0
            self.conflicts = 0
            self.renewals = 0
            seed(self.mailbox(MAILBOX), self.seed, self.size, self.contact_count)

    def mailbox(self, address: str) -> Mailbox:
        with self.lock:
            address = address.lower()
            if address not in self.boxes:
                self.boxes[address] = Mailbox(address)
            return self.boxes[address]

    # -- auth and limits ----------------------------------------------------------------

    def who(self, request: Request) -> tuple[str, bool] | Response:
        """(subject, application) of the request's token, or the 401 answer."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        grant = self.oauth.grant_for(token.strip()) if scheme.lower() == "bearer" else None
        if grant is None:
            return graph_error(
                401, "InvalidAuthenticationToken", "Access token is empty or invalid."
            )
        application = grant.subject == grant.client_id
        return grant.subject, application

    def api(self, handler: Callable[[Request, Mailbox], Awaitable[Response]]) -> Any:
        async def endpoint(request: Request) -> Response:
            found = self.who(request)
            if isinstance(found, Response):
                return found
            subject, application = found
            base = request.path_params["base"]
            if base == "me":
                address = MAILBOX if application or "@" not in subject else subject
            elif base.startswith("users/"):
                address = unquote(base.removeprefix("users/"))
                if not application and address.lower() != (subject if "@" in subject else MAILBOX):
                    return graph_error(403, "ErrorAccessDenied", "Access is denied.")
            else:
                return graph_error(404, "BadRequest", "Resource not found for the segment.")
            box = self.mailbox(address)
            with self.lock:
                busy = self.in_flight.get(box.address, 0)
                if busy >= CONCURRENCY:
                    self.throttled += 1
                    return graph_error(
                        429,
                        "ApplicationThrottled",
                        "Application is over its MailboxConcurrency limit.",
                        **{"Retry-After": "1"},
                    )
                self.in_flight[box.address] = busy + 1
                self.max_in_flight = max(self.max_in_flight, busy + 1)
            try:
                return await handler(request, box)
            finally:
                with self.lock:
                    self.in_flight[box.address] -= 1

        return endpoint

    # -- delta ------------------------------------------------------------------------------

    async def message_delta(self, request: Request, box: Mailbox) -> Response:
        folder = request.path_params["folder"].lower()
        if folder not in FOLDERS:
            return graph_error(404, "ErrorInvalidIdMalformed", "Id is malformed.")
        return self._delta(request, box, folder)

    async def contact_delta(self, request: Request, box: Mailbox) -> Response:
        return self._delta(request, box, CONTACTS)

    def _delta(self, request: Request, box: Mailbox, folder: str) -> Response:
        q = request.query_params
        size = _page_size(request.headers.get("prefer", ""))
        state: dict[str, Any] = {"since": None, "offset": 0}
        if q.get("$skiptoken") or q.get("$deltatoken"):
            state = decode_token(q.get("$skiptoken") or q.get("$deltatoken") or "") or {}
            if "since" not in state:
                return graph_error(400, "BadRequest", "The skip or delta token is malformed.")
            if q.get("$deltatoken"):
                state = {**state, "since": state["snapshot"], "offset": 0}
        else:
            state["select"] = q.get("$select")
            state["after"] = _received_after(q.get("$filter"))
        since = state.get("since")
        if since is not None and since < box.expired_before:
            return graph_error(410, "SyncStateNotFound", "The sync state is no longer valid.")
        snapshot = state.get("snapshot", box.seq)
        items = box.changes(folder, since, state.get("after"))
        items = [i for i in items if i.seq <= snapshot] if since is None else items
        offset = int(state.get("offset", 0))
        page = items[offset : offset + size]
        select = set(state["select"].split(",")) if state.get("select") else None
        value = [
            {"@odata.type": i.odata_type, "id": i.id, "@removed": {"reason": "deleted"}}
            if i.removed or i.folder != folder
            else i.render(select)
            for i in page
        ]  # fmt: skip
        base = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"
        body: dict[str, Any] = {"value": value}
        if offset + size < len(items):
            token = encode_token(**{**state, "snapshot": snapshot, "offset": offset + size})
            body["@odata.nextLink"] = f"{base}?$skiptoken={token}"
        else:
            top = max([snapshot] + [i.seq for i in items])
            token = encode_token(**{**state, "snapshot": top, "since": top, "offset": 0})
            body["@odata.deltaLink"] = f"{base}?$deltatoken={token}"
        headers = {}
        if "odata.maxpagesize" in request.headers.get("prefer", ""):
            headers["Preference-Applied"] = f"odata.maxpagesize={size}"
        return JSONResponse(body, headers=headers)

    # -- contacts ---------------------------------------------------------------------------

    async def list_contacts(self, request: Request, box: Mailbox) -> Response:
        q = request.query_params
        top = min(int(q.get("$top") or 10), 1000)
        skip = int(q.get("$skip") or 0)
        items = sorted(box.live(CONTACTS), key=lambda i: i.id)
        select = set(q["$select"].split(",")) if q.get("$select") else None
        body: dict[str, Any] = {"value": [i.render(select) for i in items[skip : skip + top]]}
        if skip + top < len(items):
            base = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"
            extra = f"&$select={quote(q['$select'])}" if q.get("$select") else ""
            body["@odata.nextLink"] = f"{base}?$top={top}&$skip={skip + top}{extra}"
        return JSONResponse(body)

    async def create_contact(self, request: Request, box: Mailbox) -> Response:
        data = await request.json()
        data.pop("@odata.type", None)
        item = box.put(CONTACTS, data)
        return JSONResponse(item.render(None), status_code=201)

    async def get_contact(self, request: Request, box: Mailbox) -> Response:
        item = box.get(request.path_params["id"], CONTACTS)
        if item is None:
            return graph_error(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        return JSONResponse(item.render(None))

    async def patch_contact(self, request: Request, box: Mailbox) -> Response:
        item = box.get(request.path_params["id"], CONTACTS)
        if item is None:
            return graph_error(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        wanted = request.headers.get("if-match")
        if wanted and wanted not in ("*", f'W/"{item.change_key}"', item.change_key):
            with self.lock:
                self.conflicts += 1
            return graph_error(
                412, "ErrorIrresolvableConflict",
                "The send or update operation could not be performed because the change key "
                "passed in the request does not match the current change key for the item.",
            )  # fmt: skip
        changes = await request.json()
        changes.pop("@odata.type", None)
        updated = box.update(item.id, changes)
        assert updated is not None
        return JSONResponse(updated.render(None))

    async def delete_contact(self, request: Request, box: Mailbox) -> Response:
        if not box.remove(request.path_params["id"]):
            return graph_error(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        return Response(status_code=204)

    # -- $batch ---------------------------------------------------------------------------

    async def batch(self, request: Request) -> Response:
        found = self.who(request)
        if isinstance(found, Response):
            return found
        body = await request.json()
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests or len(requests) > BATCH_MAX:
            return graph_error(400, "BadRequest", f"A batch holds 1 to {BATCH_MAX} requests.")
        answers = []
        for inner in requests:
            with self.lock:
                self.batch_items += 1
                throttled = self.batch_throttle > 0
                if throttled:
                    self.batch_throttle -= 1
            if throttled:
                answers.append(
                    {
                        "id": inner.get("id"),
                        "status": 429,
                        "headers": {"Retry-After": "1", "Content-Type": "application/json"},
                        "body": {"error": {"code": "TooManyRequests", "message": "Throttled"}},
                    }
                )
                continue
            answers.append(await self._inner(request, inner))
        return JSONResponse({"responses": answers})

    async def _inner(self, outer: Request, inner: dict[str, Any]) -> dict[str, Any]:
        url = "/v1.0" + str(inner.get("url", ""))
        path, _, query = url.partition("?")
        headers = {str(k).lower(): str(v) for k, v in (inner.get("headers") or {}).items()}
        headers["authorization"] = outer.headers.get("authorization", "")
        raw = b""
        if inner.get("body") is not None:
            raw = json.dumps(inner["body"]).encode()
            headers.setdefault("content-type", "application/json")
        part = InnerRequest(
            str(inner.get("id")), str(inner.get("method", "GET")).upper(), path, query, headers, raw
        )
        spec = self.app.description_for(unquote(path)) if self.app is not None else None
        if spec is not None:
            refused = spec.check_request(part.method, unquote(path), query, headers, raw)
            if refused is not None:
                assert self.app is not None
                self.app.violations.add(refused)
                answer = spec.refuse(refused)
                return _answer(
                    part.content_id, answer.status_code, dict(answer.headers), bytes(answer.body)
                )
        result = await call(self.routes, part)
        if spec is not None and self.app is not None:
            broken = spec.check_response(
                part.method, unquote(path), query, headers, raw,
                result.status, result.headers, result.body,
            )  # fmt: skip
            if broken is not None:
                self.app.violations.add(broken)
        return _answer(part.content_id, result.status, result.headers, result.body)

    # -- subscriptions and notifications --------------------------------------------------

    async def create_subscription(self, request: Request) -> Response:
        found = self.who(request)
        if isinstance(found, Response):
            return found
        body = await request.json()
        expires = _time(body.get("expirationDateTime"))
        if expires is None or expires > datetime.now(UTC) + MAX_LIFETIME:
            return graph_error(
                400, "ExtensionError",
                "Subscription expiration can only be 4230 minutes in the future.",
            )  # fmt: skip
        for key in ("notificationUrl", "lifecycleNotificationUrl"):
            url = body.get(key)
            if url and not await self._validated(str(url)):
                return graph_error(
                    400, "ValidationError",
                    f"Subscription validation request failed. {key} must respond with 200 OK "
                    "to the validation request.",
                )  # fmt: skip
        sub_id = secrets.token_hex(16)
        subscription = {
            "@odata.type": "#microsoft.graph.subscription",
            "id": sub_id,
            "resource": body.get("resource"),
            "applicationId": found[0],
            "changeType": body.get("changeType"),
            "clientState": body.get("clientState"),
            "notificationUrl": body.get("notificationUrl"),
            "lifecycleNotificationUrl": body.get("lifecycleNotificationUrl"),
            "expirationDateTime": iso(expires),
            "creatorId": found[0],
        }
        with self.lock:
            self.subscriptions[sub_id] = subscription
        return JSONResponse(subscription, status_code=201)

    async def _validated(self, url: str) -> bool:
        token = f"Validation: Testing client application reachability {secrets.token_hex(8)}"
        sep = "&" if "?" in url else "?"
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                answer = await client.post(
                    f"{url}{sep}validationToken={quote(token)}",
                    headers={"content-type": "text/plain; charset=utf-8"},
                )
        except httpx.HTTPError:
            return False
        kind = answer.headers.get("content-type", "")
        return answer.status_code == 200 and answer.text == token and kind.startswith("text/plain")

    async def renew_subscription(self, request: Request) -> Response:
        found = self.who(request)
        if isinstance(found, Response):
            return found
        expires = _time((await request.json()).get("expirationDateTime"))
        with self.lock:
            subscription = self.subscriptions.get(request.path_params["id"])
            if subscription is None:
                return graph_error(404, "ResourceNotFound", "The object was not found.")
            if expires is None or expires > datetime.now(UTC) + MAX_LIFETIME:
                return graph_error(400, "ExtensionError", "Subscription expiration is invalid.")
            subscription["expirationDateTime"] = iso(expires)
            self.renewals += 1
            return JSONResponse(dict(subscription))

    async def delete_subscription(self, request: Request) -> Response:
        with self.lock:
            gone = self.subscriptions.pop(request.path_params["id"], None)
        if gone is None:
            return graph_error(404, "ResourceNotFound", "The object was not found.")
        return Response(status_code=204)

    async def notify(self, box: Mailbox, item: Item, change: str) -> int:
        """Post a change notification to every subscription watching ``item``'s folder."""
        sent = 0
        for subscription in self._watching(box, item.folder):
            resource = f"Users/{box.address}/Messages/{item.id}"
            kind = "#Microsoft.Graph.Message"
            if item.folder == CONTACTS:
                resource, kind = (
                    f"Users/{box.address}/Contacts/{item.id}",
                    "#Microsoft.Graph.Contact",
                )
            note = {
                "subscriptionId": subscription["id"],
                "subscriptionExpirationDateTime": subscription["expirationDateTime"],
                "changeType": change,
                "resource": resource,
                "resourceData": {
                    "@odata.type": kind,
                    "@odata.id": resource,
                    "@odata.etag": f'W/"{item.change_key}"',
                    "id": item.id,
                },
                "clientState": subscription.get("clientState"),
                "tenantId": TENANT,
            }
            await self.webhooks.send({"value": [note]}, url=subscription["notificationUrl"])
            sent += 1
        with self.lock:
            self.notifications += sent
        return sent

    def _watching(self, box: Mailbox, folder: str) -> list[dict[str, Any]]:
        now = iso(datetime.now(UTC))
        with self.lock:
            found = []
            for s in self.subscriptions.values():
                resource = str(s.get("resource", "")).lower()
                mine = box.address in resource or resource.startswith(("me/", "/me/"))
                wanted = folder in resource if folder != CONTACTS else resource.endswith("contacts")
                if mine and wanted and s["expirationDateTime"] > now:
                    found.append(s)
            return found

    async def lifecycle(self, subscription_id: str, event: str) -> bool:
        with self.lock:
            subscription = self.subscriptions.get(subscription_id)
            if subscription is None or not subscription.get("lifecycleNotificationUrl"):
                return False
            if event == "subscriptionRemoved":
                del self.subscriptions[subscription_id]
        note = {
            "subscriptionId": subscription_id,
            "subscriptionExpirationDateTime": subscription["expirationDateTime"],
            "tenantId": TENANT,
            "clientState": subscription.get("clientState"),
            "lifecycleEvent": event,
        }
        await self.webhooks.send({"value": [note]}, url=subscription["lifecycleNotificationUrl"])
        return True


def _answer(content_id: str, status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    answer: dict[str, Any] = {"id": content_id, "status": status, "headers": {}}
    for name, value in headers.items():
        if name.lower() in ("content-type", "retry-after", "etag", "location"):
            answer["headers"][name] = value
    if body:
        answer["body"] = json.loads(body)
    return answer


def _page_size(prefer: str) -> int:
    for part in prefer.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "odata.maxpagesize" and value.strip().isdigit():
            return max(1, min(int(value), 1000))
    return DEFAULT_PAGE


def _received_after(text: str | None) -> str | None:
    """``receivedDateTime ge 2024-05-01T00:00:00Z`` (the one filter message delta takes)."""
    if not text:
        return None
    parts = text.split()
    if len(parts) == 3 and parts[0] == "receivedDateTime" and parts[1] in ("ge", "gt"):
        return parts[2]
    return None


def _time(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def controls(state: OutlookSandbox) -> list[Route]:
    from connectors.outlook.sandbox_controls import control_routes

    return control_routes(state)


class OutlookSandboxApp(SandboxApp):
    """The served app; ``provider`` holds the mailboxes, subscriptions and test controls."""

    provider: OutlookSandbox


def create_sandbox(
    seed: int = 0,
    size: int = 200,
    contacts: int = 50,
    validate: bool = True,
    tls_folder: Path | None = None,
) -> OutlookSandboxApp:
    """The sandbox with ``size`` messages and ``contacts`` contacts in ``MAILBOX``, served
    over HTTPS with a new self-signed certificate (in ``tls_folder``, default a temporary
    folder). The application ``sandbox-client``/``sandbox-secret`` may use any mailbox."""
    webhooks = WebhookSender()
    state = OutlookSandbox(seed, size, contacts, webhooks)
    folder = tls_folder or Path(tempfile.mkdtemp(prefix="crmhub-outlook-sandbox-"))
    app = OutlookSandboxApp(
        state.routes,
        name="outlook",
        seed=seed,
        throttle=lambda: graph_error(
            429, "TooManyRequests", "Too many requests.", **{"Retry-After": "1"}
        ),
        on_reset=state.reset,
        oauth=state.oauth,
        webhooks=webhooks,
        spec=GRAPH_API if validate else None,
        tls=self_signed(folder, "outlook-sandbox"),
    )
    state.app = app
    app.provider = state
    if tls_folder is None:  # a certificate made for this sandbox goes with it
        weakref.finalize(app, shutil.rmtree, folder, True)
    return app
