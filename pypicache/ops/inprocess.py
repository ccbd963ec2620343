"""An index for the length of one command: the app on an ephemeral loopback port.

``pypicache warm`` drives real pip against the index, so it needs one listening even where
no server runs.  This one shares the configured database and blob store, leaves the
changelog to the serving processes, and answers only the client the command starts.
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from waitress import create_server, wasyncore

from pypicache.settings import Settings
from pypicache.web.security import basic_credentials

USER = "pypicache-cli"
THREADS = 8
STOP_TIMEOUT = 10.0
_UNAUTHORIZED = [
    ("Content-Type", "text/plain; charset=utf-8"),
    ("WWW-Authenticate", 'Basic realm="pypicache-cli"'),
]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class OneTimePassword:
    """Lets through only requests carrying this command's random password.

    A port on 127.0.0.1 is open to every local user; without this guard the in-process
    index would hand private projects to them, with ``read_auth`` or without.
    """

    def __init__(self, app: WSGIApp, password: str) -> None:
        self.app = app
        self.password = password

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        credentials = basic_credentials(environ.get("HTTP_AUTHORIZATION"))
        if (
            credentials is None
            or credentials[0] != USER
            or not hmac.compare_digest(credentials[1], self.password)
        ):
            start_response("401 Unauthorized", _UNAUTHORIZED)
            return [b"401 this index serves only the command that started it\n"]
        del environ["HTTP_AUTHORIZATION"]  # ours, not an account the app should look up
        return self.app(environ, start_response)


@contextmanager
def local_index(settings: Settings) -> Iterator[str]:
    """Serve pypicache on settings' database and store for the block; yields its simple URL.

    The URL carries the one-time password: hand it to the client through its environment,
    never on a command line (other users can read those).
    """
    from pypicache.app import make_wsgi_app  # the web stack only for the commands that serve

    app = make_wsgi_app(dataclasses.replace(settings, follow_method="off", read_auth=False))
    password = secrets.token_urlsafe(24)
    try:
        server = create_server(
            OneTimePassword(app, password), host="127.0.0.1", port=0, threads=THREADS
        )
        port = server.effective_port  # type: ignore[union-attr]
        stopping = threading.Event()
        thread = threading.Thread(
            target=_loop, args=(server, stopping), name="pypicache-local", daemon=True
        )
        thread.start()
        try:
            yield f"http://{USER}:{password}@127.0.0.1:{port}/simple/"
        finally:
            stopping.set()
            thread.join(STOP_TIMEOUT)
            server.task_dispatcher.shutdown(cancel_pending=True, timeout=STOP_TIMEOUT)  # type: ignore[union-attr]
    finally:
        app.close()


def _loop(server: Any, stopping: threading.Event) -> None:
    # One poll at a time, so the block's end stops the loop between polls and every
    # channel is closed from the loop's own thread.
    socket_map = server._map
    while not stopping.is_set():
        wasyncore.loop(timeout=0.05, use_poll=True, map=socket_map, count=1)
    for dispatcher in list(socket_map.values()):
        dispatcher.close()
