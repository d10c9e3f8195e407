"""A fake Mailchimp Marketing API v3 on loopback, for tests, benchmarks and the demo.

``create_sandbox(seed, size=...)`` serves one audience (``LIST_ID``) under ``/3.0/`` with
:class:`~connectors.mailchimp.sandbox_audience.Audience` as its state: members by hash
(GET, PUT, PATCH, DELETE = archive, tags), the listing with Mailchimp's filters and paging,
batch subscribe with per-member errors. Requests authenticate with HTTP Basic and
``SANDBOX_API_KEY`` (any user name) or an OAuth token of the built-in authorization server
(``/oauth/authorize``, ``/oauth/token``; tokens never expire) whose metadata is at
``/oauth2/metadata``. More than 10 requests of one account in flight get Mailchimp's 429.

Controls for tests: the ``MailchimpSandbox`` methods (``edit``, ``unsubscribe``, ``clean``,
``archive``, ``add``), also over HTTP as ``POST /_mailchimp/edit`` (JSON: ``email`` and the
changes) and ``POST /_mailchimp/service_time``. A control edit is "in the UI": it moves
``last_changed`` and, when a webhook URL is set (``/_sandbox/webhooks``, with its
``?secret=``), posts Mailchimp's form-encoded webhook.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from auth.sandbox import SandboxOAuthServer
from connectors.mailchimp import webhook_format
from connectors.mailchimp.sandbox_audience import ApiError, Audience, Member, md5
from connectors.mailchimp.sandbox_spec import MAILCHIMP_API
from hub.sandbox import SandboxApp, WebhookSender

SANDBOX_API_KEY = "sandbox0000000000000000000000000-us1"
LIST_ID = "sandbox01"
DC = "us1"
MAX_CONNECTIONS = 10
_UNAUTHORIZED = ApiError(
    401,
    "API Key Invalid",
    "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
)


MERGES = webhook_format.MERGES


def throttle_answer() -> Response:
    """Mailchimp's answer beyond 10 simultaneous connections: 429, no Retry-After."""
    return _problem(
        ApiError(
            429,
            "Too Many Requests",
            f"You have exceeded the limit of {MAX_CONNECTIONS} simultaneous connections.",
        )
    )


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _problem(error: ApiError) -> JSONResponse:
    return JSONResponse(
        error.body(), status_code=error.status, media_type="application/problem+json"
    )


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace(" ", "+").replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, "Invalid Resource", f"{value!r} is not an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _without(body: dict[str, Any], excluded: set[str], prefix: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if f"{prefix}{k}" not in excluded}


