"""A PEP 691 JSON page decoded straight into typed entries: the way the pages every index
sends are read.

Decoding 11,000 entries into dictionaries and then asking each for its keys cost more
than checking them: json.loads took 25 ms of such a page and the lookups a third of
the rest.  msgspec decodes the body into the types the simple API gives (strings,
integers, booleans, the hashes' sha256) in C; a big page's entries are each first
hashed as text, and those read last time are not decoded at all.  A page with any
value of another type, or not UTF-8 JSON, is no such page: ``decode`` or
``read_typed_page`` answers None before any entry is read, and the page is read by
``jsonpage``, which takes any JSON, so what a page gives never depends on which reader
read it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from hashlib import blake2b
from typing import TYPE_CHECKING

import msgspec

from pypicache.filefacts import FileFacts
from pypicache.upstream.entries import UpstreamPage, page_of
from pypicache.upstream.entrymemo import MEMO_MIN_FILES, EntryMemo
from pypicache.upstream.jsonpage import (
    check_header,
    digest_problem,
    entry_facts,
    page_serial,
    read_entries,
)
from pypicache.upstream.jsonpage import memo as shared_memo

if TYPE_CHECKING:
    from pypicache.ops.metrics import Metrics


class _Digests(msgspec.Struct, frozen=True, gc=False):
    sha256: str | None = None


class _Entry(
    msgspec.Struct,
    frozen=True,
    gc=False,  # strings, numbers and digests: never part of a cycle
    rename={
        "requires_python": "requires-python",
        "upload_time": "upload-time",
        "core_metadata": "core-metadata",
        "dist_info_metadata": "data-dist-info-metadata",
    },
):
    filename: str
    url: str
    hashes: _Digests
    requires_python: str | None = None
    yanked: bool | str | None = False
    size: int | None = None
    upload_time: str | None = None
    # PEP 714: the old key only where the new one is missing (absent, not null).
    core_metadata: bool | _Digests | msgspec.UnsetType | None = msgspec.UNSET
    dist_info_metadata: bool | _Digests | None = None
    provenance: str | None = None


class _Meta(msgspec.Struct, rename={"api_version": "api-version", "last_serial": "_last-serial"}):
    api_version: str
    last_serial: int | str | None = None


class _Status(msgspec.Struct):
    status: str | None = None
    reason: str | None = None


class TypedPage(msgspec.Struct, rename={"project_status": "project-status"}):
    """A page's values, each of the type the simple API gives it; its entries as their
    JSON text, decoded as they are read (a big page's known ones never are)."""

    meta: _Meta
    name: str
    files: list[msgspec.Raw]
    versions: list[str] | None = None
    project_status: _Status | None = None


_decoder = msgspec.json.Decoder(TypedPage)
_entry_decoder = msgspec.json.Decoder(_Entry)
# An entry's text, hashed: the memo's key for it.  The same text gives the same facts;
# 16 bytes a key rather than the entry's decoded values (about 6 MB more for the
# benchmark's big pages).  A collision would give an entry another of the same page's
# checked facts, and needs 2**64 tries.
_KEY_BYTES = 16

_Read = tuple[bytes | None, _Entry | None]


def decode(body: bytes | bytearray) -> TypedPage | None:
    """The page in ``body``; None when it is not UTF-8 JSON of the simple API's types."""
    try:
        return _decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return None


def read_typed_page(
    name: str,
    page: TypedPage,
    base_url: str,
    *,
    serial: int | None = None,
    etag: str | None = None,
    metrics: Metrics | None = None,
    memo: EntryMemo = shared_memo,
) -> UpstreamPage | None:
    """What ``read_json_page`` gives for the same page, read from typed values; None when
    an entry is not of the simple API's types (found before any entry is read)."""
    status = page.project_status or _Status()
    state = check_header(name, page.meta.api_version, page.name, status.status)
    if serial is None:
        serial = page_serial(page.meta.last_serial)
    known = memo.get(name, base_url) if len(page.files) >= MEMO_MIN_FILES else None
    entries = _decoded(page.files, known)
    if entries is None:
        return None
    files = read_entries(entries, name, base_url, metrics, memo, _key, _file, known)
    return page_of(name, files, page.versions, serial, etag, state, status.reason)


def _decoded(
    raws: list[msgspec.Raw], known: Mapping[Hashable, FileFacts] | None
) -> list[_Read] | None:
    """Each entry with its key (``known``: a big page's entries as last read, which are
    not decoded again), decoded; None when one does not decode as the simple API's types."""
    entries: list[_Read] = []
    for raw in raws:
        key = blake2b(raw, digest_size=_KEY_BYTES).digest() if known is not None else None
        if key is not None and key in known:  # type: ignore[operator]  # known is not None
            entries.append((key, None))
            continue
        try:
            entries.append((key, _entry_decoder.decode(raw)))
        except (msgspec.DecodeError, RecursionError):
            return None
    return entries


def _key(read: _Read) -> bytes | None:
    return read[0]


def _file(
    read: _Read, project: str, base_url: str, metrics: Metrics | None
) -> tuple[FileFacts | None, bool]:
    entry = read[1]
    assert entry is not None  # a known entry's facts come from the memo, never read here
    metadata = entry.core_metadata
    if metadata is msgspec.UNSET:
        metadata = entry.dist_info_metadata
    digests = metadata if isinstance(metadata, _Digests) else None
    sha256 = entry.hashes.sha256
    metadata_sha256 = digests.sha256 if digests is not None else None
    return entry_facts(
        project,
        base_url,
        metrics,
        entry.filename,
        entry.url,
        sha256,
        metadata is True or digests is not None,
        metadata_sha256,
        digest_problem(sha256, metadata_sha256),
        entry.size,
        entry.requires_python,
        entry.yanked,
        entry.upload_time,
        entry.provenance,
    )
