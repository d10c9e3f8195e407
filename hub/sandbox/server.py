"""Serving a sandbox on loopback from a background thread, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Generator
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

__all__ = ["SandboxServer", "serve_sandbox"]


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # signals belong to the main program


class SandboxServer:
    """A running sandbox. ``stop()`` (or leaving the ``with`` block) shuts it down.

    ``tls`` (certificate file, key file) serves HTTPS; by default the app's own ``tls``
    attribute (``SandboxApp(tls=...)``), for providers whose client libraries insist on it.
    """

    def __init__(
        self,
        app: ASGIApp,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.app = app
        self.tls = tls or getattr(app, "tls", None)
        # IPPROTO_TCP explicitly: asyncio then sets TCP_NODELAY (no 40 ms delayed-ACK stalls).
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(128)
        self.host, self.port = self._sock.getsockname()[:2]
        self.url = f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"
        tls_options = {"ssl_certfile": self.tls[0], "ssl_keyfile": self.tls[1]} if self.tls else {}
        config = uvicorn.Config(
            app,
            http="h11",  # its request cycle exposes the socket, which fault injection closes
            lifespan="off",
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            timeout_graceful_shutdown=2,
            **tls_options,  # type: ignore[arg-type]
        )
        self._server = _QuietServer(config)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"sandbox {self.url}", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # reported to the starting thread
            self._error = exc

    def start(self, timeout: float = 10.0) -> SandboxServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"sandbox server on {self.url} failed: {self._error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"sandbox server on {self.url} did not start in {timeout}s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> SandboxServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_sandbox(
    app: ASGIApp, port: int = 0, host: str = "127.0.0.1"
) -> tuple[str, SandboxServer]:
    """Serve ``app`` on ``host:port`` (0: a free port) in a background thread.

    Returns the base URL and the server handle; ``handle.stop()`` shuts it down cleanly.
    """
    server = SandboxServer(app, host=host, port=port).start()
    return server.url, server
