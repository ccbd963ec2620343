"""A requests adapter whose connections reach only the addresses a URLPolicy allows.

The check lives where the socket is opened: the host is resolved once, the answers are
checked, and the socket connects to a checked address. So every request and every
redirect hop is covered, and a name that resolves differently a moment later (DNS
rebinding) cannot slip through. TLS still verifies and sends SNI for the host name.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.timeout import _DEFAULT_TIMEOUT

from pypicache.upstream.urlpolicy import URLPolicy


class _Guarded(HTTPConnection):
    _policy: URLPolicy
    _guard_scheme: str

    def _new_conn(self) -> socket.socket:
        # urllib3's own _new_conn, with the lookup checked and the checked address used.
        try:
            targets = self._policy.connect_addresses(self._guard_scheme, self.host, self.port)
            sock = _connect(targets, self.timeout, self.source_address, self.socket_options)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
            ) from exc
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc
        sys.audit("http.client.connect", self, self.host, self.port)
        return sock


def _connect(
    targets: list[tuple[socket.AddressFamily, socket.SocketKind, int, tuple]],
    timeout: Any,
    source_address: tuple[str, int] | None,
    socket_options: Any,
) -> socket.socket:
    """Connect to the first target that answers (the policy returned at least one)."""
    error: OSError | None = None
    for family, kind, proto, address in targets:
        sock = socket.socket(family, kind, proto)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            if timeout is not _DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(address)
        except OSError as exc:
            error = exc
            sock.close()
        else:
            return sock
    assert error is not None
    raise error


class GuardedAdapter(HTTPAdapter):
    """An HTTPAdapter for one upstream: direct connections are checked by ``policy``.

    Connections through a proxy (HTTP(S)_PROXY) reach the proxy, which the admin chose;
    those are not checked here.
    """

    def __init__(self, policy: URLPolicy, **kwargs: Any) -> None:
        self._policy = policy  # before super().__init__, which builds the pool manager
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        attrs = {"_policy": self._policy}
        http = type("GuardedHTTPConnection", (_Guarded,), {**attrs, "_guard_scheme": "http"})
        https = type(
            "GuardedHTTPSConnection",
            (_Guarded, HTTPSConnection),
            {**attrs, "_guard_scheme": "https"},
        )
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
            "https": type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
        }
