"""What one run needs to know: the connection, its connector and mappings, and who else
should hear about the changes it brings in."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.config import ConnectionConfig, Policy
from hub.connector import Connector, Stream
from hub.errors import ConfigError, Problem
from hub.mapping import Mapping, load_mapping
from hub.registry import mapping_file
from hub.relations.model import dependency_rank
from hub.runtime import Hub

if TYPE_CHECKING:
    from hub.engine.lease import RunLease

_GROWING_TABLES = ("entities", "entity_keys", "links", "outbox")

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

DbFactory = Callable[[], contextlib.AbstractAsyncContextManager["AsyncConnection"]]
"""Opens one transaction on the hub's store (a page's, or a batch of pushes')."""


@dataclass(frozen=True)
class Target:
    """A connection and stream that should receive writes for an entity type."""

    connection: str
    stream: str
    fields: frozenset[str]
    can_create: bool


@dataclass
class StreamContext:
    stream: Stream
    mapping: Mapping
    targets: list[Target]
    """Other connections whose mappings cover this stream's entity type."""


@dataclass
class RunContext:
    hub: Hub
    conn: ConnectionConfig
    connector: Connector
    streams: list[StreamContext]
    run_id: str
    started: datetime
    plan: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    held: bool = False
    written: int = 0
    """Rows this run has brought in or settled (pulled records, finished outbox rows)."""
    analyzed_at: int = 0
    plan_hub_changes: list[dict[str, Any]] = field(default_factory=list)
    plan_remote: list[dict[str, Any]] = field(default_factory=list)
    reference_targets: dict[str, list[Target]] = field(default_factory=dict)
    """Per entity type: the targets of records a reference creates (filled when needed)."""
    key_renderers: dict[str, list[tuple[str, str, str, str]]] = field(default_factory=dict)
    """Per entity type: ``(connection, stream, field, key kind)`` of the pushes that write
    a reference to such a record as its key (filled when needed)."""
    lease: RunLease | None = None
    finished: bool = False
    """The run's lease (``None`` in a plan): every transaction of the run checks it."""

    @property
    def name(self) -> str:
        return self.conn.name

    def policy(self, field_name: str) -> Policy:
        return self.conn.policy_for(field_name)

    def count(self, key: str, n: int = 1) -> None:
        if n:
            self.counts[key] = self.counts.get(key, 0) + n

    async def wrote(self, n: int) -> None:
        """Note ``n`` more rows brought in or settled. Each time the run passes another power
        of ten (1,000, 10,000, ...) the store's statistics of the tables it fills and
        changes are refreshed where stale, so the next pages' lookups keep using their
        indexes however fast the tables grow or their rows change status."""
        self.written += n
        mark = 1000
        while mark * 10 <= self.written:
            mark *= 10
        if self.written >= mark > self.analyzed_at and not self.plan:
            self.analyzed_at = mark
            await self.hub.store.refresh_statistics(*_GROWING_TABLES)


def mapping_path(hub: Hub, conn: ConnectionConfig, connector: Connector, stream: Stream) -> Path:
    return mapping_file(hub.config, conn, connector, stream)


def load_stream_mapping(
    hub: Hub, conn: ConnectionConfig, connector: Connector, stream: Stream
) -> Mapping:
    path = mapping_path(hub, conn, connector, stream)
    if not path.exists():
        setting = conn.hub.mapping
        chosen = setting.get(stream.name) if isinstance(setting, dict) else setting
        if chosen:
            message, key = f"mapping file {path} not found", "mapping"
        else:
            message, key = (
                f"stream {stream.name!r} has no mapping: the connector's default, {path}, is "
                f'not there; write one and name it (mapping = {{ {stream.name} = "FILE" }})',
                None,
            )
        raise ConfigError([hub.config.problem(message, ["connections", conn.name], key)])
    mapping = load_mapping(path, phone_region=hub.config.hub.phone_region)
    if mapping.entity != stream.entity:
        raise ConfigError(
            [
                Problem(
                    str(path),
                    f"maps entity {mapping.entity!r} but stream {stream.name!r} of "
                    f"connection {conn.name!r} holds {stream.entity!r}",
                    key="entity",
                )
            ]
        )
    return mapping


def targets_for(hub: Hub, entity: str, exclude: str) -> list[Target]:
    """Every other enabled connection that pushes ``entity`` records."""
    found: list[Target] = []
    for name, conn in hub.config.connections.items():
        if name == exclude or not conn.hub.enabled or conn.hub.direction == "pull":
            continue
        connector = hub.connector(name)
        for stream in connector.streams():
            if stream.entity != entity or not stream.can_push:
                continue
            mapping = load_stream_mapping(hub, conn, connector, stream)
            found.append(
                Target(
                    connection=name,
                    stream=stream.name,
                    fields=mapping.push_fields,
                    can_create=stream.can_create,
                )
            )
    return found


def key_renderers(hub: Hub, target: str) -> list[tuple[str, str, str, str]]:
    """``(connection, stream, field, key kind)`` of every push that writes references to
    ``target`` records as their key (a company's name in a contacts file)."""
    found = []
    for name, conn in hub.config.connections.items():
        if not conn.hub.enabled or conn.hub.direction == "pull":
            continue
        connector = hub.connector(name)
        for stream in connector.streams():
            if not stream.can_update:
                continue
            mapping = load_stream_mapping(hub, conn, connector, stream)
            for f, ref in mapping.references.items():
                if ref.target == target and ref.by != "id" and f in mapping.push_fields:
                    found.append((name, stream.name, f, ref.by))
    return found


def _rank(sctx: StreamContext) -> int:
    through = [dependency_rank(r.names) + 1 for r in sctx.mapping.references.values() if r.via]
    return max([dependency_rank(sctx.stream.entity), *through])


def build_context(
    hub: Hub, name: str, connector: Connector, run_id: str, started: datetime, plan: bool
) -> RunContext:
    conn = hub.config.connection(name)
    streams = [
        StreamContext(
            stream=s,
            mapping=load_stream_mapping(hub, conn, connector, s),
            targets=targets_for(hub, s.entity, exclude=name),
        )
        for s in connector.streams()
    ]
    # What records point at comes first: companies, contacts, then what names them, then
    # what reads a reference through them (ticket comments after the tickets).
    streams.sort(key=_rank)
    return RunContext(
        hub=hub,
        conn=conn,
        connector=connector,
        streams=streams,
        run_id=run_id,
        started=started,
        plan=plan,
    )
