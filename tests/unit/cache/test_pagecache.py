"""The in-memory page cache stays under its byte bound whatever is put into it."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from pypicache.cache.pagecache import PageCache, entry_size
from pypicache.cache.rendering import PageData, RenderedPage, render


@dataclass(frozen=True)
class Entry:
    page: RenderedPage


def entry(name: str, versions: int) -> Entry:
    listed = [f"{n}.0" for n in range(versions)]
    data = PageData(name=name, display_name=name, serial=1, versions=listed, files=[])
    return Entry(render(data))


operations = st.lists(
    st.tuples(st.sampled_from(["put", "get", "pop"]), st.sampled_from("abcdef"), st.integers(0, 30))
)


@given(st.integers(0, 5000), operations)
def test_the_cache_stays_within_its_bound_and_returns_only_what_was_put(bound, ops):
    cache: PageCache[Entry] = PageCache(bound)
    last: dict[str, Entry] = {}
    for op, name, size in ops:
        if op == "put":
            last[name] = entry(name, size)
            cache.put(name, last[name])
        elif op == "pop":
            cache.pop(name)
            last.pop(name, None)
        else:
            found = cache.get(name)
            assert found is None or found is last.get(name)
        assert cache.total <= bound


def test_the_least_recently_used_page_goes_first():
    a, b, c = entry("a", 1), entry("b", 1), entry("c", 1)
    cache: PageCache[Entry] = PageCache(2 * entry_size(a))
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") is a  # now b is the least recently used
    cache.put("c", c)
    assert cache.get("b") is None
    assert cache.get("a") is a
    assert cache.get("c") is c


def test_a_page_bigger_than_the_bound_is_not_kept():
    cache: PageCache[Entry] = PageCache(10)
    cache.put("a", entry("a", 1))
    assert cache.get("a") is None
    assert cache.total == 0
