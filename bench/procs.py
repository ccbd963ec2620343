"""Servers in processes of their own: start, wait until they answer, measure, stop."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import requests


class ServerError(RuntimeError):
    """A server did not start, or died."""


def free_port() -> int:
    """A loopback port that was free a moment ago (the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_status_kb(pid: int, field: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status (VmHWM, VmRSS), or None when unreadable."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def _parent_and_cpu(stat: str) -> tuple[int, float]:
    """A /proc/<pid>/stat line's parent pid and user + system CPU seconds."""
    # The command name (field 2) may hold spaces; the fields after its ")" are plain.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return _parent_and_cpu(stat)[1]


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    stop_signal: signal.Signals
    _log: IO[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def peak_rss_kb(self) -> int | None:
        return proc_status_kb(self.pid, "VmHWM")

    def rss_kb(self) -> int | None:
        return proc_status_kb(self.pid, "VmRSS")

    def cpu_seconds(self) -> float | None:
        """User and system CPU the process has used so far; None once it is gone."""
        return process_cpu_seconds(self.pid)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, path: str, timeout: float) -> None:
        """Poll ``path`` until it answers 200; fail fast if the process exits."""
        deadline = time.monotonic() + timeout
        url = self.url + path
        while True:
            if not self.alive():
                raise ServerError(
                    f"{self.name} exited with {self.process.returncode} before answering;"
                    f" log {self.log_path}:\n{self.log_tail()}"
                )
            with contextlib.suppress(requests.RequestException):
                if requests.get(url, timeout=2).status_code == 200:
                    return
            if time.monotonic() >= deadline:
                raise ServerError(f"{self.name} did not answer {url} within {timeout:.0f} s")
            time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> None:
        """Ask politely, then insist; always reaps the process and closes its log."""
        try:
            if self.alive():
                asked = time.monotonic()
                self.process.send_signal(self.stop_signal)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout)
                    print(
                        f"warning: {self.name} ignored {self.stop_signal.name} for"
                        f" {time.monotonic() - asked:.0f} s and was killed",
                        flush=True,
                    )
        finally:
            self._log.close()


class Servers:
    """Starts servers and stops every one still running on exit, even on error."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._running: list[Server] = []

    def start(
        self,
        name: str,
        command: Sequence[str],
        *,
        port: int,
        ready_path: str,
        ready_timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: signal.Signals = signal.SIGINT,
    ) -> Server:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        log = log_path.open("ab")
        try:
            process = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=None if env is None else dict(env),
                cwd=cwd,
                # A benchmark started in the background by a shell ignores SIGINT, and its
                # children would inherit that: each stop would wait out its timeout.
                preexec_fn=_default_signals,
            )
        except BaseException:
            log.close()
            raise
        server = Server(name, process, port, log_path, stop_signal, log)
        self._running.append(server)
        try:
            server.wait_ready(ready_path, ready_timeout)
        except BaseException:
            self.stop(server)
            raise
        return server

    def stop(self, server: Server) -> None:
        """Stop ``server``; one still running after an interrupted stop stays for stop_all."""
        try:
            server.stop()
        finally:
            if server in self._running and not server.alive():
                self._running.remove(server)

    def stop_all(self) -> None:
        while self._running:
            self.stop(self._running[-1])

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()


class CpuAccount:
    """How much CPU the rest of the machine used while the benchmark ran.

    Other work on a 2-core machine skews every number here, so each phase notes the CPU
    time spent outside this process tree: all busy time (/proc/stat) minus ours (this
    process, its reaped children, and its live descendants).
    """

    def __init__(self) -> None:
        self._tick = os.sysconf("SC_CLK_TCK")
        self._last = self._sample()

    def _sample(self) -> tuple[float, float, float]:
        with open("/proc/stat") as handle:
            fields = [int(x) for x in handle.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal ...: busy is all but idle and iowait
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / self._tick
        own = sum(
            resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
            for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        own += self._live_descendants_seconds()
        return time.monotonic(), busy, own

    def _live_descendants_seconds(self) -> float:
        parents: dict[int, int] = {}
        cpu: dict[int, float] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            pid = int(entry.name)
            parents[pid], cpu[pid] = _parent_and_cpu(text)
        ours = {os.getpid()}
        changed = True
        while changed:
            found = {pid for pid, ppid in parents.items() if ppid in ours} - ours
            changed = bool(found)
            ours |= found
        ours.discard(os.getpid())  # counted by getrusage(RUSAGE_SELF)
        return sum(cpu[pid] for pid in ours)

    def phase(self) -> dict[str, float]:
        """CPU seconds since the last call: available, used by others."""
        now = self._sample()
        wall = now[0] - self._last[0]
        others = max(0.0, (now[1] - self._last[1]) - (now[2] - self._last[2]))
        self._last = now
        available = wall * (os.cpu_count() or 1)
        return {
            "wall_s": round(wall, 2),
            "other_cpu_s": round(others, 2),
            "other_share": round(others / available, 3) if available else 0.0,
        }


def _default_signals() -> None:
    """In the child, before it runs: SIGINT and SIGTERM do what they do by default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
