"""Stored files sent by the kernel (``sendfile``), not read into Python and written back.

waitress sends a file response from its one I/O thread, or from the response's thread
when much is unsent, reading each block into memory and writing it to the socket.  A hot
1.25 MB wheel went at a third of nginx's rate that way; from the page cache straight to
the socket, the bytes never pass through the interpreter.  A body that cannot be sent
so (an object store's stream, a server without this channel) goes the ordinary way.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer

# The errors of a connection the client closed: the channel closes, nothing is logged.
_DISCONNECTED = frozenset(
    {errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN, errno.ECONNABORTED, errno.EPIPE}
)


class FileRegion:
    """Bytes of an open file, as a file body hands them to the channel to send."""

    __slots__ = ("count", "fd", "offset")

    def __init__(self, fd: int, offset: int, count: int) -> None:
        self.fd = fd
        self.offset = offset
        self.count = count

    def __len__(self) -> int:
        return self.count


class SendfileChannel(HTTPChannel):
    """waitress's channel, sending a file body's regions with ``os.sendfile``."""

    def write_soon(self, data: Any) -> int:
        start = getattr(data, "send_regions", None)
        if start is not None:
            start()  # before the I/O thread can see it in the queue
        return super().write_soon(data)

    def send(self, data: Any, do_close: bool = True) -> int:
        if type(data) is not FileRegion:
            return super().send(data, do_close)
        try:
            sent = os.sendfile(self.socket.fileno(), data.fd, data.offset, data.count)
        except BlockingIOError:
            return 0
        except OSError as exc:
            if exc.errno not in _DISCONNECTED:
                raise
            if do_close:
                self.handle_close()
            return 0
        if sent == 0 and data.count:
            # The file ended before its size: nothing more will come, and asking again
            # would spin.  waitress closes the connection; the client sees a short body.
            raise OSError(errno.EIO, "a stored file ended before its size")
        return sent


def send_files_by_sendfile(server: Any) -> None:
    """Make ``server`` (what waitress's ``create_server`` gave) accept with SendfileChannel."""
    found = [server, *getattr(server, "map", {}).values(), *getattr(server, "_map", {}).values()]
    for dispatcher in found:
        if isinstance(dispatcher, BaseWSGIServer):
            dispatcher.channel_class = SendfileChannel
