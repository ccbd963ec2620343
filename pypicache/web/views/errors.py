"""The one place where domain errors become HTTP answers."""

from __future__ import annotations

import logging
import threading
import time

from pyramid.httpexceptions import HTTPMovedPermanently, HTTPNotFound
from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import exception_view_config, forbidden_view_config, notfound_view_config
from sqlalchemy.exc import OperationalError

from pypicache.errors import (
    DatabaseUnavailable,
    FileNotFound,
    FillStopped,
    Forbidden,
    HashMismatch,
    Held,
    InvalidName,
    NotAllowed,
    ProjectNotFound,
    RateLimited,
    StorageFull,
    StorageUnavailable,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from pypicache.times import BadTime
from pypicache.web.security import REALM
from pypicache.web.views.upload import answer

log = logging.getLogger(__name__)

# Seconds between two log lines about the same kind of outage: a full disk or a locked
# database fails every request, and a line per request would fill the log (and the disk).
OUTAGE_LOG_INTERVAL = 30.0


class Throttled:
    """Logs the first failure, then at most one line per interval saying how many followed."""

    def __init__(self, interval: float = OUTAGE_LOG_INTERVAL) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._next = 0.0
        self._suppressed = 0

    def error(self, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._next = self._suppressed, 0, now + self.interval
        if suppressed:
            message += f" ({suppressed} more since the last report)"
        log.error(message, *args)


_database_log = Throttled()
_storage_log = Throttled()


def _text(status: int, message: str) -> Response:
    # Never cached: a 404 or 502 now says nothing about a minute from now.
    response = Response(
        status=status, body=(message + "\n").encode(), content_type="text/plain", charset="utf-8"
    )
    response.cache_control = "no-store"
    return response


@notfound_view_config(append_slash=HTTPMovedPermanently)
def not_found(exc: HTTPNotFound, request: Request) -> Response:
    return _text(404, "404 Not Found")


@forbidden_view_config()
def forbidden(exc: Exception, request: Request) -> Response:
    """401 with a challenge when nobody (valid) is asking, 403 when the asker may not."""
    if request.identity is None:
        message = "Invalid or missing credentials: use a user's password or __token__ and a token."
        response = answer(401, message)
        response.headers["WWW-Authenticate"] = REALM
        return response
    if request.identity.index is not None:
        return answer(
            403,
            f"This token of the user '{request.identity.name}' is for the index "
            f"'{request.identity.index}' only.",
        )
    return answer(403, f"The user '{request.identity.name}' may not do this.")


@exception_view_config(Forbidden)
def not_allowed(exc: Forbidden, request: Request) -> Response:
    return answer(403, str(exc))


@exception_view_config(RateLimited)
def rate_limited(exc: RateLimited, request: Request) -> Response:
    """Basic credentials of a user name or address that failed too often: wait, then retry."""
    response = answer(429, f"Too many failed logins: try again in {exc.retry_after} s.")
    response.cache_control = "no-store"
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


@exception_view_config(Held)
def held(exc: Held, request: Request) -> Response:
    return _text(403, f"403 Forbidden: {exc}")


@exception_view_config(ProjectNotFound)
def project_not_found(exc: ProjectNotFound, request: Request) -> Response:
    return _text(404, f"404 Not Found: no project named {exc}")


@exception_view_config(UnicodeDecodeError)
def not_utf8(exc: UnicodeDecodeError, request: Request) -> Response:
    """WebOb decodes query strings and forms lazily, so bytes that are not UTF-8 surface
    as this error wherever a view first reads ``request.params``: the client's mistake."""
    return _text(400, "400 Bad Request: the query string or form is not UTF-8")


@exception_view_config(BadTime)
def bad_time(exc: BadTime, request: Request) -> Response:
    """A time in a URL (a snapshot's) that is none: the reason names the value."""
    return _text(400, f"400 Bad Request: {exc}")


@exception_view_config(InvalidName)
@exception_view_config(FileNotFound)
@exception_view_config(NotAllowed)  # a ProjectNotFound whose message is the whole reason
def file_not_found(exc: Exception, request: Request) -> Response:
    return _text(404, f"404 Not Found: {exc}")


@exception_view_config(UpstreamTimeout)
def upstream_timeout(exc: UpstreamTimeout, request: Request) -> Response:
    return _text(504, f"504 Gateway Timeout: the upstream index timed out ({exc})")


@exception_view_config(UpstreamUnavailable)
def upstream_unavailable(exc: UpstreamUnavailable, request: Request) -> Response:
    return _text(502, f"502 Bad Gateway: the upstream index failed ({exc})")


@exception_view_config(HashMismatch)
def hash_mismatch(exc: HashMismatch, request: Request) -> Response:
    return _text(502, f"502 Bad Gateway: the upstream sent bytes that fail their hash ({exc})")


@exception_view_config(FillStopped)
def stopping(exc: FillStopped, request: Request) -> Response:
    response = _text(503, "503 Service Unavailable: the server is stopping")
    response.headers["Retry-After"] = "5"
    return response


@exception_view_config(StorageUnavailable)
def storage_unavailable(exc: StorageUnavailable, request: Request) -> Response:
    _storage_log.error("blob store failed: %s", exc)
    response = answer(503, f"503 Service Unavailable: {exc}")  # twine shows the reason phrase
    response.cache_control = "no-store"
    response.headers["Retry-After"] = "10"
    return response


@exception_view_config(StorageFull)
def storage_full(exc: StorageFull, request: Request) -> Response:
    _storage_log.error("blob store full, nothing stored: %s", exc)
    response = answer(507, f"507 Insufficient Storage: {exc}")  # twine shows the reason phrase
    response.cache_control = "no-store"
    return response


@exception_view_config(DatabaseUnavailable)
@exception_view_config(OperationalError)
def database_unavailable(exc: Exception, request: Request) -> Response:
    """Locked, full, read-only or gone: the same answer wherever the request met it."""
    reason = str(exc) if isinstance(exc, DatabaseUnavailable) else _first_line(exc)
    _database_log.error("database unavailable: %s", reason)
    response = answer(503, f"503 Service Unavailable: database unavailable: {reason}")
    response.cache_control = "no-store"
    response.headers["Retry-After"] = "10"
    return response


def _first_line(exc: Exception) -> str:
    """The driver's message, without SQLAlchemy's statement and parameters (no data leaks)."""
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).splitlines()[0][:200]
