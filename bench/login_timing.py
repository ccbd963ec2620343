"""What a failed login costs, for a known and an unknown user: they must not differ.

Run: ``PYTHONPATH=. python -m bench.login_timing [--tries 20]``.  Every failure path
(a known user's wrong password, an unknown user, a user without a password, an
unknown token, the admin page's form) should cost one scrypt, so the means agree
within noise and timing tells an attacker nothing about which names exist.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pypicache import db
from pypicache.auth.accounts import TOKEN_PREFIX, TOKEN_USERNAME, Accounts, prepare_decoy
from pypicache.auth.ratelimit import LoginLimiter

PASSWORD = "correct horse battery"  # noqa: S105 - a made-up user's, for the benchmark
ADDRESS = "192.0.2.1"

Cases = dict[str, Callable[[int], object]]


def measure(tries: int, cases: Cases) -> dict[str, list[float]]:
    """Milliseconds per attempt of each case, the cases taking turns (a busy machine's
    load then falls on all of them alike)."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(tries):
        for name, attempt in cases.items():
            start = time.perf_counter()
            result = attempt(i)
            times[name].append((time.perf_counter() - start) * 1000)
            assert result is None, "every attempt here must fail"
    return times


def failures(accounts: Accounts) -> Cases:
    return {
        "basic auth, known user, wrong password": lambda i: accounts.authenticate(
            "alice", f"guess {i}", ADDRESS
        ),
        "basic auth, unknown user": lambda i: accounts.authenticate(
            f"nobody{i}", f"guess {i}", ADDRESS
        ),
        "basic auth, user without a password": lambda i: accounts.authenticate(
            "nopass", f"guess {i}", ADDRESS
        ),
        "basic auth, unknown token": lambda i: accounts.authenticate(
            TOKEN_USERNAME, f"{TOKEN_PREFIX}guess{i}", ADDRESS
        ),
        "login form, known user, wrong password": lambda i: accounts.login(
            "alice", f"guess {i}", ADDRESS
        ),
        "login form, unknown user": lambda i: accounts.login(f"nobody{i}", f"guess {i}", ADDRESS),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tries", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'timing.sqlite'}"
        db.upgrade(url)
        engine = db.get_engine(url)
        unlimited = LoginLimiter(per_user=10**9, per_address=10**9)
        accounts = Accounts(db.Database(engine), unlimited)
        accounts.add_user("alice", PASSWORD)
        accounts.add_user("nopass", None)
        prepare_decoy()
        cases = failures(accounts)
        measure(3, cases)  # warm up the connection pool and the code paths
        for name, times in measure(args.tries, cases).items():
            mean, median = statistics.mean(times), statistics.median(times)
            print(f"{name:40s} mean {mean:6.1f} ms  median {median:6.1f} ms")
        engine.dispose()


if __name__ == "__main__":
    main()
