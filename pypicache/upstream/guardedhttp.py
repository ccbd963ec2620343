"""A requests adapter whose connections reach only the addresses a URLPolicy allows.

The check lives where the socket is opened: the host is resolved once, the answers are
checked, and the socket connects to a checked address. So every request and every
redirect hop is covered, and a name that resolves differently a moment later (DNS
rebinding) cannot slip through. TLS still verifies and sends SNI for the host name.
"""

from __future__ import annotations

import os
import socket
import ssl
import sys
import threading
from typing import Any

from requests import PreparedRequest
from requests.adapters import HTTPAdapter
from requests.utils import DEFAULT_CA_BUNDLE_PATH
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

    Every HTTPS connection verifies against one TLS context per trust store, made once:
    requests gives each new connection the store's path (REQUESTS_CA_BUNDLE, or its own
    bundle), and loading a bundle of 150 CAs cost each connection milliseconds of CPU,
    a tenth of what a cold install's burst of new upstream connections took.
    """

    def __init__(self, policy: URLPolicy, **kwargs: Any) -> None:
        self._policy = policy  # before super().__init__, which builds the pool manager
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._contexts_lock = threading.Lock()
        super().__init__(**kwargs)

    def _context(self, store: str) -> ssl.SSLContext:
        """The verifying context of a CA bundle file or a directory of CAs."""
        with self._contexts_lock:
            context = self._contexts.get(store)
            if context is None:
                directory = os.path.isdir(store)
                context = ssl.create_default_context(
                    cafile=None if directory else store, capath=store if directory else None
                )
                self._contexts[store] = context
            return context

    def _store(self, verify: Any, cert: Any) -> str | None:
        """The trust store a request verifies against, when a shared context can do it
        (not for a client certificate, which urllib3 would load into the context)."""
        if verify is False or cert is not None:
            return None
        return DEFAULT_CA_BUNDLE_PATH if verify is True or not verify else str(verify)

    def build_connection_pool_key_attributes(
        self, request: PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        store = self._store(verify, cert)
        if host_params.get("scheme") == "https" and store is not None:
            pool_kwargs.pop("ca_certs", None)
            pool_kwargs.pop("ca_cert_dir", None)
            pool_kwargs["ssl_context"] = self._context(store)
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)
        if url.lower().startswith("https") and self._store(verify, cert) is not None:
            # The pool's shared context holds the CAs; a path here would load them again.
            conn.ca_certs = conn.ca_cert_dir = None

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
