"""The rendered pages a process keeps in memory, bounded in bytes (least recently used go)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from pypicache.cache.rendering import RenderedPage


class _Entry(Protocol):
    @property
    def page(self) -> RenderedPage: ...


def entry_size(entry: _Entry) -> int:
    """What an entry costs: its page's files and renderings."""
    return entry.page.size


E = TypeVar("E", bound=_Entry)


class PageCache(Generic[E]):
    """Name -> entry, at most ``max_bytes`` of them by ``entry_size``; thread-safe.

    A page evicted (or too big to keep) is simply read from the database again:
    the cache saves work, it is never the only copy.
    """

    def __init__(self, max_bytes: int, size: Callable[[E], int] = entry_size) -> None:
        self.max_bytes = max_bytes
        self._size = size
        self.total = 0
        self._entries: OrderedDict[str, tuple[E, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str) -> E | None:
        with self._lock:
            found = self._entries.get(name)
            if found is None:
                return None
            self._entries.move_to_end(name)
            return found[0]

    def put(self, name: str, entry: E) -> None:
        size = self._size(entry)
        with self._lock:
            self._drop(name)
            if size > self.max_bytes:
                return
            self._entries[name] = (entry, size)
            self.total += size
            while self.total > self.max_bytes:
                self._drop(next(iter(self._entries)))

    def pop(self, name: str) -> None:
        with self._lock:
            self._drop(name)

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, name: str) -> None:
        found = self._entries.pop(name, None)
        if found is not None:
            self.total -= found[1]
