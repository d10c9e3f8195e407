"""Fault switches for sandboxes: slow, failing, throttled, dropped and truncated answers.

Faults are drawn from a seeded RNG, three draws per request in a fixed order, so a test that
sends the same requests sees the same faults every time.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["FaultInjector", "Faults", "SandboxDropped", "connection_dropper", "default_throttle"]

Dropper = Callable[[], Awaitable[None]]


class Faults(BaseModel):
    """The switches. Rates are shares of requests (0..1); all off by default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error_rate: float = Field(0.0, ge=0, le=1)
    """Share of requests answered with ``error_status`` (a 5xx)."""
    error_status: int = Field(503, ge=500, le=599)
    latency_ms: float = Field(0.0, ge=0)
    """Delay added before every answer (a client timeout below it sees a timeout)."""
    burst_429: int = Field(0, ge=0)
    """The next N requests get the provider's throttle answer (counts down)."""
    drop_connections: float = Field(0.0, ge=0, le=1)
    """Share of requests whose connection is closed without any answer."""
    truncate_bodies: float = Field(0.0, ge=0, le=1)
    """Share of answers cut off halfway through the body, then the connection closed."""


class SandboxDropped(ConnectionResetError):
    """Raised in-process (no socket to close) where a real server would drop the connection."""


def default_throttle() -> Response:
    return JSONResponse(
        {"error": "rate limit exceeded"}, status_code=429, headers={"Retry-After": "1"}
    )


class FaultInjector:
    """Applies :class:`Faults` to requests on their way to ``app``; returns the fault's name."""

    def __init__(
        self, app: ASGIApp, *, seed: int = 0, throttle: Callable[[], ASGIApp] | None = None
    ) -> None:
        self.app = app
        self.seed = seed
        self.throttle = throttle or default_throttle
        self.faults = Faults()
        self.rng = random.Random(seed)
        # Tests set faults from their own thread while the server thread draws them.
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.faults = Faults()
            self.rng = random.Random(self.seed)

    def update(self, **changes: Any) -> Faults:
        """Set some switches, keeping the others; raises ``ValidationError`` on bad values."""
        with self._lock:
            self.faults = Faults.model_validate({**self.faults.model_dump(), **changes})
            return self.faults

    def draw(self) -> str | None:
        """Decide the next request's fault: ``drop``, ``throttle``, ``error``, ``truncate``
        or ``None``. Always three RNG draws, so the sequence depends only on the seed."""
        with self._lock:
            f = self.faults
            drop, error, truncate = self.rng.random(), self.rng.random(), self.rng.random()
            if drop < f.drop_connections:
                return "drop"
            if f.burst_429 > 0:
                self.faults = f.model_copy(update={"burst_429": f.burst_429 - 1})
                return "throttle"
            if error < f.error_rate:
                return "error"
            if truncate < f.truncate_bodies:
                return "truncate"
            return None

    async def apply(
        self, fault: str | None, scope: Scope, receive: Receive, send: Send, drop: Dropper
    ) -> None:
        """Answer one request with ``fault`` (from :meth:`draw`) after the set latency."""
        f = self.faults
        if f.latency_ms:
            await asyncio.sleep(f.latency_ms / 1000)
        if fault == "drop":
            await drop()
        elif fault == "throttle":
            await self.throttle()(scope, receive, send)
        elif fault == "error":
            body = {"error": "sandbox fault", "status": f.error_status}
            await JSONResponse(body, status_code=f.error_status)(scope, receive, send)
        elif fault == "truncate":
            await self.app(scope, receive, _Truncating(send, drop))
        else:
            await self.app(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> str | None:
        """Draw and apply a fault for one request; returns its name."""
        fault = self.draw()
        await self.apply(fault, scope, receive, send, connection_dropper(send))
        return fault


class _Truncating:
    """Holds the body back, then sends its first half and closes the connection."""

    def __init__(self, send: Send, drop: Dropper) -> None:
        self.send = send
        self.drop = drop
        self.body = bytearray()

    async def __call__(self, message: Message) -> None:
        if message["type"] != "http.response.body":
            await self.send(message)
            return
        self.body += message.get("body", b"")
        if message.get("more_body", False):
            return
        half = bytes(self.body[: len(self.body) // 2])
        await self.send({"type": "http.response.body", "body": half, "more_body": True})
        await self.drop()


def connection_dropper(send: Send) -> Dropper:
    """A function that closes the client's connection without (finishing) an answer.

    Works under uvicorn, whose ``send`` is a method of the request cycle holding the socket;
    elsewhere (in-process transports) it raises :class:`SandboxDropped`.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)

    async def drop() -> None:
        if transport is None:
            raise SandboxDropped("sandbox fault: connection dropped")
        transport.abort()
        # Let the server notice the connection is gone, so it does not answer by itself.
        for _ in range(3):
            await asyncio.sleep(0)

    return drop
