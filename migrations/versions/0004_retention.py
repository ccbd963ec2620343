"""Retention: files.last_used_at, and an index on files.cached_at.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 05:46:11.753194
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_used_at", sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_files_cached_at"), ["cached_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_files_cached_at"))
        batch_op.drop_column("last_used_at")
