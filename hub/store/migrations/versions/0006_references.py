"""References between golden records: ``entity_refs`` and ``pending_refs``.

``entity_refs`` indexes every reference field (a contact's company, an activity's contacts)
by the record pointed at; ``pending_refs`` keeps references pulled before their target.

Existing data is carried over: a contact's company, which was its company's name, becomes a
reference to that company (found by name, or created); an activity's ``contact_email``
becomes a reference to the contact with that address. Link bases holding the old name are
moved to the id, so the next sync writes nothing.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_entities = sa.table(
    "entities",
    sa.column("id", sa.String),
    sa.column("type", sa.String),
    sa.column("fields", sa.JSON),
    sa.column("provenance", sa.JSON),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
    sa.column("deleted_at", sa.DateTime(timezone=True)),
)
_keys = sa.table(
    "entity_keys",
    sa.column("entity_type", sa.String),
    sa.column("kind", sa.String),
    sa.column("value", sa.String),
    sa.column("entity_id", sa.String),
)
_links = sa.table(
    "links",
    sa.column("id", sa.String),
    sa.column("entity_id", sa.String),
    sa.column("base", sa.JSON),
)
_refs = sa.table(
    "entity_refs",
    sa.column("entity_id", sa.String),
    sa.column("field", sa.String),
    sa.column("target_id", sa.String),
)


def _name_key(value: str) -> str:
    return " ".join(value.split()).casefold()


def upgrade() -> None:
    op.create_table(
        "entity_refs",
        sa.Column("entity_id", sa.String(36), nullable=False),
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("target_id", sa.String(36), nullable=False),
        sa.ForeignKeyConstraint(
            ["entity_id"],
            ["entities.id"],
            name=op.f("fk_entity_refs_entity_id_entities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["target_id"],
            ["entities.id"],
            name=op.f("fk_entity_refs_target_id_entities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("entity_id", "field", "target_id", name=op.f("pk_entity_refs")),
    )
    op.create_index("ix_entity_refs_target", "entity_refs", ["target_id"])
    op.create_table(
        "pending_refs",
        sa.Column("connection", sa.String(64), nullable=False),
        sa.Column("stream", sa.String(64), nullable=False),
        sa.Column("remote_id", sa.String(255), nullable=False),
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("value", sa.String(320), nullable=False),
        sa.Column("target_type", sa.String(16), nullable=False),
        sa.Column("by", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "connection", "stream", "remote_id", "field", "value", name=op.f("pk_pending_refs")
        ),
    )
    op.create_index("ix_pending_refs_target", "pending_refs", ["target_type", "by", "value"])
    _carry_over(op.get_bind())


def _carry_over(bind: Any) -> None:
    """Contacts' company names and activities' contact addresses become references."""
    now = datetime.now(UTC)
    rows = bind.execute(
        sa.select(_entities.c.id, _entities.c.type, _entities.c.fields).where(
            _entities.c.deleted_at.is_(None), _entities.c.type.in_(["contact", "activity"])
        )
    ).all()
    companies: dict[str, str] = {
        value: entity_id
        for value, entity_id in bind.execute(
            sa.select(_keys.c.value, _keys.c.entity_id).where(
                _keys.c.entity_type == "company", _keys.c.kind == "name"
            )
        )
    }
    for entity_id, fields in bind.execute(
        sa.select(_entities.c.id, _entities.c.fields).where(
            _entities.c.type == "company", _entities.c.deleted_at.is_(None)
        )
    ):
        name = fields.get("name")
        if isinstance(name, str) and name.strip():
            key = _name_key(name)
            if key not in companies:
                companies[key] = entity_id
                bind.execute(
                    _keys.insert().values(
                        entity_type="company", kind="name", value=key, entity_id=entity_id
                    )
                )
    emails = {
        value: entity_id
        for value, entity_id in bind.execute(
            sa.select(_keys.c.value, _keys.c.entity_id).where(
                _keys.c.entity_type == "contact", _keys.c.kind == "email"
            )
        )
    }
    for entity_id, kind, fields in rows:
        if kind == "contact":
            name = fields.get("company")
            if not isinstance(name, str) or not name.strip():
                continue
            key = _name_key(name)
            target = companies.get(key)
            if target is None:
                target = companies[key] = str(uuid.uuid4())
                stamp = [None, now.isoformat()]
                bind.execute(
                    _entities.insert().values(
                        id=target,
                        type="company",
                        fields={"name": name.strip()},
                        provenance={"name": stamp},
                        created_at=now,
                        updated_at=now,
                    )
                )
                bind.execute(
                    _keys.insert().values(
                        entity_type="company", kind="name", value=key, entity_id=target
                    )
                )
            _point(bind, entity_id, fields, "company", target, name)
        else:
            email = fields.get("contact_email")
            contact = emails.get(email.strip().lower()) if isinstance(email, str) else None
            if contact is not None and not fields.get("contacts"):
                _point(bind, entity_id, fields, "contacts", [contact], None)


def _point(
    bind: Any, entity_id: str, fields: dict[str, Any], field: str, value: Any, old: Any
) -> None:
    bind.execute(
        _entities.update()
        .where(_entities.c.id == entity_id)
        .values(fields={**fields, field: value})
    )
    for target in value if isinstance(value, list) else [value]:
        bind.execute(_refs.insert().values(entity_id=entity_id, field=field, target_id=target))
    if old is None:
        return
    for link_id, base in bind.execute(
        sa.select(_links.c.id, _links.c.base).where(_links.c.entity_id == entity_id)
    ).all():
        if base.get(field) == old:
            bind.execute(
                _links.update().where(_links.c.id == link_id).values(base={**base, field: value})
            )


def downgrade() -> None:
    op.drop_index("ix_pending_refs_target", table_name="pending_refs")
    op.drop_table("pending_refs")
    op.drop_index("ix_entity_refs_target", table_name="entity_refs")
    op.drop_table("entity_refs")
