"""Xero's limits as the sandbox enforces them, with the headers every answer carries.

Per organisation: ``minute`` calls in any 60 seconds (60), ``concurrent`` in flight (5),
``day`` calls per UTC day (5,000); per app: ``app_minute`` calls in any 60 seconds
(10,000). A call over a limit is answered 429 with ``Retry-After`` and
``X-Rate-Limit-Problem`` (``minute``, ``concurrent``, ``day``, ``appminute``) and is not
counted. Every answer carries ``X-DayLimit-Remaining``, ``X-MinLimit-Remaining`` and
``X-AppMinLimit-Remaining``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Limits", "Refusal"]


@dataclass(frozen=True)
class Refusal:
    problem: str
    retry_after: int


@dataclass
class Limits:
    minute: int = 60
    concurrent: int = 5
    day: int = 5000
    app_minute: int = 10000
    clock: Callable[[], float] = time.time
    refused: dict[str, int] = field(default_factory=dict)
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, deque[float]] = {}
        self._app: deque[float] = deque()
        self._days: dict[str, tuple[int, int]] = {}
        self._in_flight: dict[str, int] = {}

    def _day(self, tenant: str, now: float) -> int:
        today = int(now // 86400)
        day, used = self._days.get(tenant, (today, 0))
        return used if day == today else 0

    def enter(self, tenant: str) -> Refusal | None:
        """Take a call for ``tenant``, or say which limit refuses it."""
        with self._lock:
            now = self.clock()
            calls = self._calls.setdefault(tenant, deque())
            while calls and calls[0] <= now - 60:
                calls.popleft()
            while self._app and self._app[0] <= now - 60:
                self._app.popleft()
            refusal = None
            if self._day(tenant, now) >= self.day:
                refusal = Refusal("day", math.ceil((int(now // 86400) + 1) * 86400 - now))
            elif len(self._app) >= self.app_minute:
                refusal = Refusal("appminute", max(1, math.ceil(self._app[0] + 60 - now)))
            elif len(calls) >= self.minute:
                refusal = Refusal("minute", max(1, math.ceil(calls[0] + 60 - now)))
            elif self._in_flight.get(tenant, 0) >= self.concurrent:
                refusal = Refusal("concurrent", 1)
            if refusal is not None:
                self.refused[refusal.problem] = self.refused.get(refusal.problem, 0) + 1
                return refusal
            calls.append(now)
            self._app.append(now)
            self._days[tenant] = (int(now // 86400), self._day(tenant, now) + 1)
            flying = self._in_flight[tenant] = self._in_flight.get(tenant, 0) + 1
            self.max_in_flight = max(self.max_in_flight, flying)
            return None

    def leave(self, tenant: str) -> None:
        with self._lock:
            self._in_flight[tenant] = max(0, self._in_flight.get(tenant, 0) - 1)

    def headers(self, tenant: str) -> dict[str, str]:
        with self._lock:
            now = self.clock()
            minute = sum(1 for t in self._calls.get(tenant, ()) if t > now - 60)
            app = sum(1 for t in self._app if t > now - 60)
            return {
                "X-DayLimit-Remaining": str(max(0, self.day - self._day(tenant, now))),
                "X-MinLimit-Remaining": str(max(0, self.minute - minute)),
                "X-AppMinLimit-Remaining": str(max(0, self.app_minute - app)),
            }

    def used_today(self, tenant: str) -> int:
        with self._lock:
            return self._day(tenant, self.clock())

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._app.clear()
            self._days.clear()
            self._in_flight.clear()
            self.refused.clear()
            self.max_in_flight = 0
