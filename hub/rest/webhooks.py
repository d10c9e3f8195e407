"""``[webhooks]``: verifying a declared connector's webhooks, and acting on them.

The signature scheme is chosen by ``kind``: ``hmac`` (a header holding an HMAC of the body,
of timestamp + body, or of URL + body; hex or base64; an optional prefix such as
``sha256=``; a timestamp window), ``url_secret`` (a secret in the webhook URL, for providers
that sign nothing) or ``custom`` (a function named by ``hook``). A ``challenge`` answers
the provider's handshake (a query parameter on a GET, or a field of a POSTed body) without
storing anything. Each stored delivery names an event (``event``, a JSON path) and the
records it concerns (``ids``); ``events`` maps event names to streams.

Handling a delivery is a hint, not the data: the connection is synced (unless a run that
started after the delivery arrived already covered it), so the records are read through
the declared API like any other change.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from hub.errors import ConnectorConfigError
from hub.logging import register_secret
from hub.rest.base import KindSpec, Spec, resolve_hook
from hub.rest.jsonpath import JsonPath
from hub.rest.template import Template
from hub.webhooks import (
    Delivery,
    MalformedDelivery,
    RequestInfo,
    WebhookReceiver,
    WebhookRejected,
    WebhookResponse,
    body_id,
    check_timestamp,
    parse_json,
    verify_signature,
    verify_url_secret,
)

if TYPE_CHECKING:
    from hub.inbox import InboxItem
    from hub.services import ConnectionServices

__all__ = [
    "ChallengeSpec",
    "DeclaredReceiver",
    "HmacSignature",
    "UrlSecretSignature",
    "WebhookSpec",
    "sign",
]

Signed = Literal["body", "timestamp+body", "url+body"]


class HmacSignature(KindSpec):
    kind: Literal["hmac"]
    header: str
    """The header carrying the signature."""
    algorithm: Literal["sha256", "sha1", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    """Text before the signature in the header (``sha256=``)."""
    signed: Signed = "body"
    """What is signed: the raw body, timestamp + separator + body, or URL + separator + body."""
    separator: str = ""
    timestamp_header: str | None = None
    timestamp_format: Literal["epoch", "iso"] = "epoch"
    """How the timestamp header writes the time: Unix seconds, or ISO 8601 (Zendesk's
    ``2024-05-01T12:00:00Z``)."""
    window: float = Field(300, gt=0)
    """Deliveries whose timestamp is further than this many seconds from now are refused."""
    secret: str = "{settings.webhook_secret}"
    url: str = "{settings.webhook_url}"
    """For ``url+body``: the webhook URL as registered with the provider."""

    @model_validator(mode="after")
    def _timestamp(self) -> HmacSignature:
        if self.signed == "timestamp+body" and not self.timestamp_header:
            raise ValueError("signed = 'timestamp+body' needs 'timestamp_header'")
        return self


class UrlSecretSignature(KindSpec):
    kind: Literal["url_secret"]
    param: str = "secret"
    secret: str = "{settings.webhook_secret}"


class CustomSignature(KindSpec):
    kind: Literal["custom"]
    hook: str
    """``function(request: RequestInfo, body: bytes, secret: str | None) -> None`` raising
    ``hub.webhooks.WebhookRejected`` to refuse."""
    secret: str | None = "{settings.webhook_secret}"


SignatureSpec = Annotated[
    HmacSignature | UrlSecretSignature | CustomSignature, Field(discriminator="kind")
]


class ChallengeSpec(Spec):
    """The provider's handshake: echo a challenge back, store nothing."""

    method: Literal["GET", "POST"] = "GET"
    param: str | None = None
    """GET: the query parameter holding the challenge."""
    field: str | None = None
    """POST: JSON path of the challenge in the body (only bodies that carry it)."""
    answer: Literal["text", "json"] = "text"
    answer_key: str = "challenge"

    @model_validator(mode="after")
    def _where(self) -> ChallengeSpec:
        if (self.param is None) == (self.field is None):
            raise ValueError("set exactly one of 'param' (GET) or 'field' (POST)")
        return self


class WebhookSpec(Spec):
    signature: SignatureSpec
    challenge: ChallengeSpec | None = None
    id: str | None = None
    """JSON path of the delivery id in the body (default: the body's hash)."""
    id_header: str | None = None
    event: str | None = "$.type"
    """JSON path of the event name."""
    ids: str = "$.data.id"
    """JSON path of the ids of the records concerned (``$.items[*].id`` for several)."""
    events: dict[str, str] = {}
    """Event name -> stream; without it every event concerns the first stream. Names may
    be patterns (``"zen:event-type:user.*"``)."""

    def stream_of(self, event: Any) -> str | None:
        """The stream an event concerns: an exact name first, then the first pattern."""
        name = str(event)
        if name in self.events:
            return self.events[name]
        return next((s for p, s in self.events.items() if fnmatchcase(name, p)), None)


def _digest(spec: HmacSignature, secret: str, signed: bytes) -> str:
    mac = hmac.new(secret.encode(), signed, getattr(hashlib, spec.algorithm)).digest()
    text = mac.hex() if spec.encoding == "hex" else base64.b64encode(mac).decode()
    return spec.prefix + text


def _signed(spec: HmacSignature, body: bytes, timestamp: str | None, url: str | None) -> bytes:
    if spec.signed == "timestamp+body":
        return f"{timestamp}{spec.separator}".encode() + body
    if spec.signed == "url+body":
        return f"{url}{spec.separator}".encode() + body
    return body


