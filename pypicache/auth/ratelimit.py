"""Failed logins counted per user name and per client address, to stop password guessing.

The counters live in the process (each process of a deployment counts on its own, so a
deployment of k processes allows up to k times the limit) and in bounded memory: when a
table is full the entries whose window has passed go first, then the oldest, so an
attacker spraying addresses or names cannot grow it.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from pypicache.errors import RateLimited

log = logging.getLogger(__name__)

FAILURES_PER_USER = 10  # failed logins of one user name per window
FAILURES_PER_ADDRESS = 30  # failed logins from one client address per window
WINDOW_SECONDS = 300.0
MAX_ENTRIES = 10_000  # per table: some hundreds of kilobytes at most


class _Table:
    """Failures per key in fixed windows that start at a key's first failure."""

    def __init__(self, limit: int, window: float, max_entries: int) -> None:
        self.limit = limit
        self.window = window
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def retry_after(self, key: str, now: float) -> float | None:
        """Seconds until ``key`` may try again, or None if it may now."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        start, count = entry
        if now - start >= self.window:
            del self._entries[key]
            return None
        return start + self.window - now if count >= self.limit else None

    def add(self, key: str, now: float, delta: int) -> None:
        start, count = self._entries.pop(key, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
        count = max(0, count + delta)
        if count == 0:
            return
        if count == self.limit:
            log.warning("login attempts limited for %r for %.0f s", key, self.window)
        self._entries[key] = (start, count)
        if len(self._entries) > self.max_entries:
            self._evict(now)

    def reset(self, key: str) -> None:
        self._entries.pop(key, None)

    def _evict(self, now: float) -> None:
        expired = [k for k, (start, _) in self._entries.items() if now - start >= self.window]
        for key in expired:
            del self._entries[key]
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)  # the least recently failed


class LoginLimiter:
    """Admits a password check only while its user name and address are under the limits.

    ``begin`` counts the attempt as a failure before the password is checked, so
    concurrent guesses cannot slip past the limit; ``succeeded`` takes it back and
    resets the user's count.
    """

    def __init__(
        self,
        *,
        per_user: int = FAILURES_PER_USER,
        per_address: int = FAILURES_PER_ADDRESS,
        window: float = WINDOW_SECONDS,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._users = _Table(per_user, window, max_entries)
        self._addresses = _Table(per_address, window, max_entries)
        self._clock = clock
        self._lock = threading.Lock()

    def begin(self, user: str | None, address: str | None) -> None:
        """Count an attempt, or raise RateLimited if the user or address has used up its tries."""
        user_key, address_key = _user_key(user), address_key_of(address)
        now = self._clock()
        with self._lock:
            waits = [
                wait
                for table, key in ((self._users, user_key), (self._addresses, address_key))
                if key is not None and (wait := table.retry_after(key, now)) is not None
            ]
            if waits:
                raise RateLimited(max(1, math.ceil(max(waits))))
            if user_key is not None:
                self._users.add(user_key, now, 1)
            if address_key is not None:
                self._addresses.add(address_key, now, 1)

    def succeeded(self, user: str | None, address: str | None) -> None:
        """The password was right: the user starts afresh, the address gets its try back."""
        user_key, address_key = _user_key(user), address_key_of(address)
        with self._lock:
            if user_key is not None:
                self._users.reset(user_key)
            if address_key is not None:
                self._addresses.add(address_key, self._clock(), -1)

    def sizes(self) -> tuple[int, int]:
        """How many user names and addresses are being counted (to show memory is bounded)."""
        with self._lock:
            return len(self._users), len(self._addresses)


def _user_key(user: str | None) -> str | None:
    return f"user {user[:100]}" if user is not None else None


def address_key_of(address: str | None) -> str | None:
    """An IPv4 address, or an IPv6 address's /64: one host usually holds a whole /64."""
    if not address:
        return None
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return f"address {address[:64]}"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return f"address {parsed.ipv4_mapped}"
        return f"address {ipaddress.ip_network(f'{parsed}/64', strict=False)}"
    return f"address {parsed}"
