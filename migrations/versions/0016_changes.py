"""changes, name_serials, change_counter: this index's own serial space, for chaining.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 02:10:00.000000

Every name already in the database gets a serial (1, 2, ... in name order), so every
page carries one from the start; the changelog itself starts empty.
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "changes",
        sa.Column("serial", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_changes")),
    )
    op.create_table(
        "name_serials",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("serial", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_name_serials")),
    )
    op.create_table(
        "change_counter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("serial", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_counter")),
    )
    op.execute(
        "INSERT INTO name_serials (name, serial) SELECT name, ROW_NUMBER() OVER (ORDER BY name)"
        " FROM (SELECT DISTINCT name FROM projects) AS names"
    )
    op.execute(
        "INSERT INTO change_counter (id, serial)"
        " SELECT 1, COALESCE(MAX(serial), 0) FROM name_serials"
    )


def downgrade() -> None:
    op.drop_table("change_counter")
    op.drop_table("name_serials")
    op.drop_table("changes")