class MailchimpSandbox:
    """The provider routes, their state and the test controls."""

    def __init__(self, audience: Audience, oauth: SandboxOAuthServer, webhooks: WebhookSender):
        self.audience = audience
        self.oauth = oauth
        self.webhooks = webhooks
        self.service_time = 0.0
        """Seconds each API request holds its connection (to make concurrency visible)."""
        self.in_flight: dict[str, int] = {}
        self.max_in_flight = 0
        self.throttled = 0
        p = "/3.0/lists/{list_id}"
        self.app = Starlette(
            routes=[
                Route("/3.0/lists/{list_id}", self._api(self.list_info), methods=["GET"]),
                Route("/3.0/lists/{list_id}", self._api(self.batch), methods=["POST"]),
                Route(f"{p}/members", self._api(self.list_members), methods=["GET"]),
                Route(f"{p}/members/{{hash}}", self._api(self.get_member), methods=["GET"]),
                Route(f"{p}/members/{{hash}}", self._api(self.put_member), methods=["PUT"]),
                Route(f"{p}/members/{{hash}}", self._api(self.patch_member), methods=["PATCH"]),
                Route(f"{p}/members/{{hash}}", self._api(self.delete_member), methods=["DELETE"]),
                Route(f"{p}/members/{{hash}}/tags", self._api(self.tags), methods=["POST"]),
                Route("/oauth2/metadata", self.metadata, methods=["GET"]),
                Route("/_mailchimp/edit", self._control_edit, methods=["POST"]),
                Route("/_mailchimp/service_time", self._control_service, methods=["POST"]),
            ]
        )

    # -- auth, limits, errors -----------------------------------------------------------

    def account(self, request: Request) -> str | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                _, _, key = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return None
            return "key" if secrets.compare_digest(key, SANDBOX_API_KEY) else None
        if scheme.lower() in ("bearer", "oauth") and self.oauth.validate(value.strip()):
            return "oauth"
        return None

    def _api(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            account = self.account(request)
            if account is None:
                return _problem(_UNAUTHORIZED)
            if request.path_params["list_id"] != self.audience.list_id:
                return _problem(ApiError(404, "Resource Not Found", "The list does not exist."))
            if self.in_flight.get(account, 0) >= MAX_CONNECTIONS:
                self.throttled += 1
                return throttle_answer()
            self.in_flight[account] = self.in_flight.get(account, 0) + 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight[account])
            try:
                if self.service_time:
                    await asyncio.sleep(self.service_time)
                return await handler(request)
            except ApiError as exc:
                return _problem(exc)
            finally:
                self.in_flight[account] -= 1

        return endpoint

    async def _json(self, request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "JSON Parse Exception", "The request body is not JSON.") from None
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid Resource", "The request body must be an object.")
        return body

    def _render(self, member: Member) -> dict[str, Any]:
        return member.render(self.audience.list_id)

    # -- the API ------------------------------------------------------------------------

    async def list_info(self, request: Request) -> Response:
        count = len(self.audience.listing())
        return JSONResponse(
            {
                "id": self.audience.list_id,
                "name": "Sandbox audience",
                "stats": {"member_count": count},
            }
        )

    async def list_members(self, request: Request) -> Response:
        q = request.query_params
        try:
            count = int(q.get("count", "10"))
            offset = int(q.get("offset", "0"))
        except ValueError:
            raise ApiError(400, "Invalid Resource", "count and offset are numbers") from None
        if not 0 <= count <= 1000 or offset < 0:
            raise ApiError(400, "Invalid Resource", "count must be between 0 and 1000")
        status = q.get("status")
        if status not in (
            None,
            "archived",
            "subscribed",
            "unsubscribed",
            "cleaned",
            "pending",
            "transactional",
        ):
            raise ApiError(400, "Invalid Resource", f"unknown status {status!r}")
        members = self.audience.listing(
            status=status,
            since=_time(q.get("since_last_changed")),
            before=_time(q.get("before_last_changed")),
            sort_field=q.get("sort_field"),
            descending=q.get("sort_dir", "ASC").upper() == "DESC",
        )
        fields = q.get("exclude_fields", "")
        excluded = set(filter(None, fields.split(",")))
        with self.audience.lock:
            page = [self._encoded(m, fields, excluded) for m in members[offset : offset + count]]
        body = {"list_id": self.audience.list_id, "total_items": len(members)}
        rest = _dumps(_without(body, excluded, ""))
        # members are encoded once per version (big listings are the hot path)
        content = (
            b'{"members":[' + b",".join(page) + b"]" + (b"," if rest != b"{}" else b"") + rest[1:]
        )
        return Response(content, media_type="application/json")

    def _encoded(self, member: Member, key: str, excluded: set[str]) -> bytes:
        found = member.cache.get(key)
        if found is None:
            found = member.cache[key] = _dumps(_without(self._render(member), excluded, "members."))
        return found

    def _member(self, request: Request) -> Member:
        member = self.audience.members.get(request.path_params["hash"])
        if member is None:
            raise ApiError(404, "Resource Not Found", "The requested resource could not be found.")
        return member

    async def get_member(self, request: Request) -> Response:
        return JSONResponse(self._render(self._member(request)))

    async def put_member(self, request: Request) -> Response:
        body = await self._json(request)
        member, _ = self.audience.upsert(request.path_params["hash"], body)
        return JSONResponse(self._render(member))

    async def patch_member(self, request: Request) -> Response:
        body = await self._json(request)
        self._member(request)
        member, _ = self.audience.upsert(request.path_params["hash"], body, create=False)
        return JSONResponse(self._render(member))

    async def delete_member(self, request: Request) -> Response:
        self.audience.archive(request.path_params["hash"])
        return Response(status_code=204)

    async def tags(self, request: Request) -> Response:
        body = await self._json(request)
        tags = body.get("tags")
        if not isinstance(tags, list) or not all(isinstance(t, dict) for t in tags):
            raise ApiError(400, "Invalid Resource", "tags must be a list of objects")
        self.audience.set_tags(request.path_params["hash"], tags)
        return Response(status_code=204)

    async def batch(self, request: Request) -> Response:
        body = await self._json(request)
        members = body.get("members")
        if not isinstance(members, list) or len(members) > 500:
            raise ApiError(400, "Invalid Resource", "members must be a list of at most 500")
        return JSONResponse(self.audience.batch(members, bool(body.get("update_existing"))))

    async def metadata(self, request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "oauth" or not self.oauth.validate(token.strip()):
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "dc": DC,
                "role": "owner",
                "accountname": "Sandbox",
                "login_url": base,
                "api_endpoint": base,
            }
        )

    # -- test controls ------------------------------------------------------------------

    def add(self, email: str, status: str = "subscribed", **merge_fields: Any) -> str:
        """A member added in the UI (no webhook); returns its hash."""
        body = {"email_address": email, "status_if_new": status, "merge_fields": merge_fields}
        member, _ = self.audience.upsert(md5(email), body)
        member.source = "Admin Add"
        return member.id

    def edit(self, email: str, changes: dict[str, Any]) -> dict[str, str] | None:
        """Change a member "in the UI" (``merge_fields``, ``status``, ``email_address``);
        returns the webhook form it fires (``None`` when nothing changed)."""
        member = self.audience.get(email)
        if member is None:
            raise KeyError(email)
        old_email, old_status = member.email, member.status
        old_merge = dict(member.merge_fields)
        with self.audience.lock:
            self.audience.upsert(member.id, changes, create=False)
            if changes.get("status") == "unsubscribed":
                member.compliance = True  # they opted out themselves
        if member.email != old_email:
            new = {"new_id": member.id[:10], "new_email": member.email, "old_email": old_email}
            return self._form("upemail", member, **new)
        if member.status == "unsubscribed" and old_status != "unsubscribed":
            unsub = {"action": "unsub", "reason": "manual", "campaign_id": ""}
            return self._form("unsubscribe", member, **unsub)
        if member.status == "subscribed" and old_status != "subscribed":
            return self._form("subscribe", member)
        changed = member.merge_fields != old_merge or member.status != old_status
        return self._form("profile", member) if changed else None

    def unsubscribe(self, email: str) -> dict[str, str] | None:
        return self.edit(email, {"status": "unsubscribed"})

    def clean(self, email: str) -> dict[str, str]:
        """The address bounced: the member is cleaned."""
        member = self.audience.get(email)
        if member is None:
            raise KeyError(email)
        with self.audience.lock:
            member.status = "cleaned"
            member.last_changed = self.audience.now()
            self.audience._touched(member)
        return self._form("cleaned", member, email=member.email, campaign_id="", reason="hard")

    def archive(self, email: str) -> None:
        self.audience.archive(md5(email))

    def _form(self, kind: str, member: Member, **extra: str) -> dict[str, str]:
        """The webhook of ``kind`` about ``member``, in the documented format
        (:mod:`connectors.mailchimp.webhook_format`)."""
        form = {
            "type": kind,
            "fired_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "data[list_id]": self.audience.list_id,
        }
        if kind in MERGES:
            form.update(
                {
                    "data[id]": member.id,
                    "data[email]": member.email,
                    "data[email_type]": "html",
                    "data[ip_opt]": "",
                    "data[merges][EMAIL]": member.email,
                }
            )
            if kind == "subscribe":
                form["data[ip_signup]"] = ""
            for tag, value in member.merge_fields.items():
                if isinstance(value, dict):
                    form.update({f"data[merges][{tag}][{k}]": str(v) for k, v in value.items()})
                else:
                    form[f"data[merges][{tag}]"] = str(value)
        form.update({f"data[{k}]": v for k, v in extra.items()})
        return form

    def notify(self, form: dict[str, str] | None) -> int | None:
        """Post the webhook of a control edit to the configured URL (blocking); its status."""
        if form is None or not self.webhooks.url:
            return None
        return self.webhooks.send_sync(urlencode(form)).status

    async def _control_edit(self, request: Request) -> Response:
        body = await request.json()
        email = body.pop("email", None)
        try:
            form = self.edit(str(email), body)
        except KeyError:
            return JSONResponse({"error": f"no member {email!r}"}, status_code=404)
        except ApiError as exc:
            return _problem(exc)
        status = None
        if form is not None and self.webhooks.url:
            status = (await self.webhooks.send(urlencode(form))).status
        return JSONResponse({"webhook": form, "webhook_status": status})

    async def _control_service(self, request: Request) -> Response:
        self.service_time = float((await request.json()).get("seconds", 0))
        return JSONResponse({"service_time": self.service_time})


