"""Warming the cache: real pip resolves a requirements file against the index, which fills.

pip's resolver is the authority on what a requirements file means for an interpreter and
a platform (markers, ``requires-python``, yanks, wheel tags, backtracking), so we run it
instead of imitating it: ``pip download`` through the index makes the index fetch every
page, metadata file and distribution pip picks.  The files pip saved tell which
distributions that was; the database tells which of them the index had to fetch.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from pypicache.db import Database
from pypicache.models import File, Project, utcnow
from pypicache.ops.progress import Progress
from pypicache.settings import Settings

CHUNK = 1024 * 1024
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_COLLECTING = re.compile(r"^Collecting (\S+)")
_DOWNLOADING = re.compile(r"^\s*Downloading (\S+)")
_SAVED = re.compile(r"^(?:Saved|File was already downloaded) (.+)$")
_ERROR_START = re.compile(r"^\s*(ERROR:|error:)")
_NO_MATCH = re.compile(r"No matching distribution found for (\S+)")
_FILE_URL = re.compile(r"/packages/[^/\s]+/([^/\s?#]+)")
# pip's error markers and the box drawing of its rich diagnostics.
_DECORATION = re.compile(r"^(?:ERROR:|error:|\u00d7|\u2570\u2500>|\u2502)\s*")
# A fill records a file just after the client has its bytes: how long the report waits
# for the records of the last files pip saved, and how often it looks.
RECORD_WAIT = 5.0
RECORD_POLL = 0.05


@dataclass(frozen=True)
class Target:
    """The interpreter and platforms to resolve for; empty means the interpreter running pip."""

    python_version: str | None = None
    platforms: tuple[str, ...] = ()

    def pip_options(self) -> list[str]:
        options: list[str] = []
        if self.python_version:
            options += ["--python-version", self.python_version]
        for platform in self.platforms:
            options += ["--platform", platform]
        if options:
            # pip cannot build an sdist for an interpreter it is not running on.
            options.append("--only-binary=:all:")
        return options

    def describe(self) -> str:
        python = f"Python {self.python_version}" if self.python_version else "this Python"
        platforms = ", ".join(self.platforms) if self.platforms else "this platform"
        return f"{python} on {platforms}"


@dataclass(frozen=True)
class WarmedFile:
    """A distribution pip chose, and whether the index had to fetch it for this warm."""

    project: str
    filename: str
    sha256: str
    size: int
    fetched: bool


@dataclass(frozen=True)
class Failure:
    item: str  # a requirement, a filename, or the requirements file itself
    reason: str  # pip's words


@dataclass
class WarmReport:
    files: list[WarmedFile] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    @property
    def fetched(self) -> list[WarmedFile]:
        return [f for f in self.files if f.fetched]

    @property
    def cached(self) -> list[WarmedFile]:
        return [f for f in self.files if not f.fetched]


def pip_timeout(settings: Settings) -> float:
    """pip's socket timeout: long enough for the index to fill a miss from a slow upstream."""
    return (
        settings.upstream_connect_timeout
        + settings.upstream_timeout * (settings.upstream_retries + 1)
        + 5
    )


