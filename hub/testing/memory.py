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

A benchmark that stands in for a large system seeds it with :meth:`MemoryRemote.generate`:
records ``<prefix>0`` ... are made from their index whenever they are read, and only those
changed since (by the benchmark or by a push) are kept, so the remote's records do not weigh
on the memory of the process that syncs them.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

from pydantic import BaseModel, ConfigDict, Field

from hub.connector import Change, Connector, Cursor, Page, PushResult, RemoteRecord, Stream
from hub.errors import ConnectorConfigError
from hub.kinds import EntityType
from hub.testing.memory_remote import (
    NOT_FOUND,
    STALE_VERSION,
    MemoryRemote,
    Refusal,
    create_remote,
    get_remote,
    remove_remote,
)

__all__ = [
    "NOT_FOUND",
    "STALE_VERSION",
    "MemoryConnector",
    "MemoryRemote",
    "MemorySettings",
    "Refusal",
    "create_remote",
    "get_remote",
    "remove_remote",
]


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
        # Listed lazily (a generated remote makes each record only as its page is read); a
        # full pull lists the live records by last change, tombstones skipped (implied).
        end = remote.seq
        changed = remote.changed_since(since or 0)
        if full:
            changed = ((rid, at) for rid, at in changed if rid in remote)
        size = self.settings.page_size
        chunk = list(itertools.islice(changed, size))
        if not chunk:
            if full:
                yield Page(cursor={"seq": end}, full_scan=True)
            return
        while chunk:
            page = Page(full_scan=full)
            for record_id, _ in chunk:
                if record_id in remote:
                    page.records.append(remote.record(record_id))
                elif remote.is_deleted(record_id):
                    page.deleted.append(record_id)
            following = list(itertools.islice(changed, size))
            page.cursor = {"seq": chunk[-1][1] if following else end}
            chunk = following
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
