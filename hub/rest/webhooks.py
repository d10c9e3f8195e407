"""``[webhooks]``: how a declared connector's webhooks are signed and what they name.

The signature scheme is chosen by ``kind``: ``hmac`` (a header holding an HMAC of the body,
of timestamp + body, or of URL + body; hex or base64; an optional prefix such as
``sha256=``; a timestamp window), ``url_secret`` (a secret in the webhook URL, for providers
that sign nothing) or ``custom`` (a function named by ``hook``). A ``challenge`` answers
the provider's handshake (a query parameter on a GET, or a field of a POSTed body) without
storing anything. Each stored delivery names an event (``event``, a JSON path) and the
records it concerns (``ids``); ``events`` maps event names to streams.

Handling a delivery is a hint, not the data: the connection is synced (unless a run that
started after the delivery arrived already covered it), so the records are read through
the declared API like any other change (:class:`hub.rest.receiver.DeclaredReceiver`, in
a module of its own: a connector that only pulls does not load the webhook machinery).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from hub.rest.base import KindSpec, Spec

__all__ = [
    "ChallengeSpec",
    "CustomSignature",
    "HmacSignature",
    "UrlSecretSignature",
    "WebhookSpec",
    "digest",
    "sign",
    "signed_bytes",
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


def digest(spec: HmacSignature, secret: str, signed: bytes) -> str:
    mac = hmac.new(secret.encode(), signed, getattr(hashlib, spec.algorithm)).digest()
    text = mac.hex() if spec.encoding == "hex" else base64.b64encode(mac).decode()
    return spec.prefix + text


def signed_bytes(spec: HmacSignature, body: bytes, timestamp: str | None, url: str | None) -> bytes:
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
    headers[spec.header] = digest(spec, secret, signed_bytes(spec, body, timestamp, url))
    return headers
