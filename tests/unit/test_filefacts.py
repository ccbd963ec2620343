"""A refreshed file's facts keep what the bytes taught us where the page leaves it out."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

from pypicache.filefacts import FileFacts

digests = st.none() | st.sampled_from(["", "a" * 64, "b" * 64])
facts = st.builds(
    FileFacts,
    filename=st.just("demo-1.0.tar.gz"),
    version=st.just("1.0"),
    sha256=digests,
    size=st.none() | st.integers(min_value=0, max_value=3),
    requires_python=st.none(),
    yanked=st.booleans(),
    yanked_reason=st.none(),
    upload_time=st.none(),
    has_metadata=st.booleans(),
    metadata_sha256=digests,
    upstream_url=st.just("https://files.example/demo-1.0.tar.gz"),
    provenance=st.none() | st.just("https://index.example/integrity/demo/1.0/p"),
)


@given(facts, facts)
def test_the_page_wins_and_the_known_hash_and_size_fill_its_gaps(new: FileFacts, old: FileFacts):
    kept = new.keeping_known(old)
    assert kept == replace(
        new,
        sha256=new.sha256 or old.sha256,
        size=new.size if new.size is not None else old.size,
        metadata_sha256=new.metadata_sha256 or (old.metadata_sha256 if new.has_metadata else None),
    )
