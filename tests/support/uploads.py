"""Upload to an index the way twine does: with twine itself, or a raw multipart POST."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import requests

from tests.support.clients import clean_client_env
from tests.support.dists import Dist


def twine_upload(
    url: str, username: str, password: str, *files: Path, options: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """``twine upload`` of ``files`` with ``options`` (``--attestations``: each file's
    ``<file>.<kind>.attestation`` among ``files`` goes with it)."""
    env = {k: v for k, v in clean_client_env().items() if not k.startswith("TWINE_")}
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"
    return subprocess.run(
        [sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
         "--repository-url", url, "-u", username, "-p", password, *options,
         *map(str, files)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def form_fields(dist: Dist, **changes: str | None) -> dict[str, str]:
    """The fields twine sends for ``dist`` (changes override; None drops a field)."""
    fields: dict[str, str | None] = {
        ":action": "file_upload",
        "protocol_version": "1",
        "metadata_version": "2.1",
        "name": dist.name,
        "version": dist.version,
        "filetype": "bdist_wheel" if dist.filename.endswith(".whl") else "sdist",
        "pyversion": "py3" if dist.filename.endswith(".whl") else "source",
        "sha256_digest": dist.sha256,
        "blake2_256_digest": hashlib.blake2b(dist.content, digest_size=32).hexdigest(),
        "requires_python": dist.requires_python or "",
    }
    fields.update(changes)
    return {k: v for k, v in fields.items() if v is not None}


def post_upload(
    url: str,
    auth: tuple[str, str] | None,
    fields: Mapping[str, str] | Sequence[tuple[str, str]],
    filename: str,
    content: bytes,
) -> requests.Response:
    items = list(fields.items()) if isinstance(fields, Mapping) else list(fields)
    return requests.post(
        url,
        data=items,
        files={"content": (filename, content, "application/octet-stream")},
        auth=auth,
        timeout=30,
        allow_redirects=False,
    )
