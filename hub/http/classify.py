"""What an HTTP answer or failure means, in the hub's error kinds.

Each connector classifies responses in one place: a ``ResponseClassifier`` (subclassed when
the provider says more than the status code, e.g. Xero's ``X-Rate-Limit-Problem``). The
functions here turn a kind into the matching ``hub.errors`` exception, with the connection
and a redacted ``METHOD URL`` so no secret reaches a message or a log.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import NoReturn
from urllib.parse import parse_qsl, urlencode

import httpx

from hub.errors import (
    ERROR_FOR_KIND,
    ConnectorConfigError,
    ConnectorError,
    ErrorKind,
    PermanentError,
    TransientError,
)

TRANSIENT_STATUSES = frozenset({408, 425, 500, 502, 503, 504})

# query parameters whose values are never shown (api_key, access_token, $deltatoken, sig...)
_SECRET_PARAM = re.compile(r"key|token|secret|pass|pwd|auth|sig|code|credential|session", re.I)
_URL_IN_TEXT = re.compile(r"(https?://[^\s?#'\"]+)[?#][^\s'\"]*")


class ResponseClassifier:
    """Maps a response to an ``ErrorKind`` (None = success) and a suggested wait.

    Default: 2xx/3xx succeed; 429 rate limited; 401 needs re-auth; 408, 425, 500, 502, 503,
    504 and any other 5xx transient; 403 and any other 4xx permanent for this item.
    Override ``classify`` for providers that answer 200 with an error body or a throttle as
    403, ``retry_after`` for provider headers, ``describe`` to put the provider's error text
    into messages.
    """

    def classify(self, response: httpx.Response) -> ErrorKind | None:
        status = response.status_code
        if status < 400:
            return None
        if status == 429:
            return ErrorKind.RATE_LIMITED
        if status == 401:
            return ErrorKind.NEEDS_REAUTH
        if status in TRANSIENT_STATUSES or status >= 500:
            return ErrorKind.TRANSIENT
        return ErrorKind.PERMANENT

    def retry_after(self, response: httpx.Response) -> float | None:
        """Seconds the server asks to wait (``Retry-After``), or None to use backoff."""
        return parse_retry_after(response.headers.get("Retry-After"))

    def describe(self, response: httpx.Response) -> str:
        """A one-line account of the failure for the error message (no body by default:
        bodies may echo personal data)."""
        return f"HTTP {response.status_code} {response.reason_phrase}".rstrip()


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP-date, clamped at 0.

    An unreadable value gives None (the caller falls back to backoff).
    """
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" dates: RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def redact_url(url: httpx.URL | str) -> str:
    """The URL without user info, fragment, or the values of secret-looking parameters."""
    url = httpx.URL(url)
    url = url.copy_with(username=None, password=None, fragment=None)
    if not url.query:
        return str(url)
    pairs = parse_qsl(url.query.decode("ascii", "replace"), keep_blank_values=True)
    safe = [(k, "***" if _SECRET_PARAM.search(k) else v) for k, v in pairs]
    return str(url.copy_with(query=urlencode(safe, safe="*$").encode("ascii")))


def describe_request(request: httpx.Request) -> str:
    """``METHOD URL`` for messages, redacted (headers are never included)."""
    return f"{request.method} {redact_url(request.url)}"


def redact_text(text: str) -> str:
    """Cut query strings out of URLs quoted in library messages."""
    return _URL_IN_TEXT.sub(r"\1?…", text)


def error_for(
    kind: ErrorKind,
    response: httpx.Response,
    connection: str | None,
    *,
    message: str | None = None,
    retry_after: float | None = None,
) -> ConnectorError:
    """The ``hub.errors`` exception for a classified failed response (not raised)."""
    error_class = ERROR_FOR_KIND[kind]
    text = message or ResponseClassifier().describe(response)
    return error_class(
        text,
        connection=connection,
        request=describe_request(response.request),
        retry_after=retry_after,
    )


def raise_for(
    kind: ErrorKind,
    response: httpx.Response,
    connection: str | None,
    *,
    message: str | None = None,
    retry_after: float | None = None,
) -> NoReturn:
    """Raise the ``hub.errors`` exception matching ``kind`` for this response."""
    raise error_for(kind, response, connection, message=message, retry_after=retry_after)


# failures where the request never reached the server: safe to repeat even a POST
UNSENT_EXCEPTIONS: tuple[type[httpx.HTTPError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)


def exception_text(exc: Exception) -> str:
    """``Type: message`` of a library exception, with quoted URLs' query strings cut."""
    return redact_text(f"{type(exc).__name__}: {exc}".rstrip(": "))


def error_for_exception(
    exc: Exception, request: httpx.Request, connection: str | None
) -> ConnectorError:
    """The ``hub.errors`` exception for an httpx failure (the caller chains ``exc``).

    Network failures, timeouts, protocol breaks and undecodable bodies are transient; a
    bad URL or scheme is a configuration error; anything else (too many redirects, misuse of
    a stream) is permanent for the item.
    """
    text = exception_text(exc)
    request_text = describe_request(request)
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return ConnectorConfigError(
            f"{text}; check the connection's base URL", connection=connection, request=request_text
        )
    transient = isinstance(exc, httpx.TransportError | httpx.DecodingError) and not isinstance(
        exc, httpx.LocalProtocolError
    )
    error_class = TransientError if transient else PermanentError
    return error_class(text, connection=connection, request=request_text)
