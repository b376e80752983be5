"""per-key rate limits and queued-job caps

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 22:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rate_per_second", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("burst", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("max_queued_jobs", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("max_queued_jobs")
        batch_op.drop_column("burst")
        batch_op.drop_column("rate_per_second")
