"""A sandbox OAuth2 authorization server that every connector sandbox reuses.

It behaves like a strict provider: authorization code flow with PKCE (S256 only) and the
``state`` echoed, client id/secret checked (body or HTTP Basic), short-lived access tokens,
refresh tokens rotated on every use with the previous one revoked (a reused one is refused
with ``400 {"error": "invalid_grant"}``, recorded in ``reused_refresh_tokens`` and, as RFC
9700 section 4.14.2 recommends, revokes the whole grant), and RFC 7009 revocation. Other
sandboxes protect their API routes with ``validate`` or ``bearer_error`` (``grant_for`` tells
whose token it is). State is in memory and guarded by a lock, so tests may inspect and steer
it from another thread while the app is served.

Beyond the code flow it issues tokens to an application acting for itself (the
``client_credentials`` grant: Microsoft's application permissions) and to service accounts
(RFC 7523 ``jwt-bearer`` assertions signed with a key registered by
``register_service_account``: Google's domain-wide delegation, the assertion's ``sub`` naming
the user acted for), and publishes OpenID discovery documents under
``/oauth/<tenant>/v2.0/.well-known/openid-configuration``, so an msal application whose
authority is ``<sandbox>/oauth/<tenant>`` runs unchanged (msal wants HTTPS: serve the
sandbox with ``tls``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

CODE_TTL = 600.0


JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_ENDPOINT = "https://oauth2.googleapis.com/token"


@dataclass
class _Grant:
    id: str
    client_id: str
    scope: str
    subject: str
    refresh_token: str | None = None
    revoked: bool = False


@dataclass(frozen=True)
class GrantInfo:
    """Who an access token acts for: ``subject`` (a user, a mailbox) and the ``scope``."""

    client_id: str
    subject: str
    scope: str


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str | None
    scope: str
    subject: str
    expires_at: float
    used: bool = False


@dataclass
class _Access:
    grant_id: str
    expires_at: float | None


@dataclass
class _Faults:
    status: int = 503
    remaining: int = 0


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of ``verifier``."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _oauth_error(error: str, status: int = 400, description: str | None = None) -> JSONResponse:
    body = {"error": error} | ({"error_description": description} if description else {})
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


@dataclass
class SandboxOAuthServer:
    """The server's state and switches; ``.app`` is the ASGI app to mount or serve.

    ``access_ttl`` None issues tokens that never expire (``expires_in: 0``, as Mailchimp).
    ``rotate_refresh_tokens`` False answers refreshes without a new refresh token (as Google).
    ``token_delay`` slows the token endpoint, to widen races in concurrency tests.
    ``revoke_on_reuse`` False only refuses a reused refresh token (lenient servers).
    ``seed`` makes issued token values reproducible.
    """

    client_id: str = "sandbox-client"
    client_secret: str = "sandbox-secret"
    access_ttl: float | None = 60.0
    rotate_refresh_tokens: bool = True
    issue_refresh_tokens: bool = True
    revoke_access_on_refresh: bool = False
    revoke_on_reuse: bool = True
    require_pkce: bool = True
    redirect_uris: list[str] | None = None
    token_delay: float = 0.0
    seed: int | None = None
    clock: Callable[[], float] = time.time

    token_requests: int = field(default=0, init=False)
    refresh_requests: int = field(default=0, init=False)
    authorization_requests: int = field(default=0, init=False)
    reused_refresh_tokens: list[str] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng: random.Random = (
            random.Random(self.seed) if self.seed is not None else (random.SystemRandom())
        )
        self._serial = 0
        self._grants: dict[str, _Grant] = {}
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, _Access] = {}
        self._refresh: dict[str, str] = {}  # current refresh token -> grant id
        self._retired: dict[str, str] = {}  # rotated-away refresh token -> grant id
        self._faults = _Faults()
        self._service_accounts: dict[str, Any] = {}  # client email -> public key
        self.app: ASGIApp = Starlette(
            routes=[
                Route("/oauth/authorize", self._authorize, methods=["GET"]),
                Route("/oauth/token", self._token, methods=["POST"]),
                Route("/oauth/revoke", self._revoke, methods=["POST"]),
                Route("/oauth/userinfo", self._userinfo, methods=["GET"]),
                Route(
                    "/oauth/{tenant}/v2.0/.well-known/openid-configuration",
                    self._openid_configuration,
                    methods=["GET"],
                ),
            ]
        )

    # -- control methods for tests -------------------------------------------------------

    def issue_grant(self, *, scope: str = "", subject: str = "user-1") -> dict[str, Any]:
        """A new grant without the browser dance; returns its token response."""
        with self._lock:
            grant = self._new_grant(self.client_id, scope, subject)
            return self._tokens_for(grant, new_refresh=self.issue_refresh_tokens)

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working (as if its lifetime ran out)."""
        with self._lock:
            now = self.clock()
            for access in self._access.values():
                access.expires_at = now - 1

    def revoke_grant(self, token: str | None = None) -> int:
        """Revoke the grant that owns ``token`` (access or refresh), or every grant when None.
        Returns how many grants were revoked."""
        with self._lock:
            if token is None:
                ids = list(self._grants)
            else:
                gid = self._grant_of(token)
                ids = [gid] if gid else []
            for gid in ids:
                self._revoke_grant(gid)
            return len(ids)

    def fail_next_token_requests(self, count: int, status: int = 503) -> None:
        """The next ``count`` token requests answer ``status`` (fault injection)."""
        with self._lock:
            self._faults = _Faults(status=status, remaining=count)

    def validate(self, access_token: str) -> bool:
        """Whether ``access_token`` is live: issued here, unexpired, its grant not revoked."""
        with self._lock:
            return self._live(access_token) is not None

    def grant_for(self, access_token: str) -> GrantInfo | None:
        """Whose live token this is (``None``: not a live token)."""
        with self._lock:
            grant = self._live(access_token)
            if grant is None:
                return None
            return GrantInfo(grant.client_id, grant.subject, grant.scope)

    def register_service_account(self, client_email: str, public_key_pem: bytes) -> None:
        """Accept ``jwt-bearer`` assertions issued by ``client_email`` and signed with the
        private half of this key."""
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        with self._lock:
            self._service_accounts[client_email] = load_pem_public_key(public_key_pem)

    def bearer_error(self, request: Request) -> Response | None:
        """None when the request carries a live bearer token, else the 401 to answer."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and self.validate(token.strip()):
            return None
        return JSONResponse(
            {"error": "invalid_token"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )

    # -- state helpers (call with the lock held) -------------------------------------------

    def _make(self, prefix: str) -> str:
        self._serial += 1
        return f"sbx-{prefix}-{self._serial}-{self._rng.getrandbits(128):032x}"

    def _new_grant(self, client_id: str, scope: str, subject: str) -> _Grant:
        grant = _Grant(id=self._make("grant"), client_id=client_id, scope=scope, subject=subject)
        self._grants[grant.id] = grant
        return grant

    def _tokens_for(self, grant: _Grant, *, new_refresh: bool) -> dict[str, Any]:
        access = self._make("at")
        ttl = self.access_ttl
        self._access[access] = _Access(grant.id, self.clock() + ttl if ttl else None)
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": int(ttl) if ttl else 0,
            "scope": grant.scope,
        }
        if new_refresh:
            if grant.refresh_token is not None:
                self._refresh.pop(grant.refresh_token, None)
                self._retired[grant.refresh_token] = grant.id
            grant.refresh_token = self._make("rt")
            self._refresh[grant.refresh_token] = grant.id
            body["refresh_token"] = grant.refresh_token
        return body

    def _live(self, access_token: str) -> _Grant | None:
        access = self._access.get(access_token)
        if access is None or (access.expires_at is not None and access.expires_at <= self.clock()):
            return None
        grant = self._grants.get(access.grant_id)
        return None if grant is None or grant.revoked else grant

    def _grant_of(self, token: str) -> str | None:
        if token in self._access:
            return self._access[token].grant_id
        return self._refresh.get(token) or self._retired.get(token)

    def _revoke_grant(self, grant_id: str) -> None:
        grant = self._grants.get(grant_id)
        if grant is None:
            return
        grant.revoked = True
        if grant.refresh_token:
            self._refresh.pop(grant.refresh_token, None)
        for token in [t for t, a in self._access.items() if a.grant_id == grant_id]:
            del self._access[token]

    def _client_ok(self, request: Request, form: dict[str, str]) -> str | None:
        """The authenticated client id, or None."""
        header = request.headers.get("authorization", "")
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if header.lower().startswith("basic "):
            with contextlib.suppress(ValueError):
                decoded = base64.b64decode(header[6:]).decode("utf-8")
                client_id, _, secret = decoded.partition(":")
        ok = client_id == self.client_id and secrets.compare_digest(secret, self.client_secret)
        return client_id if ok else None

    # -- endpoints -------------------------------------------------------------------------

    async def _authorize(self, request: Request) -> Response:
        q = request.query_params
        redirect_uri, state = q.get("redirect_uri", ""), q.get("state")
        with self._lock:
            self.authorization_requests += 1
        if q.get("client_id") != self.client_id:
            return _oauth_error("invalid_client", 400, "unknown client_id")
        allowed = self.redirect_uris is None or redirect_uri in self.redirect_uris
        if not redirect_uri.startswith(("http://", "https://")) or not allowed:
            return _oauth_error("invalid_request", 400, "redirect_uri not registered")

        def back(params: dict[str, str]) -> Response:
            if state is not None:
                params["state"] = state
            parts = urlsplit(redirect_uri)
            query = "&".join(p for p in (parts.query, urlencode(params)) if p)
            return RedirectResponse(urlunsplit(parts._replace(query=query)), status_code=302)

        if q.get("response_type") != "code":
            return back({"error": "unsupported_response_type"})
        challenge = q.get("code_challenge")
        if challenge and q.get("code_challenge_method", "plain") != "S256":
            return back({"error": "invalid_request", "error_description": "PKCE needs S256"})
        if self.require_pkce and not challenge:
            return back({"error": "invalid_request", "error_description": "PKCE required"})
        with self._lock:
            code = self._make("code")
            self._codes[code] = _Code(
                client_id=self.client_id,
                redirect_uri=redirect_uri,
                challenge=challenge,
                scope=q.get("scope", ""),
                subject=q.get("login_hint", "user-1"),
                expires_at=self.clock() + CODE_TTL,
            )
        return back({"code": code})

    async def _token(self, request: Request) -> Response:
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        with self._lock:
            self.token_requests += 1
            if form.get("grant_type") == "refresh_token":
                self.refresh_requests += 1
            fault = self._faults.status if self._faults.remaining > 0 else None
            if fault is not None:
                self._faults.remaining -= 1
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        if fault is not None:
            return _oauth_error("server_error", fault)
        if form.get("grant_type") == JWT_BEARER:
            return self._redeem_assertion(str(request.url), form)
        client_id = self._client_ok(request, form)
        if client_id is None:
            return _oauth_error("invalid_client", 401, "client authentication failed")
        with self._lock:
            grant_type = form.get("grant_type")
            if grant_type == "authorization_code":
                return self._redeem_code(client_id, form)
            if grant_type == "refresh_token":
                return self._redeem_refresh(client_id, form.get("refresh_token", ""))
            if grant_type == "client_credentials":
                # the application acts for itself: a token, never a refresh token
                grant = self._new_grant(client_id, form.get("scope", ""), client_id)
                return self._ok(self._tokens_for(grant, new_refresh=False))
        return _oauth_error("unsupported_grant_type")

    def _redeem_assertion(self, token_url: str, form: dict[str, str]) -> Response:
        """RFC 7523: a JWT signed by a registered service account, for its ``sub``."""
        import jwt

        assertion = form.get("assertion", "")
        try:
            issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
            with self._lock:
                key = self._service_accounts.get(str(issuer))
            if key is None:
                return _oauth_error("invalid_grant", description="unknown service account")
            # google-auth names Google's own token endpoint whatever the key's token_uri
            audience = [token_url, GOOGLE_TOKEN_ENDPOINT]
            claims = jwt.decode(assertion, key, algorithms=["RS256"], audience=audience)
        except jwt.PyJWTError as exc:
            return _oauth_error("invalid_grant", description=f"bad assertion: {exc}")
        with self._lock:
            grant = self._new_grant(
                str(issuer), str(claims.get("scope", "")), str(claims.get("sub") or issuer)
            )
            return self._ok(self._tokens_for(grant, new_refresh=False))

    def _redeem_code(self, client_id: str, form: dict[str, str]) -> Response:
        code = self._codes.get(form.get("code", ""))
        if code is None or code.used or code.expires_at <= self.clock():
            return _oauth_error("invalid_grant", description="unknown, used or expired code")
        code.used = True  # single use, even when the rest of the request is wrong
        if code.client_id != client_id or code.redirect_uri != form.get("redirect_uri"):
            return _oauth_error("invalid_grant", description="redirect_uri does not match")
        verifier = form.get("code_verifier")
        if code.challenge is not None and (not verifier or s256(verifier) != code.challenge):
            return _oauth_error("invalid_grant", description="PKCE verification failed")
        grant = self._new_grant(client_id, code.scope, code.subject)
        return self._ok(self._tokens_for(grant, new_refresh=self.issue_refresh_tokens))

    def _redeem_refresh(self, client_id: str, refresh_token: str) -> Response:
        if refresh_token in self._retired:
            self.reused_refresh_tokens.append(refresh_token)
            if self.revoke_on_reuse:
                self._revoke_grant(self._retired[refresh_token])
            return _oauth_error("invalid_grant", description="refresh token was already used")
        grant = self._grants.get(self._refresh.get(refresh_token, ""))
        if grant is None or grant.revoked or grant.client_id != client_id:
            return _oauth_error("invalid_grant", description="unknown or revoked refresh token")
        if self.revoke_access_on_refresh:
            for token in [t for t, a in self._access.items() if a.grant_id == grant.id]:
                del self._access[token]
        return self._ok(self._tokens_for(grant, new_refresh=self.rotate_refresh_tokens))

    @staticmethod
    def _ok(body: dict[str, Any]) -> Response:
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    async def _revoke(self, request: Request) -> Response:
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        if self._client_ok(request, form) is None:
            return _oauth_error("invalid_client", 401)
        token = form.get("token", "")
        with self._lock:
            if token in self._access and form.get("token_type_hint") != "refresh_token":
                del self._access[token]
            elif gid := (self._refresh.get(token) or self._retired.get(token)):
                self._revoke_grant(gid)
        return Response(status_code=200)  # RFC 7009: unknown tokens are not an error

    async def _openid_configuration(self, request: Request) -> Response:
        base = f"{request.url.scheme}://{request.url.netloc}"
        tenant = request.path_params["tenant"]
        return JSONResponse(
            {
                "issuer": f"{base}/oauth/{tenant}/v2.0",
                "authorization_endpoint": f"{base}/oauth/authorize",
                "token_endpoint": f"{base}/oauth/token",
                "response_types_supported": ["code"],
                "grant_types_supported": [
                    "authorization_code",
                    "refresh_token",
                    "client_credentials",
                    JWT_BEARER,
                ],
            }
        )

    async def _userinfo(self, request: Request) -> Response:
        denied = self.bearer_error(request)
        if denied is not None:
            return denied
        token = request.headers["authorization"].partition(" ")[2].strip()
        with self._lock:
            grant = self._live(token)
        if grant is None:
            return _oauth_error("invalid_token", 401)
        return JSONResponse({"sub": grant.subject, "scope": grant.scope})


@contextlib.contextmanager
def serve(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` over real HTTP in a background thread; yields its base URL.

    Port 0 picks a free port. The server stops (and the port is freed) when the block ends.
    """
    from hub.sandbox.server import SandboxServer

    with SandboxServer(app, host=host, port=port).start() as server:
        yield server.url
