"""ETags of any length on PostgreSQL: a longer one than 255 characters broke its page.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 19:45:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

COLUMNS = (("projects", "upstream_etag"), ("follower_state", "index_etag"))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite never enforced the length (models.ETAG)
    for table, column in COLUMNS:
        op.alter_column(table, column, existing_type=sa.String(length=255), type_=sa.Text())


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in COLUMNS:
        op.alter_column(table, column, existing_type=sa.Text(), type_=sa.String(length=255))
