"""Mailchimp's webhook payloads as its guide documents them, field by field.

Source: Mailchimp's guide "Sync audience data with webhooks" (formerly "About webhooks"),
whose sample payloads are form-encoded ``type``, ``fired_at`` (``YYYY-MM-DD HH:MM:SS``, UTC)
and ``data[...]`` fields. Events about a member carry the member's merge fields as
``data[merges][TAG]`` (an address as ``data[merges][TAG][part]``), always with
``data[merges][EMAIL]``. The OpenAPI description does not cover these payloads, so the
sandbox's deliveries are checked against this table instead (:func:`problems`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import parse_qsl

__all__ = ["FIELDS", "VALUES", "problems"]

_MEMBER = ("data[id]", "data[list_id]", "data[email]", "data[email_type]")
FIELDS: dict[str, frozenset[str]] = {
    "subscribe": frozenset({*_MEMBER, "data[ip_opt]", "data[ip_signup]"}),
    "unsubscribe": frozenset(
        {*_MEMBER, "data[action]", "data[reason]", "data[ip_opt]", "data[campaign_id]"}
    ),
    "profile": frozenset({*_MEMBER, "data[ip_opt]"}),
    "upemail": frozenset({"data[list_id]", "data[new_id]", "data[new_email]", "data[old_email]"}),
    "cleaned": frozenset({"data[list_id]", "data[campaign_id]", "data[reason]", "data[email]"}),
    "campaign": frozenset(
        {"data[id]", "data[subject]", "data[status]", "data[reason]", "data[list_id]"}
    ),
}
"""The ``data[...]`` fields of each event type, besides ``type``, ``fired_at`` and merges."""
MERGES = frozenset({"subscribe", "unsubscribe", "profile"})
"""Event types that carry the member's merge fields."""
VALUES: dict[tuple[str, str], frozenset[str]] = {
    ("unsubscribe", "data[action]"): frozenset({"unsub", "delete"}),
    ("unsubscribe", "data[reason]"): frozenset({"manual", "abuse"}),
    ("cleaned", "data[reason]"): frozenset({"hard", "abuse"}),
    ("subscribe", "data[email_type]"): frozenset({"html", "text"}),
}
"""Documented values of the fields that take one of a few."""
_FIRED_AT = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
_MERGE = re.compile(r"^data\[merges\]\[[A-Z0-9_]+\](\[[a-z0-9_]+\])?$")


def problems(body: bytes, headers: Mapping[str, str]) -> list[str]:
    """What differs from the documented payload of its type (empty: it follows it)."""
    kind_header = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    found: list[str] = []
    if not kind_header.startswith("application/x-www-form-urlencoded"):
        found.append(f"content-type {kind_header!r}, not application/x-www-form-urlencoded")
    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    kind = form.get("type", "")
    if kind not in FIELDS:
        return [*found, f"type {kind!r} is not a Mailchimp event ({', '.join(sorted(FIELDS))})"]
    if not _FIRED_AT.match(form.get("fired_at", "")):
        found.append(f"fired_at {form.get('fired_at')!r} is not 'YYYY-MM-DD HH:MM:SS'")
    keys = set(form) - {"type", "fired_at"}
    merges = {k for k in keys if k.startswith("data[merges]")}
    expected = FIELDS[kind]
    for key in sorted(expected - keys):
        found.append(f"{kind}: {key} missing")
    for key in sorted(keys - expected - merges):
        found.append(f"{kind}: {key} is not a documented field")
    if kind in MERGES:
        if "data[merges][EMAIL]" not in merges:
            found.append(f"{kind}: data[merges][EMAIL] missing")
        found += [
            f"{kind}: {k} is not a merge field" for k in sorted(merges) if not _MERGE.match(k)
        ]
    elif merges:
        found.append(f"{kind}: carries merge fields, which its documented payload has not")
    for (event, key), allowed in VALUES.items():
        if event == kind and key in form and form[key] not in allowed:
            found.append(f"{kind}: {key} is {form[key]!r}, not one of {sorted(allowed)}")
    return found
