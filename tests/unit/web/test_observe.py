"""A file response sends exactly the bytes asked for, whatever the socket takes per send."""

from __future__ import annotations

import io
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pypicache.web.observe import SEND_BLOCK, ObservedFile
from pypicache.web.sendfile import FileRegion


def send_all(body: ObservedFile, asked: int, takes: list[int]) -> bytes:
    """What waitress's sending loop gets out of ``body``: it asks for ``asked`` bytes
    and the socket takes at most the next of ``takes`` (0: the socket is full for now)."""
    sent = bytearray()
    turn = 0
    while len(body) > 0:
        chunk = body.get(asked)
        assert len(chunk) > 0
        took = min(len(chunk), takes[turn % len(takes)])
        turn += 1
        if took:
            sent += chunk[:took]
            body.skip(took, True)
    return bytes(sent)


@given(
    size=st.integers(0, 2 * SEND_BLOCK + 1000),
    start=st.integers(0, 1000),
    length=st.none() | st.integers(0, 3 * SEND_BLOCK),
    asked=st.sampled_from([1, 16384, SEND_BLOCK, 4 * SEND_BLOCK]),
    takes=st.lists(st.integers(0, 3 * SEND_BLOCK), min_size=1, max_size=6).filter(any),
    seed=st.integers(0, 2**32),
)
@settings(max_examples=150, deadline=None)
def test_the_bytes_sent_are_the_range_asked_for_and_the_count_reported(
    size: int, start: int, length: int | None, asked: int, takes: list[int], seed: int
):
    data = random.Random(seed).randbytes(size)
    file = io.BytesIO(data)
    file.seek(min(start, size))
    finished: list[int] = []
    body = ObservedFile(file, finish=finished.append)
    expected = data[min(start, size) :][:length] if length is not None else data[start:]
    assert body.prepare(length) == len(expected)
    assert send_all(body, asked, takes) == expected
    body.close()
    assert finished == [len(expected)]


@given(
    size=st.integers(0, 3 * SEND_BLOCK),
    start=st.integers(0, 1000),
    length=st.none() | st.integers(0, 3 * SEND_BLOCK),
    takes=st.lists(st.integers(0, 3 * SEND_BLOCK), min_size=1, max_size=6).filter(any),
    seed=st.integers(0, 2**32),
)
@settings(max_examples=50, deadline=None)
def test_the_regions_a_sendfile_channel_gets_are_the_range_asked_for(
    tmp_path_factory: pytest.TempPathFactory,
    size: int,
    start: int,
    length: int | None,
    takes: list[int],
    seed: int,
):
    data = random.Random(seed).randbytes(size)
    path = tmp_path_factory.mktemp("blob") / "blob"
    path.write_bytes(data)
    finished: list[int] = []
    with path.open("rb") as file:
        file.seek(min(start, size))
        body = ObservedFile(file, finish=finished.append)
        expected = data[min(start, size) :][:length] if length is not None else data[start:]
        assert body.prepare(length) == len(expected)
        body.send_regions()
        sent = bytearray()
        turn = 0
        while len(body) > 0:
            region = body.get(16384)
            assert isinstance(region, FileRegion)
            assert region.count > 0
            took = min(region.count, takes[turn % len(takes)])
            turn += 1
            sent += os.pread(region.fd, took, region.offset)
            body.skip(took, True)
        body.close()
    assert bytes(sent) == expected
    assert finished == [len(expected)]


def test_a_response_cut_short_reports_what_was_sent():
    data = random.Random(1).randbytes(3 * SEND_BLOCK)
    finished: list[int] = []
    body = ObservedFile(io.BytesIO(data), finish=finished.append)
    body.prepare()
    chunk = body.get(16384)
    body.skip(1000, True)
    body.skip(len(chunk) - 1000 + 5, True)  # past what was read ahead: from the file
    assert bytes(body.get(16384))[:10] == data[len(chunk) + 5 :][:10]
    body.close()
    assert finished == [len(chunk) + 5]
