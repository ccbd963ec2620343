"""The admin page's session secret: configured, or made once and shared through the database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pypicache import db
from pypicache.models import AppSecret
from pypicache.security import SECRET_FILE, session_secret
from pypicache.settings import Settings


def settings(data_dir: Path, **ini: str) -> Settings:
    data_dir.mkdir(exist_ok=True)
    return Settings.from_mapping({"pypicache.data_dir": str(data_dir), **ini}, environ={})


@pytest.fixture
def factory(fresh_database_url: Callable[[], str]) -> Iterator[sessionmaker[Session]]:
    engine = db.get_engine(fresh_database_url())
    yield db.get_session_factory(engine)
    engine.dispose()


def test_a_secret_is_made_once_and_shared_by_hosts_with_their_own_data_dirs(
    tmp_path: Path, factory: sessionmaker[Session]
):
    first = session_secret(settings(tmp_path / "host-a"), factory)
    assert len(first) >= 32
    assert session_secret(settings(tmp_path / "host-b"), factory) == first
    assert not (tmp_path / "host-a" / SECRET_FILE).exists(), "nothing secret in the data dir"


def test_a_configured_secret_wins_and_nothing_is_stored(
    tmp_path: Path, factory: sessionmaker[Session]
):
    configured = settings(tmp_path, **{"pypicache.session_secret": "s3cret"})
    assert session_secret(configured, factory) == "s3cret"
    with factory.begin() as session:
        assert session.scalars(select(AppSecret)).all() == []


def test_the_secret_an_older_version_kept_in_the_data_dir_is_adopted(
    tmp_path: Path, factory: sessionmaker[Session]
):
    (tmp_path / "host-a").mkdir()
    (tmp_path / "host-a" / SECRET_FILE).write_text("kept-by-0.1-" + "x" * 40 + "\n")
    adopted = session_secret(settings(tmp_path / "host-a"), factory)
    assert adopted == "kept-by-0.1-" + "x" * 40
    assert session_secret(settings(tmp_path / "host-b"), factory) == adopted
