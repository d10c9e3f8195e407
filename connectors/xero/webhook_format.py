"""Xero's webhook payload as documented (``spec/xero-webhooks.yaml``), and its signature.

A delivery is ``{"events": [...], "firstEventSequence", "lastEventSequence", "entropy"}``;
each event names a record (``resourceId``, ``resourceUrl``), its ``eventCategory``
(``CONTACT``, ``INVOICE``, ``CREDITNOTE``, ``SUBSCRIPTION``), ``eventType`` (``CREATE``,
``UPDATE``; an archived contact is an update) and ``tenantId``. The events carry no record
data (credit note events a little). The intent-to-receive check Xero runs when a webhook
is set up posts deliveries with no events and sequences 0, some signed with the webhook
key and some not: the receiver must answer 200 to the first, 401 to the others.

``x-xero-signature`` is the base64 HMAC-SHA256 of the raw body with the webhook key.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from hub.webhooks import hmac_sha256

__all__ = ["SIGNATURE_HEADER", "events", "problems", "sign"]

SIGNATURE_HEADER = "x-xero-signature"
SPEC = Path(__file__).with_name("spec") / "xero-webhooks.yaml"


def sign(key: str, body: bytes) -> str:
    return hmac_sha256(key, body, "base64")


@functools.cache
def _validators() -> dict[str, Draft202012Validator]:
    document = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    components = document["components"]
    return {
        name: Draft202012Validator(
            {"$ref": f"#/components/schemas/{name}", "components": components}
        )
        for name in ("WebhookEvent", "CreditNoteWebhookEvent")
    }


def problems(body: bytes, headers: Mapping[str, str]) -> list[str]:
    """What is wrong with a delivery by Xero's description (empty: nothing)."""
    try:
        payload = json.loads(body)
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    if not isinstance(payload, dict):
        return ["not a JSON object"]
    found = [f"no {SIGNATURE_HEADER} header"] if SIGNATURE_HEADER not in headers else []
    if payload.get("events") == []:
        # intent to receive: sequences are 0, below the description's minimum of 1
        payload = {**payload, "firstEventSequence": 1, "lastEventSequence": 1}
    credit = any(
        isinstance(e, dict) and e.get("eventCategory") == "CREDITNOTE"
        for e in payload.get("events") or []
    )
    validator = _validators()["CreditNoteWebhookEvent" if credit else "WebhookEvent"]
    found += [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(payload)]
    return found


def events(body: bytes) -> list[dict[str, Any]]:
    """The events of a delivery (raises ``ValueError`` when it is not one)."""
    payload = json.loads(body)
    if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
        raise ValueError("no 'events' list")
    found = [e for e in payload["events"] if isinstance(e, dict)]
    for event in found:
        if not event.get("resourceId") or not event.get("eventCategory"):
            raise ValueError("an event without resourceId or eventCategory")
    return found
