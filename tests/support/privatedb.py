"""A test index's private side: its database and accounts, the upload URL, the admin command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from pypicache.auth.accounts import Accounts
from pypicache.db import Database, get_engine
from tests.support.clients import clean_client_env

if TYPE_CHECKING:  # tests.conftest imports this module for its fixtures
    from tests.conftest import RunningIndex

JSON = "application/vnd.pypi.simple.v1+json"
PASSWORD = "correct horse battery"


class Db:
    """The index's own database, for the accounts and for checking what was stored."""

    def __init__(self, index: RunningIndex) -> None:
        self.engine = get_engine(index.settings.database_url)
        self.database = Database(self.engine)
        self.accounts = Accounts(self.database)

    def query(self, statement):  # type: ignore[no-untyped-def]
        with self.database.unit_of_work() as db:
            return list(db.execute(statement))


def admin_cli(index: RunningIndex, *args: str) -> subprocess.CompletedProcess[str]:
    """``pypicache project ...`` against the running index's database, as an admin would."""
    return pypicache_cli(index, "project", *args)


def pypicache_cli(index: RunningIndex, *args: str) -> subprocess.CompletedProcess[str]:
    """``pypicache ...`` against the running index's database and upstreams, as an admin
    would run it."""
    env = {**clean_client_env(), "PYPICACHE_DATABASE_URL": index.settings.database_url}
    env["PYPICACHE_UPSTREAMS"] = " ".join(
        f"{u.name}={u.url}" for u in index.settings.upstreams if u.url is not None
    )
    return subprocess.run(
        [str(Path(sys.executable).parent / "pypicache"), *args,
         "--data-dir", str(index.settings.data_dir)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip


def upload_url(index: RunningIndex) -> str:
    """Where twine uploads to on this index."""
    return index.url + "/legacy/"


def blobs(index: RunningIndex) -> set[str]:
    """The names of the blobs in the index's store, to see what an action kept or removed."""
    return {p.name for p in index.settings.blob_dir.rglob("*") if p.is_file()}


def page(index: RunningIndex, name: str, auth=None) -> requests.Response:  # type: ignore[no-untyped-def]
    """A project's JSON page on the index, anonymous or with (user, password)."""
    return requests.get(
        f"{index.simple_url}{name}/", headers={"Accept": JSON}, auth=auth, timeout=10
    )
