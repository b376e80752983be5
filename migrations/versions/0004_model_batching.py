"""per-model dynamic batching limits

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 01:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_batch_size", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("max_queue_delay_ms", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_column("max_queue_delay_ms")
        batch_op.drop_column("max_batch_size")
