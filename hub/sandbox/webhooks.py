"""``WebhookSender``: a sandbox posting signed webhook deliveries to the hub.

The connector's sandbox supplies ``sign``: given the exact body bytes it returns the
provider's signature headers (Slack: ``X-Slack-Request-Timestamp`` and
``X-Slack-Signature``; Xero: ``x-xero-signature``; ...). Every delivery is recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["Delivery", "WebhookSender"]

Signer = Callable[[bytes], Mapping[str, str]]


@dataclass
class Delivery:
    url: str
    body: bytes
    headers: dict[str, str]
    status: int | None = None
    """``None`` when the hub could not be reached."""
    error: str | None = None


@dataclass
class WebhookSender:
    """Posts deliveries to ``url`` (settable later, e.g. over ``POST /_sandbox/webhooks``)."""

    url: str | None = None
    sign: Signer | None = None
    timeout: float = 10.0
    content_type: str = "application/json"
    deliveries: list[Delivery] = field(default_factory=list)
    observer: Callable[[Delivery], None] | None = None
    """Sees each delivery before it is posted (``SandboxApp`` checks it against the
    provider's documented format)."""

    def prepare(
        self, payload: Any, headers: Mapping[str, str] | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """The body bytes (JSON unless bytes or str are given) and all headers, signed."""
        if isinstance(payload, bytes):
            body = payload
        elif isinstance(payload, str):
            body = payload.encode()
        else:
            body = json.dumps(payload, separators=(",", ":")).encode()
        all_headers = {"content-type": self.content_type, **(headers or {})}
        if self.sign is not None:
            all_headers.update(self.sign(body))
        return body, all_headers

    async def send(
        self, payload: Any, headers: Mapping[str, str] | None = None, url: str | None = None
    ) -> Delivery:
        """POST one delivery (to ``url``, default :attr:`url`: a provider that takes the
        address per subscription passes it); never raises for network trouble (see
        ``Delivery.error``)."""
        url = url or self.url
        if not url:
            raise RuntimeError("WebhookSender.url is not set: where should webhooks go?")
        body, all_headers = self.prepare(payload, headers)
        delivery = Delivery(url=url, body=body, headers=all_headers)
        if self.observer is not None:
            self.observer(delivery)
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.post(url, content=body, headers=all_headers)
            delivery.status = response.status_code
        except httpx.HTTPError as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
        self.deliveries.append(delivery)
        return delivery

    def send_sync(self, payload: Any, headers: Mapping[str, str] | None = None) -> Delivery:
        """Blocking :meth:`send`, for tests that are not async."""
        if not self.url:
            raise RuntimeError("WebhookSender.url is not set: where should webhooks go?")
        body, all_headers = self.prepare(payload, headers)
        delivery = Delivery(url=self.url, body=body, headers=all_headers)
        if self.observer is not None:
            self.observer(delivery)
        try:
            response = httpx.post(self.url, content=body, headers=all_headers, timeout=self.timeout)
            delivery.status = response.status_code
        except httpx.HTTPError as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
        self.deliveries.append(delivery)
        return delivery
