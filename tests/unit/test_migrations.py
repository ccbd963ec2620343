"""The models and the migrations describe the same schema."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from pypicache import db
from pypicache.models import Base


def test_migrations_match_the_models(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'schema.sqlite'}"
    db.upgrade(url)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_upgrade_is_idempotent(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'twice.sqlite'}"
    db.upgrade(url)
    db.upgrade(url)
