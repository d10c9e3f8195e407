"""Each failed attempt of an inbox item keeps its error; a token refresh claim names its holder.

``inbox.attempt_errors``: ``[{"at": ISO time, "error": text}, ...]``, oldest first, so an
item that failed and later succeeded still shows why it failed. ``tokens.claimed_by``: the
``host:pid:tag`` of the process refreshing the token, so a claim left by a process that is
gone is taken over at once instead of after the claim timeout.

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-10
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("inbox", sa.Column("attempt_errors", sa.JSON(), nullable=True))
    op.add_column("tokens", sa.Column("claimed_by", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("claimed_by")
    with op.batch_alter_table("inbox") as batch:
        batch.drop_column("attempt_errors")
