"""The pypicache command, pserve and alembic, as a user runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import requests
from sqlalchemy import select

from pypicache.db import get_engine
from pypicache.models import Project
from tests.support.dists import make_wheel
from tests.support.fakeupstream import FakeUpstream
from tests.support.serveprocess import free_port, running

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def env_without_pypicache_settings() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PYPICACHE_")}


def test_pypicache_serve_with_flags(tmp_path: Path, upstream: FakeUpstream):
    wheel = make_wheel("served", "1.0")
    upstream.publish(wheel)
    port = free_port()
    args = [str(BIN / "pypicache"), "serve", "--port", str(port), "--upstream", upstream.simple_url]
    with running(args, tmp_path, env_without_pypicache_settings(), port):
        page = requests.get(f"http://127.0.0.1:{port}/simple/served/", timeout=10)
        assert page.status_code == 200
        assert wheel.filename in page.text
    # Built-in defaults: data under ./pypicache-data of the working directory.
    assert (tmp_path / "pypicache-data" / "pypicache.sqlite").is_file()


def test_environment_overrides_settings(
    tmp_path: Path, upstream: FakeUpstream, fresh_database_url: Callable[[], str]
):
    upstream.publish(make_wheel("from-env", "1.0"))
    port = free_port()
    database_url = fresh_database_url()
    env = env_without_pypicache_settings()
    env["PYPICACHE_UPSTREAM_URL"] = upstream.simple_url
    env["PYPICACHE_DATA_DIR"] = str(tmp_path / "elsewhere")
    env["PYPICACHE_DATABASE_URL"] = database_url
    with running([str(BIN / "pypicache"), "serve", "--port", str(port)], tmp_path, env, port):
        assert requests.get(f"http://127.0.0.1:{port}/simple/from-env/", timeout=10).ok
    engine = get_engine(database_url)
    try:
        with engine.connect() as connection:
            assert connection.scalars(select(Project.name)).all() == ["from-env"]
    finally:
        engine.dispose()
    assert (tmp_path / "elsewhere" / "blobs").is_dir()


def test_bad_settings_fail_at_start_with_one_line_naming_the_setting(tmp_path: Path):
    env = env_without_pypicache_settings()
    env["PYPICACHE_FOLLOW_INTERVAL"] = "often"
    result = subprocess.run(
        [str(BIN / "pypicache"), "serve", "--port", str(free_port())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "pypicache.follow_interval" in lines[0]

    result = subprocess.run(
        [str(BIN / "pypicache"), "serve", "--upstream", "ftp://example.invalid/simple/"],
        cwd=tmp_path,
        env=env_without_pypicache_settings(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "pypicache.upstream_url" in result.stderr


def test_pserve_development_ini_and_alembic(tmp_path: Path, upstream: FakeUpstream):
    upstream.publish(make_wheel("via-pserve", "1.0"))
    for name in ("development.ini",):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "migrations", tmp_path / "migrations")
    env = env_without_pypicache_settings()
    env["PYPICACHE_UPSTREAM_URL"] = upstream.simple_url
    env["PYPICACHE_MIGRATE_ON_START"] = "false"

    # The schema comes from alembic alone here: the app is told not to migrate.
    result = subprocess.run(
        [str(BIN / "alembic"), "-c", "development.ini", "upgrade", "head"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "pypicache-data" / "pypicache.sqlite").is_file()

    port = free_port()
    ini = (tmp_path / "development.ini").read_text()
    (tmp_path / "development.ini").write_text(
        ini.replace("listen = 127.0.0.1:6543", f"listen = 127.0.0.1:{port}")
    )
    with running([str(BIN / "pserve"), "development.ini"], tmp_path, env, port):
        assert requests.get(f"http://127.0.0.1:{port}/simple/via-pserve/", timeout=10).ok
