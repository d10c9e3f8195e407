"""Receiving webhooks: signature checks and the receiver interface connectors implement.

A connector that accepts webhooks sets ``webhook = MyReceiver`` on its class. The web app
builds one receiver per delivery with the connection's connector instance (so it reads the
connection's secrets from ``connector.settings``), calls ``verify`` on the raw request, writes
the delivery to the inbox, answers, and later the inbox processor calls ``handle`` with the
connection's ``hub.services.ConnectionServices``: a receiver never sees the hub itself.

Every refusal is a ``WebhookRejected(status, reason)``: 401 for a bad signature or a stale
timestamp (nothing is stored), 404 for an unknown path. ``MalformedDelivery`` (400) is the
one refusal that is stored, with status ``malformed``, so a person can inspect it.

A connection without a receiver of its own can still take webhooks with ``GenericReceiver``,
driven by a ``WebhookSettings`` table in the connection's configuration (header name,
encoding, secret).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs

from pydantic import SecretStr

from hub.config import Encoding, WebhookSettings
from hub.logging import register_secret

if TYPE_CHECKING:
    from hub.connector import Connector
    from hub.inbox import InboxItem
    from hub.runtime import Hub
    from hub.services import ConnectionServices


class WebhookRejected(Exception):
    """A delivery refused with HTTP ``status``; ``reason`` is safe to send back."""

    store: ClassVar[bool] = False

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status}: {reason}")


class MalformedDelivery(WebhookRejected):
    """Authentic but unreadable (bad JSON, missing fields): 400, and kept as ``malformed``."""

    store = True

    def __init__(self, reason: str, delivery_id: str | None = None) -> None:
        super().__init__(400, reason)
        self.delivery_id = delivery_id


# ---- verification helpers -------------------------------------------------------------------


def _as_bytes(value: str | bytes | SecretStr) -> bytes:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return value.encode() if isinstance(value, str) else value


def hmac_sha256(secret: str | bytes | SecretStr, body: bytes, encoding: Encoding = "hex") -> str:
    """HMAC-SHA256 of ``body`` with ``secret``, as lower-case hex or standard base64."""
    digest = hmac.new(_as_bytes(secret), body, hashlib.sha256).digest()
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


def verify_signature(expected: str | bytes, given: str | bytes | None) -> None:
    """Constant-time compare; a missing or different signature raises 401."""
    if not given:
        raise WebhookRejected(401, "signature missing")
    if not hmac.compare_digest(_as_bytes(expected), _as_bytes(given)):
        raise WebhookRejected(401, "signature does not match")


def check_timestamp(
    ts: str | int | float | None, window: float = 300, now: float | None = None
) -> float:
    """Reject a delivery whose timestamp (unix seconds) is more than ``window`` s from now."""
    if ts is None or ts == "":
        raise WebhookRejected(401, "timestamp missing")
    try:
        value = float(ts)
    except (TypeError, ValueError):
        raise WebhookRejected(401, "timestamp is not a number") from None
    current = time.time() if now is None else now
    if abs(current - value) > window:
        raise WebhookRejected(401, f"timestamp outside the {window:g} s window")
    return value


def verify_url_secret(expected: str | SecretStr | None, given: str | None) -> None:
    """For providers that sign nothing (Mailchimp, Jotform): a secret in the URL, compared
    in constant time. A connection without a configured secret accepts nothing."""
    if expected is None or not _as_bytes(expected):
        raise WebhookRejected(401, "no webhook secret is configured for this connection")
    if not given or not hmac.compare_digest(_as_bytes(expected), _as_bytes(given)):
        raise WebhookRejected(401, "URL secret does not match")


def body_id(body: bytes) -> str:
    """A delivery id for providers that send none: the body's SHA-256 (retries are identical)."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


# ---- what a receiver sees and returns -------------------------------------------------------


@dataclass(frozen=True)
class RequestInfo:
    """The parts of an HTTP request a receiver may look at. Header names are lower case."""

    method: str
    path: str
    subpath: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    client: str | None = None

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


@dataclass(frozen=True)
class WebhookResponse:
    status: int = 200
    body: bytes | str = b""
    content_type: str = "text/plain; charset=utf-8"


@dataclass
class Delivery:
    """What ``verify`` decided.

    ``store=False`` answers at once without writing the inbox (handshakes: Slack
    url_verification, Graph validationToken, Mailchimp's GET, Xero intent-to-receive with no
    events). Otherwise the delivery is written to the inbox first and then answered with
    ``response`` (default: 200, empty body). ``delivery_id`` is the dedupe key.
    """

    delivery_id: str
    kind: str = "event"
    store: bool = True
    response: WebhookResponse | None = None
    headers: dict[str, str] = field(default_factory=dict)
    """Headers to keep with the inbox row (default: those the receiver keeps)."""


KEPT_HEADERS = ("content-type", "user-agent")
"""Request headers every receiver keeps with a delivery; a receiver adds its provider's."""


