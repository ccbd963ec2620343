"""The admin page's session secret, and the parsing of basic credentials."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from pypicache import db
from pypicache.models import AppSecret
from pypicache.settings import Settings
from pypicache.web.security import SECRET_FILE, basic_credentials, session_secret


def settings(data_dir: Path, **ini: str) -> Settings:
    data_dir.mkdir(exist_ok=True)
    return Settings.from_mapping({"pypicache.data_dir": str(data_dir), **ini}, environ={})


@pytest.fixture
def database(fresh_database_url: Callable[[], str]) -> Iterator[db.Database]:
    database = db.Database.from_url(fresh_database_url())
    yield database
    database.dispose()


def test_a_secret_is_made_once_and_shared_by_hosts_with_their_own_data_dirs(
    tmp_path: Path, database: db.Database
):
    first = session_secret(settings(tmp_path / "host-a"), database)
    assert len(first) >= 32
    assert session_secret(settings(tmp_path / "host-b"), database) == first
    assert not (tmp_path / "host-a" / SECRET_FILE).exists(), "nothing secret in the data dir"


def test_a_configured_secret_wins_and_nothing_is_stored(tmp_path: Path, database: db.Database):
    configured = settings(tmp_path, **{"pypicache.session_secret": "s3cret"})
    assert session_secret(configured, database) == "s3cret"
    with database.unit_of_work() as session:
        assert session.scalars(select(AppSecret)).all() == []


def test_the_secret_an_older_version_kept_in_the_data_dir_is_adopted(
    tmp_path: Path, database: db.Database
):
    (tmp_path / "host-a").mkdir()
    (tmp_path / "host-a" / SECRET_FILE).write_text("kept-by-0.1-" + "x" * 40 + "\n")
    adopted = session_secret(settings(tmp_path / "host-a"), database)
    assert adopted == "kept-by-0.1-" + "x" * 40
    assert session_secret(settings(tmp_path / "host-b"), database) == adopted


# Header values as WSGI hands them over: any code point a latin-1 byte decodes to.
HEADER_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=255))


@given(st.one_of(st.none(), HEADER_TEXT, HEADER_TEXT.map(lambda rest: "Basic " + rest)))
def test_any_authorization_header_parses_or_is_ignored_never_raises(header: str | None):
    parsed = basic_credentials(header)
    assert parsed is None or all(isinstance(part, str) for part in parsed)


@given(
    st.text().filter(lambda name: ":" not in name),
    st.text(),
    st.sampled_from(["Basic", "basic", "BASIC"]),
)
def test_encoded_credentials_come_back_as_they_were_sent(user: str, password: str, scheme: str):
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    assert basic_credentials(f"{scheme} {encoded}") == (user, password)


def test_non_ascii_in_the_base64_is_no_credentials():
    assert basic_credentials("Basic \xe9\xe9\xe9\xe9") is None
    assert basic_credentials("Basic YWxpY2U6c2VjcmV0") == ("alice", "secret")
    assert basic_credentials("Basic YWxpY2U") is None
