"""policy_rules, indexes.cooldown: the supply-chain rules every host applies.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 03:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policy_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("index", sa.String(length=64), nullable=True),
        sa.Column("subject", sa.String(length=512), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("until", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_by", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_rules")),
    )
    op.create_index(
        op.f("ix_policy_rules_revoked_at"), "policy_rules", ["revoked_at"], unique=False
    )
    with op.batch_alter_table("indexes") as batch:
        batch.add_column(sa.Column("cooldown", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("indexes") as batch:
        batch.drop_column("cooldown")
    op.drop_index(op.f("ix_policy_rules_revoked_at"), table_name="policy_rules")
    op.drop_table("policy_rules")