def parse_json(body: bytes, delivery_id: str | None = None) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedDelivery(f"body is not valid JSON: {exc}", delivery_id) from None


def parse_form(body: bytes, delivery_id: str | None = None) -> dict[str, str]:
    """``application/x-www-form-urlencoded`` into a flat dict (last value wins)."""
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedDelivery(f"body is not a valid form: {exc}", delivery_id) from None
    return {k: v[-1] for k, v in parsed.items()}


class WebhookReceiver(ABC):
    """Base class of a connector's webhook receiver. Override ``verify``; ``handle`` is optional.

    The web app builds one instance per connection, with the connection's connector
    instance, and reuses it for every request and inbox item: keep no per-request state on
    it. ``verify`` must be fast: it runs before the provider gets its answer.
    ``handle`` runs later from the inbox and may run more than once for the same item after a
    crash, so it must be idempotent (a sync or a targeted fetch is).
    """

    methods: ClassVar[tuple[str, ...]] = ("POST",)
    """HTTP methods the receiver accepts; add ``GET`` for validation handshakes."""
    headers: ClassVar[tuple[str, ...]] = ()
    """Request headers to keep with a stored delivery besides ``KEPT_HEADERS``: the
    provider's signature, timestamp, event and delivery-id headers. Every other header is
    dropped (an allow-list: credentials such as ``X-Api-Key`` never reach the inbox)."""

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self.settings = connector.settings
        self.connection = connector.connection
        self.keep = frozenset(h.lower() for h in (*KEPT_HEADERS, *self.headers))

    def kept_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The request headers stored with a delivery: those on the allow-list only."""
        return {k.lower(): v for k, v in headers.items() if k.lower() in self.keep}

    def secret(self, name: str) -> str | None:
        """The setting ``name`` as text (``SecretStr`` unwrapped), registered for redaction."""
        value = getattr(self.settings, name, None)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is None or value == "":
            return None
        text = str(value)
        register_secret(text)
        return text

    @abstractmethod
    async def verify(self, request: RequestInfo, body: bytes) -> Delivery:
        """Check authenticity and return the delivery, or raise ``WebhookRejected``."""

    async def handle(  # noqa: B027  (optional hook)
        self, services: ConnectionServices, item: InboxItem
    ) -> None:
        """Act on a stored delivery after it was answered. Default: nothing (pulls reconcile).

        ``services`` (``hub.services.ConnectionServices``) is all a receiver may ask of the
        hub, for its own connection: sync it now or unless a run since the delivery read
        everything (``catch_up(item.received_at)``), read the records it names at once
        (``fetch``), read a cursor, move a link to a re-keyed remote id, keep
        push-subscription state."""


# ---- a receiver driven by configuration -----------------------------------------------------


class GenericReceiver(WebhookReceiver):
    """HMAC-SHA256 receiver configured by ``WebhookSettings`` instead of code."""

    def __init__(self, connector: Connector, config: WebhookSettings) -> None:
        super().__init__(connector)
        self.config = config
        named = (config.header, config.timestamp_header, config.id_header, config.kind_header)
        self.keep |= {h.lower() for h in named if h}
        register_secret(config.secret.get_secret_value())

    async def verify(self, request: RequestInfo, body: bytes) -> Delivery:
        cfg = self.config
        if request.subpath:
            raise WebhookRejected(404, "no such webhook path")
        signed = body
        if cfg.timestamp_header:
            ts = request.headers.get(cfg.timestamp_header.lower())
            check_timestamp(ts, cfg.window)
            signed = f"{ts}{cfg.separator}".encode() + body
        given = request.headers.get(cfg.header.lower())
        verify_signature(cfg.prefix + hmac_sha256(cfg.secret, signed, cfg.encoding), given)
        delivery_id = (request.headers.get(cfg.id_header.lower()) if cfg.id_header else None) or (
            body_id(body)
        )
        if cfg.body == "json":
            parse_json(body, delivery_id)
        elif cfg.body == "form":
            parse_form(body, delivery_id)
        kind = (
            request.headers.get(cfg.kind_header.lower()) if cfg.kind_header else None
        ) or "event"
        return Delivery(delivery_id=delivery_id, kind=kind[:64])


def receiver_for(hub: Hub, connection: str) -> WebhookReceiver | None:
    """The receiver of ``connection``: its connector's own, else a configured generic one.

    Raises ``WebhookRejected(404)`` for an unknown connection and returns ``None`` for a
    connection that takes no webhooks.
    """
    conn = hub.config.connections.get(connection)
    if conn is None or not conn.hub.enabled:
        raise WebhookRejected(404, f"no connection named {connection!r}")
    connector = hub.connector(connection)
    receiver_cls: type[WebhookReceiver] | None = getattr(type(connector), "webhook", None)
    if receiver_cls is not None:
        return receiver_cls(connector)
    config = conn.hub.webhook
    if isinstance(config, WebhookSettings):
        return GenericReceiver(connector, config)
    return None
