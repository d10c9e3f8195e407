"""Connector ``csv``: contacts or companies kept in a CSV file with a header row.

Pull reads the whole file and lists every row (``full_scan`` pages of 1,000); the cursor is
the SHA-256 of the file's bytes, so a pull of an unchanged file yields nothing. Push applies
creates, updates and deletes to the rows and writes the whole file back atomically, in the
format it was read in. Remote record data are ``{column: text}`` for every column (empty
cells are ``""``). A file cannot say when a row changed, so records carry no
``modified_at``: the engine takes the time it first saw the change (the run's time), and
``crmhub up`` watches the file to see a change within a second (:meth:`watched_files`).

Row ids and versions are described in :mod:`connectors.csv.rows`, how changes apply in
:mod:`connectors.csv.edit` (a create retried after a crash finds the row it wrote; a change
naming an outdated version is refused as ``stale``, kind ``TRANSIENT``, with the row as it
is now), formula escaping in :mod:`connectors.csv.cells`, parsing in
:mod:`connectors.csv.table`, and the lock, symlinks and concurrent writers in
:mod:`connectors.csv.files`: a push whose file another program changed before the rename
reads it again and applies its changes again; after :data:`WRITE_ATTEMPTS` such tries it
gives up for this run and answers each change ``TRANSIENT`` (the writes stay owed).
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import phonenumbers
from pydantic import BaseModel, ConfigDict, field_validator

from connectors.csv.cells import row_data
from connectors.csv.edit import RowEditor
from connectors.csv.files import FileLock, Replacement
from connectors.csv.rows import RowIdentity, row_version
from connectors.csv.table import DELIMITERS, CsvTable, read_table, render
from hub.connector import (
    Change,
    Connector,
    ConnectorContext,
    Cursor,
    Page,
    PushResult,
    RemoteRecord,
    Stream,
)
from hub.errors import ConnectorConfigError, ErrorKind
from hub.watch import note_written

PAGE_SIZE = 1000
STREAMS = {"contact": "contacts", "company": "companies"}
WRITE_ATTEMPTS = 5
"""Tries of one push against a file that other programs keep changing."""
RETRY_PAUSE = 0.05
T = TypeVar("T")


class CsvSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    """The CSV file; a relative path starts at the folder of ``crmhub.toml``."""
    entity: Literal["contact", "company"] = "contact"
    delimiter: str | None = None
    """One of ``,`` ``;`` tab ``|``; detected from the file when unset."""
    encoding: str | None = None
    """Detected when unset: UTF-8 (with or without BOM), else cp1252, else latin-1."""
    key: str | None = None
    """Column holding a stable row id; new rows get a generated one."""
    phone_region: str | None = None
    """Region for phone numbers without a country code, used in row ids (``GB``)."""
    escape_formulas: bool = True
    """Write values that a spreadsheet would run as formulas (``=``, ``+``, ``-``, ``@``,
    tab, carriage return first) with a leading ``'``, and read them back without it."""

    @field_validator("delimiter")
    @classmethod
    def _delimiter(cls, value: str | None) -> str | None:
        if value is not None and value not in DELIMITERS:
            raise ValueError("delimiter must be one of ',', ';', '|' or a tab")
        return value

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                codecs.lookup(value)
            except LookupError:
                raise ValueError(f"unknown encoding {value!r} (try 'utf-8' or 'cp1252')") from None
        return value

    @field_validator("key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("key must name a column")
        return value

    @field_validator("phone_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a phone region (use a code like 'GB' or 'US')")
        return value.upper() if value else None


class CsvConnector(Connector):
    """Contacts or companies in one CSV file: full pulls, creates, updates and deletes."""

    name = "csv"
    description = "Contacts or companies in a CSV file."
    Settings = CsvSettings
    settings: CsvSettings
    push_batch_size = 1000

    def __init__(self, settings: BaseModel, context: ConnectorContext) -> None:
        super().__init__(settings, context)
        self._lock = asyncio.Lock()
        self._pulled: str | None = None  # digest of the file as the last pull saw it

    @property
    def path(self) -> Path:
        path = Path(self.settings.path).expanduser()
        return path if path.is_absolute() else self.context.base_dir / path

    def watched_files(self) -> list[Path]:
        return [self.path]

    def streams(self) -> list[Stream]:
        return [
            Stream(
                name=STREAMS[self.settings.entity],
                entity=self.settings.entity,
                incremental=False,
                can_create=True,
                can_update=True,
                can_delete=True,
            )
        ]

    async def pull(self, stream: Stream, cursor: Cursor | None) -> AsyncIterator[Page]:
        """Every row, unless the file's digest equals the cursor's.

        Each page but the last carries ``{"sha256": ..., "offset": n}`` so a pull resumed
        after a crash lists the rest of the same file (as a partial, not a full scan).
        """
        table = await asyncio.to_thread(self._read)
        self._pulled = table.digest
        offset = _offset(cursor, table.digest)
        if offset is None:
            return
        ids = await asyncio.to_thread(self._identify, table)
        total = len(table.rows)
        header, escaped = table.header, self.settings.escape_formulas
        if total == 0 and offset == 0:
            yield Page(cursor={"sha256": table.digest}, full_scan=True)
            return
        for start in range(offset, total, PAGE_SIZE):
            end = min(start + PAGE_SIZE, total)
            records = [
                RemoteRecord(
                    id=ids[i],
                    data=row_data(header, table.rows[i], escaped),
                    version=row_version(table.rows[i]),
                    where=f"{self.settings.path}:{table.lines[i]}",
                )
                for i in range(start, end)
            ]
            position: Cursor = {"sha256": table.digest}
            if end < total:
                position["offset"] = end
            yield Page(records=records, cursor=position, full_scan=offset == 0)

    async def push(self, stream: Stream, changes: list[Change]) -> list[PushResult]:
        """Apply ``changes`` under the file's lock; the lease is checked before the rename."""
        if not changes:
            return []
        async with self._lock:
            for attempt in range(WRITE_ATTEMPTS):
                edit = await _in_thread(lambda: self._prepare(changes), _Edit.close)
                try:
                    if edit.replacement is None:
                        return edit.results
                    if self.context.check_lease is not None:
                        await self.context.check_lease()
                    if await _in_thread(edit.replacement.commit):
                        self._committed(edit)
                        return edit.results
                finally:
                    edit.close()
                await asyncio.sleep(RETRY_PAUSE * (attempt + 1))
        message = (
            f"{self.path} kept changing while crmhub wrote it ({WRITE_ATTEMPTS} tries); "
            "the write stays owed and is retried"
        )
        return [
            PushResult(key=c.key, remote_id=c.remote_id, error=ErrorKind.TRANSIENT, message=message)
            for c in changes
        ]

    async def fetch(self, stream: Stream, remote_ids: list[str]) -> list[RemoteRecord]:
        return await asyncio.to_thread(self._fetch, set(remote_ids))

    # -- in a worker thread --------------------------------------------------------------

    def _read(self) -> CsvTable:
        with FileLock(self.path, exclusive=False, connection=self.connection):
            return self._read_locked()

    def _read_locked(self) -> CsvTable:
        table = read_table(
            self.path,
            encoding=self.settings.encoding,
            delimiter=self.settings.delimiter,
            connection=self.connection,
        )
        key = self.settings.key
        if key is not None and key not in table.header:
            raise ConnectorConfigError(
                f"{table.path}:1: the key column {key!r} is not in the header "
                f"(columns: {', '.join(table.header)}); fix `key` or add the column",
                connection=self.connection,
            )
        return table

    def _fetch(self, wanted: set[str]) -> list[RemoteRecord]:
        table = self._read()
        return [
            RemoteRecord(
                id=rid,
                data=row_data(table.header, row, self.settings.escape_formulas),
                version=row_version(row),
            )
            for rid, row in zip(self._identify(table), table.rows, strict=True)
            if rid in wanted
        ]

    def _rows(self, header: list[str]) -> RowIdentity:
        return RowIdentity(
            self.settings.entity, header, self.settings.key, self.settings.phone_region
        )

    def _identify(self, table: CsvTable) -> list[str]:
        return self._rows(table.header).identify(table.rows)[0]

    def _prepare(self, changes: list[Change]) -> _Edit:
        """Lock, read, apply; the new file waits beside the old one until committed."""
        lock = FileLock(self.path, exclusive=True, connection=self.connection).acquire()
        edit = _Edit(lock=lock)
        try:
            table = self._read_locked()
            ids, naturals = self._rows(table.header).identify(table.rows)
            editor = RowEditor(
                table,
                ids,
                naturals,
                self._rows,
                key=self.settings.key,
                escape=self.settings.escape_formulas,
            )
            edit.results = [editor.apply(change) for change in changes]
            if editor.dirty:
                data = render(table.format, table.header, editor.live_rows())
                edit.read_digest = table.digest
                edit.replacement = Replacement(table.path, data, table.stamp, self.connection)
        except BaseException:
            edit.close()
            raise
        return edit

    def _committed(self, edit: _Edit) -> None:
        # Only a file whose every byte the hub has seen is its own write: one that was
        # changed after the pull, or got rows appended during the rename, is left to be seen.
        replacement = edit.replacement
        assert replacement is not None
        if edit.read_digest == self._pulled and not replacement.rescued:
            note_written(replacement.target, replacement.digest)


@dataclass
class _Edit:
    """One try of a push: the results, and the new file while the lock is held."""

    lock: FileLock
    results: list[PushResult] = field(default_factory=list)
    replacement: Replacement | None = None
    read_digest: str = ""

    def close(self) -> None:
        if self.replacement is not None:
            self.replacement.discard()
        self.lock.release()


async def _in_thread(work: Callable[[], T], undo: Callable[[T], None] | None = None) -> T:
    """``work()`` in a worker thread. Cancelled meanwhile, this still waits for it to end
    (and ``undo``es its result) before passing the cancellation on: the lock and the new
    file are never left to a thread nobody waits for."""
    task = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with suppress(Exception):
            result = await task
            if undo is not None:
                undo(result)
        raise


def _offset(cursor: Cursor | None, digest: str) -> int | None:
    """Where to start listing: 0 for a new file, the saved offset, or ``None`` (unchanged)."""
    if not isinstance(cursor, dict) or cursor.get("sha256") != digest:
        return 0
    offset = cursor.get("offset")
    if isinstance(offset, int) and not isinstance(offset, bool) and offset > 0:
        return offset
    return None
