"""The initial schema.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from alembic import op

from hub.store.schema import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The first revision creates the tables as ``hub.store.schema`` describes them; later
    # revisions alter them step by step and never rely on the current schema module.
    metadata.create_all(op.get_bind())


def downgrade() -> None:
    metadata.drop_all(op.get_bind())
