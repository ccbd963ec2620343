"""Run the real app on waitress in a thread, and stop it completely afterwards."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from waitress import create_server, wasyncore

from pypicache.app import tune_server


class WaitressThread:
    """A waitress server on an ephemeral loopback port, served from a background thread.

    The asyncore loop runs one poll at a time so ``stop`` can end it between polls and
    close every channel from the loop's own thread.
    """

    def __init__(self, app: Callable[..., Any], threads: int = 16) -> None:
        self.server = create_server(
            app, host="127.0.0.1", port=0, threads=threads, ident="pypicache-test"
        )
        tune_server(self.server)  # as `pypicache serve` does
        self.port: int = self.server.effective_port  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"waitress:{self.port}")

    def start(self) -> WaitressThread:
        self._thread.start()
        return self

    def _loop(self) -> None:
        socket_map = self.server._map  # type: ignore[union-attr]
        while not self._stopping.is_set():
            wasyncore.loop(timeout=0.05, use_poll=True, map=socket_map, count=1)
        for dispatcher in list(socket_map.values()):
            dispatcher.close()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(10)
        self.server.task_dispatcher.shutdown(cancel_pending=True, timeout=10)  # type: ignore[union-attr]
        assert not self._thread.is_alive(), "waitress loop did not stop"
