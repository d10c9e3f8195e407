"""Spam protection for browser forms: signed issue times, the honeypot, a rate limit.

- **Issue token**: the form carries ``crmhub_token`` = ``<unix seconds>.<signature>``, the
  signature being base64url HMAC-SHA256 of ``<connection>.<seconds>`` with the form's
  ``form_secret``. A post sooner than ``min_seconds`` after issue (a bot filling the form at
  once) or later than ``max_age_seconds`` (a replayed page) is refused, as is a token that
  does not verify. Pages get a token with the snippet or from ``GET /forms/<key>/token``.
- **Honeypot**: a text field hidden with CSS that people leave empty; bots fill it.
- **Rate limit**: at most ``rate_limit`` posts per client address per ``rate_window``
  seconds, per form, counted in this process (a sliding log of recent post times).

Every refusal is a :class:`FormRefused` carrying the HTTP status, a short ``code`` for the
``crmhub_form_rejected_total`` metric, and a message safe to show the sender.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections import deque
from collections.abc import Callable

from hub.webhooks import WebhookRejected

TOKEN_FIELD = "crmhub_token"
CLOCK_SKEW = 5.0
"""Seconds a token may claim to be from the future (clocks of several hub nodes)."""


class FormRefused(WebhookRejected):
    """A post refused with ``status``; ``code`` names the reason in metrics."""

    def __init__(self, status: int, code: str, reason: str, retry_after: float | None = None):
        super().__init__(status, reason)
        self.code = code
        self.retry_after = retry_after


def _signature(secret: str, connection: str, issued: int) -> str:
    digest = hmac.new(secret.encode(), f"{connection}.{issued}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def issue_token(secret: str, connection: str, now: float | None = None) -> str:
    """A fresh signed issue time for the form of ``connection``."""
    issued = int(time.time() if now is None else now)
    return f"{issued}.{_signature(secret, connection, issued)}"


def check_token(
    token: str | None,
    secret: str,
    connection: str,
    *,
    min_seconds: float,
    max_age: float,
    now: float | None = None,
) -> float:
    """Verify a token; returns its age in seconds or raises ``FormRefused`` (403)."""
    if not token:
        raise FormRefused(403, "token_missing", "the form's issue token is missing; reload it")
    issued_text, _, given = token.partition(".")
    if not issued_text.isdigit() or not given:
        raise FormRefused(403, "token_invalid", "the form's issue token is not valid; reload it")
    issued = int(issued_text)
    expected = _signature(secret, connection, issued)
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise FormRefused(403, "token_invalid", "the form's issue token is not valid; reload it")
    age = (time.time() if now is None else now) - issued
    if age < -CLOCK_SKEW:
        raise FormRefused(403, "token_invalid", "the form's issue token is from the future")
    if age > max_age:
        raise FormRefused(403, "token_expired", "the form has expired; reload it and send again")
    if age < min_seconds:
        raise FormRefused(403, "too_fast", "the form was sent too quickly; wait and send again")
    return age


def check_honeypot(value: object) -> None:
    """A filled honeypot means a bot filled every field it found."""
    if value not in (None, "", []):
        raise FormRefused(403, "honeypot", "the submission was refused as automated")


class RateLimiter:
    """At most ``limit`` events per key per ``window`` seconds (``limit`` 0: unlimited).

    Memory stays bounded: keys whose events all left the window are dropped once the table
    holds ``max_keys`` entries.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self._events: dict[str, deque[float]] = {}

    def hit(self, key: str) -> None:
        """Count one event for ``key``; raises ``FormRefused`` (429) when over the limit."""
        if self.limit <= 0:
            return
        now = self.clock()
        events = self._events.get(key)
        if events is None:
            if len(self._events) >= self.max_keys:
                self._prune(now)
            events = self._events[key] = deque()
        while events and events[0] <= now - self.window:
            events.popleft()
        if len(events) >= self.limit:
            wait = max(events[0] + self.window - now, 0.0)
            raise FormRefused(
                429,
                "rate_limited",
                f"too many posts from your address; try again in {wait:.0f} s",
                retry_after=wait,
            )
        events.append(now)

    def _prune(self, now: float) -> None:
        stale = [k for k, ev in self._events.items() if not ev or ev[-1] <= now - self.window]
        for key in stale:
            del self._events[key]
        if len(self._events) >= self.max_keys:  # still full: forget the oldest half
            for key in list(self._events)[: self.max_keys // 2]:
                del self._events[key]
