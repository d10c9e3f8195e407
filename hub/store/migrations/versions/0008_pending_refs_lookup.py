"""A pending reference may wait for a record read through another one.

``pending_refs.target_type`` held the type of the record waited for (``contact``); a
reference read through another record waits under that record's field
(``ticket.organization``), which needs more than 16 characters.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pending_refs") as batch:
        batch.alter_column(
            "target_type", type_=sa.String(64), existing_type=sa.String(16), nullable=False
        )


def downgrade() -> None:
    op.execute("DELETE FROM pending_refs WHERE target_type LIKE '%.%'")
    with op.batch_alter_table("pending_refs") as batch:
        batch.alter_column(
            "target_type", type_=sa.String(16), existing_type=sa.String(64), nullable=False
        )
