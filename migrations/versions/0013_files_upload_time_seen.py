"""files.upload_time_seen: an upload time an upstream did not give is when we first saw it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 01:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.add_column(
            sa.Column("upload_time_seen", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.drop_column("upload_time_seen")
