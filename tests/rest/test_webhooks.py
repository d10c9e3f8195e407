"""Declared webhooks: signatures of every shape, the handshake, the events' records, and
the sandbox posting signed deliveries that the receiver accepts."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from hub.connector import ConnectorContext
from hub.rest import declared
from hub.rest.receiver import DeclaredReceiver
from hub.rest.sandbox import SANDBOX_WEBHOOK_SECRET, create_sandbox
from hub.rest.webhooks import HmacSignature, sign
from hub.webhooks import RequestInfo, WebhookRejected
from tests.rest.kit import declaration

SECRET = SANDBOX_WEBHOOK_SECRET


def receiver(webhooks: dict[str, Any], **settings: Any) -> DeclaredReceiver:
    spec = declaration(
        webhooks=webhooks,
        settings={"webhook_secret": {"type": "secret"}, "webhook_url": {}},
    )
    cls = declared(spec)
    values = {"webhook_secret": SECRET, **settings}
    assert cls.webhook is not None and issubclass(cls.webhook, DeclaredReceiver)
    made = cls.webhook(cls(cls.Settings.model_validate(values), ConnectorContext("p")))
    assert isinstance(made, DeclaredReceiver)
    return made


def request(
    headers: dict[str, str], method: str = "POST", query: dict[str, str] | None = None
) -> RequestInfo:
    lower = {k.lower(): v for k, v in headers.items()}
    return RequestInfo(method, "/hooks/p", "", query or {}, lower)


BODY = json.dumps({"id": "ev1", "type": "contact.updated", "data": {"id": 7}}).encode()


@pytest.mark.parametrize(
    "signature",
    [
        {"kind": "hmac", "header": "X-Sig"},
        {"kind": "hmac", "header": "X-Sig", "encoding": "base64", "algorithm": "sha1"},
        {"kind": "hmac", "header": "X-Hub-Signature-256", "prefix": "sha256="},
        {
            "kind": "hmac",
            "header": "X-Sig",
            "signed": "timestamp+body",
            "timestamp_header": "X-Ts",
            "separator": ".",
        },
        {"kind": "hmac", "header": "X-Sig", "signed": "url+body", "encoding": "base64"},
    ],
)
async def test_signed_deliveries_are_accepted_and_tampered_ones_refused(signature: dict) -> None:
    hooks = receiver(
        {"signature": signature, "id": "$.id"}, webhook_url="https://hub.example/hooks/p"
    )
    spec = HmacSignature.model_validate(signature)
    headers = sign(spec, SECRET, BODY, url="https://hub.example/hooks/p")
    delivery = await hooks.verify(request(headers), BODY)
    assert delivery.delivery_id == "ev1" and delivery.kind == "contact.updated"
    kept = hooks.kept_headers({**headers, "Authorization": "secret", "X-Other": "1"})
    assert set(kept) == {h.lower() for h in headers}  # signature and timestamp, nothing else
    with pytest.raises(WebhookRejected) as refused:
        await hooks.verify(request(headers), BODY.replace(b"7", b"8"))
    assert refused.value.status == 401
    if spec.timestamp_header:
        old = sign(spec, SECRET, BODY, now=time.time() - 3600)
        with pytest.raises(WebhookRejected, match="window"):
            await hooks.verify(request(old), BODY)


async def test_a_secret_in_the_url_and_a_get_handshake() -> None:
    hooks = receiver(
        {"signature": {"kind": "url_secret"}, "challenge": {"method": "GET", "param": "challenge"}}
    )
    ok = request({}, query={"secret": SECRET})
    assert (await hooks.verify(ok, BODY)).store
    with pytest.raises(WebhookRejected):
        await hooks.verify(request({}, query={"secret": "guess"}), BODY)
    shake = await hooks.verify(request({}, "GET", {"secret": SECRET, "challenge": "abc"}), b"")
    assert not shake.store and shake.response is not None and shake.response.body == "abc"


async def test_a_posted_challenge_is_echoed_as_json_without_storing() -> None:
    hooks = receiver(
        {
            "signature": {"kind": "hmac", "header": "X-Sig"},
            "challenge": {"method": "POST", "field": "$.challenge", "answer": "json"},
        }
    )
    body = b'{"type": "url_verification", "challenge": "xyz"}'
    spec = HmacSignature(kind="hmac", header="X-Sig")
    shake = await hooks.verify(request(sign(spec, SECRET, body)), body)
    assert not shake.store and shake.response is not None
    assert json.loads(shake.response.body) == {"challenge": "xyz"}


def test_events_name_their_stream_and_records() -> None:
    hooks = receiver(
        {
            "signature": {"kind": "hmac", "header": "X-Sig"},
            "ids": "$.items[*].id",
            "events": {"contact.changed": "contacts"},
        }
    )
    payload = {"type": "contact.changed", "items": [{"id": 1}, {"id": 2}]}
    assert hooks.targets(payload) == {"contacts": ["1", "2"]}
    assert hooks.targets({**payload, "type": "invoice.paid"}) == {}


async def test_the_sandbox_posts_deliveries_the_receiver_accepts() -> None:
    webhooks = {"signature": {"kind": "hmac", "header": "X-Sig", "signed": "timestamp+body",
                              "timestamp_header": "X-Ts"},
                "events": {"contact.changed": "contacts"}}  # fmt: skip
    hooks = receiver(webhooks)
    app = create_sandbox(type(hooks.connector).loaded, size=0)  # type: ignore[attr-defined]
    seen: list[tuple[dict[str, str], bytes]] = []

    class Catch:
        url = "http://hub.example/hooks/p"

        def send_sync(self, payload: Any) -> None:
            body, headers = sender.prepare(payload)
            seen.append((headers, body))

    sender = app.webhooks
    assert sender is not None
    sender.url = "http://hub.example/hooks/p"
    app.provider.webhooks = Catch()  # type: ignore[assignment]
    app.provider.add("contacts", {"email": "a@example.com"})
    [(headers, body)] = seen
    delivery = await hooks.verify(request(headers), body)
    assert delivery.kind == "contact.changed"
    assert hooks.targets(json.loads(body)) == {"contacts": ["1"]}


async def test_a_custom_signature_hook_beside_a_local_declaration_checks_deliveries(
    tmp_path: Path,
) -> None:
    (tmp_path / "acme_signing.py").write_text(
        "from hub.webhooks import WebhookRejected\n\n\n"
        "def check(request, body, secret):\n"
        "    if request.headers.get('x-token') != secret:\n"
        "        raise WebhookRejected(401, 'wrong token')\n"
    )
    path = tmp_path / "acme.toml"
    path.write_text(
        'name = "acme"\n\n[settings.webhook_secret]\ntype = "secret"\n\n'
        '[client]\nbase_url = "https://acme.example"\nauth = "bearer"\n\n'
        '[streams.contacts]\nentity = "contact"\npath = "/contacts"\n\n'
        '[webhooks]\nsignature = { kind = "custom", hook = "acme_signing:check" }\n'
    )
    cls = declared(path)
    assert cls.webhook is not None
    settings = cls.Settings.model_validate({"webhook_secret": SECRET})
    hooks = cls.webhook(cls(settings, ConnectorContext("p")))
    delivery = await hooks.verify(request({"X-Token": SECRET}), BODY)
    assert delivery.kind == "contact.updated"
    with pytest.raises(WebhookRejected, match="wrong token"):
        await hooks.verify(request({"X-Token": "guess"}), BODY)
