"""The sendfile channel sends a file's regions, and a file that ends early stops it."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest
from waitress import create_server

from pypicache.web.sendfile import FileRegion, SendfileChannel


def app(environ: dict, start_response: object) -> list[bytes]:  # the channel is driven by hand
    raise AssertionError("no request is made")


@pytest.fixture
def channel_and_peer():
    server = create_server(app, host="127.0.0.1", port=0, _start=False)
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    channel = SendfileChannel(server, ours, ("127.0.0.1", 0), server.adj, map={})
    yield channel, peer
    channel.close()
    peer.close()
    server.close()
    server.task_dispatcher.shutdown()


def test_a_region_goes_out_as_the_file_bytes(channel_and_peer, tmp_path: Path):
    channel, peer = channel_and_peer
    path = tmp_path / "blob"
    path.write_bytes(b"0123456789" * 100)
    with path.open("rb") as file:
        sent = channel.send(FileRegion(file.fileno(), 10, 25))
    assert sent == 25
    assert peer.recv(100) == (b"0123456789" * 100)[10:35]
    assert channel.send(b"plain") == 5  # other data as waitress sends it
    assert peer.recv(100) == b"plain"


def test_a_file_shorter_than_its_region_raises_instead_of_spinning(
    channel_and_peer, tmp_path: Path
):
    channel, _ = channel_and_peer
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 10)
    with path.open("rb") as file, pytest.raises(OSError, match="ended before its size") as caught:
        channel.send(FileRegion(file.fileno(), 10, 90))
    assert caught.value.errno == errno.EIO
