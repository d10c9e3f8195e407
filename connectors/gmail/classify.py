"""What Google's answers mean, in one place.

Two layers see an answer. The transport (:class:`GoogleClassifier`, under the hub's retry)
retries what is worth retrying: 5xx, 429, and 403s whose reason is a rate limit
(``rateLimitExceeded``, ``userRateLimitExceeded``, quota exceeded); a 401 needs re-auth.
Every other answer (400, other 403s, 404, 409, 410, 412) goes back to
google-api-python-client, which raises ``HttpError``; :func:`google_error` turns that into a
crmhub error that still carries the status and Google's reason, because some of them are
not failures to the connector (a stale history id's 404, an expired sync token, a stale
etag).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from hub.errors import ErrorKind, PermanentError
from hub.http import ResponseClassifier

__all__ = ["RATE_REASONS", "GoogleClassifier", "GoogleError", "google_error", "reasons_of"]

RATE_REASONS = frozenset(
    {
        "rateLimitExceeded",
        "userRateLimitExceeded",
        "quotaExceeded",
        "dailyLimitExceeded",
        "RATE_LIMIT_EXCEEDED",
        "RESOURCE_EXHAUSTED",
    }
)
"""Google's reasons that mean "slow down", whatever the status (403 or 429)."""


def reasons_of(body: bytes | str | None) -> tuple[int | None, str, set[str]]:
    """(code, message, reasons) of Google's JSON error body; reasons gathers ``errors[].reason``,
    the ``status`` and ``details[].reason`` (ErrorInfo)."""
    try:
        error = json.loads(body or b"{}").get("error")
    except (ValueError, AttributeError):
        return None, "", set()
    if not isinstance(error, dict):
        return None, "", set()
    reasons: set[str] = set()
    for item in error.get("errors") or []:
        if isinstance(item, dict) and item.get("reason"):
            reasons.add(str(item["reason"]))
    for item in error.get("details") or []:
        if isinstance(item, dict) and item.get("reason"):
            reasons.add(str(item["reason"]))
    if error.get("status"):
        reasons.add(str(error["status"]))
    code = error.get("code")
    return code if isinstance(code, int) else None, str(error.get("message") or ""), reasons


def throttling(status: int, body: bytes | str | None) -> bool:
    """Whether an answer means "slow down" (429, or a 403 with a rate-limit reason)."""
    if status == 429:
        return True
    return status == 403 and bool(reasons_of(body)[2] & RATE_REASONS)


class GoogleClassifier(ResponseClassifier):
    """Transport-level: only what is retried (or needs re-auth) is a failure here."""

    def classify(self, response: httpx.Response) -> ErrorKind | None:
        status = response.status_code
        if throttling(status, response.content):
            return ErrorKind.RATE_LIMITED
        if status == 401:
            return ErrorKind.NEEDS_REAUTH
        if status >= 500:
            return ErrorKind.TRANSIENT
        return None  # answered to the client library, which raises HttpError

    def describe(self, response: httpx.Response) -> str:
        head = super().describe(response)
        _, message, reasons = reasons_of(response.content)
        detail = ", ".join(sorted(reasons))
        return f"{head}: {message} ({detail})" if message else head


class GoogleError(PermanentError):
    """A Google API refusal: ``status`` and ``reasons`` say which."""

    def __init__(self, message: str, status: int, reasons: set[str], **kw: Any) -> None:
        super().__init__(message, **kw)
        self.status = status
        self.reasons = reasons


def google_error(exc: Any, connection: str, what: str) -> GoogleError:
    """The crmhub error for a client library ``HttpError`` (``what``: the call made)."""
    status = int(getattr(getattr(exc, "resp", None), "status", 0) or 0)
    _, message, reasons = reasons_of(getattr(exc, "content", b""))
    text = f"Google answered HTTP {status} to {what}"
    if message:
        text += f": {message}"
    if reasons:
        text += f" ({', '.join(sorted(reasons))})"
    return GoogleError(text, status, reasons, connection=connection, request=what)
