"""Run leases carry an epoch; held deletions can be found by link.

``leases.epoch``: bumped each time a lease changes hands, so a run that lost its lease
(stalled past its expiry while another run took over) is refused at its next write: every
page commit and outbox write of a run checks holder and epoch in its own transaction.
``pending_deletes`` gains an index on ``link_id``: a later run that sees a held record again
takes it out of the hold, so approving an old hold never deletes a record that came back.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("leases", sa.Column("epoch", sa.BigInteger(), nullable=False, server_default="1"))
    op.create_index("ix_pending_deletes_link", "pending_deletes", ["link_id"])


def downgrade() -> None:
    op.drop_index("ix_pending_deletes_link", table_name="pending_deletes")
    with op.batch_alter_table("leases") as batch:
        batch.drop_column("epoch")
