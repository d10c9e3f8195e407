"""Events API deliveries as Slack documents them, to hold the sandbox's events to.

Slack publishes its Events API as an AsyncAPI document (``spec/slack_events_api_async_v1.json``,
see the README there): every event callback is a ``GenericEventWrapper``, and the ``message``
topic describes the inner message event. :func:`problems` checks a payload against those
schemas with ``jsonschema``. The one documented shape the description gets wrong is
``url_verification``: its topic points at the event wrapper, whose required ``team_id``,
``event`` and ``event_id`` the documented handshake (``token``, ``challenge``, ``type``) does
not carry; it is checked against the documented example instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["SOURCE", "problems"]

SOURCE = Path(__file__).with_name("spec") / "slack_events_api_async_v1.json"
URL_VERIFICATION_KEYS = frozenset({"token", "challenge", "type"})


@cache
def _document() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SOURCE.read_text(encoding="utf-8"))
    return data


def _schema(topic: str) -> dict[str, Any]:
    document = _document()
    payload = document["topics"][topic]["subscribe"]["payload"]
    # the topics' payloads refer to components by "#/components/..." of this document
    return {**payload, "components": document["components"]}


def _errors(schema: dict[str, Any], value: Any, where: str) -> list[str]:
    from jsonschema import Draft4Validator

    return [
        f"{where}{'/'.join(map(str, e.absolute_path)) or '.'}: {e.message}"
        for e in Draft4Validator(schema).iter_errors(value)
    ]


def problems(body: bytes, headers: Mapping[str, str]) -> list[str]:
    """What is wrong with an Events API delivery, by Slack's description."""
    found: list[str] = []
    names = {k.lower() for k in headers}
    for header in ("x-slack-signature", "x-slack-request-timestamp"):
        if header not in names:
            found.append(f"header {header} missing")
    try:
        payload = json.loads(body)
    except ValueError as exc:
        return [*found, f"body is not JSON: {exc}"]
    if not isinstance(payload, dict):
        return [*found, "body is not a JSON object"]
    if payload.get("type") == "url_verification":
        if set(payload) != URL_VERIFICATION_KEYS:
            found.append(f"url_verification keys are {sorted(payload)}")
        return found
    event = payload.get("event")
    kind = event.get("type") if isinstance(event, dict) else None
    # every callback is the generic wrapper (user_change, team_join... all refer to it);
    # the message topic also describes the inner message event
    topic = "message" if kind == "message" else "user.change"
    found += _errors(_schema(topic), payload, "")
    return found
