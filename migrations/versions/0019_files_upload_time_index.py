"""files.upload_time indexed: the held-files listing selects young files, not all of them.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 07:55:00.000000
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_files_upload_time"), "files", ["upload_time"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_files_upload_time"), table_name="files")
