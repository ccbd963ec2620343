"""Who is asking (HTTP basic, or the admin page's session) and what they may do."""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable
from typing import Any

from pyramid.authentication import SessionAuthenticationHelper
from pyramid.config import Configurator
from pyramid.csrf import new_csrf_token
from pyramid.interfaces import ISession
from pyramid.request import Request
from pyramid.security import Allowed, Denied
from pyramid.session import SignedCookieSessionFactory
from sqlalchemy.exc import IntegrityError

from pypicache.auth.accounts import Accounts, Identity, prepare_decoy
from pypicache.cache.indexes import MAIN, Indexes
from pypicache.db import Database
from pypicache.errors import RateLimited
from pypicache.models import AppSecret
from pypicache.settings import Settings
from pypicache.web import configured_services

READ = "read"
UPLOAD = "upload"
ADMIN = "admin"
REALM = 'Basic realm="pypicache", charset="UTF-8"'
# The admin page's session lives in a cookie sent only to /admin/: the API never sees it,
# so a browser that is logged in cannot be made to upload or read through it.
SESSION_COOKIE = "pypicache_admin"
SESSION_PATH = "/admin"
SESSION_TIMEOUT = 8 * 3600  # seconds without a request before a login expires
# Where versions before 0.2 kept the session secret (read once, to adopt it).
SECRET_FILE = "session-secret"  # noqa: S105 - the file's name; the secret is inside
SESSION_SECRET = "admin-session"  # noqa: S105 - the row's name; the secret is inside
# Where a request keeps its basic-auth identity once checked: Pyramid asks for
# ``request.identity`` several times a request, and the hot path may have asked already.
BASIC_IDENTITY = "pypicache.basic_identity"


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """User name and password of an ``Authorization: Basic`` header; None for anything else."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        # validate: only the base64 alphabet; a non-ASCII character is a ValueError.
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    username, separator, password = decoded.partition(":")
    return (username, password) if separator else None


class BasicAuthSecurityPolicy:
    """Pyramid's security policy: identity from basic auth (or the admin page's session),
    permissions from roles."""

    def __init__(self, accounts: Accounts, read_auth: bool, indexes: Indexes) -> None:
        self.accounts = accounts
        self.read_auth = read_auth
        self.indexes = indexes
        self._sessions = SessionAuthenticationHelper()

    def identity(self, request: Request) -> Identity | None:
        """Raises RateLimited for basic credentials of a user or address that failed too often."""
        basic = self._basic_identity(request.environ)
        if basic is not None:
            return basic[0]
        if SESSION_COOKIE not in request.cookies:
            return None  # not even a session to look into: don't make one
        ticket = self._sessions.authenticated_userid(request)
        return self.accounts.identity_for_ticket(ticket) if isinstance(ticket, str) else None

    def authenticated_userid(self, request: Request) -> str | None:
        """``request.authenticated_userid``, which must not raise outside the exception views:
        a rate-limited caller is nobody here, and gets its 429 from the permission check."""
        try:
            identity = request.identity
        except RateLimited:
            return None
        return identity.name if identity is not None else None

    def permits(self, request: Request, context: object, permission: str) -> Allowed | Denied:
        identity: Identity | None = request.identity
        index = request_index(request)
        if permission == READ and not self._login_needed(index):
            return Allowed("anonymous reads are allowed")
        if identity is None:
            return Denied("authentication required")
        if identity.index is not None and (permission == ADMIN or index != identity.index):
            return Denied(f"this token is for the index {identity.index} only")
        if permission in (READ, UPLOAD) or identity.is_admin:
            return Allowed(f"{identity.name} may {permission}")
        return Denied(f"{identity.name} may not {permission}")

    def remember(self, request: Request, userid: str, **kw: object) -> list[tuple[str, str]]:
        """Log in to the admin page; ``userid`` is the ticket of an accepted ``Login``."""
        request.session.invalidate()  # a fresh session: nothing carried over from before
        new_csrf_token(request)
        return self._sessions.remember(request, userid)

    def forget(self, request: Request, **kw: object) -> list[tuple[str, str]]:
        """Log out: the user's sessions end on every host, not only this browser's cookie."""
        ticket = self._sessions.authenticated_userid(request)
        identity = self.accounts.identity_for_ticket(ticket) if isinstance(ticket, str) else None
        if identity is not None:
            self.accounts.end_sessions(identity.user_id)
        request.session.invalidate()
        return []

    def may_read(self, environ: dict[str, Any], index: str | None) -> bool:
        """For the hot path, which answers outside Pyramid, a page of ``index`` (None:
        of one upstream alone); a refusal goes on to Pyramid, which answers 401, 403 or
        429 without checking the password again."""
        if not self._login_needed(index):
            return True
        try:
            basic = self._basic_identity(environ)
        except RateLimited:
            return False
        if basic is None or basic[0] is None:
            return False
        return basic[0].index is None or basic[0].index == index

    def _login_needed(self, index: str | None) -> bool:
        return self.read_auth or (index is not None and self.indexes.needs_login(index))

    def _basic_identity(self, environ: dict[str, Any]) -> tuple[Identity | None] | None:
        """The identity of the request's basic credentials (None: it has none), checked
        at most once a request."""
        if BASIC_IDENTITY not in environ:
            credentials = basic_credentials(environ.get("HTTP_AUTHORIZATION"))
            address = environ.get("REMOTE_ADDR")
            environ[BASIC_IDENTITY] = (
                (self.accounts.authenticate(*credentials, address=address),)
                if credentials
                else None
            )
        result: tuple[Identity | None] | None = environ[BASIC_IDENTITY]
        return result


# The routes of a named index's pages, files and uploads (the index is in the URL), and
# those of the index main, /simple/ and /legacy/.
_INDEX_ROUTES = frozenset(
    {
        "index_index",
        "index_project",
        "index_file",
        "index_upload",
        "index_snapshot_index",
        "index_snapshot_project",
        "index_snapshot_file",
    }
)
_MAIN_ROUTES = frozenset(
    {
        "simple_index",
        "simple_project",
        "file",
        "snapshot_index",
        "snapshot_project",
        "snapshot_file",
        "upload",
        "upload_legacy_no_slash",
        "upload_root",
        "xmlrpc",
        "legacy_json",
    }
)


def request_index(request: Request) -> str | None:
    """The index a request reads or uploads to; None for anything else (one upstream
    alone, the status, the admin page)."""
    route = request.matched_route
    name = route.name if route is not None else None
    if name in _INDEX_ROUTES:
        return request.matchdict["index"]
    return MAIN if name in _MAIN_ROUTES else None


def session_secret(settings: Settings, database: Database) -> str:
    """The configured secret, else the one kept in the database, made by the first process.

    Every process of the deployment must sign cookies alike, or behind a load
    balancer a login would work only on the host that made it.  A secret an
    older version kept in the data dir is adopted, so logins survive the upgrade.
    """
    if settings.session_secret:
        return settings.session_secret
    with database.unit_of_work() as db:
        stored = db.get(AppSecret, SESSION_SECRET)
        if stored is not None:
            return stored.value
    legacy = settings.data_dir / SECRET_FILE
    value = legacy.read_text().strip() if legacy.is_file() else secrets.token_urlsafe(48)
    try:
        with database.unit_of_work() as db:
            db.add(AppSecret(name=SESSION_SECRET, value=value))
    except IntegrityError:
        pass  # another process made it first: everyone uses that one
    with database.unit_of_work() as db:
        return db.get_one(AppSecret, SESSION_SECRET).value


def session_factory(secret: str) -> Callable[[Request], ISession]:
    """Signed cookie sessions, HttpOnly and SameSite, marked Secure on https requests."""
    options = {
        "cookie_name": SESSION_COOKIE,
        "path": SESSION_PATH,
        "httponly": True,
        # Lax: a link to the admin page from elsewhere arrives logged in, while no other
        # site can post with the cookie; every form carries a CSRF token as well.
        "samesite": "Lax",
        "timeout": SESSION_TIMEOUT,
        "reissue_time": 60,
    }
    plain = SignedCookieSessionFactory(secret, secure=False, **options)
    secure = SignedCookieSessionFactory(secret, secure=True, **options)

    def factory(request: Request) -> ISession:
        return (secure if request.scheme == "https" else plain)(request)

    return factory


def includeme(config: Configurator) -> None:
    services = configured_services(config)
    prepare_decoy()
    policy = BasicAuthSecurityPolicy(
        services.accounts, services.settings.read_auth, services.indexes
    )
    config.set_security_policy(policy)
    secret = session_secret(services.settings, services.database)
    config.set_session_factory(session_factory(secret))
    # Every unsafe request needs the session's CSRF token; the upload API opts out (it
    # speaks basic auth and never sees the session cookie).
    config.set_default_csrf_options(require_csrf=True)
