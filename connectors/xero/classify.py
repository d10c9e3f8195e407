"""What Xero's answers mean, in one place, and the usage its headers report.

Xero limits each organisation (tenant) to 60 calls a minute, 5 in flight and 5,000 a day,
and each app to 10,000 calls a minute over all organisations. A call over a limit is
answered 429 with ``Retry-After`` (seconds) and ``X-Rate-Limit-Problem`` naming the limit
(``minute``, ``day``, ``appminute``, ``concurrent``). Every answer carries what is left:
``X-DayLimit-Remaining``, ``X-MinLimit-Remaining``, ``X-AppMinLimit-Remaining``; the
classifier keeps the latest values for ``crmhub connections``.

A spent daily limit is a wait of hours: the retry loop does not sleep it, the run ends
"throttled until" the time Xero named (next day when it names none) and the daemon leaves
the connection alone until then. Validation errors (400 ``ValidationException``) are
permanent for the item, with Xero's messages in the error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from hub.errors import ErrorKind
from hub.http import ResponseClassifier

__all__ = ["LIMITS", "Usage", "XeroClassifier", "validation_messages"]

LIMITS = {"day": 5000, "minute": 60, "appminute": 10000}
_PROBLEMS = {
    "day": "the organisation's daily limit of 5,000 calls is spent",
    "minute": "the organisation's limit of 60 calls a minute is spent",
    "appminute": "the app's limit of 10,000 calls a minute is spent",
    "concurrent": "more than 5 calls of the organisation were in flight",
}
_EMAIL = re.compile(r"[^\s@\"'<>]+@[^\s@\"'<>]+\.[A-Za-z]{2,}")


@dataclass
class Usage:
    """What Xero last said about the limits of this organisation and app."""

    day_remaining: int | None = None
    minute_remaining: int | None = None
    app_minute_remaining: int | None = None
    problem: str | None = None
    until: datetime | None = None
    at: datetime | None = None

    def as_state(self) -> dict[str, Any]:
        return {
            "day_remaining": self.day_remaining,
            "minute_remaining": self.minute_remaining,
            "app_minute_remaining": self.app_minute_remaining,
            "problem": self.problem,
            "until": self.until.isoformat() if self.until else None,
            "at": self.at.isoformat() if self.at else None,
            "summary": self.summary(),
        }

    def summary(self) -> str:
        """One line for ``crmhub connections``: calls used today, and a spent limit."""
        parts = []
        if self.day_remaining is not None:
            used = LIMITS["day"] - self.day_remaining
            parts.append(f"{used:,} of {LIMITS['day']:,} calls today")
        if self.problem == "day" and self.until is not None:
            parts.append(f"daily limit spent, waiting until {self.until:%Y-%m-%d %H:%M} UTC")
        return "; ".join(parts)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def next_day(now: datetime) -> datetime:
    """Midnight UTC after ``now`` (when Xero names no wait for its daily limit)."""
    return (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def validation_messages(item: Any) -> list[str]:
    """The ``ValidationErrors`` messages of an answered item (a contact, an invoice, an
    element of a ``ValidationException``), e-mail addresses masked."""
    if not isinstance(item, dict):
        return []
    found = [e.get("Message") for e in item.get("ValidationErrors") or [] if isinstance(e, dict)]
    return [_EMAIL.sub("<email>", str(m)) for m in found if m]


class XeroClassifier(ResponseClassifier):
    """Default kinds (429 rate limited, 401 re-auth, 5xx transient, other 4xx permanent);
    waits from ``Retry-After`` or, for the daily limit, until the next day; usage kept."""

    def __init__(self, clock: Any = None) -> None:
        self.usage = Usage()
        self._clock = clock or (lambda: datetime.now(UTC))

    def classify(self, response: httpx.Response) -> ErrorKind | None:
        headers = response.headers
        now = self._clock()
        day = _int(headers.get("X-DayLimit-Remaining"))
        if day is not None:
            self.usage.day_remaining = day
            self.usage.at = now
        minute = _int(headers.get("X-MinLimit-Remaining"))
        if minute is not None:
            self.usage.minute_remaining = minute
        app = _int(headers.get("X-AppMinLimit-Remaining"))
        if app is not None:
            self.usage.app_minute_remaining = app
        if response.status_code == 429:
            self.usage.problem = headers.get("X-Rate-Limit-Problem", "").lower() or None
            wait = self.retry_after(response)
            self.usage.until = now + timedelta(seconds=wait) if wait is not None else None
            if self.usage.problem == "day":
                self.usage.day_remaining = 0
            return ErrorKind.RATE_LIMITED
        spent = self.usage.until
        if response.status_code < 400 and self.usage.problem and spent and now >= spent:
            self.usage.problem = self.usage.until = None
        return super().classify(response)

    def retry_after(self, response: httpx.Response) -> float | None:
        after = super().retry_after(response)
        if after is None and response.headers.get("X-Rate-Limit-Problem", "").lower() == "day":
            now = self._clock()
            return (next_day(now) - now).total_seconds()
        return after

    def describe(self, response: httpx.Response) -> str:
        head = super().describe(response)
        if response.status_code == 429:
            problem = response.headers.get("X-Rate-Limit-Problem", "").lower()
            text = _PROBLEMS.get(problem, f"limit {problem!r} reached" if problem else "")
            return f"{head}: Xero: {text}" if text else head
        body = _json(response)
        if not isinstance(body, dict):
            return head
        parts = [str(body["Message"])] if body.get("Message") else []
        if body.get("Detail"):
            parts.append(str(body["Detail"]))
        for element in (body.get("Elements") or [])[:5]:
            parts += validation_messages(element)
        return f"{head}: {'; '.join(_EMAIL.sub('<email>', p) for p in parts)}" if parts else head


def _json(response: httpx.Response) -> Any:
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        return response.json()
    except ValueError:
        return None
