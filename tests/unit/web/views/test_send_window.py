"""waitress sends a stored file through ``_SendWindow`` exactly, however its sends go."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st
from waitress.buffers import ReadOnlyFileBasedBuffer

from pypicache.web.views.files import CHUNK, _SendWindow


class _Handle(io.BytesIO):
    """A blob handle as the store gives one: a buffered reader that knows its size."""

    @property
    def size(self) -> int:
        return len(self.getbuffer())


@given(
    content=st.binary(max_size=3 * CHUNK + 17),
    start=st.integers(min_value=0, max_value=3 * CHUNK),
    send_buffers=st.lists(st.integers(min_value=1, max_value=8 * CHUNK), min_size=1),
    sent_shares=st.lists(st.floats(min_value=0.01, max_value=1.0), min_size=1),
)
def test_a_file_goes_out_whole_in_pieces_of_at_most_a_chunk(
    content: bytes, start: int, send_buffers: list[int], sent_shares: list[float]
) -> None:
    """As waitress's I/O thread sends it: ``get`` as much as the send buffer holds, send
    part of it, ``skip`` what was sent; a range starts part-way in."""
    start = min(start, len(content))
    handle = _Handle(content)
    handle.seek(start)
    buffer = ReadOnlyFileBasedBuffer(_SendWindow(handle), CHUNK)
    remaining = buffer.prepare(len(content) - start)
    sent = bytearray()
    turn = 0
    while remaining:
        piece = buffer.get(send_buffers[turn % len(send_buffers)])
        assert 0 < len(piece) <= CHUNK
        taken = max(1, int(len(piece) * sent_shares[turn % len(sent_shares)]))
        sent += piece[:taken]
        buffer.skip(taken, True)
        remaining = buffer.remain
        turn += 1
    assert bytes(sent) == content[start:]
    buffer.close()
    assert handle.closed
