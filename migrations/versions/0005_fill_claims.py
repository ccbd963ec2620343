"""Fill claims: one download per file across every process of a deployment.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 19:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fill_claims",
        sa.Column("key", sa.String(length=800), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_fill_claims")),
    )


def downgrade() -> None:
    op.drop_table("fill_claims")
