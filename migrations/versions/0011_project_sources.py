"""projects.source: each upstream's page of a name is its own row, private projects apart.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 01:10:00.000000

Rows cached before came from the one upstream, which is named ``pypi`` when a single
upstream is configured; private rows move to the private source ``@main``.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(
            sa.Column("source", sa.String(length=64), server_default="pypi", nullable=False)
        )
    op.execute("UPDATE projects SET source = '@main' WHERE private")
    with op.batch_alter_table("projects") as batch:
        batch.alter_column("source", server_default=None)
        batch.drop_constraint("uq_projects_name", type_="unique")
        batch.create_unique_constraint("uq_projects_source_name", ["source", "name"])
        batch.create_index("ix_projects_name", ["name"], unique=False)


def downgrade() -> None:
    # Only one row per name can stay: the private one where a name has several.
    op.execute(
        "DELETE FROM projects WHERE source <> '@main' AND name IN "
        "(SELECT name FROM projects WHERE source = '@main')"
    )
    with op.batch_alter_table("projects") as batch:
        batch.drop_index("ix_projects_name")
        batch.drop_constraint("uq_projects_source_name", type_="unique")
        batch.create_unique_constraint("uq_projects_name", ["name"])
        batch.drop_column("source")