def sign(
    spec: HmacSignature,
    secret: str,
    body: bytes,
    *,
    url: str | None = None,
    now: float | None = None,
) -> dict[str, str]:
    """The headers a provider would send with ``body`` (sandboxes sign this way)."""
    headers: dict[str, str] = {}
    timestamp = None
    if spec.timestamp_header:
        moment = int(time.time() if now is None else now)
        timestamp = str(moment)
        if spec.timestamp_format == "iso":
            timestamp = datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        headers[spec.timestamp_header] = timestamp
    headers[spec.header] = _digest(spec, secret, _signed(spec, body, timestamp, url))
    return headers


def _seconds(timestamp: str | None, fmt: str) -> str | float | None:
    """The timestamp header as Unix seconds (ISO 8601 read when declared)."""
    if fmt != "iso" or not timestamp:
        return timestamp
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise WebhookRejected(401, "timestamp is not an ISO 8601 time") from None


def _render(template: str | None, settings: Any) -> str | None:
    if template is None:
        return None
    values = {"settings": settings.model_dump() if hasattr(settings, "model_dump") else {}}
    try:
        text = Template(template).render(values)
    except KeyError:
        return None
    register_secret(text)
    return text or None


class DeclaredReceiver(WebhookReceiver):
    """The receiver of every declared connector with a ``[webhooks]`` table."""

    methods: ClassVar[tuple[str, ...]] = ("GET", "POST")

    @property
    def spec(self) -> WebhookSpec:
        spec = type(self.connector).declaration.webhooks  # type: ignore[attr-defined]
        assert spec is not None
        return spec

    async def verify(self, request: RequestInfo, body: bytes) -> Delivery:
        spec = self.spec
        if request.subpath:
            raise WebhookRejected(404, "no such webhook path")
        self._check_signature(spec, request, body)
        answered = self._challenge(spec, request, body)
        if answered is not None:
            return answered
        if request.method != "POST":
            raise WebhookRejected(405, "webhooks are POSTed")
        delivery_id = request.headers.get(spec.id_header.lower()) if spec.id_header else None
        payload = parse_json(body, delivery_id or body_id(body))
        if spec.id and not delivery_id:
            found = JsonPath(spec.id).first(payload)
            delivery_id = str(found) if found not in (None, "") else None
        delivery_id = delivery_id or body_id(body)
        kind = JsonPath(spec.event).first(payload) if spec.event else None
        return Delivery(delivery_id=delivery_id, kind=str(kind or "event")[:64])

    def _check_signature(self, spec: WebhookSpec, request: RequestInfo, body: bytes) -> None:
        sig = spec.signature
        if isinstance(sig, UrlSecretSignature):
            verify_url_secret(_render(sig.secret, self.settings), request.query.get(sig.param))
            return
        if isinstance(sig, CustomSignature):
            check: Callable[..., Any] = resolve_hook(sig.hook)
            check(request, body, _render(sig.secret, self.settings))
            return
        if request.method == "GET" and spec.challenge and spec.challenge.method == "GET":
            return  # a GET handshake carries no body to sign
        secret = _render(sig.secret, self.settings)
        if not secret:
            raise WebhookRejected(401, "no webhook secret is configured for this connection")
        timestamp = None
        if sig.timestamp_header:
            timestamp = request.headers.get(sig.timestamp_header.lower())
            check_timestamp(_seconds(timestamp, sig.timestamp_format), sig.window)
        url = _render(sig.url, self.settings) if sig.signed == "url+body" else None
        if sig.signed == "url+body" and not url:
            raise WebhookRejected(401, "no webhook URL is configured to check the signature")
        expected = _digest(sig, secret, _signed(sig, body, timestamp, url))
        verify_signature(expected, request.headers.get(sig.header.lower()))

    def _challenge(self, spec: WebhookSpec, request: RequestInfo, body: bytes) -> Delivery | None:
        ch = spec.challenge
        if ch is None or request.method != ch.method:
            return None
        if ch.param is not None:
            value = request.query.get(ch.param)
        else:
            assert ch.field is not None
            try:
                value = JsonPath(ch.field).first(parse_json(body))
            except MalformedDelivery:
                return None
        if value in (None, ""):
            if request.method == "GET":
                raise WebhookRejected(400, "the handshake carries no challenge")
            return None
        if ch.answer == "json":
            import json

            response = WebhookResponse(200, json.dumps({ch.answer_key: value}), "application/json")
        else:
            response = WebhookResponse(200, str(value))
        return Delivery(delivery_id="challenge", kind="challenge", store=False, response=response)

    def targets(self, payload: Any) -> dict[str, list[str]]:
        """The records a delivery concerns, by stream (empty: an event not mapped)."""
        spec = self.spec
        event = JsonPath(spec.event).first(payload) if spec.event else None
        if spec.events:
            stream = spec.stream_of(event)
            if stream is None:
                return {}
        else:
            stream = self.connector.streams()[0].name
        ids = [str(i) for i in JsonPath(spec.ids).find(payload) if i not in (None, "")]
        return {stream: ids} if ids else {}

    async def handle(self, services: ConnectionServices, item: InboxItem) -> None:
        """Read the records an event names (a targeted fetch), unless a run since the
        delivery read everything. A record that does not come back (deleted) or a stream
        that cannot be read by id: a sync, which notices what changed."""
        try:
            payload = item.json()
        except ValueError:
            return
        targets = self.targets(payload)
        if not targets or await services.ran_since(item.received_at):
            return
        complete = True
        try:
            for stream, ids in targets.items():
                complete &= await services.fetch(stream, ids) >= len(set(ids))
        except ConnectorConfigError:
            complete = False
        if not complete:
            await services.catch_up(item.received_at)
