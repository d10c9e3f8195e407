"""``[[errors]]``: what the remote's answers mean, in crmhub's terms, in one place.

Rules are tried in order (a stream's own first, then the declaration's); the first that
matches decides. A rule matches on ``status`` (a code, a list, or ``"4xx"``/``"5xx"``), on a
regular expression found in the body (``body``), and only for the operations it names
(``ops``; default all). A rule without ``status`` only looks at failed answers (>= 400).

Kinds: ``transient`` (retried), ``throttled`` (retried after ``Retry-After``), ``permanent``
(this item fails), ``needs_reauth`` (a person must reconnect), ``config``, ``stale`` (the
write named an outdated version: the hub re-reads and merges), ``already_deleted`` (a delete
that finds nothing to delete succeeded), ``not_found``, and ``ok``.

Without a matching rule: 429 throttled, 401 needs re-auth, 408/425/5xx transient, 412 stale,
404 and 410 on a delete already deleted, 404 elsewhere not found, other 4xx permanent.
"""

from __future__ import annotations

import re
import time
from typing import Literal

import httpx
from pydantic import field_validator

from hub.errors import ErrorKind
from hub.http import ResponseClassifier, parse_retry_after
from hub.http.classify import TRANSIENT_STATUSES
from hub.rest.base import Spec
from hub.rest.jsonpath import JsonPath

__all__ = [
    "OPS",
    "DeclaredClassifier",
    "ErrorRule",
    "Outcome",
    "RetryAfterSpec",
    "outcome_for",
]

Outcome = Literal[
    "ok",
    "transient",
    "throttled",
    "permanent",
    "needs_reauth",
    "config",
    "stale",
    "already_deleted",
    "not_found",
]
Operation = Literal["pull", "fetch", "create", "update", "delete", "upsert", "batch", "webhook"]
OPS: tuple[str, ...] = ("pull", "fetch", "create", "update", "delete", "upsert", "batch")

KIND_OF: dict[str, ErrorKind | None] = {
    "ok": None,
    "transient": ErrorKind.TRANSIENT,
    "throttled": ErrorKind.RATE_LIMITED,
    "permanent": ErrorKind.PERMANENT,
    "needs_reauth": ErrorKind.NEEDS_REAUTH,
    "config": ErrorKind.CONFIG,
    # answered, not raised: the writer and fetch turn these into results
    "stale": None,
    "already_deleted": None,
    "not_found": None,
}


class ErrorRule(Spec):
    status: int | list[int] | str | None = None
    """412, [500, 502], "4xx" or "5xx"; absent: any failed answer (>= 400)."""
    body: str | None = None
    """A regular expression searched in the body text."""
    kind: Outcome
    ops: list[Operation] | None = None
    """Where the rule applies; absent: everywhere."""

    @field_validator("status")
    @classmethod
    def _status(cls, value: int | list[int] | str | None) -> int | list[int] | str | None:
        if isinstance(value, str) and value not in ("2xx", "3xx", "4xx", "5xx"):
            raise ValueError(f"{value!r}: give a code, a list of codes, '4xx' or '5xx'")
        return value

    @field_validator("body")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    def names_success(self) -> bool:
        codes = self.status if isinstance(self.status, list) else [self.status]
        return any(
            (isinstance(c, int) and c < 400) or c in ("2xx", "3xx") for c in codes if c is not None
        )

    def matches(self, status: int, text: str | None, op: str) -> bool:
        if self.ops is not None and op not in self.ops:
            return False
        wanted = self.status
        if wanted is None:
            if status < 400:
                return False
        elif isinstance(wanted, str):
            if status // 100 != int(wanted[0]):
                return False
        elif status not in (wanted if isinstance(wanted, list) else [wanted]):
            return False
        return self.body is None or (text is not None and re.search(self.body, text) is not None)


class RetryAfterSpec(Spec):
    """Where the remote says how long to wait after a throttle."""

    header: str = "Retry-After"
    format: Literal["seconds", "epoch", "http_date"] = "seconds"
    """``seconds`` also reads an HTTP date; ``epoch``: the Unix time when the wait ends."""


def outcome_for(rules: list[ErrorRule], status: int, text: str | None, op: str) -> Outcome:
    """What an answer (or one item's answer in a batch) means for ``op``."""
    for rule in rules:
        if rule.matches(status, text, op):
            return rule.kind
    return default_outcome(status, op)


def default_outcome(status: int, op: str) -> Outcome:
    if status < 400:
        return "ok"
    if status == 429:
        return "throttled"
    if status == 401:
        return "needs_reauth"
    if status in TRANSIENT_STATUSES or status >= 500:
        return "transient"
    if status == 412:
        return "stale"
    if status in (404, 410) and op == "delete":
        return "already_deleted"
    if status == 404:
        return "not_found"
    return "permanent"


class DeclaredClassifier(ResponseClassifier):
    """A ``hub.http.ResponseClassifier`` for one operation, driven by the rules."""

    def __init__(
        self,
        rules: list[ErrorRule],
        op: str,
        *,
        retry_after: RetryAfterSpec | None = None,
        message: str | None = None,
    ) -> None:
        self.rules = [r for r in rules if r.ops is None or op in r.ops]
        self.op = op
        self.retry = retry_after or RetryAfterSpec()
        self.message = JsonPath(message) if message else None
        self._success_rules = any(r.names_success() for r in self.rules)
        self._needs_body = any(r.body is not None for r in self.rules)

    def outcome(self, response: httpx.Response) -> Outcome:
        status = response.status_code
        if status < 400 and not self._success_rules:
            return "ok"  # the common case costs one comparison
        text = _text(response) if self._needs_body else None
        return outcome_for(self.rules, status, text, self.op)

    def classify(self, response: httpx.Response) -> ErrorKind | None:
        return KIND_OF[self.outcome(response)]

    def retry_after(self, response: httpx.Response) -> float | None:
        value = response.headers.get(self.retry.header)
        if value is None:
            return None
        if self.retry.format == "epoch":
            try:
                return max(0.0, float(value) - time.time())
            except ValueError:
                return None
        return parse_retry_after(value)

    def describe(self, response: httpx.Response) -> str:
        head = super().describe(response)
        if self.message is None:
            return head
        try:
            said = self.message.first(response.json())
        except ValueError:
            return head
        return f"{head}: {str(said)[:300]}" if said else head


def _text(response: httpx.Response) -> str | None:
    try:
        return response.text
    except (httpx.ResponseNotRead, UnicodeDecodeError):
        return None
