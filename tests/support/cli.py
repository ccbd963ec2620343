"""Run the ``pypicache`` command as an operator would, on a test index's database and files."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from pypicache.settings import Settings
from tests.support.clients import clean_client_env

PYPICACHE = Path(sys.executable).parent / "pypicache"


def run_pypicache(
    settings: Settings,
    *args: str | Path,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``pypicache ARGS --data-dir DIR`` with the index's database and upstream in the environment.

    No PYPICACHE_* variable of the machine leaks in; pip and uv see no user config.
    """
    env = {k: v for k, v in clean_client_env().items() if not k.startswith("PYPICACHE_")}
    env["PYPICACHE_DATABASE_URL"] = settings.database_url
    env["PYPICACHE_UPSTREAM_URL"] = settings.upstream_url or "none"
    env["PYPICACHE_UPSTREAM_TIMEOUT"] = str(settings.upstream_timeout)
    env["PYPICACHE_UPSTREAM_CONNECT_TIMEOUT"] = str(settings.upstream_connect_timeout)
    env["PYPICACHE_UPSTREAM_RETRIES"] = str(settings.upstream_retries)
    env.update(extra_env or {})
    return subprocess.run(
        [str(PYPICACHE), *map(str, args), "--data-dir", str(settings.data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
