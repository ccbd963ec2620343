"""Snapshots: an index as it was at a moment, for ``/snapshot/<time>/simple/``.

A snapshot is the page the guard serves now, left to the files uploaded at or
before the moment.  Only the set of files goes back in time: yank state, blocks
and the cooldown are as pypicache knows them now, so a snapshot never serves a
file today's rules hold.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from pypicache.cache.index import CachedPage
from pypicache.cache.pagecache import PageCache
from pypicache.cache.rendering import RenderedPage, left_to
from pypicache.errors import NotInSnapshot
from pypicache.filefacts import FileFacts
from pypicache.models import utcnow
from pypicache.times import BadTime, format_moment, parse_moment

# What an entry that filters nothing out costs the cache: it holds no page of its own.
_SMALL = 200


def parse_snapshot_time(text: str) -> datetime:
    """The moment of a snapshot URL's time segment, as naive UTC: RFC 3339 with an offset.

    Equal moments spelled differently (``Z``, ``+02:00``, more fraction digits
    than a microsecond) give the same value, so they share one cache entry.
    """
    try:
        return parse_moment(text)
    except BadTime as exc:
        raise BadTime(f"snapshot time {exc}") from None


def in_snapshot(facts: FileFacts, moment: datetime) -> bool:
    """Whether a file is part of the index as of ``moment``: uploaded at or before it.

    A file with no known upload time cannot be shown to predate anything.
    """
    return facts.upload_time is not None and facts.upload_time <= moment


def as_of(page: RenderedPage, moment: datetime) -> RenderedPage | None:
    """``page`` left to the files uploaded at or before ``moment``; None when that is all
    of them."""
    kept = [facts for facts in page.files.values() if in_snapshot(facts, moment)]
    return None if len(kept) == len(page.files) else left_to(page, kept)


@dataclass(frozen=True)
class _Snapshot:
    source: CachedPage  # the page as served now, which this entry was made from
    entry: CachedPage

    def size(self) -> int:
        return _SMALL if self.entry is self.source else self.entry.page.size


class Snapshots:
    """Snapshot pages, made from the pages served now and kept, bounded in bytes.

    An entry is keyed by index, project and moment, and stands as long as the page
    it was made from is the one served: a new page, rule or yank makes it anew.
    """

    def __init__(self, cache_bytes: int) -> None:
        self._pages: PageCache[_Snapshot] = PageCache(cache_bytes, size=_Snapshot.size)

    def moment(self, text: str) -> datetime:
        """The moment a snapshot URL's time names (BadTime says why it names none)."""
        return parse_snapshot_time(text)

    def page(self, scope: str | None, name: str, entry: CachedPage, moment: datetime) -> CachedPage:
        """``entry`` (the page as served now) as of ``moment``; a moment still to come is
        today's page, which clients may keep only until that moment comes."""
        now = utcnow()
        if moment > now:
            until = moment.replace(tzinfo=UTC).timestamp()
            if entry.until is not None and entry.until <= until:
                return entry
            return replace(entry, until=until)
        key = f"{scope or ''}\0{name}\0{moment.isoformat()}"
        found = self._pages.get(key)
        if found is None or found.source is not entry:
            shown = as_of(entry.page, moment)
            # The files a past moment shows never grow, but the page keeps the live page's
            # Cache-Control: its yank state and rules are today's, and change as the live
            # page's do.
            found = _Snapshot(entry, entry if shown is None else replace(entry, page=shown))
            self._pages.put(key, found)
        return found.entry

    def admit(self, facts: FileFacts, moment: datetime) -> None:
        """Refuse a file (or its metadata) that the snapshot's page leaves out."""
        if moment > utcnow() or in_snapshot(facts, moment):
            return
        when = format_moment(moment)
        if facts.upload_time is None:
            raise NotInSnapshot(
                f"{facts.filename} has no known upload time: not in the {when} snapshot"
            )
        raise NotInSnapshot(
            f"{facts.filename} was uploaded {format_moment(facts.upload_time)}, after the "
            f"snapshot's time {when}"
        )
