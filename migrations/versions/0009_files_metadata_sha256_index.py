"""An index on files.metadata_sha256: eviction and verify looked it up with full scans.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 19:55:00.000000
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_files_metadata_sha256"), "files", ["metadata_sha256"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_files_metadata_sha256"), table_name="files")