class MailchimpSandboxApp(SandboxApp):
    """The served app; ``provider`` holds the audience and the test controls."""

    provider: MailchimpSandbox


def create_sandbox(
    seed: int = 0,
    size: int = 50,
    list_id: str = LIST_ID,
    webhook_url: str | None = None,
    validate: bool = True,
) -> MailchimpSandboxApp:
    """The Mailchimp sandbox with ``size`` fake members, held to Mailchimp's description
    (``validate=False`` only for benchmarks that measure the connector, not the checks)."""
    audience = Audience(list_id=list_id, seed=seed, size=size)
    oauth = SandboxOAuthServer(
        access_ttl=None, issue_refresh_tokens=False, require_pkce=False, seed=seed
    )
    webhooks = WebhookSender(url=webhook_url, content_type="application/x-www-form-urlencoded")
    provider = MailchimpSandbox(audience, oauth, webhooks)
    app = MailchimpSandboxApp(
        provider.app,
        name="mailchimp",
        seed=seed,
        throttle=throttle_answer,
        on_reset=audience.reset,
        oauth=oauth,
        webhooks=webhooks,
        spec=MAILCHIMP_API if validate else None,
    )
    app.provider = provider
    app.credentials = [
        f"credentials: HTTP Basic, any user and the API key {SANDBOX_API_KEY} as password"
    ]
    return app
