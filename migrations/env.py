"""Alembic environment: the database URL comes from the app's own settings."""

from __future__ import annotations

from alembic import context
from pyramid.paster import get_appsettings, setup_logging
from sqlalchemy import text

from pypicache.db import get_engine
from pypicache.models import Base, exists_on
from pypicache.settings import Settings

config = context.config

# The advisory lock migrations hold on PostgreSQL (any constant of our own).
LOCK_KEY = 0x7079_7069_6361


def database_url() -> str:
    url = config.attributes.get("database_url")
    if url:
        return url
    # ``alembic -c development.ini``: read [app:main] like the app does, so the
    # environment overrides (PYPICACHE_DATABASE_URL, ...) apply here too.
    ini = config.config_file_name
    setup_logging(ini)
    return Settings.from_mapping(get_appsettings(ini, name="main")).database_url


def run_migrations() -> None:
    url = database_url()
    engine = get_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=url.startswith("sqlite"),
                compare_type=True,
                include_object=exists_on(connection.dialect.name),
            )
            with context.begin_transaction():
                if connection.dialect.name == "postgresql":
                    # Hosts of one deployment starting at once take turns: the others wait
                    # here, then find the schema current.  Released when the transaction ends.
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY}
                    )
                context.run_migrations()
    finally:
        engine.dispose()


run_migrations()
