"""Client-side rate limits: a request window, a concurrency cap and a daily quota.

One ``RateLimiter`` exists per key (a connection, or the provider's unit of limiting such as
a Xero tenant) in the process; every client and task of that key shares it through
``limiter_for``. The window is a leaky bucket (aiolimiter) of ``burst`` requests draining at
``rate / per_seconds``; the concurrency cap is a semaphore held from the moment a request
is sent until its response body is closed.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from aiolimiter import AsyncLimiter
from pydantic import BaseModel, ConfigDict, Field

from hub.errors import RateLimited

_DAY = 86_400.0
_BUCKET = 60.0  # the daily quota is counted in one-minute buckets


class RateLimit(BaseModel):
    """A provider's published limit, or a target below it.

    ``rate`` requests per ``per_seconds`` (None: no window), at most ``concurrency`` requests
    in flight (None: no cap), at most ``daily`` requests in any 24 hours (None: no quota).
    ``burst`` is how many requests may leave back to back after a quiet spell (never more
    than ``rate``). Under steady load requests leave evenly spaced either way; the default 2
    lets the pacer make up for event-loop wake-ups that come a little late, where 1 loses
    each late millisecond (about 6% of a 50/s limit). A server that counts strict windows
    sees at most ``rate + burst - 1`` requests in one window: use ``scaled`` for headroom.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: float | None = Field(None, gt=0)
    per_seconds: float = Field(1.0, gt=0)
    burst: int = Field(2, ge=1)
    concurrency: int | None = Field(None, ge=1)
    daily: int | None = Field(None, ge=1)

    def scaled(self, share: float) -> RateLimit:
        """The same limit paced to ``share`` (0 < share <= 1) of its rate and daily quota.

        Use it to stay under a server's limit with headroom, e.g. when other clients share
        the account: ``RateLimit(rate=60, per_seconds=60).scaled(0.8)`` sends 48 a minute.
        """
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        return self.model_copy(
            update={
                "rate": None if self.rate is None else self.rate * share,
                "daily": None if self.daily is None else max(1, int(self.daily * share)),
            }
        )


@dataclass
class _LoopState:
    """Loop-bound primitives: asyncio objects cannot be shared between event loops."""

    window: AsyncLimiter | None
    slots: asyncio.Semaphore | None
    in_flight: int = 0
    max_in_flight: int = 0


class Slot:
    """One acquired request slot; ``release`` gives it back (once, however often called)."""

    def __init__(self, state: _LoopState) -> None:
        self._state: _LoopState | None = state

    def release(self) -> None:
        state, self._state = self._state, None
        if state is None:
            return
        state.in_flight -= 1
        if state.slots is not None:
            state.slots.release()


class _DailyQuota:
    """At most ``limit`` requests in any rolling 24 hours, counted per minute."""

    def __init__(self, limit: int, clock: Callable[[], float]) -> None:
        self.limit = limit
        self._clock = clock
        self._buckets: deque[list[int]] = deque()  # [minute number, requests in it]
        self._used = 0

    def take(self) -> float | None:
        """Count one request; or, when the quota is spent, the seconds until room frees."""
        now = self._clock()
        minute = int(now // _BUCKET)
        oldest_kept = minute - int(_DAY // _BUCKET) + 1
        while self._buckets and self._buckets[0][0] < oldest_kept:
            self._used -= self._buckets.popleft()[1]
        if self._used >= self.limit:
            return max(0.0, (self._buckets[0][0] + _DAY / _BUCKET) * _BUCKET - now)
        if self._buckets and self._buckets[-1][0] == minute:
            self._buckets[-1][1] += 1
        else:
            self._buckets.append([minute, 1])
        self._used += 1
        return None

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self._used)


class RateLimiter:
    """Paces every request of one key. Safe to share between tasks and clients.

    ``acquire`` waits for a concurrency slot, then for room in the window, then counts the
    request against the daily quota; when the quota is spent it raises ``RateLimited`` with
    ``retry_after`` at once instead of waiting hours. The slot is held until released.
    """

    def __init__(
        self, key: str, limit: RateLimit, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.key = key
        self._clock = clock
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState]
        self.limit = limit  # the setter builds the state

    @property
    def limit(self) -> RateLimit:
        return self._limit

    @limit.setter
    def limit(self, limit: RateLimit) -> None:
        """Take a new limit; requests already in flight keep the slots they hold."""
        self._limit = limit
        self._states = weakref.WeakKeyDictionary()
        self._daily = None if limit.daily is None else _DailyQuota(limit.daily, self._clock)

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            limit = self._limit
            window = None
            if limit.rate is not None:
                # a bucket of `burst` requests (at most `rate`) draining at rate/per_seconds
                size = max(1.0, min(float(limit.burst), limit.rate))
                window = AsyncLimiter(size, size * limit.per_seconds / limit.rate)
            slots = None if limit.concurrency is None else asyncio.Semaphore(limit.concurrency)
            state = self._states[loop] = _LoopState(window=window, slots=slots)
        return state

    async def acquire(self, cost: float = 1.0) -> Slot:
        """Wait until one more request may be sent now; return its slot.

        ``cost`` is what the request weighs against the window where a provider counts
        units rather than requests (Gmail: 5 units a message read, a batch the sum of its
        items); a request heavier than the whole bucket waits for a full one."""
        state = self._state()
        if state.slots is not None:
            await state.slots.acquire()
        slot = Slot(state)
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            # the window is taken after the slot so waiting for a slot cannot bunch sends up
            if state.window is not None:
                await state.window.acquire(min(float(cost), state.window.max_rate))
            if self._daily is not None:
                wait = self._daily.take()
                if wait is not None:
                    raise RateLimited(
                        f"daily quota of {self._daily.limit} requests for {self.key!r} is "
                        f"spent; room frees in {wait:.0f} s",
                        retry_after=wait,
                    )
        except BaseException:
            slot.release()
            raise
        return slot

    @property
    def in_flight(self) -> int:
        """Requests of this key in flight on the running loop."""
        return self._state().in_flight

    @property
    def max_in_flight(self) -> int:
        """Most requests of this key in flight at once on the running loop."""
        return self._state().max_in_flight

    @property
    def daily_remaining(self) -> int | None:
        return None if self._daily is None else self._daily.remaining


_registry: dict[str, RateLimiter] = {}


def limiter_for(key: str, limit: RateLimit) -> RateLimiter:
    """The process-wide limiter of ``key``, created on first use.

    A different ``limit`` for a known key (the configuration changed) replaces the limit of
    the existing limiter, so every holder of it follows the new one.
    """
    limiter = _registry.get(key)
    if limiter is None:
        limiter = _registry[key] = RateLimiter(key, limit)
    elif limiter.limit != limit:
        limiter.limit = limit
    return limiter


def forget_limiters() -> None:
    """Drop every registered limiter (tests, or a process that reloads all connections)."""
    _registry.clear()
