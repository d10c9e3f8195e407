"""Contacts' name keys: every contact gets its ``full_name`` key in ``entity_keys``.

Streams that match contacts by name (``Stream.match_by_name``) look golden records up by
this key, so contacts made before it existed are keyed here, as
:func:`hub.records.normalize_full_name` keys them. Deleted contacts have no keys.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_KIND = "full_name"
_MAX_LENGTH = 320
_BATCH = 1000

_entities = sa.table(
    "entities",
    sa.column("id", sa.String),
    sa.column("type", sa.String),
    sa.column("fields", sa.JSON),
    sa.column("deleted_at", sa.DateTime(timezone=True)),
)
_keys = sa.table(
    "entity_keys",
    sa.column("entity_type", sa.String),
    sa.column("kind", sa.String),
    sa.column("value", sa.String),
    sa.column("entity_id", sa.String),
)


def _full_name(first: object, last: object) -> str | None:
    # the key as hub.records.normalize_full_name made it when this revision was written
    text = " ".join(str(part) for part in (first, last) if part is not None)
    decomposed = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in decomposed if not unicodedata.combining(c))
    key = " ".join(text.casefold().split())
    return key if key and len(key) <= _MAX_LENGTH else None


def upgrade() -> None:
    bind = op.get_bind()
    keyed = {
        entity_id
        for (entity_id,) in bind.execute(
            sa.select(_keys.c.entity_id).where(
                _keys.c.entity_type == "contact", _keys.c.kind == _KIND
            )
        )
    }
    rows = bind.execute(
        sa.select(_entities.c.id, _entities.c.fields).where(
            _entities.c.type == "contact", _entities.c.deleted_at.is_(None)
        )
    ).fetchall()
    batch: list[dict[str, str]] = []
    for entity_id, fields in rows:
        if entity_id in keyed or not isinstance(fields, dict):
            continue
        value = _full_name(fields.get("first_name"), fields.get("last_name"))
        if value is None:
            continue
        batch.append(
            {"entity_type": "contact", "kind": _KIND, "value": value, "entity_id": entity_id}
        )
        if len(batch) >= _BATCH:
            op.bulk_insert(_keys, batch)
            batch = []
    if batch:
        op.bulk_insert(_keys, batch)


def downgrade() -> None:
    op.execute(_keys.delete().where(_keys.c.kind == _KIND))
