"""HTTP load with wrk (Debian's package), and its output parsed into numbers."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_SIZE_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}


class WrkError(RuntimeError):
    pass


@dataclass(frozen=True)
class WrkResult:
    connections: int
    duration_s: float
    requests: int
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    bytes_read: int
    errors: int  # socket errors plus non-2xx/3xx answers

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def wrk_path() -> str | None:
    return shutil.which("wrk")


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise WrkError(f"unparsable wrk duration {text!r}")
    return float(match[1]) * _TIME_UNITS[match[2]]


def _bytes(text: str) -> int:
    match = re.fullmatch(r"([\d.]+)(B|KB|MB|GB|TB)", text)
    if match is None:
        raise WrkError(f"unparsable wrk size {text!r}")
    return int(float(match[1]) * _SIZE_UNITS[match[2]])


def parse_wrk(output: str, connections: int) -> WrkResult:
    """Numbers from ``wrk --latency`` output."""
    percentiles = {
        int(m[1]): _ms(m[2]) for m in re.finditer(r"^\s+(\d+)%\s+(\S+)\s*$", output, re.M)
    }
    totals = re.search(r"^\s*(\d+) requests in ([\d.]+\w+), ([\d.]+\w+) read", output, re.M)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if totals is None or rate is None or not {50, 90, 99} <= percentiles.keys():
        raise WrkError(f"unexpected wrk output:\n{output}")
    errors = 0
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors is not None:
        errors += sum(int(g) for g in socket_errors.groups())
    non_ok = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_ok is not None:
        errors += int(non_ok[1])
    return WrkResult(
        connections=connections,
        duration_s=_ms(totals[2]) / 1e3,
        requests=int(totals[1]),
        requests_per_s=float(rate[1]),
        p50_ms=percentiles[50],
        p90_ms=percentiles[90],
        p99_ms=percentiles[99],
        bytes_read=_bytes(totals[3]),
        errors=errors,
    )


def run_wrk(
    url: str,
    *,
    connections: int,
    duration_s: float,
    headers: Mapping[str, str] | None = None,
) -> WrkResult:
    """One wrk run; one load thread per 4 connections, so c1 and c8 leave a core free."""
    wrk = wrk_path()
    if wrk is None:
        raise WrkError("wrk is not installed (apt-get install -y wrk)")
    threads = max(1, min(connections, (connections + 3) // 4))
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "10s",
        "--latency",
    ]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=duration_s + 60, check=False
    )
    if result.returncode != 0:
        raise WrkError(f"wrk failed ({result.returncode}): {result.stderr or result.stdout}")
    return parse_wrk(result.stdout, connections)
