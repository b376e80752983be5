"""version artifacts that are archives, warmup samples, warnings and what the file says

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("artifact_format", sa.String(8), nullable=False, server_default="onnx")
        )
        batch_op.add_column(sa.Column("archive_entry", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("warmup_sha256", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("warnings", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("model_info", sa.JSON(), nullable=True))
        batch_op.create_index("ix_model_versions_warmup_sha256", ["warmup_sha256"])


def downgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_index("ix_model_versions_warmup_sha256")
        batch_op.drop_column("model_info")
        batch_op.drop_column("warnings")
        batch_op.drop_column("warmup_sha256")
        batch_op.drop_column("archive_entry")
        batch_op.drop_column("artifact_format")
