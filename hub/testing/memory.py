"""An in-process remote system and its connector, for engine tests and benchmarks.

A test creates a named :class:`MemoryRemote`, seeds it, and configures a connection with
connector ``memory`` and ``store = "<name>"``; the connector instance the hub builds finds
the remote by that name::

    remote = create_remote("crm")
    ann = remote.add({"email": "ann@example.com", "first_name": "Ann"})
    ...                              # run the engine against a "memory" connection
    remote.update(ann, first_name="Anne")
    assert remote.changes_written == 0

Records are flat dicts whose keys are canonical field names, so
``mappings/memory/records.toml`` maps them almost one to one.

Behaviour the engine can rely on (and tests can provoke):

- every change (add, update, delete, push) takes the next sequence number; a pull with cursor
  ``{"seq": n}`` returns what changed after ``n``, deletions in ``Page.deleted``;
- a full pull (cursor ``None``) lists live records in order of their last change, so the
  cursor after each page (``{"seq": <last change listed>}``) resumes it exactly;
- a version is an integer counter as a string; an update or delete that names a ``version``
  other than the current one is refused as stale (``PushResult.stale``, kind ``TRANSIENT``,
  message starting :data:`STALE_VERSION`; ``data`` and ``version`` carry the current record),
  so the engine re-reads and merges before trying again;
- a create with an ``idempotency_key`` already seen returns the first create's record;
- ``modified_at`` comes from the remote's clock: real time until the test calls
  :meth:`MemoryRemote.set_time` or :meth:`MemoryRemote.advance`;
- :meth:`MemoryRemote.fail` makes the next pull or push call raise a given error, and
  :attr:`MemoryRemote.refuse` can refuse single items.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hub.connector import Change, Connector, Cursor, Page, PushResult, RemoteRecord, Stream
from hub.errors import ConnectorConfigError, ConnectorError, ErrorKind
from hub.records import EntityType

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
        if record_id in self._records:
            raise ValueError(f"record {record_id!r} already exists")
        self._tombstones.discard(record_id)
        self._records[record_id] = dict(data)
        self._versions[record_id] = 1
        self._modified[record_id] = self.now()
        self._touch(record_id)
        return record_id

    def update(self, record_id: str, **fields: Any) -> None:
        """Change fields of a record as a remote user would (``None`` empties a field)."""
        self._require(record_id)
        self._apply(record_id, fields)

    def delete(self, record_id: str) -> None:
        self._require(record_id)
        self._remove(record_id)

    def get(self, record_id: str) -> dict[str, Any] | None:
        data = self._records.get(record_id)
        return dict(data) if data is not None else None

    def ids(self) -> list[str]:
        """Ids of the live records, oldest first (without copying the records)."""
        return list(self._records)

    def all(self) -> dict[str, dict[str, Any]]:
        return {rid: dict(data) for rid, data in self._records.items()}

    def version(self, record_id: str) -> str:
        self._require(record_id)
        return str(self._versions[record_id])

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._records

    def fail(self, on: Literal["pull", "push"], error: ConnectorError, *, times: int = 1) -> None:
        """Make the next ``times`` pull or push calls raise ``error`` before doing anything."""
        self._failures[on].extend([error] * times)

    # -- what the connector uses ---------------------------------------------------------

    def check_failure(self, on: Literal["pull", "push"]) -> None:
        if self._failures[on]:
            raise self._failures[on].pop(0)

    def record(self, record_id: str) -> RemoteRecord:
        field_times = self._field_modified.get(record_id)
        return RemoteRecord(
            id=record_id,
            data=dict(self._records[record_id]),
            version=str(self._versions[record_id]),
            modified_at=self._modified[record_id],
            field_modified_at=dict(field_times) if field_times else None,
        )

    def log_since(self, seq: int) -> list[tuple[str, int]]:
        """``(id, seq)`` of everything changed after ``seq``, oldest first."""
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


# -- the connector -----------------------------------------------------------------------


class MemorySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store: str
    """Name of the registered :class:`MemoryRemote`."""
    entity: EntityType = "contact"
    page_size: int = Field(1000, ge=1)
    streams: dict[str, EntityType] | None = None
    """Several streams (name -> entity, pulled and pushed in dependency order), each kept
    in the remote named ``<store>/<stream>``; default one stream ``records`` of ``entity``."""
    match_by_name: bool = False
    """Its streams match contacts by name (:attr:`hub.connector.Stream.match_by_name`)."""


class MemoryConnector(Connector):
    """Connector ``memory``: one incremental, fully writable stream ``records``."""

    name = "memory"
    description = "In-process remote system for tests and benchmarks."
    Settings = MemorySettings
    settings: MemorySettings
    push_batch_size = 1000

    @property
    def remote(self) -> MemoryRemote:
        return get_remote(self.settings.store)

    def remote_of(self, stream: Stream) -> MemoryRemote:
        if self.settings.streams is None:
            return self.remote
        return get_remote(f"{self.settings.store}/{stream.name}")

    def streams(self) -> list[Stream]:
        named = self.settings.streams or {"records": self.settings.entity}
        return [
            Stream(
                name=name,
                entity=entity,
                incremental=True,
                can_create=True,
                can_update=True,
                can_delete=True,
                match_by_name=self.settings.match_by_name,
            )
            for name, entity in named.items()
        ]

    async def pull(self, stream: Stream, cursor: Cursor | None) -> AsyncIterator[Page]:
        remote = self.remote_of(stream)
        remote.pull_calls += 1
        remote.check_failure("pull")
        since = self._since(cursor)
        full = since is None
        if full:
            # Live records by last change; tombstones are skipped (a full scan implies them).
            live = remote._records
            changed = [(rid, at) for rid, at in remote.log_since(0) if rid in live]
            end = remote.seq
        else:
            assert since is not None
            changed = remote.log_since(since)
            end = changed[-1][1] if changed else since
        size = self.settings.page_size
        if full and not changed:
            yield Page(cursor={"seq": end}, full_scan=True)
            return
        for start in range(0, len(changed), size):
            chunk = changed[start : start + size]
            page = Page(full_scan=full)
            for record_id, _ in chunk:
                if record_id in remote._records:
                    page.records.append(remote.record(record_id))
                elif remote.is_deleted(record_id):
                    page.deleted.append(record_id)
            last = start + size >= len(changed)
            page.cursor = {"seq": end if last else chunk[-1][1]}
            yield page

    async def push(self, stream: Stream, changes: list[Change]) -> list[PushResult]:
        remote = self.remote_of(stream)
        remote.push_calls += 1
        remote.check_failure("push")
        return [remote.apply(change) for change in changes]

    async def fetch(self, stream: Stream, remote_ids: list[str]) -> list[RemoteRecord]:
        remote = self.remote_of(stream)
        remote.fetch_calls += 1
        return [remote.record(rid) for rid in remote_ids if rid in remote]

    def _since(self, cursor: Cursor | None) -> int | None:
        if cursor is None:
            return None
        seq = cursor.get("seq") if isinstance(cursor, dict) else None
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ConnectorConfigError(
                f"unrecognised cursor {cursor!r} (expected {{'seq': <int>}}); "
                "reset the stream's cursor to pull everything again",
                connection=self.connection,
            )
        return seq
