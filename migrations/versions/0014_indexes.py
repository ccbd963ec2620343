"""indexes: named views with ordered bases and their own private projects; main is /simple/.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 01:45:00.000000
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "indexes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("bases", sa.JSON(), nullable=True),
        sa.Column("uploaders", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_indexes")),
        sa.UniqueConstraint("name", name=op.f("uq_indexes_name")),
    )
    # The index the private projects so far belong to (their rows' source is @main).
    now = datetime.now(UTC).replace(tzinfo=None)
    op.bulk_insert(
        table,
        [
            {
                "name": "main",
                "description": "every upstream, and the private projects of /simple/",
                "bases": None,
                "uploaders": None,
                "created_at": now,
                "updated_at": now,
            }
        ],
    )


def downgrade() -> None:
    op.execute("DELETE FROM projects WHERE source LIKE '@%' AND source <> '@main'")
    op.drop_table("indexes")
