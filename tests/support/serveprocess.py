"""``pypicache serve`` in a process of its own, as an operator runs it on each host."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from tests.support.clients import clean_client_env
from tests.support.waiting import wait_until

PYPICACHE = Path(sys.executable).parent / "pypicache"


def free_port() -> int:
    """A loopback port that was free a moment ago (the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """One ``pypicache serve`` with its own data dir, configured by the environment."""

    def __init__(self, name: str, data_dir: Path, env: Mapping[str, str]) -> None:
        self.name = name
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.simple_url = self.url + "/simple/"
        self.log_path = data_dir.parent / f"{name}.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in clean_client_env().items() if not k.startswith("PYPICACHE_")}
        self._env = {**base, **env}
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> ServeProcess:
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the process without waiting for it (to start several at once)."""
        command = [
            str(PYPICACHE),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self._env
            )

    def wait_ready(self, timeout: float = 60) -> ServeProcess:
        if not wait_until(self._healthy, timeout, interval=0.1):
            self.kill()
            raise AssertionError(f"{self.name} did not start:\n{self.log_tail()}")
        return self

    def _healthy(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise AssertionError(f"{self.name} exited at start:\n{self.log_tail()}")
        try:
            return requests.get(self.url + "/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def status(self) -> dict[str, Any]:
        response = requests.get(self.url + "/api/status", timeout=5)
        response.raise_for_status()
        return response.json()

    def kill(self) -> None:
        """kill -9: no clean shutdown, no lease handed over."""
        if self.alive():
            assert self._process is not None
            os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait(10)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, as systemd stops it; SIGKILL if it does not exit in time."""
        if not self.alive():
            return
        assert self._process is not None
        self._process.terminate()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} ignored SIGTERM:\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def answers(url: str) -> bool:
    """Whether the URL answers 200 now; a server still starting up is just not yet."""
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


@contextmanager
def running(args: list[str], cwd: Path, env: dict[str, str], port: int) -> Iterator[None]:
    """Run a server command until the block ends; fail with its log if /health never answers."""
    log = (cwd / "server.log").open("w")
    process = subprocess.Popen(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        if not wait_until(lambda: answers(f"http://127.0.0.1:{port}/health"), timeout=30):
            process.terminate()
            process.wait(10)
            raise AssertionError((cwd / "server.log").read_text())
        yield
    finally:
        process.terminate()
        process.wait(15)
        log.close()
