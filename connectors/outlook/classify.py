"""What Microsoft Graph's answers mean, in one place.

The transport (:class:`GraphClassifier`, under the hub's retry) retries 429 and 503 after
their ``Retry-After`` and other 5xx with backoff; a 401 (after msal's one refresh) needs
re-auth. Every other answer comes back to the caller, which turns an error into a
:class:`GraphError` carrying the status and Graph's error code: some are expected (a 410 or
``syncStateNotFound`` means a new delta round, a 412 a stale change key, a 404 a record
already gone).
"""

from __future__ import annotations

from typing import Any

import httpx

from hub.errors import ErrorKind, PermanentError
from hub.http import ResponseClassifier

__all__ = ["GraphClassifier", "GraphError", "error_code", "graph_error"]


def error_code(body: Any) -> tuple[str, str]:
    """(code, message) of Graph's JSON error."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("code") or ""), str(error.get("message") or "")


class GraphClassifier(ResponseClassifier):
    def classify(self, response: httpx.Response) -> ErrorKind | None:
        status = response.status_code
        if status in (429, 503):
            return ErrorKind.RATE_LIMITED
        if status == 401:
            return ErrorKind.NEEDS_REAUTH
        if status >= 500:
            return ErrorKind.TRANSIENT
        return None

    def describe(self, response: httpx.Response) -> str:
        try:
            code, message = error_code(response.json())
        except ValueError:
            code, message = "", ""
        head = super().describe(response)
        return f"{head}: {code}: {message}" if code else head


class GraphError(PermanentError):
    def __init__(self, message: str, status: int, code: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.status = status
        self.code = code

    @property
    def resync(self) -> bool:
        """A delta token Graph no longer knows: start a new round."""
        return self.status == 410 or self.code.lower() in ("syncstatenotfound", "resyncrequired")


def graph_error(status: int, body: Any, connection: str, what: str) -> GraphError:
    code, message = error_code(body)
    text = f"Graph answered HTTP {status} to {what}"
    if code:
        text += f": {code}: {message}"
    return GraphError(text, status, code, connection=connection, request=what)
