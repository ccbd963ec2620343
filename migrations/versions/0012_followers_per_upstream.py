"""One follower per upstream: follower_state and dirty_projects name their upstream.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 01:20:00.000000

The one follower state and its dirty projects so far were the one upstream's, named
``pypi``; other upstreams' followers add their own rows when they start.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _dirty_table(*keys: str) -> None:
    columns = [
        sa.Column("upstream", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("required_serial", sa.BigInteger(), nullable=False),
        sa.Column("removed", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
    ]
    if "upstream" not in keys:
        columns = columns[1:]
    op.create_table(
        "dirty_projects", *columns, sa.PrimaryKeyConstraint(*keys, name="pk_dirty_projects")
    )


def _rows() -> list[dict]:
    result = op.get_bind().execute(
        sa.text("SELECT name, required_serial, removed, attempts, last_error FROM dirty_projects")
    )
    return [dict(row._mapping) for row in result]


def _insert(rows: list[dict], upstream: bool) -> None:
    if not rows:
        return
    names = ["name", "required_serial", "removed", "attempts", "last_error"]
    if upstream:
        names.insert(0, "upstream")
        rows = [{"upstream": "pypi", **row} for row in rows]
    table = sa.table("dirty_projects", *(sa.column(name) for name in names))
    op.get_bind().execute(sa.insert(table), rows)


def upgrade() -> None:
    with op.batch_alter_table("follower_state") as batch:
        batch.add_column(
            sa.Column("upstream", sa.String(length=64), server_default="pypi", nullable=False)
        )
    with op.batch_alter_table("follower_state") as batch:
        batch.alter_column("upstream", server_default=None)
        batch.create_unique_constraint("uq_follower_state_upstream", ["upstream"])
    # Waiting work, a few rows: copied into the table with its new key.
    rows = _rows()
    op.drop_table("dirty_projects")
    _dirty_table("upstream", "name")
    _insert(rows, upstream=True)


def downgrade() -> None:
    rows = [
        {k: v for k, v in row.items() if k != "upstream"}
        for row in op.get_bind()
        .execute(sa.text("SELECT * FROM dirty_projects WHERE upstream = 'pypi'"))
        .mappings()
    ]
    op.drop_table("dirty_projects")
    _dirty_table("name")
    _insert(rows, upstream=False)
    op.execute("DELETE FROM follower_state WHERE upstream <> 'pypi'")
    with op.batch_alter_table("follower_state") as batch:
        batch.drop_constraint("uq_follower_state_upstream", type_="unique")
        batch.drop_column("upstream")
