"""Retries, in one place for the whole hub.

``send_with_retry`` sends a request, classifies the answer and retries transient failures
and throttles with tenacity: exponential backoff with full jitter, capped; the server's
``Retry-After`` obeyed exactly; a wait longer than ``max_wait`` is not slept but raised as
``RateLimited`` so the run can end "throttled until T" and be rescheduled.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field
from tenacity import AsyncRetrying, RetryCallState, RetryError, retry_if_exception

from hub.errors import ERROR_FOR_KIND, ConnectorError, ErrorKind, RateLimited, TransientError
from hub.http.classify import (
    UNSENT_EXCEPTIONS,
    ResponseClassifier,
    describe_request,
    error_for,
    error_for_exception,
    exception_text,
)
from hub.http.client import HubClient
from hub.http.counters import HttpCounters

Sleep = Callable[[float], Awaitable[None]]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
IDEMPOTENCY_HEADER = "Idempotency-Key"
_DEFAULT_CLASSIFIER = ResponseClassifier()


class RetryPolicy(BaseModel):
    """How hard one item is tried.

    ``attempts`` counts every try, the first included. Without ``Retry-After`` the wait
    before try n+1 is uniform in [0, min(cap, base * 2**(n-1))] (full jitter). A wait longer
    than ``max_wait`` seconds (a daily quota resetting hours away) is raised, not slept.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: int = Field(5, ge=1)
    base: float = Field(0.5, gt=0)
    cap: float = Field(30.0, gt=0)
    max_wait: float = Field(120.0, ge=0)

    def backoff(self, attempt: int) -> float:
        """A jittered wait after failed try number ``attempt`` (1-based)."""
        return random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))


