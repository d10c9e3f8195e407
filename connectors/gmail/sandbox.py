"""A fake Gmail and People API on loopback, which google-api-python-client talks to unchanged.

``create_sandbox(seed, size=...)`` serves one Google Workspace domain:

- the discovery documents (``/discovery/v1/apis/{gmail,people}/v1/rest``, from ``spec/``
  with ``rootUrl`` pointing at the sandbox), so ``googleapiclient.discovery.build(...,
  discoveryServiceUrl=<sandbox>/discovery/v1/apis/{api}/{apiVersion}/rest)`` works;
- Gmail under ``/gmail/v1/users/{userId}/`` (profile, messages list/get, history, watch,
  stop) over mailboxes with history ids that grow with gaps and expire (404);
- People under ``/v1/people...`` (:mod:`connectors.gmail.sandbox_people_api`);
- Google's batch endpoint ``/batch`` (multipart/mixed, up to 100 calls, each part answered
  and checked like a request of its own);
- per-user quota in Gmail's units (list 5, get 5, history 2, profile 1, watch 100), default
  15,000 a minute: beyond it ``403 userRateLimitExceeded`` (or 429 with ``quota_status``);
- Pub/Sub push deliveries of new mail to the URL set with ``POST /_sandbox/webhooks``
  (the push endpoint of the topic's subscription), optionally with an OIDC token signed by
  the sandbox (certificates at ``/oauth2/v1/certs``);
- the OAuth server (``/oauth/...``): user tokens by the code flow, service-account tokens by
  ``jwt-bearer`` (:func:`service_account_info` makes a key file that the sandbox trusts).

The default mailbox is ``MAILBOX`` with ``size`` messages and ``contacts`` contacts; a
token's subject names its mailbox (a service account's ``sub``), any other subject reads
the default one. Controls: see :mod:`connectors.gmail.sandbox_controls`.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from auth.sandbox import GrantInfo, SandboxOAuthServer
from connectors.gmail.pubsub_signer import PushSigner
from connectors.gmail.sandbox_batch import BatchError, answer_batch, parse_batch
from connectors.gmail.sandbox_mailbox import Mailbox, seed_messages
from connectors.gmail.sandbox_people import PeopleBook, seed_people
from connectors.gmail.sandbox_spec import GMAIL_API, PEOPLE_API, SPEC_DIR, google_error
from hub.sandbox import SandboxApp, WebhookSender
from hub.sandbox.inner import InnerAnswer, call

__all__ = ["MAILBOX", "GmailSandbox", "GmailSandboxApp", "create_sandbox", "service_account_info"]

MAILBOX = "me@crmhub-sandbox.example"
DOMAIN = "crmhub-sandbox.example"
READ_SCOPES = ("gmail.readonly", "gmail.modify", "https://mail.google.com/")
UNITS = {"profile": 1, "list": 5, "get": 5, "history": 2, "watch": 100, "stop": 50}
WATCH_DAYS = 7
Handler = Callable[[Request, "Account"], Awaitable[Response]]


class Account:
    """Whose request this is: the mailbox, contacts and scope of the token."""

    def __init__(self, address: str, grant: GrantInfo) -> None:
        self.address = address
        self.scope = grant.scope

    @property
    def metadata_only(self) -> bool:
        return "gmail.metadata" in self.scope and not any(s in self.scope for s in READ_SCOPES)

    @property
    def contacts(self) -> bool:
        return "auth/contacts" in self.scope


class GmailSandbox:
    """The provider's state and routes."""

    def __init__(self, seed: int, size: int, contacts: int, webhooks: WebhookSender) -> None:
        self.seed, self.size, self.contact_count = seed, size, contacts
        self.webhooks = webhooks
        self.oauth = SandboxOAuthServer(access_ttl=3600, rotate_refresh_tokens=False, seed=seed)
        self.signer = PushSigner()
        self.lock = threading.RLock()
        self.quota_units, self.quota_window, self.quota_status = 15_000, 60.0, 403
        self.push_subscription = "projects/crmhub-sandbox/subscriptions/gmail-push"
        self.push_audience: str | None = None
        self.app: SandboxApp | None = None  # set by create_sandbox: batch parts are checked
        self.reset()
        from connectors.gmail.sandbox_people_api import people_routes

        self.routes = Starlette(
            routes=[
                Route("/discovery/v1/apis/{api}/{version}/rest", self.discovery),
                Route("/oauth2/v1/certs", self.certs),
                Route("/gmail/v1/users/{userId}/profile", self.api(self.profile)),
                Route("/gmail/v1/users/{userId}/watch", self.api(self.watch), methods=["POST"]),
                Route("/gmail/v1/users/{userId}/stop", self.api(self.stop), methods=["POST"]),
                Route("/gmail/v1/users/{userId}/messages", self.api(self.list_messages)),
                Route("/gmail/v1/users/{userId}/messages/{id}", self.api(self.get_message)),
                Route("/gmail/v1/users/{userId}/history", self.api(self.history)),
                *people_routes(self),
                *[Route(p, self.batch, methods=["POST"]) for p in BATCH_PATHS],
                *controls(self),
            ]
        )

    def reset(self) -> None:
        with self.lock:
            self.now_ms = int(time.time() * 1000)
            self.mailboxes: dict[str, Mailbox] = {}
            self.books: dict[str, PeopleBook] = {}
            self.watches: dict[str, tuple[str, int]] = {}
            self.spent: dict[str, deque[tuple[float, int]]] = {}
            self.units = 0
            self.batch_items = 0
            self.pushes = 0
            mailbox = self.mailbox(MAILBOX)
            seed_messages(mailbox, self.seed, self.size, self.now_ms)
            seed_people(self.book(MAILBOX), self.seed, self.contact_count)

    def mailbox(self, address: str) -> Mailbox:
        with self.lock:
            address = address.lower()
            if address not in self.mailboxes:
                self.mailboxes[address] = Mailbox(address)
            return self.mailboxes[address]

    def book(self, address: str) -> PeopleBook:
        with self.lock:
            address = address.lower()
            if address not in self.books:
                self.books[address] = PeopleBook(lambda: datetime.now(UTC))
            return self.books[address]

    # -- auth and quota -----------------------------------------------------------------

    def account(self, request: Request) -> Account | Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        grant = self.oauth.grant_for(token.strip()) if scheme.lower() == "bearer" else None
        if grant is None:
            return google_error(
                401,
                "Request had invalid authentication credentials.",
                "authError",
                status="UNAUTHENTICATED",
            )
        subject = grant.subject.lower()
        address = subject if subject.endswith("@" + DOMAIN) else MAILBOX
        return Account(address, grant)

    def charge(self, account: Account, units: int) -> Response | None:
        """Count ``units`` against the user's quota; Google's answer when it is spent."""
        now = time.monotonic()
        with self.lock:
            spent = self.spent.setdefault(account.address, deque())
            while spent and spent[0][0] <= now - self.quota_window:
                spent.popleft()
            used = sum(u for _, u in spent)
            if used + units > self.quota_units:
                status = self.quota_status
                message = "User-rate limit exceeded.  Retry after some time."
                reason = "userRateLimitExceeded" if status == 403 else "rateLimitExceeded"
                return google_error(status, message, reason, domain="usageLimits")
            spent.append((now, units))
            self.units += units
            return None

    def api(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            account = self.account(request)
            if isinstance(account, Response):
                return account
            user = request.path_params.get("userId", "me")
            if user != "me" and user.lower() != account.address:
                return google_error(403, "Delegation denied for " + account.address, "forbidden")
            return await handler(request, account)

        return endpoint

    # -- discovery and certificates -------------------------------------------------------

    async def discovery(self, request: Request) -> Response:
        api, version = request.path_params["api"], request.path_params["version"]
        path = SPEC_DIR / f"{api}.{version}.json"
        if api not in ("gmail", "people") or not path.exists():
            return google_error(404, f"Discovery document for {api} {version} not found.")
        document = json.loads(path.read_text(encoding="utf-8"))
        root = f"{request.url.scheme}://{request.url.netloc}/"
        document["rootUrl"] = root
        document["baseUrl"] = root + document.get("servicePath", "")
        document["mtlsRootUrl"] = root
        return JSONResponse(document)

    async def certs(self, request: Request) -> Response:
        return JSONResponse(self.signer.certs())

    # -- Gmail ------------------------------------------------------------------------

    async def profile(self, request: Request, account: Account) -> Response:
        if answer := self.charge(account, UNITS["profile"]):
            return answer
        box = self.mailbox(account.address)
        return JSONResponse(
            {
                "emailAddress": box.address,
                "messagesTotal": len(box.messages),
                "threadsTotal": len({m.thread_id for m in box.messages.values()}),
                "historyId": str(box.history_id),
            }
        )

    async def list_messages(self, request: Request, account: Account) -> Response:
        if answer := self.charge(account, UNITS["list"]):
            return answer
        q = request.query_params
        if q.get("q") and account.metadata_only:
            return google_error(403, "Metadata scope does not support 'q' parameter", "forbidden")
        size = min(int(q.get("maxResults") or 100), 500)
        found = self.mailbox(account.address).search(
            q.get("q", ""), q.getlist("labelIds"), q.get("includeSpamTrash") == "true"
        )
        start = _offset(q.get("pageToken"))
        if start is None:
            return google_error(400, "Invalid pageToken", "invalidArgument")
        page = found[start : start + size]
        body: dict[str, Any] = {
            "messages": [{"id": m.id, "threadId": m.thread_id} for m in page],
            "resultSizeEstimate": len(found),
        }
        if start + size < len(found):
            body["nextPageToken"] = _token(start + size)
        if not page:
            del body["messages"]
        return JSONResponse(body)

    async def get_message(self, request: Request, account: Account) -> Response:
        if answer := self.charge(account, UNITS["get"]):
            return answer
        fmt = request.query_params.get("format", "full")
        if fmt in ("full", "raw") and account.metadata_only:
            return google_error(
                403, f"Metadata scope doesn't allow format {fmt.upper()}", "forbidden"
            )
        box = self.mailbox(account.address)
        with box.lock:
            message = box.messages.get(request.path_params["id"])
            if message is None:
                return google_error(404, "Requested entity was not found.", "notFound")
            wanted = request.query_params.getlist("metadataHeaders")
            return JSONResponse(message.render(fmt, wanted))

    async def history(self, request: Request, account: Account) -> Response:
        if answer := self.charge(account, UNITS["history"]):
            return answer
        q = request.query_params
        box = self.mailbox(account.address)
        try:
            start = int(q.get("startHistoryId") or 0)
        except ValueError:
            return google_error(400, "Invalid startHistoryId", "invalidArgument")
        records = box.changes(start, set(q.getlist("historyTypes")), q.get("labelId"))
        if records is None:
            return google_error(404, "Requested entity was not found.", "notFound")
        size = min(int(q.get("maxResults") or 100), 500)
        at = _offset(q.get("pageToken")) or 0
        body: dict[str, Any] = {"historyId": str(box.history_id)}
        if records[at : at + size]:
            body["history"] = records[at : at + size]
        if at + size < len(records):
            body["nextPageToken"] = _token(at + size)
        return JSONResponse(body)

    async def watch(self, request: Request, account: Account) -> Response:
        if answer := self.charge(account, UNITS["watch"]):
            return answer
        body = await request.json()
        topic = str(body.get("topicName", ""))
        if not topic.startswith("projects/") or "/topics/" not in topic:
            return google_error(400, "Invalid topicName does not match projects/*/topics/*")
        box = self.mailbox(account.address)
        expiration = int(time.time() * 1000) + WATCH_DAYS * 86_400_000
        with self.lock:
            self.watches[box.address] = (topic, expiration)
        return JSONResponse({"historyId": str(box.history_id), "expiration": str(expiration)})

    async def stop(self, request: Request, account: Account) -> Response:
        if answer := self.charge(account, UNITS["stop"]):
            return answer
        with self.lock:
            self.watches.pop(account.address, None)
        return Response(status_code=204)

    # -- new mail and its push ----------------------------------------------------------

    async def deliver(self, address: str, **message: Any) -> dict[str, Any]:
        """A message arrives in (or is sent from) ``address``; the watch pushes it."""
        box = self.mailbox(address)
        added = box.add(**message)
        await self.push(box)
        return {"id": added.id, "threadId": added.thread_id, "historyId": str(box.history_id)}

    async def push(self, box: Mailbox) -> None:
        with self.lock:
            watch = self.watches.get(box.address)
        if watch is None or watch[1] < time.time() * 1000 or not self.webhooks.url:
            return
        with self.lock:
            self.pushes += 1
            serial = self.pushes
        data = {"emailAddress": box.address, "historyId": box.history_id}
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        message_id = f"{self.seed}{serial:012d}"
        envelope = {
            "message": {
                "data": base64.b64encode(json.dumps(data).encode()).decode(),
                "attributes": {},
                "messageId": message_id,
                "message_id": message_id,
                "publishTime": now,
                "publish_time": now,
            },
            "subscription": self.push_subscription,
        }
        headers = {}
        if self.push_audience:
            token = self.signer.token(self.push_audience)
            headers["Authorization"] = f"Bearer {token}"
        await self.webhooks.send(envelope, headers)

    # -- batch ----------------------------------------------------------------------------

    async def batch(self, request: Request) -> Response:
        try:
            parts = parse_batch(request.headers.get("content-type", ""), await request.body())
        except BatchError as exc:
            return google_error(400, str(exc), "invalidArgument")
        outer_auth = request.headers.get("authorization")
        answered = []
        for part in parts:
            if outer_auth and "authorization" not in part.headers:
                part.headers["authorization"] = outer_auth
            with self.lock:
                self.batch_items += 1
            answered.append((part.content_id, await self._part(part)))
        body, kind = answer_batch(answered)
        return Response(body, media_type=kind)

    async def _part(self, part: Any) -> InnerAnswer:
        """One part, held to its description like a request of its own."""
        path = unquote(part.path)
        spec = self.app.description_for(path) if self.app is not None else None
        if spec is not None:
            refused = spec.check_request(part.method, path, part.query, part.headers, part.body)
            if refused is not None:
                assert self.app is not None
                self.app.violations.add(refused)
                response = spec.refuse(refused)
                return InnerAnswer(
                    response.status_code, dict(response.headers), bytes(response.body)
                )
        answer = await call(self.routes, part)
        if spec is not None and self.app is not None:
            broken = spec.check_response(
                part.method, path, part.query, part.headers, part.body,
                answer.status, answer.headers, answer.body,
            )  # fmt: skip
            if broken is not None:
                self.app.violations.add(broken)
        return answer


BATCH_PATHS = ("/batch", "/batch/gmail/v1", "/batch/people/v1")


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode().rstrip("=")


def _offset(token: str | None) -> int | None:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        return int(text[1:]) if text.startswith("o") else None
    except (ValueError, UnicodeDecodeError):
        return None


def throttle_answer() -> Response:
    """Google's answer to too many requests (the fault switch ``burst_429``)."""
    return google_error(429, "Too many concurrent requests for user", "rateLimitExceeded")


def controls(state: GmailSandbox) -> list[Route]:
    from connectors.gmail.sandbox_controls import control_routes

    return control_routes(state)


class GmailSandboxApp(SandboxApp):
    """The served app; ``provider`` holds the mailboxes, contacts and the test controls."""

    provider: GmailSandbox


def service_account_info(
    app: GmailSandboxApp, base_url: str, name: str = "crmhub-sync"
) -> dict[str, Any]:
    """A service-account key file (JSON) that the sandbox at ``base_url`` trusts."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    state = app.provider
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = f"{name}@crmhub-sandbox.iam.gserviceaccount.com"
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    state.oauth.register_service_account(email, public)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "project_id": "crmhub-sandbox",
        "private_key_id": f"sbx{abs(hash(email)) % 10**8:08d}",
        "private_key": private,
        "client_email": email,
        "client_id": "100000000000000000001",
        "token_uri": f"{base_url.rstrip('/')}/oauth/token",
    }


def create_sandbox(
    seed: int = 0, size: int = 200, contacts: int = 50, validate: bool = True
) -> GmailSandboxApp:
    """The sandbox with ``size`` messages and ``contacts`` contacts in ``MAILBOX``.

    ``validate=False`` serves without holding traffic to the descriptions (benchmarks that
    time the connector alone)."""
    webhooks = WebhookSender()
    state = GmailSandbox(seed, size, contacts, webhooks)
    app = GmailSandboxApp(
        state.routes,
        name="gmail",
        seed=seed,
        throttle=throttle_answer,
        on_reset=state.reset,
        oauth=state.oauth,
        webhooks=webhooks,
        spec=(GMAIL_API, PEOPLE_API) if validate else None,
    )
    state.app = app
    app.provider = state
    return app
