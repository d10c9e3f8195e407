"""``DeclaredReceiver``: the webhook receiver of every declared connector with ``[webhooks]``.

It verifies a delivery as ``hub.rest.webhooks`` declares (signature, timestamp window,
handshake) and treats it as a hint: the records it names are read through the declared API.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from hub.errors import ConnectorConfigError
from hub.logging import register_secret
from hub.rest.base import resolve_hook
from hub.rest.jsonpath import JsonPath
from hub.rest.template import Template
from hub.rest.webhooks import (
    CustomSignature,
    UrlSecretSignature,
    WebhookSpec,
    digest,
    signed_bytes,
)
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

__all__ = ["DeclaredReceiver"]


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
            loaded = type(self.connector).loaded  # type: ignore[attr-defined]
            # the hook loaded with the declaration: a file beside it is found there
            check: Callable[..., Any] = loaded.hooks.get(sig.hook) or resolve_hook(
                sig.hook, loaded.base_dir
            )
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
        expected = digest(sig, secret, signed_bytes(sig, body, timestamp, url))
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