class _Call:
    """One logical request and the state its retry loop needs."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: httpx.URL | str,
        request_kwargs: dict[str, Any],
        connection: str,
        classifier: ResponseClassifier,
        counters: HttpCounters,
    ) -> None:
        self.client = client
        self.method = method.upper()
        self.url = url
        self.request_kwargs = request_kwargs
        self.connection = connection
        self.classifier = classifier
        self.counters = counters
        self.unsent = False  # the last failure happened before the request left
        self.last_message = ""
        self.waits: dict[int, float] = {}

    async def once(self) -> httpx.Response:
        try:
            request = self.client.build_request(self.method, self.url, **self.request_kwargs)
        except httpx.InvalidURL as exc:
            raise ERROR_FOR_KIND[ErrorKind.CONFIG](
                f"invalid URL {self.url!r}: {exc}", connection=self.connection
            ) from exc
        self.unsent = False
        try:
            response = await self.client.send(request)
        except httpx.HTTPError as exc:
            self._failed(unsent=isinstance(exc, UNSENT_EXCEPTIONS))
            error = error_for_exception(exc, request, self.connection)
            self.last_message = exception_text(exc)
            raise error from exc
        except ConnectorError as exc:
            # raised inside the client: the limiter's daily quota or the auth flow, both
            # before the server acted on the request
            self._failed(unsent=True)
            self.last_message = exc.reason
            if exc.connection is not None:
                raise
            raise ERROR_FOR_KIND[exc.kind](
                exc, connection=self.connection, request=describe_request(request)
            ) from exc
        kind = self.classifier.classify(response)
        if kind is None:
            return response
        self._failed(unsent=False)
        if kind is ErrorKind.RATE_LIMITED:
            self.counters.throttled += 1
        self.last_message = self.classifier.describe(response)
        raise error_for(
            kind,
            response,
            self.connection,
            message=self.last_message,
            retry_after=self.classifier.retry_after(response),
        )

    def _failed(self, *, unsent: bool) -> None:
        self.counters.errors += 1
        self.unsent = unsent


async def send_with_retry(
    client: httpx.AsyncClient,
    method: str,
    url: httpx.URL | str,
    *,
    connection: str,
    classifier: ResponseClassifier | None = None,
    policy: RetryPolicy | None = None,
    idempotent: bool | None = None,
    counters: HttpCounters | None = None,
    sleep: Sleep | None = None,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    content: bytes | str | None = None,
    data: Mapping[str, Any] | None = None,
    files: Any = None,
    timeout: httpx.Timeout | float | None = None,
    extensions: dict[str, Any] | None = None,
) -> httpx.Response:
    """Send ``method url``; return the successful response (body read) or raise.

    Raises ``hub.errors`` only: ``PermanentError`` (not retried), ``NeedsReauth`` (the auth
    flow has already had its one refresh), ``ConnectorConfigError``, and after retries
    ``TransientError``/``RateLimited`` naming the attempts made; ``RateLimited`` with
    ``retry_after`` at once when the server asks for a wait beyond ``policy.max_wait``.

    Only transient and rate-limited failures are retried. A request that is not idempotent
    (POST, PATCH) is retried only when ``idempotent=True``, when it carries an
    ``Idempotency-Key`` header, or when it failed before it was sent (connect error, pool
    timeout, local quota). ``counters`` defaults to the client's own (``make_client``);
    ``sleep`` replaces ``asyncio.sleep`` (tests).
    """
    policy = policy or RetryPolicy()
    if counters is None:
        counters = client.counters if isinstance(client, HubClient) else HttpCounters()
    if idempotent is None:
        has_key = headers is not None and any(
            k.lower() == IDEMPOTENCY_HEADER.lower() for k in headers
        )
        idempotent = method.upper() in IDEMPOTENT_METHODS or has_key
    may_repeat: bool = idempotent
    kwargs: dict[str, Any] = {
        "params": params,
        "headers": headers,
        "json": json,
        "content": content,
        "data": data,
        "files": files,
        "extensions": extensions,
    }
    if timeout is not None:
        kwargs["timeout"] = timeout
    call = _Call(
        client, method, url, kwargs, connection, classifier or _DEFAULT_CLASSIFIER, counters
    )

    def planned_wait(state: RetryCallState) -> float:
        # stop and wait both ask; the jitter is drawn once per attempt
        n = state.attempt_number
        if n not in call.waits:
            exc = state.outcome.exception() if state.outcome else None
            asked = getattr(exc, "retry_after", None)
            call.waits[n] = asked if asked is not None else policy.backoff(n)
        return call.waits[n]

    def stop(state: RetryCallState) -> bool:
        return state.attempt_number >= policy.attempts or planned_wait(state) > policy.max_wait

    def retryable(exc: BaseException) -> bool:
        return isinstance(exc, TransientError) and (may_repeat or call.unsent)

    def count_retry(state: RetryCallState) -> None:
        counters.retries += 1

    retrying = AsyncRetrying(
        sleep=sleep or asyncio.sleep,
        stop=stop,
        wait=planned_wait,
        retry=retry_if_exception(retryable),
        before_sleep=count_retry,
    )
    try:
        return await retrying(call.once)
    except RetryError as gave_up:
        raise _final_error(gave_up, call, policy) from gave_up.last_attempt.exception()


def _final_error(gave_up: RetryError, call: _Call, policy: RetryPolicy) -> ConnectorError:
    last = gave_up.last_attempt
    exc = last.exception()
    assert isinstance(exc, ConnectorError)  # only ConnectorErrors are retried
    n = last.attempt_number
    wait = call.waits.get(n, 0.0)
    plural = "s" if n != 1 else ""
    if wait > policy.max_wait:
        until = (datetime.now(UTC) + timedelta(seconds=wait)).isoformat(timespec="seconds")
        return RateLimited(
            f"{call.last_message}; throttled until {until} ({wait:.0f} s, over max_wait "
            f"{policy.max_wait:.0f} s): not waiting, reschedule after {n} attempt{plural}",
            connection=exc.connection,
            request=exc.request,
            retry_after=wait,
        )
    return ERROR_FOR_KIND[exc.kind](
        f"gave up after {n} attempt{plural}: {call.last_message}",
        connection=exc.connection,
        request=exc.request,
        retry_after=exc.retry_after,
    )


class RetryingClient:
    """A connector's HTTP handle: a hub client plus its classifier and retry policy.

    Every method goes through ``send_with_retry``; nothing else retries.
    """

    def __init__(
        self,
        client: HubClient,
        *,
        connection: str,
        classifier: ResponseClassifier | None = None,
        policy: RetryPolicy | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        self.client = client
        self.connection = connection
        self.classifier = classifier or _DEFAULT_CLASSIFIER
        self.policy = policy or RetryPolicy()
        self.sleep = sleep

    @property
    def counters(self) -> HttpCounters:
        return self.client.counters

    async def request(
        self, method: str, url: httpx.URL | str, *, idempotent: bool | None = None, **kw: Any
    ) -> httpx.Response:
        """``send_with_retry`` with this handle's settings; ``kw`` as there."""
        return await send_with_retry(
            self.client,
            method,
            url,
            connection=self.connection,
            classifier=self.classifier,
            policy=self.policy,
            idempotent=idempotent,
            sleep=self.sleep,
            **kw,
        )

    async def get(self, url: httpx.URL | str, **kw: Any) -> httpx.Response:
        return await self.request("GET", url, **kw)

    async def post(self, url: httpx.URL | str, **kw: Any) -> httpx.Response:
        return await self.request("POST", url, **kw)

    async def put(self, url: httpx.URL | str, **kw: Any) -> httpx.Response:
        return await self.request("PUT", url, **kw)

    async def patch(self, url: httpx.URL | str, **kw: Any) -> httpx.Response:
        return await self.request("PATCH", url, **kw)

    async def delete(self, url: httpx.URL | str, **kw: Any) -> httpx.Response:
        return await self.request("DELETE", url, **kw)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> RetryingClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
