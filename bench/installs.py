"""Timed ``uv pip install`` and ``pip install`` of the whole tree into fresh venvs."""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from tests.support.clients import clean_client_env, find_uv

Tool = Literal["uv", "pip"]
INSTALL_TIMEOUT = 600.0


@dataclass(frozen=True)
class Install:
    tool: Tool
    seconds: float
    ok: bool
    installed: int  # *.dist-info directories in the venv afterwards
    error: str  # the end of stderr when it failed
    # CPU the installer itself used: on a small machine it competes with the servers'.
    client_cpu_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_venv(path: Path) -> Path:
    """tests.support.clients.make_venv with a timeout: an empty venv without pip."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(path)],
        check=True,
        env=clean_client_env(),
        timeout=120,
    )
    return path / "bin" / "python"


def _children_cpu_seconds() -> float:
    """CPU of this process's reaped children: an install's, once it was waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _installed(venv: Path) -> int:
    return sum(1 for _ in venv.glob("lib/python*/site-packages/*.dist-info"))


class Installer:
    """Makes a fresh venv per install under ``workdir``; client caches are off.

    uv gets TMPDIR and UV_CACHE_DIR on the venv's filesystem (its ``--no-cache`` cache is a
    temp dir; on another filesystem it would copy every file instead of linking, and that
    cost would hide the server's).  pip gets the same TMPDIR.
    """

    def __init__(self, workdir: Path, requirements: Sequence[str]) -> None:
        self.workdir = workdir
        self.requirements = list(requirements)
        self.uv = find_uv()
        self._serial = 0

    def prepare(self, label: str) -> tuple[Path, Path]:
        """A fresh venv and a scratch directory beside it: (interpreter, scratch)."""
        self._serial += 1
        base = self.workdir / f"{self._serial:03d}-{label}"
        shutil.rmtree(base, ignore_errors=True)
        scratch = base / "scratch"
        (scratch / "tmp").mkdir(parents=True)
        return make_venv(base / "venv"), scratch

    def command(self, tool: Tool, python: Path, index_url: str) -> list[str]:
        if tool == "uv":
            return [
                self.uv,
                "pip",
                "install",
                "--python",
                str(python),
                "--no-cache",
                "--index-url",
                index_url,
                *self.requirements,
            ]
        return [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-cache-dir",
            "--index-url",
            index_url,
            *self.requirements,
        ]

    def env(self, scratch: Path) -> dict[str, str]:
        env = clean_client_env()
        env["TMPDIR"] = str(scratch / "tmp")
        env["UV_CACHE_DIR"] = str(scratch / "uv-cache")
        return env

    def start(
        self, tool: Tool, python: Path, scratch: Path, index_url: str
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(tool, python, index_url),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(scratch),
        )

    def finish(
        self, tool: Tool, process: subprocess.Popen[str], python: Path, started: float
    ) -> Install:
        try:
            _, stderr = process.communicate(
                timeout=max(1.0, started + INSTALL_TIMEOUT - time.monotonic())
            )
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate(timeout=30)
            stderr = f"timed out after {INSTALL_TIMEOUT:.0f} s\n{stderr}"
        seconds = time.monotonic() - started
        ok = process.returncode == 0
        venv = python.parent.parent
        installed = _installed(venv)
        return Install(tool, seconds, ok, installed, "" if ok else stderr[-2000:])

    def run(self, tool: Tool, index_url: str, label: str) -> Install:
        """One timed install (the venv is made before the clock starts, removed after)."""
        python, scratch = self.prepare(f"{tool}-{label}")
        before = _children_cpu_seconds()
        started = time.monotonic()
        process = self.start(tool, python, scratch, index_url)
        result = self.finish(tool, process, python, started)
        self.cleanup(python)
        return replace(result, client_cpu_s=_children_cpu_seconds() - before)

    def run_concurrently(self, tool: Tool, index_url: str, label: str, n: int) -> list[Install]:
        """``n`` installs started together, each into its own venv; each timed on its own."""
        prepared = [self.prepare(f"{tool}-{label}-{i}") for i in range(n)]
        started = time.monotonic()
        processes = [self.start(tool, python, scratch, index_url) for python, scratch in prepared]
        try:
            return [
                self.finish(tool, process, python, started)
                for process, (python, _) in zip(processes, prepared, strict=True)
            ]
        finally:
            self.discard(processes, prepared)

    def cleanup(self, python: Path) -> None:
        shutil.rmtree(python.parent.parent.parent, ignore_errors=True)

    def discard(
        self, processes: Sequence[subprocess.Popen[str]], prepared: Sequence[tuple[Path, Path]]
    ) -> None:
        """After installs started together: kill any still running, remove every venv."""
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(30)
        for python, _ in prepared:
            self.cleanup(python)
