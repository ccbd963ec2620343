"""indexes.read_auth and api_tokens.index: an index that needs a login, a token for one index.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 02:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("indexes") as batch:
        batch.add_column(
            sa.Column("read_auth", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("index", sa.String(length=64), nullable=True))


def downgrade() -> None:
    # A token for one index must not become a token for every index.
    op.execute('UPDATE api_tokens SET revoked_at = created_at WHERE "index" IS NOT NULL')
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("index")
    with op.batch_alter_table("indexes") as batch:
        batch.drop_column("read_auth")
