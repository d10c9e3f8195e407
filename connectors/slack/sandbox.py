"""A fake Slack (Web API and Events API) on loopback, for tests, benchmarks and the demo.

``create_sandbox(seed, size=...)`` serves one workspace (:mod:`.sandbox_workspace`) under
``/api/``: ``users.list``, ``users.info``, ``conversations.history``,
``conversations.replies``, ``chat.postMessage``, ``auth.test`` and ``oauth.v2.access``
(the code and refresh grants, answered Slack's way: HTTP 200 with ``ok``). Calls carry the
bot token as ``Authorization: Bearer``: ``SANDBOX_BOT_TOKEN`` (an install without token
rotation) or a token of the built-in authorization server (``/oauth/authorize``); with
``rotation=True`` those live 12 hours and a used one answers ``token_expired``. Each
method's tier is counted per minute (tier 2: 20, tier 3: 50, tier 4: 100;
``chat.postMessage``: one a second per channel); beyond it Slack's 429 with ``Retry-After``.

Events: :meth:`SlackSandbox.deliver` posts an event callback shaped like Slack's documented
examples, signed with ``SANDBOX_SIGNING_SECRET`` (v0), to the URL set with
``/_sandbox/webhooks``; ``retries`` sends it again with ``X-Slack-Retry-Num`` as Slack does
when an answer is late. Controls for tests: ``app.provider`` (``workspace``, ``say``,
``edit_user``, ``join``, ``deliver``, ``verify_url``).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from auth.sandbox import SandboxOAuthServer
from connectors.slack.sandbox_events import APP_ID, SANDBOX_SIGNING_SECRET, WorkspaceEvents, signer
from connectors.slack.sandbox_spec import SLACK_API
from connectors.slack.sandbox_workspace import BOT_USER, SHARED_CHANNEL, TEAM, Workspace
from hub.sandbox import SandboxApp, WebhookSender

__all__ = [
    "SANDBOX_BOT_TOKEN",
    "SANDBOX_SIGNING_SECRET",
    "SlackSandbox",
    "SlackSandboxApp",
    "create_sandbox",
]

SANDBOX_BOT_TOKEN = "xoxb-0000000000-0000000000000-sandboxsandboxsandbox00"
ROTATED_TTL = 43_200
ALL_SCOPES = "users:read,users:read.email,channels:history,groups:history,chat:write"
TIER_OF = {
    "users.list": 2,
    "conversations.history": 3,
    "conversations.replies": 3,
    "users.info": 4,
    "auth.test": 4,
}
NEEDS = {
    "users.list": "users:read",
    "users.info": "users:read",
    "conversations.history": "channels:history",
    "conversations.replies": "channels:history",
    "chat.postMessage": "chat:write",
}


def _err(error: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"ok": False, "error": error, **extra})


def throttle_answer(retry_after: int = 30) -> Response:
    """Slack's answer beyond a method's tier."""
    return JSONResponse(
        {"ok": False, "error": "ratelimited"},
        status_code=429,
        headers={"Retry-After": str(retry_after)},
    )


class SlackSandbox(WorkspaceEvents):
    """The provider routes, their limits and the test controls."""

    def __init__(
        self,
        workspace: Workspace,
        oauth: SandboxOAuthServer,
        events: WebhookSender,
        *,
        rotation: bool,
        tiers: dict[int, int],
    ) -> None:
        self.workspace = workspace
        self.oauth = oauth
        self.events = events
        self.rotation = rotation
        self.tiers = dict(tiers)
        # one message a second per channel; Slack lets short bursts through, the sandbox
        # only the jitter of a request that waited behind another (a tenth of a second)
        self.post_interval = 0.9
        self.retry_after = 30
        """Seconds the throttle answers of the fault switches (``burst_429``) ask to wait."""
        self.bot_scopes = ALL_SCOPES
        self.throttled = 0
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._events = 0
        self.app = Starlette(
            routes=[
                *(
                    Route(f"/api/{m}", self._api(m, h), methods=["GET", "POST"])
                    for m, h in (
                        ("users.list", self.users_list),
                        ("users.info", self.users_info),
                        ("conversations.history", self.history),
                        ("conversations.replies", self.replies),
                        ("auth.test", self.auth_test),
                    )
                ),
                Route(
                    "/api/chat.postMessage",
                    self._api("chat.postMessage", self.post_message),
                    methods=["POST"],
                ),
                Route("/api/oauth.v2.access", self.oauth_access, methods=["POST"]),
            ]
        )

    # -- auth and limits -----------------------------------------------------------------

    def scopes(self, request: Request) -> str | None:
        """The scopes of the request's token, or None when it is not a live token."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        if secrets.compare_digest(token, SANDBOX_BOT_TOKEN):
            return self.bot_scopes
        grant = self.oauth.grant_for(token)
        return grant.scope.replace(" ", ",") if grant is not None else None

    def _over(self, key: str, limit: int, window: float) -> float | None:
        """Seconds until ``key`` may call again, or None when this call is within its limit."""
        now = time.monotonic()
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= now - window:
                calls.popleft()
            if len(calls) >= limit:
                self.throttled += 1
                return calls[0] + window - now
            calls.append(now)
            return None

    def _api(
        self, method: str, handler: Callable[[Request, dict[str, str]], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            args = dict(request.query_params)
            if request.method == "POST":
                form = await request.form()
                args.update({k: v for k, v in form.items() if isinstance(v, str)})
            scopes = self.scopes(request)
            if scopes is None:
                expired = self.rotation and request.headers.get("authorization", "").startswith(
                    "Bearer sbx-at-"
                )
                return _err("token_expired" if expired else "invalid_auth")
            needed = NEEDS.get(method)
            if needed and needed not in scopes.split(","):
                return _err("missing_scope", needed=needed, provided=scopes)
            if method == "chat.postMessage":
                wait = self._over(f"post:{args.get('channel')}", 1, self.post_interval)
            else:
                tier = TIER_OF[method]
                wait = self._over(f"tier:{method}", self.tiers[tier], 60.0)
            if wait is not None:
                return throttle_answer(max(1, int(wait + 0.999)))
            request.state.scopes = scopes
            return await handler(request, args)

        return endpoint

    # -- methods -------------------------------------------------------------------------

    async def users_list(self, request: Request, args: dict[str, str]) -> Response:
        limit = min(int(args.get("limit") or 0) or 1000, 1000)
        members, cursor = self.workspace.list_users(args.get("cursor") or None, limit)
        if "users:read.email" not in request.state.scopes.split(","):
            members = [_without_email(m) for m in members]
        return JSONResponse(
            {
                "ok": True,
                "members": members,
                "cache_ts": int(time.time()),
                "response_metadata": {"next_cursor": cursor},
            }
        )

    async def users_info(self, request: Request, args: dict[str, str]) -> Response:
        member = self.workspace.person(args.get("user", ""))
        if member is None:
            return _err("user_not_found")
        if "users:read.email" not in request.state.scopes.split(","):
            member = _without_email(member)
        return JSONResponse({"ok": True, "user": member})

    def _channel(self, args: dict[str, str]) -> str | None:
        channel = args.get("channel", "")
        return channel if channel in self.workspace.messages else None

    async def history(self, request: Request, args: dict[str, str]) -> Response:
        channel = self._channel(args)
        if channel is None:
            return _err("channel_not_found")
        limit = min(int(args.get("limit") or 100), 999)
        messages, cursor = self.workspace.history(
            channel,
            args.get("oldest"),
            args.get("latest"),
            args.get("inclusive") in ("true", "1"),
            args.get("cursor") or None,
            limit,
        )
        body: dict[str, Any] = {
            "ok": True,
            "messages": messages,
            "has_more": bool(cursor),
            "pin_count": 0,
            "channel_actions_ts": None,
            "channel_actions_count": 0,
        }
        if cursor:
            body["response_metadata"] = {"next_cursor": cursor}
        return JSONResponse(body)

    async def replies(self, request: Request, args: dict[str, str]) -> Response:
        channel = self._channel(args)
        if channel is None:
            return _err("channel_not_found")
        found = self.workspace.replies(
            channel,
            args.get("ts", ""),
            args.get("oldest"),
            args.get("cursor") or None,
            min(int(args.get("limit") or 100), 1000),
        )
        if found is None:
            return _err("thread_not_found")
        messages, cursor = found
        body: dict[str, Any] = {"ok": True, "messages": messages, "has_more": bool(cursor)}
        if cursor:
            body["response_metadata"] = {"next_cursor": cursor}
        return JSONResponse(body)

    async def auth_test(self, request: Request, args: dict[str, str]) -> Response:
        return JSONResponse(
            {
                "ok": True,
                "url": "https://sandbox.slack.example/",
                "team": "crmhub sandbox",
                "user": "crmhub",
                "team_id": TEAM,
                "user_id": BOT_USER,
                "bot_id": "B0CRMHUBBT",
                "is_enterprise_install": False,
            }
        )

    async def post_message(self, request: Request, args: dict[str, str]) -> Response:
        channel = args.get("channel", "")
        if channel not in self.workspace.messages:
            return _err("channel_not_found")
        if not args.get("text") and not args.get("blocks"):
            return _err("no_text")
        ts = self.workspace.next_ts()
        message = {
            "type": "message",
            "user": BOT_USER,
            "bot_id": "B0CRMHUBBT",
            "text": args.get("text", ""),
            "ts": ts,
            "team": TEAM,
        }
        with self.workspace.lock:
            self.workspace.posted.append(
                {**message, "channel": channel, "blocks": args.get("blocks")}
            )
            self.workspace.messages[channel][ts] = message
        return JSONResponse({"ok": True, "channel": channel, "ts": ts, "message": message})

    async def oauth_access(self, request: Request) -> Response:
        """``oauth.v2.access``: the authorization server's answer, in Slack's shape."""
        answer = await self.oauth._token(request)  # the sandbox's own authorization server
        body = json.loads(bytes(answer.body))
        if answer.status_code != 200:
            return _err(str(body.get("error") or "invalid_code"))
        slack: dict[str, Any] = {
            "ok": True,
            "app_id": APP_ID,
            "authed_user": {"id": "U000000001"},
            "scope": str(body.get("scope") or "").replace(" ", ","),
            "token_type": "bot",
            "access_token": body["access_token"],
            "bot_user_id": BOT_USER,
            "team": {"id": TEAM, "name": "crmhub sandbox"},
            "enterprise": None,
            "is_enterprise_install": False,
        }
        if self.rotation:
            slack["expires_in"] = body.get("expires_in") or ROTATED_TTL
            slack["refresh_token"] = body.get("refresh_token")
        return JSONResponse(slack)


def _without_email(member: dict[str, Any]) -> dict[str, Any]:
    profile = {k: v for k, v in member.get("profile", {}).items() if k != "email"}
    return {**member, "profile": profile}


class SlackSandboxApp(SandboxApp):
    """The served app; ``provider`` holds the workspace and the test controls."""

    provider: SlackSandbox


def create_sandbox(
    seed: int = 0,
    size: int = 20,
    *,
    customers: int = 5,
    channels: tuple[str, ...] = (SHARED_CHANNEL,),
    rotation: bool = False,
    tiers: dict[int, int] | None = None,
    webhook_url: str | None = None,
    validate: bool = True,
) -> SlackSandboxApp:
    """The Slack sandbox: ``size`` people, ``customers`` of another team in the shared
    channel, the bot a member of ``channels``; ``rotation`` issues 12-hour tokens with
    refresh tokens; ``tiers`` replaces Slack's per-minute limits (``{2: 20, 3: 50, 4: 100}``)."""
    workspace = Workspace(seed=seed, size=size, customers=customers, channels=channels)
    oauth = SandboxOAuthServer(
        access_ttl=ROTATED_TTL if rotation else None,
        issue_refresh_tokens=rotation,
        rotate_refresh_tokens=True,
        require_pkce=False,
        seed=seed,
    )
    events = WebhookSender(url=webhook_url, sign=signer)
    provider = SlackSandbox(
        workspace, oauth, events, rotation=rotation, tiers=tiers or {2: 20, 3: 50, 4: 100}
    )
    app = SlackSandboxApp(
        provider.app,
        name="slack",
        seed=seed,
        throttle=lambda: throttle_answer(provider.retry_after),
        on_reset=workspace.reset,
        oauth=oauth,
        webhooks=events,
        spec=SLACK_API if validate else None,
    )
    app.provider = provider
    return app
