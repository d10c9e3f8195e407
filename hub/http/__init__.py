"""crmhub's resilient HTTP layer: one client factory, classification, retry, rate limits.

A connector makes its client with ``make_client`` (timeouts, pool, auth, pacing, counters),
classifies answers with a ``ResponseClassifier`` and sends through ``send_with_retry`` (or a
``RetryingClient``), the only place the hub retries.
"""

from hub.http.classify import (
    ResponseClassifier,
    describe_request,
    error_for,
    error_for_exception,
    parse_retry_after,
    raise_for,
    redact_url,
)
from hub.http.client import DEFAULT_TIMEOUT, USER_AGENT, HubClient, make_client
from hub.http.counters import HttpCounters
from hub.http.ratelimit import RateLimit, RateLimiter, forget_limiters, limiter_for
from hub.http.retry import RetryingClient, RetryPolicy, send_with_retry
from hub.http.transport import COST, HubTransport

__all__ = [
    "COST",
    "DEFAULT_TIMEOUT",
    "USER_AGENT",
    "HttpCounters",
    "HubClient",
    "HubTransport",
    "RateLimit",
    "RateLimiter",
    "ResponseClassifier",
    "RetryPolicy",
    "RetryingClient",
    "describe_request",
    "error_for",
    "error_for_exception",
    "forget_limiters",
    "limiter_for",
    "make_client",
    "parse_retry_after",
    "raise_for",
    "redact_url",
    "send_with_retry",
]
