"""``crmhub up`` watches local files: a saved change to a connection's file syncs it soon.

Watched are the enabled connections that pull (direction ``both`` or ``pull``) and whose
connector names files (:meth:`~hub.connector.Connector.watched_files`: the CSV connector's
``path``). Their folders (and a symlink's target folder) are watched with ``watchfiles``;
changes are grouped until :data:`QUIET_MS` pass without one (at most :data:`DEBOUNCE_MS`),
then each connection touched is synced once. A change arriving while that connection
syncs starts one more run after it. A change crmhub made itself (the file's bytes hash to
what :func:`note_written` recorded for it) starts nothing, so the hub's own writes never
start a loop. Watching is a speed-up: the schedules still run, and a watcher that fails is
logged and stops without taking the daemon down.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.store.status import RunStatus

if TYPE_CHECKING:
    from hub.runtime import Hub

__all__ = ["FileWatcher", "note_written", "written_by_hub"]

log = logging.getLogger("crmhub.watch")

QUIET_MS = 200
DEBOUNCE_MS = 800
RETRY_SECONDS = 1.0
"""Pause before trying again when another process holds the connection's run."""
MAX_RETRIES = 120

_written: dict[str, str] = {}


def note_written(path: Path, digest: str) -> None:
    """Record that crmhub just wrote the real file ``path``, whose bytes hash to ``digest``
    (SHA-256): the watcher then takes that change for the hub's own."""
    _written[os.path.realpath(path)] = digest


def written_by_hub(path: Path) -> bool:
    """True when ``path`` holds exactly what crmhub last wrote there. Any other content
    ends that: once the file was seen different, the same bytes again are a change too."""
    key = os.path.realpath(path)
    digest = _written.get(key)
    if digest is None:
        return False
    try:
        if hashlib.sha256(Path(path).read_bytes()).hexdigest() == digest:
            return True
    except OSError:
        pass
    _written.pop(key, None)
    return False


Runner = Callable[[str], Awaitable[Any]]
"""Runs one sync of a connection now; returns its status (``held``/``skipped``: not run)."""


class FileWatcher:
    """Syncs connections when their files change; :meth:`run` returns once ``stop`` is set.

    ``files`` maps each watched path to the connections reading it; ``busy(name)`` tells
    whether a run of ``name`` is going in this process (the watcher waits for it to end).
    """

    def __init__(
        self,
        files: dict[Path, set[str]],
        run_sync: Runner,
        busy: Callable[[str], bool],
        stop: asyncio.Event,
    ) -> None:
        self.run_sync, self.busy, self.stop = run_sync, busy, stop
        self.paths: dict[str, set[str]] = {}
        for file, names in files.items():
            for candidate in {os.path.abspath(file), os.path.realpath(file)}:
                self.paths.setdefault(candidate, set()).update(names)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()

    @classmethod
    async def for_hub(
        cls, hub: Hub, run_sync: Runner, busy: Callable[[str], bool], stop: asyncio.Event
    ) -> FileWatcher:
        """The watcher of every enabled, pulling connection that names local files."""
        files: dict[Path, set[str]] = {}
        for name, conn in hub.config.connections.items():
            if not conn.hub.enabled or conn.hub.direction == "push":
                continue
            try:
                connector = hub.connector(name)
                try:
                    for path in connector.watched_files():
                        files.setdefault(Path(path), set()).add(name)
                finally:
                    await connector.aclose()
            except Exception as exc:  # a broken plugin is reported by its runs, not here
                log.debug("not watching %r: %s", name, exc)
        return cls(files, run_sync, busy, stop)

    async def run(self) -> None:
        folders = sorted({os.path.dirname(p) for p in self.paths})
        for folder in folders:
            if not os.path.isdir(folder):
                log.warning("not watching %s: no such folder", folder)
        folders = [f for f in folders if os.path.isdir(f)]
        if not folders:
            return
        from watchfiles import awatch

        log.info("watching %s for changes", ", ".join(sorted(self.paths)))
        try:
            async for changes in awatch(
                *folders,
                watch_filter=lambda _change, path: path in self.paths,
                debounce=DEBOUNCE_MS,
                step=QUIET_MS,
                stop_event=self.stop,
                recursive=False,
            ):
                await self._changed({path for _change, path in changes})
        except Exception:
            log.exception("watching files stopped; scheduled syncs go on")
        finally:
            tasks = list(self._tasks.values())
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _changed(self, paths: set[str]) -> None:
        changed: dict[str, str] = {}
        for path in sorted(paths):
            if not await asyncio.to_thread(written_by_hub, Path(path)):
                changed.update(dict.fromkeys(self.paths.get(path, ()), path))
        for name, path in sorted(changed.items()):
            log.info("%s changed: syncing %r", path, name)
            task = self._tasks.get(name)
            if task is not None and not task.done():
                self._again.add(name)
            else:
                self._tasks[name] = asyncio.create_task(self._follow(name), name=f"watch {name}")

    async def _follow(self, name: str) -> None:
        """Sync ``name`` once, and once more for every change seen while it ran."""
        retries = 0
        while not self.stop.is_set():
            self._again.discard(name)
            while self.busy(name) and not self.stop.is_set():
                await asyncio.sleep(0.05)
            try:
                status = await self.run_sync(name)
            except Exception:
                log.exception("sync of %r after a file change failed", name)
                status = "failed"
            if status in (RunStatus.HELD, RunStatus.SKIPPED) and retries < MAX_RETRIES:
                # Another run of it is going (here or elsewhere): the change needs one after it.
                retries += 1
                self._again.add(name)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), RETRY_SECONDS)
            if name not in self._again:
                return
