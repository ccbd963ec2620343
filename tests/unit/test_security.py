"""The admin page's session secret: configured, or made once and shared through the data dir."""

from __future__ import annotations

import stat
from pathlib import Path

from pypicache.security import SECRET_FILE, session_secret
from pypicache.settings import Settings


def settings(data_dir: Path, **ini: str) -> Settings:
    return Settings.from_mapping({"pypicache.data_dir": str(data_dir), **ini}, environ={})


def test_a_secret_is_made_once_private_to_the_owner_and_shared(tmp_path: Path):
    first = session_secret(settings(tmp_path))
    assert len(first) >= 32
    assert stat.S_IMODE((tmp_path / SECRET_FILE).stat().st_mode) == 0o600
    assert session_secret(settings(tmp_path)) == first, "every process reads the same one"
    assert [p.name for p in tmp_path.iterdir()] == [SECRET_FILE], "no temporary file left"


def test_a_configured_secret_wins_and_nothing_is_written(tmp_path: Path):
    assert session_secret(settings(tmp_path, **{"pypicache.session_secret": "s3cret"})) == "s3cret"
    assert not (tmp_path / SECRET_FILE).exists()
