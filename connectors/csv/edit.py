"""Applying pushed changes to a table's rows in memory, one result per change.

A create first looks for the row it would add (by key value, else natural key, else
content), so a create retried after a crash returns the row written the first time instead
of adding it again. Updates touch only the given columns; columns not in the header are
appended to it. A refused change becomes a result with an error; the table is untouched by it.
With ``escape``, values that could run as spreadsheet formulas are written neutralised
(:mod:`connectors.csv.cells`) and results carry the values as given.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from connectors.csv.cells import neutralise, row_data
from connectors.csv.rows import RowIdentity, row_text, row_version
from connectors.csv.table import CsvTable
from hub.connector import Change, PushResult
from hub.errors import ErrorKind

STALE_VERSION = "stale version"
"""Start of ``PushResult.message`` when a change names an outdated row version."""


class Refused(Exception):
    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        version: str | None = None,
        data: dict[str, Any] | None = None,
        stale: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind, self.message, self.version, self.data = kind, message, version, data
        self.stale = stale


def cell_text(column: str, value: Any) -> str:
    """How a value is written into a cell: text as is, booleans ``true``/``false``."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise Refused(
        ErrorKind.PERMANENT,
        f"column {column!r}: a {type(value).__name__} cannot go into a CSV cell "
        "(a `join` transform in the mapping turns lists into text)",
    )


def lookup_keys(identity: RowIdentity, row: list[str], natural: str | None) -> list[str]:
    """What identifies a row for a retried create: key value, natural key, else content."""
    keys = []
    if identity.key_index is not None and row[identity.key_index].strip():
        keys.append("key:" + row[identity.key_index].strip())
    if natural:
        keys.append(natural)
    else:
        rest = [v if i != identity.key_index else "" for i, v in enumerate(row)]
        keys.append("content:" + row_text(rest))
    return keys


