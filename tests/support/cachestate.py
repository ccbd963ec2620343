"""Look at a test index's cache from outside: its database rows, its blobs, its CLI."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import requests
from sqlalchemy import select

from pypicache.auth.accounts import Accounts
from pypicache.db import Database, get_engine
from pypicache.models import File
from pypicache.settings import Settings
from tests.conftest import RunningIndex
from tests.support.clients import clean_client_env
from tests.support.dists import Dist
from tests.support.uploads import form_fields, post_upload
from tests.support.waiting import wait_until

PYPICACHE = Path(sys.executable).parent / "pypicache"


class IndexDb:
    """The index's own database: accounts, and what each file row says."""

    def __init__(self, index: RunningIndex) -> None:
        self.engine = get_engine(index.settings.database_url)
        self.database = Database(self.engine)
        self.accounts = Accounts(self.database)

    def row(self, filename: str) -> tuple[datetime | None, datetime | None]:
        """(cached_at, last_used_at) of the file row called ``filename``."""
        with self.database.unit_of_work() as db:
            return db.execute(
                select(File.cached_at, File.last_used_at).where(File.filename == filename)
            ).one()

    def cached(self, filename: str) -> bool:
        return self.row(filename)[0] is not None

    def close(self) -> None:
        self.engine.dispose()


def blob_path(settings: Settings, sha256: str) -> Path:
    return settings.blob_dir / sha256[:2] / sha256[2:4] / sha256


def blobs(settings: Settings) -> set[str]:
    return {p.name for p in settings.blob_dir.rglob("*") if p.is_file()}


def download(index: RunningIndex, dist: Dist) -> bytes:
    """The file through the index, once the index has stored it too: a client has its
    bytes as soon as they hashed right, before the fill stores and records them."""
    response = requests.get(f"{index.url}/packages/{dist.name}/{dist.filename}", timeout=30)
    assert response.status_code == 200, response.text
    assert hashlib.sha256(response.content).hexdigest() == dist.sha256
    wait_cached(index, dist.filename)
    return response.content


def wait_cached(index: RunningIndex, *filenames: str) -> None:
    """Until the index recorded each file as cached (its blob is stored by then)."""
    db = IndexDb(index)
    try:
        for filename in filenames:
            assert wait_until(lambda f=filename: db.cached(f)), f"{filename} never got cached"
    finally:
        db.close()


def pypicache(index: RunningIndex, *args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    """``pypicache ARGS`` on the index's database and data dir, ``environ`` added."""
    env = {k: v for k, v in clean_client_env().items() if not k.startswith("PYPICACHE_")}
    env["PYPICACHE_DATABASE_URL"] = index.settings.database_url
    env.update(environ)
    return subprocess.run(
        [str(PYPICACHE), *args, "--data-dir", str(index.settings.data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def upload_as_new_user(
    index: RunningIndex, dist: Dist, user: str, password: str
) -> requests.Response:
    """Create ``user`` and upload ``dist`` as twine would; the answer, whatever it is."""
    db = IndexDb(index)
    try:
        db.accounts.add_user(user, password)
    finally:
        db.close()
    return post_upload(
        index.url + "/legacy/", (user, password), form_fields(dist), dist.filename, dist.content
    )
