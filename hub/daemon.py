"""``crmhub up``: the web server, the scheduler, the inbox processor and the file watcher
(:mod:`hub.watch`) in one process.

Everything runs on one asyncio event loop. SIGTERM or SIGINT sets the stop event: running
syncs finish the page in flight, commit and release their leases; the web server stops
accepting connections; the process exits within ten seconds. A second signal cancels what
is left at once. Nothing lives only in memory: started again, the daemon resumes from the
store (cursors, outbox, inbox) and runs the connections whose last run was interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import uvicorn
from sqlalchemy import delete

from hub.config import Config
from hub.errors import CrmhubError, LeaseHeld
from hub.logging import configure_logging
from hub.runtime import Hub, HubAuth
from hub.store import Lease, Store
from hub.store.lease import HOST
from hub.store.schema import leases
from hub.sync_scheduler import JobFunction, SyncScheduler, run_sync
from hub.watch import FileWatcher

__all__ = ["SHUTDOWN_SECONDS", "Daemon", "serve"]

log = logging.getLogger("crmhub.daemon")

SHUTDOWN_SECONDS = 10.0
# How long running syncs get to finish their page before they are cancelled.
SYNC_GRACE_SECONDS = 6.0


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def create_web_app(hub: Hub) -> Any:
    """The hub's web app (webhooks, health, metrics, OAuth callback)."""
    from hub.web.app import create_app

    return create_app(hub)


def bind(host: str, port: int) -> socket.socket:
    """Listen on ``host:port`` (port 0: any free port) or say clearly why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio then sets TCP_NODELAY on accepted connections.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CrmhubError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
            "set [hub] http_port (or --port) to a free port"
        ) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def release_own_leases(store: Store) -> int:
    """Drop leases this process still holds (a sync cancelled mid-page); returns how many."""
    prefix = f"{HOST}:{os.getpid()}:"
    async with store.begin() as conn:
        result = await conn.execute(delete(leases).where(leases.c.holder.startswith(prefix)))
    return int(result.rowcount or 0)


class Daemon:
    """One running hub. ``await Daemon(hub).run()`` returns after :meth:`request_stop`."""

    def __init__(
        self,
        hub: Hub,
        *,
        host: str | None = None,
        port: int | None = None,
        job: JobFunction = run_sync,
        app: Any | None = None,
        inbox: Callable[[Hub, asyncio.Event], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self.hub = hub
        self.host = host or hub.config.hub.http_host
        self.port = hub.config.hub.http_port if port is None else port
        self.stop = asyncio.Event()
        self.job = job
        self.app = app
        self.inbox = inbox if inbox is not None else run_inbox
        self.base_url: str | None = None
        self.ready = asyncio.Event()
        self.sync_grace = SYNC_GRACE_SECONDS
        self._signals = 0
        self._main: asyncio.Task[Any] | None = None

    def request_stop(self, *_: object) -> None:
        """First call: graceful stop. Later calls: cancel what is left now."""
        self._signals += 1
        if self._signals == 1:
            log.info("stopping: letting running syncs finish their page")
            self.stop.set()
        elif self._main is not None:
            log.warning("stopping now")
            self._main.cancel()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)

    async def run(self) -> None:
        self._main = asyncio.current_task()
        try:
            await self._run()
        except asyncio.CancelledError:
            if self._signals < 2:
                raise
            log.warning("stopped before running syncs finished their page")
        dropped = await release_own_leases(self.hub.store)
        if dropped:
            log.warning("released %d lease(s) left by cancelled syncs", dropped)
        log.info("crmhub stopped")

    async def _run(self) -> None:
        if self.hub.store.is_sqlite:
            # APScheduler cannot share a SQLite store between schedulers: one daemon per file.
            lease = Lease(self.hub.store, "daemon")
            try:
                await lease.acquire()
            except LeaseHeld as exc:
                raise CrmhubError(
                    f"another crmhub daemon ({exc.holder}) is running on {self.hub.store.url}; "
                    "on SQLite run one daemon per database (use PostgreSQL to run several)"
                ) from None
            try:
                await self._serve_all()
            finally:
                await asyncio.shield(lease.release())
        else:
            await self._serve_all()

    async def _serve_all(self) -> None:
        app = self.app if self.app is not None else create_web_app(self.hub)
        server = _Server(
            uvicorn.Config(
                app,
                log_config=None,
                lifespan="auto",
                timeout_graceful_shutdown=3,
                access_log=False,
            )
        )
        async with SyncScheduler(self.hub, job=self.job, stop=self.stop) as scheduler:
            sock = bind(self.host, self.port)
            host, port = sock.getsockname()[:2]
            self.base_url = f"http://{host}:{port}"
            web = asyncio.create_task(_serve(server, sock), name="crmhub web")
            inbox = asyncio.create_task(self.inbox(self.hub, self.stop), name="crmhub inbox")
            await scheduler.start()
            watcher = await FileWatcher.for_hub(
                self.hub, scheduler.run_job, scheduler.running.__contains__, self.stop
            )
            watch = asyncio.create_task(watcher.run(), name="crmhub watch")
            schedules = len(scheduler.wanted())
            log.info("crmhub up on %s with %d scheduled connection(s)", self.base_url, schedules)
            self.ready.set()
            # A web server or inbox that dies takes the daemon down with it.
            stopped = asyncio.create_task(self.stop.wait())
            done, _ = await asyncio.wait({stopped, web, inbox}, return_when=asyncio.FIRST_COMPLETED)
            self.stop.set()
            server.should_exit = True
            await asyncio.gather(
                scheduler.shutdown(self.sync_grace),
                _finish(web, 4.0),
                _finish(inbox, self.sync_grace),
                _finish(watch, self.sync_grace),
            )
            for task in done - {stopped}:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]


async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit:  # uvicorn exits when the app's startup fails
        raise CrmhubError("the web server failed to start (see the log above)") from None
    finally:
        sock.close()


async def _finish(task: asyncio.Task[Any], timeout: float) -> None:
    """Wait for ``task`` to end by itself, cancel it after ``timeout``; its own failure is
    reported by the caller, a cancellation of the caller is passed on."""
    try:
        async with asyncio.timeout(timeout):
            await asyncio.shield(task)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
    except asyncio.CancelledError:
        if not task.cancelled():
            task.cancel()
            raise
    except Exception:
        return


async def run_inbox(hub: Hub, stop: asyncio.Event) -> None:
    """Process received webhooks until ``stop`` is set."""
    from hub.inbox import InboxProcessor

    task = asyncio.create_task(InboxProcessor(hub).run(), name="crmhub inbox processor")
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if task.done():
        task.result()  # the processor ended by itself: a failure to report
        return
    # Cancelling leaves the item in hand pending; it is processed again on the next start.
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def serve(
    config: Config,
    *,
    host: str | None = None,
    port: int | None = None,
    log_json: bool | None = None,
    log_level: str = "info",
    auth: HubAuth | None = None,
) -> None:
    """``crmhub up``: open the hub, run until SIGTERM/SIGINT, shut down cleanly."""
    configure_logging(json=log_json, level=log_level.upper())
    if log_level.lower() != "debug":
        # APScheduler logs every job id at INFO; crmhub logs each run itself.
        logging.getLogger("crmhub.apscheduler").setLevel(logging.WARNING)
    hub = await Hub.open(config, auth=auth)
    try:
        daemon = Daemon(hub, host=host, port=port)
        daemon.install_signal_handlers()
        await daemon.run()
    finally:
        await hub.close()