class RowEditor:
    """The rows of one table under edit; ``dirty`` once anything must be written."""

    def __init__(
        self,
        table: CsvTable,
        ids: list[str],
        naturals: list[str | None],
        identity_for: Callable[[list[str]], RowIdentity],
        key: str | None,
        escape: bool = True,
    ) -> None:
        self.header = table.header
        self.encoding = table.format.encoding
        self.rows: list[list[str] | None] = list(table.rows)
        self.ids: list[str | None] = list(ids)
        self.naturals = list(naturals)
        self.index = {rid: i for i, rid in enumerate(ids)}
        self.identity_for = identity_for
        self.identity = identity_for(self.header)
        self.columns = {name: i for i, name in enumerate(self.header)}
        self.key = key
        self.escape = escape
        self.dirty = False
        self._lookup: dict[str, int] | None = None

    def apply(self, change: Change) -> PushResult:
        try:
            if change.op == "create":
                return self._create(change)
            if change.op == "update":
                return self._update(change)
            if change.op == "delete":
                return self._delete(change)
            raise Refused(ErrorKind.PERMANENT, f"unknown operation {change.op!r}")
        except Refused as refusal:
            return PushResult(
                key=change.key,
                remote_id=change.remote_id,
                version=refusal.version,
                error=refusal.kind,
                message=refusal.message,
                data=refusal.data,
                stale=refusal.stale,
            )

    def live_rows(self) -> list[list[str]]:
        return [row for row in self.rows if row is not None]

    # -- operations ----------------------------------------------------------------------

    def _create(self, change: Change) -> PushResult:
        cells = self._cells(change.data)
        header = self.header + [name for name in cells if name not in self.columns]
        identity = self.identity_for(header) if len(header) > len(self.header) else self.identity
        probe = [cells.get(name, "") for name in header]
        existing = self._find_existing(lookup_keys(identity, probe, identity.natural(probe)))
        if existing is not None:
            return self._ok(change, existing)
        if self.key is not None and not cells.get(self.key, "").strip():
            cells[self.key] = uuid.uuid4().hex
        self._extend_header(cells)
        row = [cells.get(name, "") for name in self.header]
        self.rows.append(row)
        self.ids.append(None)
        self.naturals.append(None)
        index = len(self.rows) - 1
        self._assign_id(index)
        self._remember(index)
        self.dirty = True
        return self._ok(change, index)

    def _update(self, change: Change) -> PushResult:
        index = self._locate(change)
        if index is None:
            raise Refused(
                ErrorKind.PERMANENT,
                f"no row with id {change.remote_id!r} in the file (deleted, or its identifying "
                "column changed); the next pull will show it",
            )
        row = self._checked(change, index)
        cells = self._cells(change.data)
        self._extend_header(cells)
        for name, value in cells.items():
            row[self.columns[name]] = value
        self._assign_id(index)
        self._remember(index)
        self.dirty = True
        return self._ok(change, index)

    def _delete(self, change: Change) -> PushResult:
        index = self._locate(change)
        if index is None:  # already gone: the wanted outcome
            return PushResult(key=change.key, remote_id=change.remote_id)
        self._checked(change, index)
        self.rows[index] = None
        old = self.ids[index]
        if old is not None and self.index.get(old) == index:
            del self.index[old]
        self.dirty = True
        return PushResult(key=change.key, remote_id=change.remote_id)

    # -- helpers -------------------------------------------------------------------------

    def _cells(self, data: Any) -> dict[str, str]:
        if not isinstance(data, dict):
            raise Refused(ErrorKind.PERMANENT, "change data must be an object of columns")
        cells = {}
        for name, value in data.items():
            if not isinstance(name, str) or not name.strip():
                raise Refused(ErrorKind.PERMANENT, f"{name!r} is not a column name")
            text = cell_text(name, value)
            if self.escape:
                text = neutralise(text)
            try:
                text.encode(self.encoding)
            except UnicodeEncodeError:
                raise Refused(
                    ErrorKind.PERMANENT,
                    f"column {name!r}: {text!r} cannot be written in the file's encoding "
                    f"{self.encoding}",
                ) from None
            cells[name] = text
        return cells

    def _locate(self, change: Change) -> int | None:
        if not change.remote_id:
            raise Refused(ErrorKind.PERMANENT, f"an {change.op} needs the row's remote id")
        index = self.index.get(change.remote_id)
        return index if index is not None and self.rows[index] is not None else None

    def _checked(self, change: Change, index: int) -> list[str]:
        row = self.rows[index]
        assert row is not None
        current = row_version(row)
        if change.version is not None and change.version != current:
            raise Refused(
                ErrorKind.TRANSIENT,
                f"{STALE_VERSION}: the row changed since version {change.version}",
                version=current,
                data=row_data(self.header, row, self.escape),
                stale=True,
            )
        return row

    def _extend_header(self, cells: dict[str, str]) -> None:
        new = [name for name in cells if name not in self.columns]
        if not new:
            return
        for name in new:
            self.columns[name] = len(self.header)
            self.header.append(name)
        for row in self.rows:
            if row is not None:
                row.extend([""] * len(new))
        self.identity = self.identity_for(self.header)

    def _assign_id(self, index: int) -> str:
        row = self.rows[index]
        assert row is not None
        old = self.ids[index]
        if old is not None and self.index.get(old) == index:
            del self.index[old]
        natural = self.naturals[index] = self.identity.natural(row)
        base = self.identity.base_id(row, natural)
        rid, number = base, 1
        while rid in self.index and self.rows[self.index[rid]] is not None:
            number += 1
            rid = f"{base}#{number}"
        self.ids[index] = rid
        self.index[rid] = index
        return rid

    def _keys_of(self, index: int) -> list[str]:
        row = self.rows[index]
        return [] if row is None else lookup_keys(self.identity, row, self.naturals[index])

    def _remember(self, index: int) -> None:
        if self._lookup is not None:
            for k in self._keys_of(index):
                self._lookup.setdefault(k, index)

    def _find_existing(self, keys: list[str]) -> int | None:
        if self._lookup is None:
            self._lookup = {}
            for index in range(len(self.rows)):
                for k in self._keys_of(index):
                    self._lookup.setdefault(k, index)
        for k in keys:
            found = self._lookup.get(k)
            # An entry can be stale after an update or delete in the same batch.
            if found is not None and k in self._keys_of(found):
                return found
        return None

    def _ok(self, change: Change, index: int) -> PushResult:
        row = self.rows[index]
        assert row is not None
        return PushResult(
            key=change.key,
            remote_id=self.ids[index],
            version=row_version(row),
            data=row_data(self.header, row, self.escape),
        )
