"""Runs by connection, status and finish time: what /metrics counts and looks up.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_runs_connection_status_finished",
        "runs",
        ["connection", "status", "finished_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_runs_connection_status_finished", table_name="runs")
