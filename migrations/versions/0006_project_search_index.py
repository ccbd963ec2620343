"""A trigram index on projects.name for the admin page's search, on PostgreSQL.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 19:30:00.000000
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite has no trigram index (models.ONLY_ON)
    # pg_trgm is a trusted extension: the database's owner may create it.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_index(
        "ix_projects_name_trgm",
        "projects",
        ["name"],
        postgresql_using="gin",
        postgresql_ops={"name": "gin_trgm_ops"},
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_projects_name_trgm", table_name="projects")
