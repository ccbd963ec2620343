"""``pypicache serve`` that cannot start says why in one line and exits 2, like a bad setting."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pypicache import db
from tests.support.clients import clean_client_env

PYPICACHE = Path(sys.executable).parent / "pypicache"


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in clean_client_env().items() if not k.startswith("PYPICACHE_")}
    return subprocess.run(
        [str(PYPICACHE), "serve", "--upstream", "none", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_port_in_use(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve(tmp_path, "--port", str(port), "--data-dir", str(tmp_path / "data"))
    line = one_line(result)
    assert f"127.0.0.1:{port}" in line
    assert "in use" in line
    # Nothing was started: no database was created.
    assert not (tmp_path / "data" / "pypicache.sqlite").exists()


def test_a_file_where_the_data_dir_should_be(tmp_path: Path):
    (tmp_path / "data").write_text("not a directory")
    line = one_line(serve(tmp_path, "--data-dir", str(tmp_path / "data")))
    assert str(tmp_path / "data") in line
    assert "File exists" in line


def test_a_data_dir_under_a_file(tmp_path: Path):
    (tmp_path / "data").write_text("not a directory")
    line = one_line(serve(tmp_path, "--data-dir", str(tmp_path / "data" / "sub")))
    assert "Not a directory" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to any directory")
def test_a_data_dir_that_cannot_be_written(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o500)
    try:
        line = one_line(serve(tmp_path, "--data-dir", str(data)))
    finally:
        data.chmod(0o700)
    assert str(data) in line
    assert "Permission denied" in line


def test_a_fresh_data_dir_is_migrated_apart_and_the_server_never_loads_alembic(tmp_path: Path):
    """The server process keeps none of the migration tool's modules (11 MB) for a
    migration it runs once; a child process runs it."""
    data = tmp_path / "data"
    code = (
        "import sys\n"
        "from pypicache.app import make_wsgi_app\n"
        "from pypicache.settings import Settings\n"
        f"settings = Settings.from_mapping({{'pypicache.data_dir': {str(data)!r},"
        " 'pypicache.upstream_url': 'none'})\n"
        "app = make_wsgi_app(settings)\n"
        "app.close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert db.schema_is_current(f"sqlite:///{data / 'pypicache.sqlite'}")


def test_a_database_newer_than_this_pypicache_stops_serve_with_the_reason(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "pypicache.sqlite") as newer:
        newer.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        newer.execute("INSERT INTO alembic_version VALUES ('9999')")
    result = serve(tmp_path, "--port", "0", "--data-dir", str(data))
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("pypicache: migrating the database failed:")
    assert "9999" in last
