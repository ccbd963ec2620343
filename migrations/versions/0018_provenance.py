"""files.provenance, provenance_documents: PEP 740 provenance, served and cached.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 06:45:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("provenance", sa.Text(), nullable=True))
    op.create_table(
        "provenance_documents",
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=True),
        sa.Column("source_url", sa.Text(), nullable=True),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.Column("stored_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["files.id"],
            name=op.f("fk_provenance_documents_file_id_files"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("file_id", name=op.f("pk_provenance_documents")),
    )


def downgrade() -> None:
    op.drop_table("provenance_documents")
    with op.batch_alter_table("files") as batch:
        batch.drop_column("provenance")
