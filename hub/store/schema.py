"""The store's tables (SQLAlchemy Core). Alembic migrations in ``hub/store/migrations`` create them.

JSON columns hold canonical values; timestamps are aware UTC datetimes stored as text-free
``DateTime(timezone=True)``. Ids are UUID strings so rows can be made before insert.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(36)
NAME = String(64)
TS = DateTime(timezone=True)

entities = Table(
    "entities",
    metadata,
    Column("id", ID, primary_key=True),
    Column("type", String(16), nullable=False),
    # {field: value}
    Column("fields", JSON, nullable=False),
    # {field: [connection, iso time]}: who set each field last, and when
    Column("provenance", JSON, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("deleted_at", TS),
    Index("ix_entities_type_updated", "type", "updated_at"),
)

entity_keys = Table(
    "entity_keys",
    metadata,
    Column("entity_type", String(16), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("value", String(320), primary_key=True),
    Column("entity_id", ID, ForeignKey("entities.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_entity_keys_entity", "entity_id"),
)

links = Table(
    "links",
    metadata,
    Column("id", ID, primary_key=True),
    Column("entity_id", ID, ForeignKey("entities.id", ondelete="CASCADE"), nullable=False),
    Column("connection", NAME, nullable=False),
    Column("stream", NAME, nullable=False),
    Column("remote_id", String(255), nullable=False),
    Column("remote_version", String(255)),
    # mapped field values both sides last agreed on
    Column("base", JSON, nullable=False),
    Column("updated_at", TS, nullable=False),
    UniqueConstraint("connection", "stream", "remote_id"),
    Index("ix_links_entity", "entity_id"),
)

# Reference fields, one row per (record, field, record pointed at): "everything that
# points at X" is one look-up of the target index. The entity's fields hold the same ids.
entity_refs = Table(
    "entity_refs",
    metadata,
    Column("entity_id", ID, ForeignKey("entities.id", ondelete="CASCADE"), primary_key=True),
    Column("field", String(64), primary_key=True),
    Column("target_id", ID, ForeignKey("entities.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_entity_refs_target", "target_id"),
)

# References pulled before their target was known: kept until the target arrives.
pending_refs = Table(
    "pending_refs",
    metadata,
    Column("connection", NAME, primary_key=True),
    Column("stream", NAME, primary_key=True),
    Column("remote_id", String(255), primary_key=True),  # the record that points
    Column("field", String(64), primary_key=True),
    Column("value", String(320), primary_key=True),  # the target's remote id or key
    Column("target_type", String(64), nullable=False),  # or what it is read through
    Column("by", String(16), nullable=False),
    Column("created_at", TS, nullable=False),
    Index("ix_pending_refs_target", "target_type", "by", "value"),
)

cursors = Table(
    "cursors",
    metadata,
    Column("connection", NAME, primary_key=True),
    Column("stream", NAME, primary_key=True),
    Column("value", JSON),
    Column("updated_at", TS, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("connection", NAME, nullable=False),
    # running|ok|failed|held|superseded|throttled|interrupted
    Column("status", String(16), nullable=False),
    Column("full", Boolean, nullable=False, default=False),
    Column("started_at", TS, nullable=False),
    Column("finished_at", TS),
    Column("counts", JSON, nullable=False),
    Column("error", Text),
    Column("throttled_until", TS),
    Index("ix_runs_connection_started", "connection", "started_at"),
    Index("ix_runs_connection_status_finished", "connection", "status", "finished_at"),
)

# Remote deletions a run saw but held back because they exceeded the delete guard.
pending_deletes = Table(
    "pending_deletes",
    metadata,
    Column("run_id", ID, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("link_id", ID, ForeignKey("links.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_pending_deletes_link", "link_id"),
)

conflicts = Table(
    "conflicts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("entity_id", ID, ForeignKey("entities.id", ondelete="CASCADE"), nullable=False),
    Column("connection", NAME, nullable=False),
    Column("field", String(128), nullable=False),
    Column("base_value", JSON),
    Column("hub_value", JSON),
    Column("remote_value", JSON),
    Column("status", String(16), nullable=False),  # open|resolved
    Column("resolution", JSON),
    Column("created_at", TS, nullable=False),
    Column("resolved_at", TS),
    Index("ix_conflicts_open", "status", "entity_id", "field"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", ID, primary_key=True),  # also the idempotency key of the owed write
    Column("connection", NAME, nullable=False),
    Column("stream", NAME, nullable=False),
    Column("entity_id", ID, ForeignKey("entities.id", ondelete="CASCADE"), nullable=False),
    Column("op", String(8), nullable=False),  # upsert|delete
    Column("status", String(8), nullable=False),  # pending|done|dead
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("next_attempt_at", TS),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Index("ix_outbox_due", "connection", "stream", "status", "created_at"),
    Index("ix_outbox_entity", "entity_id", "status"),
)

inbox = Table(
    "inbox",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("source", NAME, nullable=False),  # connection (or form) name
    Column("delivery_id", String(255), nullable=False),
    Column("kind", String(64), nullable=False, default="event"),
    Column("headers", JSON, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("status", String(12), nullable=False),  # pending|done|dead|malformed
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("received_at", TS, nullable=False),
    Column("processed_at", TS),
    # [{"at": iso time, "error": text}, ...]: every failed attempt, oldest first
    Column("attempt_errors", JSON),
    UniqueConstraint("source", "delivery_id"),
    Index("ix_inbox_status", "status", "id"),
)

change_log = Table(
    "change_log",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("entity_id", ID, nullable=False),
    Column("connection", NAME),  # None: a person (conflict resolution, CLI)
    Column("run_id", ID),
    Column("at", TS, nullable=False),
    # {field: [old, new]}
    Column("changes", JSON, nullable=False),
    Index("ix_change_log_entity", "entity_id", "id"),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_at", TS, nullable=False),
    # bumped each time the lease changes hands: with the holder, the fence a run's writes check
    Column("epoch", BigInteger, nullable=False, server_default="1"),
)

# Credentials, encrypted by auth's vault. ``version`` is bumped on every write so
# concurrent refreshes can compare-and-swap.
tokens = Table(
    "tokens",
    metadata,
    Column("connection", NAME, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("kind", String(32), nullable=False),  # oauth2|api_key|basic|msal_cache
    Column("ciphertext", LargeBinary, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("expires_at", TS),
    Column("status", String(16), nullable=False),  # ok|refreshing|needs_reauth
    Column("last_error", Text),
    Column("refreshed_at", TS),
    Column("updated_at", TS, nullable=False),
    # host:pid:tag of the process holding a refresh claim (status refreshing)
    Column("claimed_by", String(128)),
)

oauth_states = Table(
    "oauth_states",
    metadata,
    Column("state", String(128), primary_key=True),
    Column("connection", NAME, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),  # code verifier, redirect uri
    Column("expires_at", TS, nullable=False),
)
