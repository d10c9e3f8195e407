"""The remote system behind connector ``memory`` (:mod:`hub.testing.memory`): records by id,
versions, a change log, tombstones, counters, and the registry of named remotes.

:meth:`MemoryRemote.generate` seeds a remote whose records are made from their index when
read; only the records changed since (or added) are kept.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from hub.connector import Change, PushResult, RemoteRecord
from hub.errors import ConnectorConfigError, ConnectorError, ErrorKind

STALE_VERSION = "stale version"
"""Start of ``PushResult.message`` when a write named an outdated version."""

NOT_FOUND = "no such record"
"""Start of ``PushResult.message`` when an update names an unknown id."""

Refusal = Callable[[Change], str | None]
"""Decides per change: a message refuses it (``PERMANENT``), ``None`` lets it through."""

_JSON_SCALARS = (str, int, float, bool, type(None))


class MemoryRemote:
    """The remote system: records by id, versions, a change log, tombstones and counters."""

    def __init__(self, name: str = "memory", *, now: datetime | None = None) -> None:
        self.name = name
        self._records: dict[str, dict[str, Any]] = {}
        self._versions: dict[str, int] = {}
        self._modified: dict[str, datetime] = {}
        self._field_modified: dict[str, dict[str, datetime]] = {}
        # id -> seq of its last change (live or deleted), oldest first: a suffix is "since n".
        self._log: dict[str, int] = {}
        self._tombstones: set[str] = set()
        self._idempotency: dict[str, str] = {}
        self._ids = itertools.count(1)
        self.seq = 0
        # generated records: ids "<prefix><i>" for i < count, made by ``make(i)`` until changed
        self._made: tuple[str, int, Callable[[int], dict[str, Any]], datetime] | None = None
        self._now = now
        self._failures: dict[str, list[ConnectorError]] = {"pull": [], "push": []}
        self.refuse: Refusal | None = None
        self.pull_calls = 0
        self.fetch_calls = 0
        self.push_calls = 0
        self.changes_written = 0
        """Changes applied by ``push`` (creates, updates, deletes); test edits do not count."""

    # -- clock ---------------------------------------------------------------------------

    def now(self) -> datetime:
        return self._now if self._now is not None else datetime.now(UTC)

    def set_time(self, when: datetime) -> None:
        """Freeze the clock at ``when`` (aware); later changes carry this time."""
        if when.tzinfo is None:
            raise ValueError("the remote's clock needs an aware datetime")
        self._now = when

    def advance(self, seconds: float = 1.0) -> datetime:
        """Move the (then frozen) clock forward and return the new time."""
        self._now = self.now() + timedelta(seconds=seconds)
        return self._now

    # -- test-side access ----------------------------------------------------------------

    def add(self, data: dict[str, Any], *, id: str | None = None) -> str:
        """Create a record as if someone made it in the remote system; returns its id."""
        record_id = id if id is not None else f"m{next(self._ids)}"
        if record_id in self:
            raise ValueError(f"record {record_id!r} already exists")
        self._tombstones.discard(record_id)
        self._records[record_id] = dict(data)
        self._versions[record_id] = 1
        self._modified[record_id] = self.now()
        self._touch(record_id)
        return record_id

    def generate(self, count: int, make: Callable[[int], dict[str, Any]], *, prefix: str) -> None:
        """Seed ``count`` records with ids ``<prefix>0`` ... ``<prefix><count - 1>``, their
        data ``make(i)``, made again whenever read: only the records changed later (and those
        added) are kept. They take the sequence numbers 1 to ``count`` and version 1."""
        if self.seq or self._made is not None:
            raise ValueError("generate() seeds an empty remote, once")
        self._made = (prefix, count, make, self.now())
        self.seq = count

    def _made_index(self, record_id: str) -> int | None:
        """The index of a generated record not changed since, else ``None``."""
        if self._made is None or record_id in self._log:
            return None
        prefix, count, _, _ = self._made
        digits = record_id[len(prefix) :]
        if not record_id.startswith(prefix) or not digits.isdigit() or digits[0] == "0" != digits:
            return None
        index = int(digits)
        return index if index < count else None

    def _keep(self, record_id: str) -> None:
        """Keep a generated record from now on, before it changes."""
        index = self._made_index(record_id)
        if index is not None and record_id not in self._records:
            assert self._made is not None
            self._records[record_id] = self._made[2](index)
            self._versions[record_id] = 1
            self._modified[record_id] = self._made[3]

    def update(self, record_id: str, **fields: Any) -> None:
        """Change fields of a record as a remote user would (``None`` empties a field)."""
        self._require(record_id)
        self._apply(record_id, fields)

    def delete(self, record_id: str) -> None:
        self._require(record_id)
        self._remove(record_id)

    def get(self, record_id: str) -> dict[str, Any] | None:
        data = self._records.get(record_id)
        if data is not None:
            return dict(data)
        index = self._made_index(record_id)
        return self._made[2](index) if self._made is not None and index is not None else None

    def ids(self) -> list[str]:
        """Ids of the live records, generated ones first (without copying the records)."""
        made = [rid for rid, _ in self._generated(0) if rid not in self._records]
        return made + list(self._records)

    def all(self) -> dict[str, dict[str, Any]]:
        return {rid: data for rid in self.ids() if (data := self.get(rid)) is not None}

    def version(self, record_id: str) -> str:
        self._require(record_id)
        return str(self._versions.get(record_id, 1))

    def __len__(self) -> int:
        made = sum(1 for rid, _ in self._generated(0) if rid not in self._records)
        return made + len(self._records)

    def __contains__(self, record_id: object) -> bool:
        if record_id in self._records:
            return True
        return isinstance(record_id, str) and self._made_index(record_id) is not None

    def fail(self, on: Literal["pull", "push"], error: ConnectorError, *, times: int = 1) -> None:
        """Make the next ``times`` pull or push calls raise ``error`` before doing anything."""
        self._failures[on].extend([error] * times)

    # -- what the connector uses ---------------------------------------------------------

    def check_failure(self, on: Literal["pull", "push"]) -> None:
        if self._failures[on]:
            raise self._failures[on].pop(0)

    def record(self, record_id: str) -> RemoteRecord:
        if record_id not in self._records:
            index = self._made_index(record_id)
            if self._made is None or index is None:
                raise KeyError(f"remote {self.name!r} has no record {record_id!r}")
            return RemoteRecord(
                id=record_id, data=self._made[2](index), version="1", modified_at=self._made[3]
            )
        field_times = self._field_modified.get(record_id)
        return RemoteRecord(
            id=record_id,
            data=dict(self._records[record_id]),
            version=str(self._versions[record_id]),
            modified_at=self._modified[record_id],
            field_modified_at=dict(field_times) if field_times else None,
        )

    def changed_since(self, seq: int) -> Iterator[tuple[str, int]]:
        """``(id, seq)`` of everything changed after ``seq``, oldest first: the generated
        records not changed since one by one, then the rest (taken when the listing starts)."""
        later = self.log_since(seq)
        yield from self._generated(seq)
        yield from later

    def _generated(self, seq: int) -> Iterator[tuple[str, int]]:
        if self._made is None:
            return
        prefix, count, _, _ = self._made
        for index in range(seq, count):
            record_id = f"{prefix}{index}"
            if record_id not in self._log:
                yield record_id, index + 1

    def log_since(self, seq: int) -> list[tuple[str, int]]:
        """``(id, seq)`` of everything changed after ``seq``, oldest first, but for the
        generated records not changed since (see :meth:`changed_since`)."""
        changed: list[tuple[str, int]] = []
        for record_id in reversed(self._log):
            at = self._log[record_id]
            if at <= seq:
                break
            changed.append((record_id, at))
        changed.reverse()
        return changed

    def is_deleted(self, record_id: str) -> bool:
        return record_id in self._tombstones

    def apply(self, change: Change) -> PushResult:
        """Apply one pushed change; refusals are results, never exceptions."""
        if self.refuse is not None:
            message = self.refuse(change)
            if message:
                return _error(change, ErrorKind.PERMANENT, message)
        bad = [k for k, v in change.data.items() if not _is_value(v)]
        if bad:
            return _error(change, ErrorKind.PERMANENT, f"unsupported value for {bad[0]!r}")
        if change.op == "create":
            return self._push_create(change)
        if change.remote_id is None:
            return _error(change, ErrorKind.PERMANENT, f"{change.op} needs a remote id")
        self._keep(change.remote_id)
        if change.remote_id not in self._records:
            if change.op == "delete":  # already gone: the wanted outcome
                return PushResult(key=change.key, remote_id=change.remote_id)
            return _error(change, ErrorKind.PERMANENT, f"{NOT_FOUND}: {change.remote_id}")
        current = str(self._versions[change.remote_id])
        if change.version is not None and change.version != current:
            return PushResult(
                key=change.key,
                remote_id=change.remote_id,
                version=current,
                error=ErrorKind.TRANSIENT,
                message=f"{STALE_VERSION}: expected {change.version}, remote has {current}",
                data=self.get(change.remote_id),
                stale=True,
            )
        self.changes_written += 1
        if change.op == "delete":
            self._remove(change.remote_id)
            return PushResult(key=change.key, remote_id=change.remote_id)
        self._apply(change.remote_id, change.data)
        return self._ok(change, change.remote_id)

    # -- internals -----------------------------------------------------------------------

    def _push_create(self, change: Change) -> PushResult:
        earlier = self._idempotency.get(change.idempotency_key)
        if earlier is not None and earlier in self._records:
            return self._ok(change, earlier)
        record_id = self.add(change.data)
        self._idempotency[change.idempotency_key] = record_id
        self.changes_written += 1
        return self._ok(change, record_id)

    def _ok(self, change: Change, record_id: str) -> PushResult:
        return PushResult(
            key=change.key,
            remote_id=record_id,
            version=str(self._versions[record_id]),
            data=self.get(record_id),
        )

    def _require(self, record_id: str) -> None:
        self._keep(record_id)
        if record_id not in self._records:
            raise KeyError(f"remote {self.name!r} has no record {record_id!r}")

    def _touch(self, record_id: str) -> None:
        self.seq += 1
        self._log.pop(record_id, None)  # re-inserted: a dict keeps insertion order
        self._log[record_id] = self.seq

    def _apply(self, record_id: str, fields: dict[str, Any]) -> None:
        now = self.now()
        self._records[record_id].update(fields)
        self._versions[record_id] += 1
        self._modified[record_id] = now
        times = self._field_modified.setdefault(record_id, {})
        for name in fields:
            times[name] = now
        self._touch(record_id)

    def _remove(self, record_id: str) -> None:
        del self._records[record_id]
        del self._versions[record_id]
        del self._modified[record_id]
        self._field_modified.pop(record_id, None)
        self._tombstones.add(record_id)
        self._touch(record_id)


def _is_value(value: Any) -> bool:
    if isinstance(value, list):
        return all(isinstance(item, _JSON_SCALARS) for item in value)
    return isinstance(value, _JSON_SCALARS)


def _error(change: Change, kind: ErrorKind, message: str) -> PushResult:
    return PushResult(key=change.key, remote_id=change.remote_id, error=kind, message=message)


# -- registry of named remotes -----------------------------------------------------------

_REMOTES: dict[str, MemoryRemote] = {}


def create_remote(name: str, *, now: datetime | None = None) -> MemoryRemote:
    """A fresh remote registered under ``name`` (replacing any earlier one of that name)."""
    remote = MemoryRemote(name, now=now)
    _REMOTES[name] = remote
    return remote


def get_remote(name: str) -> MemoryRemote:
    try:
        return _REMOTES[name]
    except KeyError:
        known = ", ".join(sorted(_REMOTES)) or "none"
        raise ConnectorConfigError(
            f"no memory remote named {name!r} (registered: {known}); "
            "create it with hub.testing.memory.create_remote() before using the connection"
        ) from None


def remove_remote(name: str) -> None:
    _REMOTES.pop(name, None)
