"""Helpers for the Gmail connector's tests: a served sandbox and connectors on it."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import httpx

from connectors.gmail import GmailConnector, GmailSettings
from connectors.gmail.sandbox import MAILBOX, GmailSandboxApp
from hub.connector import ConnectorContext, Stream
from hub.http import forget_limiters
from hub.testing.contract import pull_pages

SCOPE = "https://www.googleapis.com/auth/"
READ = f"{SCOPE}gmail.readonly {SCOPE}contacts"
METADATA = f"{SCOPE}gmail.metadata {SCOPE}contacts"


class TokenCredentials:
    """A user's stored token, as ``crmhub connect`` leaves it (no refresh needed here)."""

    def __init__(self, token: str, scope: str) -> None:
        self.token = token
        self.scope = scope

    async def secret(self) -> dict[str, Any]:
        return {"access_token": self.token, "scope": self.scope}

    def auth(self) -> httpx.Auth:
        return _Bearer(self.token)


class _Bearer(httpx.Auth):
    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


def user_connector(
    app: GmailSandboxApp,
    url: str,
    tmp_path: Path,
    scope: str = READ,
    subject: str = MAILBOX,
    name: str = "gm",
    **settings: Any,
) -> GmailConnector:
    forget_limiters()
    token = app.provider.oauth.issue_grant(scope=scope, subject=subject)["access_token"]
    options: dict[str, Any] = {"api_root": url, "units_per_second": 100_000, **settings}
    context = ConnectorContext(name, tmp_path, credentials=TokenCredentials(token, scope))
    return GmailConnector(GmailSettings(**options), context)


class MessageSamples:
    """The contract's sample records for a mail connector's ``messages`` stream (incoming
    mail, told apart by Message-ID)."""

    source: str = ""

    def sample(self, stream: Stream, i: int) -> dict[str, Any]:
        return {
            "from": f"person{i}@example.com",
            "subject": f"Question {i}",
            "message_id": f"msg{i}@test.example",
        }

    def identity(self, stream: Stream, data: dict[str, Any]) -> str:
        return str(data.get("message_id") or "")

    def matches(self, pulled: dict[str, Any], expected: dict[str, Any]) -> bool:
        return (
            pulled["subject"] == expected["subject"]
            and pulled["message_id"] == expected["message_id"]
            and pulled["from"] == expected["from"]
            and pulled["direction"] == "in"
            and pulled["source"] == self.source
        )


def subset(pulled: Any, expected: Any) -> bool:
    """Whether ``pulled`` carries ``expected`` (dicts by key, lists item by item)."""
    if isinstance(expected, dict):
        return isinstance(pulled, dict) and all(
            subset(pulled.get(k), v) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(pulled, list)
            and len(pulled) >= len(expected)
            and all(subset(p, e) for p, e in zip(pulled, expected, strict=False))
        )
    return bool(pulled == expected)


async def pull_all(connector: GmailConnector, stream: Stream, cursor: Any = None) -> Any:
    """(records, deleted ids, last cursor) of one whole pull."""
    pages = await pull_pages(connector, stream, cursor)
    records = [r for p in pages for r in p.records]
    deleted = [d for p in pages for d in p.deleted]
    last = next((p.cursor for p in reversed(pages) if p.cursor is not None), cursor)
    return records, deleted, last


async def deliver(
    app: GmailSandboxApp,
    *,
    sender: str,
    to: str,
    subject: str = "Hello",
    message_id: str | None = None,
    sent: bool = False,
    cc: str | None = None,
    mailbox: str = MAILBOX,
    body: str = "Hi there",
) -> dict[str, Any]:
    """A message arrives in (or is sent from) a sandbox mailbox, as through its control."""
    from datetime import UTC, datetime
    from email.utils import format_datetime, make_msgid

    when = datetime.now(UTC)
    headers = [
        ("From", sender),
        ("To", to),
        ("Subject", subject),
        ("Date", format_datetime(when)),
        ("Message-ID", message_id or make_msgid(domain="test.example")),
    ]
    if cc:
        headers.append(("Cc", cc))
    labels = {"SENT"} if sent else {"INBOX", "CATEGORY_PERSONAL"}
    return await app.provider.deliver(
        mailbox, headers=headers, internal_ms=int(when.timestamp() * 1000), labels=labels, body=body
    )