def pip_environment(index_url: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment in which pip sees this index and nothing else.

    The user's pip config and PIP_* variables could add indexes, find-links or
    constraints, and pip would then warm something else.  The index URL travels in the
    environment, not on the command line, because it may carry a password.
    """
    env = {
        key: value
        for key, value in (os.environ if base is None else base).items()
        if not key.upper().startswith("PIP_")
    }
    env["PIP_CONFIG_FILE"] = os.devnull  # pip then reads no config file at all
    env["PIP_INDEX_URL"] = index_url
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    for key in ("NO_PROXY", "no_proxy"):
        env[key] = ",".join(filter(None, [env.get(key, ""), *_LOOPBACK]))
    return env


def pip_download_command(
    requirements: Path, dest: Path, target: Target, timeout: float
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-cache-dir",
        "--progress-bar",
        "off",
        "--timeout",
        f"{timeout:g}",
        "--dest",
        str(dest),
        *target.pip_options(),
        "-r",
        str(requirements.absolute()),
    ]


def warm(
    requirements: Path,
    index_url: str,
    target: Target,
    database: Database,
    progress: Progress,
    timeout: float,
) -> WarmReport:
    """Run pip download through the index; report what pip chose and what had to be fetched.

    ``database`` must reach the database of the index at ``index_url``: that is
    where ``files.cached_at`` tells a fresh fetch from a file that was cached already.
    """
    report = WarmReport()
    with tempfile.TemporaryDirectory(prefix="pypicache-warm-") as tmp:
        dest = Path(tmp)
        since = utcnow()
        failure = _run_pip(
            pip_download_command(requirements, dest, target, timeout),
            pip_environment(index_url),
            progress,
            requirements,
        )
        if failure is not None:
            report.failures.append(failure)
        saved = sorted(p for p in dest.iterdir() if p.is_file())
        for outcome in _classified(database, saved, since):
            if isinstance(outcome, Failure):
                report.failures.append(outcome)
            else:
                report.files.append(outcome)
    return report


def _classified(
    database: Database, saved: list[Path], since: datetime
) -> list[WarmedFile | Failure]:
    """Each saved file's outcome, once the index recorded the ones it fetched (or after
    RECORD_WAIT: a file whose bytes were stored already under another name never is)."""
    digests = {path: _digest(path) for path in saved}
    deadline = time.monotonic() + RECORD_WAIT
    while True:
        final = time.monotonic() >= deadline
        with database.unit_of_work() as db:
            outcomes = [_classify(db, path, *digests[path], since, final) for path in saved]
        if all(outcome is not None for outcome in outcomes):
            return [outcome for outcome in outcomes if outcome is not None]
        time.sleep(RECORD_POLL)


def _run_pip(
    command: list[str], env: dict[str, str], progress: Progress, requirements: Path
) -> Failure | None:
    """Run pip, turning its output into progress; pip's error, if it failed."""
    errors: list[str] = []
    tail: list[str] = []
    process = subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    try:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip()
            if not line.strip():
                continue
            tail = [*tail[-19:], line.strip()]
            if errors or _ERROR_START.match(line):
                errors.append(line.strip())
            else:
                _show(line, progress)
        status = process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if status == 0:
        return None
    return _failure(errors or tail, status, requirements)


def _show(line: str, progress: Progress) -> None:
    if match := _COLLECTING.match(line):
        progress.update(f"resolving {match[1]}")
    elif match := _DOWNLOADING.match(line):
        name = match[1].rsplit("/", 1)[-1]
        if not name.endswith(".metadata"):
            progress.update(f"downloading {name}")
    elif match := _SAVED.match(line):
        progress.update(f"got {Path(match[1]).name}", advance=1)
    elif line.lstrip().startswith("WARNING:"):
        progress.note(line.strip())


def _failure(lines: list[str], status: int, requirements: Path) -> Failure:
    """pip's reason, pinned on the requirement or file it names when it names one."""
    if any(line.startswith("Traceback") for line in lines):
        # pip crashed: the last line is the exception, the stack above it is noise here.
        reasons = lines[-1:]
    else:
        reasons = [
            _DECORATION.sub("", line) for line in lines if not line.startswith(("note:", "hint:"))
        ]
    text = "; ".join(r for r in reasons if r) or f"pip exited with status {status}"
    if match := _NO_MATCH.search(text):
        return Failure(match[1], text)
    if match := _FILE_URL.search(text):
        return Failure(match[1].removesuffix(".metadata"), text)
    return Failure(str(requirements), text)


def _classify(
    db: Session, path: Path, sha256: str, size: int, since: datetime, final: bool
) -> WarmedFile | Failure | None:
    """None: not recorded as cached (yet), unless ``final``."""
    found = db.execute(
        select(Project.name, File.cached_at)
        .join(File.project)
        .where(File.filename == path.name, File.sha256 == sha256)
    ).first()
    if found is None:
        return Failure(
            path.name,
            "pip got it, but this index's database has no such file "
            "(does the index URL serve the configured database?)",
        )
    project, cached_at = found
    if cached_at is None and not final:
        return None
    # Not marked cached: its bytes were in the store already (under another file's name).
    fetched = cached_at is not None and cached_at >= since
    return WarmedFile(project, path.name, sha256, size, fetched)


def _digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
