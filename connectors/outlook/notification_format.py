"""Microsoft Graph change and lifecycle notifications, as Microsoft documents them.

Source: the ``changeNotificationCollection`` and ``changeNotification`` resources of Graph
v1.0 (a JSON object whose ``value`` lists notifications; each has ``subscriptionId``,
``subscriptionExpirationDateTime``, ``tenantId``, ``clientState`` when the subscription set
one, and either ``changeType``, ``resource`` and ``resourceData`` (a change) or
``lifecycleEvent``: ``reauthorizationRequired``, ``subscriptionRemoved`` or ``missed``).
No OpenAPI description covers them; :func:`parse` reads them for the receiver and
:func:`problems` checks what the sandbox sends.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["CHANGE_TYPES", "LIFECYCLE_EVENTS", "NotificationError", "parse", "problems"]

CHANGE_TYPES = frozenset({"created", "updated", "deleted"})
LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})


class NotificationError(ValueError):
    pass


def parse(body: bytes) -> list[dict[str, Any]]:
    """The notifications of a delivery; raises :class:`NotificationError` naming the problem."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise NotificationError(f"body is not JSON: {exc}") from None
    items = document.get("value") if isinstance(document, dict) else None
    if not isinstance(items, list) or not items:
        raise NotificationError("no 'value' list of notifications")
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("subscriptionId"), str):
            raise NotificationError("a notification without a subscriptionId")
        if item.get("lifecycleEvent") is None and item.get("changeType") is None:
            raise NotificationError("a notification is neither a change nor a lifecycle event")
    return items


def problems(body: bytes, headers: Mapping[str, str]) -> list[str]:
    """What differs from the documented notification format (empty: it follows it)."""
    found = []
    kind = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    if not kind.startswith("application/json"):
        found.append(f"content-type {kind!r}, not application/json")
    try:
        items = parse(body)
    except NotificationError as exc:
        return [*found, str(exc)]
    for item in items:
        for key in ("subscriptionExpirationDateTime", "tenantId"):
            if key not in item:
                found.append(f"{key} missing")
        event = item.get("lifecycleEvent")
        if event is not None:
            if event not in LIFECYCLE_EVENTS:
                found.append(f"lifecycleEvent {event!r} is not one of {sorted(LIFECYCLE_EVENTS)}")
            continue
        if item.get("changeType") not in CHANGE_TYPES:
            found.append(f"changeType {item.get('changeType')!r} is not documented")
        data = item.get("resourceData")
        if not isinstance(item.get("resource"), str):
            found.append("resource missing")
        if not isinstance(data, dict) or not {"@odata.type", "@odata.id", "id"} <= set(data):
            found.append("resourceData lacks @odata.type, @odata.id or id")
    return found
