"""Answering a request inside a sandbox, in process: the parts of a provider's batch call.

Batch endpoints (Google's multipart ``/batch``, Graph's JSON ``$batch``) carry several
requests in one; a sandbox answers each with its own routes through :func:`call`, as if it
had arrived on its own (the caller checks it against the description and counts it).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from starlette.types import ASGIApp, Message

__all__ = ["InnerAnswer", "InnerRequest", "call"]


@dataclass
class InnerRequest:
    content_id: str
    method: str
    path: str
    """As sent (percent-encoded); :func:`call` decodes it as a server would."""
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class InnerAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


async def call(app: ASGIApp, request: InnerRequest) -> InnerAnswer:
    """Answer ``request`` with ``app``."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": unquote(request.path),
        "raw_path": request.path.encode(),
        "query_string": request.query.encode(),
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in request.headers.items()],
        "server": ("batch", 80),
        "client": ("batch", 0),
    }
    sent = False
    answer = InnerAnswer(500, {}, b"")

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": request.body, "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer.status = int(message["status"])
            answer.headers = {k.decode(): v.decode() for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")

    await app(scope, receive, send)
    return answer
