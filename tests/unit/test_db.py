"""The engine: PostgreSQL through psycopg, and a clear message when it is missing."""

from __future__ import annotations

import sys

import pytest

from pypicache.db import get_engine
from pypicache.errors import SettingsError


def test_postgresql_without_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what an absent package looks like
    with pytest.raises(SettingsError) as raised:
        get_engine("postgresql+psycopg://pypicache@127.0.0.1/pypicache")
    assert str(raised.value) == (
        "sqlalchemy.url: PostgreSQL needs the psycopg driver: pip install 'pypicache[postgresql]'"
    )


def test_a_plain_postgresql_url_uses_psycopg():
    engine = get_engine("postgresql://pypicache@127.0.0.1/pypicache")
    try:
        assert engine.dialect.driver == "psycopg"
        assert engine.url.database == "pypicache"
    finally:
        engine.dispose()


def test_postgresql_sessions_speak_utc(postgresql_url: str):
    engine = get_engine(postgresql_url)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW timezone").scalar() == "UTC"
    finally:
        engine.dispose()
