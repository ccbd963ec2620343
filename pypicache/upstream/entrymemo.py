"""What a big page's entries gave last time it was read, so that reading it again checks
only the entries that changed.

A project of 11,000 files is fetched again whenever it changes (the follower's
refetch, a revalidation that finds a new release), and all but a few of its entries
are what they were: checking each again cost 6 µs of the 8 µs an entry costs to
read.  An entry is remembered by every value its facts are made of, with the type of
those a JSON value of another type could equal (``1 == 1.0 == True``), or, read typed,
by a hash of its JSON text (the same text, the same facts); only entries
taken whole (nothing left out, nothing logged) are remembered, so a hit gives what
checking it would give.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

from pypicache.filefacts import FileFacts

# Pages with fewer entries are read again in less time than remembering them costs.
MEMO_MIN_FILES = 1_000
# Entries remembered in all (about 100 bytes each for a typed page's, whose key is a
# hash of the entry's text; their facts aside, which the page cache holds anyway): the
# biggest projects' pages (a real install set's big ones list 46,000 files), the least
# recently read dropped.
MEMO_MAX_ENTRIES = 60_000

EntryKey = tuple[Hashable, ...]


def entry_key(entry: object) -> EntryKey | None:
    """Every value of ``entry`` (a decoded JSON file entry) its facts depend on; None
    when one cannot be a key (a list, an object) or the entry is no object."""
    if type(entry) is not dict:
        return None
    hashes = entry.get("hashes")
    if type(hashes) is not dict:
        return None
    metadata = (
        entry["core-metadata"] if "core-metadata" in entry else entry.get("data-dist-info-metadata")
    )
    if type(metadata) is dict:
        metadata = ("sha256", metadata.get("sha256"))
    size = entry.get("size")
    yanked = entry.get("yanked", False)
    key = (
        entry.get("filename"),
        entry.get("url"),
        hashes.get("sha256"),
        metadata,
        type(metadata),
        size,
        type(size),
        yanked,
        type(yanked),
        entry.get("requires-python"),
        entry.get("upload-time"),
        entry.get("provenance"),
    )
    try:
        hash(key)
    except TypeError:
        return None
    return key


class EntryMemo:
    """(project, page URL) -> each remembered entry's facts, by its key (an ``entry_key``,
    or the hash of a typed entry's text); thread-safe, bounded."""

    def __init__(self, max_entries: int = MEMO_MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._pages: OrderedDict[tuple[str, str], dict[Hashable, FileFacts]] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def get(self, project: str, url: str) -> dict[Hashable, FileFacts]:
        with self._lock:
            found = self._pages.get((project, url))
            if found is None:
                return {}
            self._pages.move_to_end((project, url))
            return found

    def put(self, project: str, url: str, entries: dict[Hashable, FileFacts]) -> None:
        """What the page's entries gave this time, in place of what they gave before."""
        with self._lock:
            old = self._pages.pop((project, url), None)
            self._total -= len(old) if old is not None else 0
            if len(entries) > self.max_entries:
                return
            self._pages[(project, url)] = entries
            self._total += len(entries)
            while self._total > self.max_entries:
                _, dropped = self._pages.popitem(last=False)
                self._total -= len(dropped)

    def __len__(self) -> int:
        return self._total
