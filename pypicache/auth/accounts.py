"""Users and API tokens: scrypt password hashes, tokens kept only as hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pypicache.auth.ratelimit import LoginLimiter
from pypicache.db import Database
from pypicache.errors import AccountError
from pypicache.models import ApiToken, AuditEntry, User, utcnow

TOKEN_USERNAME = "__token__"  # noqa: S105 - the conventional user name, not a secret
TOKEN_PREFIX = "pypicache-"  # noqa: S105 - marks our tokens in logs and scanners
MIN_PASSWORD_LENGTH = 8
# Verified credentials are remembered this long, so pip's request-per-file does
# not pay for a memory-hard hash every time (and a user whose name is being guessed
# at keeps working while the limiter refuses new password checks)...
AUTH_CACHE_SECONDS = 300.0
# ... but confirmed against the database (a primary-key read) once they are older than
# this: a token revoked, a password or role changed, a logout on another host counts
# within a few seconds everywhere.
AUTH_RECHECK_SECONDS = 2.0
AUTH_CACHE_ENTRIES = 10_000
_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
_TICKET = re.compile(r"([0-9]{1,18}):([0-9a-f]{16}):([0-9]{1,18})")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


@dataclass(frozen=True)
class Identity:
    user_id: int
    name: str
    is_admin: bool
    index: str | None = None  # a token's one index; None: wherever the user may go


@dataclass(frozen=True)
class Login:
    """A password accepted by the admin page's login form."""

    identity: Identity
    # What the session keeps: the user's id, a stamp of the password hash (a new password
    # ends every session of the old one) and the user's session epoch (so does a logout).
    ticket: str


@dataclass
class _Verified:
    """A credential or ticket checked once, and how to confirm it cheaply later."""

    identity: Identity
    recheck: Callable[[Session], Identity | None]
    expires: float  # monotonic: checked from scratch after this
    checked: float  # monotonic: last confirmed against the database


@dataclass(frozen=True)
class TokenInfo:
    id: int
    user: str
    prefix: str
    description: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    index: str | None = None


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    parts = [
        "scrypt",
        *(str(_SCRYPT[k]) for k in ("n", "r", "p")),
        base64.b64encode(salt).decode(),
        base64.b64encode(digest).decode(),
    ]
    return "$".join(parts)


def verify_password(stored: str | None, password: str) -> bool:
    if not stored:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _check_password(stored: str | None, password: str) -> bool:
    """``verify_password`` that always costs one scrypt of the standard cost.

    An unknown user, a user without a password and a bad token all take as long
    as a wrong password: timing tells an attacker nothing about which names exist.
    """
    if not stored or not stored.startswith("scrypt$"):
        verify_password(_decoy_hash(), password)
        return False
    return verify_password(stored, password)


def token_hash(token: str) -> str:
    # Tokens are 256 random bits: a fast hash is enough, and lets us look them up.
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(self, database: Database, limiter: LoginLimiter | None = None) -> None:
        self._database = database
        self.limiter = limiter or LoginLimiter()
        self._cache: dict[str, _Verified] = {}
        self._cache_lock = threading.Lock()

    # -- users -----------------------------------------------------------------------------

    # Changes made on the admin page name their ``actor`` and go to the audit log.

    def add_user(
        self, name: str, password: str | None, *, admin: bool = False, actor: str | None = None
    ) -> None:
        if not _USER_NAME.match(name) or name == TOKEN_USERNAME:
            raise AccountError(f"invalid user name {name!r}: letters, digits, '.', '_', '-'")
        with self._database.unit_of_work() as db:
            if db.scalar(select(User).where(User.name == name)) is not None:
                raise AccountError(f"user {name!r} exists already")
            db.add(
                User(
                    name=name,
                    password_hash=hash_password(_checked(password)) if password else None,
                    is_admin=admin,
                    created_at=utcnow(),
                )
            )
            _audit(db, "add-user", actor, f"{name} ({_role(admin)})")

    def set_password(self, name: str, password: str, *, actor: str | None = None) -> None:
        with self._database.unit_of_work() as db:
            user = self._user(db, name)
            user.password_hash = hash_password(_checked(password))
            user.session_epoch = User.session_epoch + 1
            _audit(db, "set-password", actor, name)
        self.forget_credentials()

    def end_sessions(self, user_id: int) -> None:
        """Log a user out of the admin page everywhere: every ticket issued so far is void."""
        with self._database.unit_of_work() as db:
            db.execute(
                update(User).where(User.id == user_id).values(session_epoch=User.session_epoch + 1)
            )
        self.forget_credentials()

    def set_admin(self, name: str, admin: bool, *, actor: str | None = None) -> None:
        with self._database.unit_of_work() as db:
            self._user(db, name).is_admin = admin
            _audit(db, "set-role", actor, f"{name}: {_role(admin)}")
        self.forget_credentials()

    def users(self) -> list[tuple[str, bool, datetime]]:
        with self._database.unit_of_work() as db:
            return [
                (u.name, u.is_admin, u.created_at)
                for u in db.scalars(select(User).order_by(User.name))
            ]

    def _user(self, db: Session, name: str) -> User:
        user = db.scalar(select(User).where(User.name == name))
        if user is None:
            raise AccountError(f"no user named {name!r}")
        return user

    # -- tokens ----------------------------------------------------------------------------

    def create_token(
        self,
        name: str,
        description: str | None = None,
        *,
        actor: str | None = None,
        index: str | None = None,
    ) -> str:
        """A new token for user ``name`` (good for ``index`` alone, if given); the only
        time it is ever seen."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        prefix = token[: len(TOKEN_PREFIX) + 6]
        with self._database.unit_of_work() as db:
            user = self._user(db, name)
            db.add(
                ApiToken(
                    user_id=user.id,
                    token_hash=token_hash(token),
                    prefix=prefix,
                    description=description,
                    index=index,
                    created_at=utcnow(),
                )
            )
            where = f" (index {index} only)" if index else ""
            _audit(db, "create-token", actor, f"{prefix}… for {name}{where}")
        return token

    def tokens(self, name: str | None = None) -> list[TokenInfo]:
        with self._database.unit_of_work() as db:
            query = select(ApiToken, User.name).join(User).order_by(ApiToken.id)
            if name is not None:
                query = query.where(User.name == name)
            return [
                TokenInfo(
                    t.id,
                    user,
                    t.prefix,
                    t.description,
                    t.created_at,
                    t.last_used_at,
                    t.revoked_at,
                    t.index,
                )
                for t, user in db.execute(query)
            ]

    def revoke_token(self, token_id: int, *, actor: str | None = None) -> None:
        with self._database.unit_of_work() as db:
            token = db.get(ApiToken, token_id)
            if token is None:
                raise AccountError(f"no token with id {token_id}")
            token.revoked_at = token.revoked_at or utcnow()
            _audit(db, "revoke-token", actor, f"{token.prefix}… of {token.user.name}")
        self.forget_credentials()

    # -- authentication --------------------------------------------------------------------

    def authenticate(
        self, username: str, password: str, address: str | None = None
    ) -> Identity | None:
        """The identity for HTTP basic credentials: a password, or ``__token__`` + a token.

        Raises RateLimited when the user name or ``address`` failed too often.
        """
        key = hashlib.sha256(f"{username}\0{password}".encode()).hexdigest()
        cached = self._cached(key)
        if cached is not None:
            return cached
        # Token guesses are limited per address only: a limit on the shared name
        # ``__token__`` would let anyone lock every token out.
        limited_user = None if username == TOKEN_USERNAME else username
        self.limiter.begin(limited_user, address)
        verified = (
            self._by_token(password)
            if username == TOKEN_USERNAME
            else self._by_password(username, password)
        )
        if verified is None:
            return None
        self.limiter.succeeded(limited_user, address)
        return self._remember(key, *verified)

    def login(self, username: str, password: str, address: str | None = None) -> Login | None:
        """Check the admin page's login form; every attempt checked goes to the audit log.

        Raises RateLimited when the user name or ``address`` failed too often.
        """
        self.limiter.begin(username, address)
        with self._database.unit_of_work() as db:
            user = db.scalar(select(User).where(User.name == username))
            stored = user.password_hash if user is not None else None
            accepted = _check_password(stored, password) and user is not None
            db.add(
                AuditEntry(
                    at=utcnow(),
                    action="login" if accepted else "login-failed",
                    project="",
                    actor=username[:100],
                )
            )
            if user is None or not accepted:
                return None
            identity = Identity(user.id, user.name, user.is_admin)
            ticket = f"{user.id}:{_stamp(user.password_hash)}:{user.session_epoch}"
        self.limiter.succeeded(username, address)
        return Login(identity, ticket)

    def identity_for_ticket(self, ticket: str) -> Identity | None:
        """Who a session's ticket stands for, while the user's password and epoch stand."""
        parts = _TICKET.fullmatch(ticket)
        if parts is None:
            return None  # also tickets of before session epochs: those log in again
        user_id, stamp, epoch = parts.groups()
        key = f"ticket:{ticket}"
        cached = self._cached(key)
        if cached is not None:
            return cached

        def recheck(db: Session) -> Identity | None:
            return _user_identity(db, int(user_id), stamp, int(epoch))

        with self._database.unit_of_work() as db:
            identity = recheck(db)
        return self._remember(key, identity, recheck) if identity is not None else None

    def _cached(self, key: str) -> Identity | None:
        """A remembered identity, confirmed against the database if not done lately."""
        now = time.monotonic()
        with self._cache_lock:
            entry = self._cache.get(key)
        if entry is None or entry.expires <= now:
            return None
        if now - entry.checked < AUTH_RECHECK_SECONDS:
            return entry.identity
        with self._database.unit_of_work() as db:
            identity = entry.recheck(db)
        with self._cache_lock:
            if identity is None:
                self._cache.pop(key, None)
                return None
            entry.identity, entry.checked = identity, now
        return identity

    def _remember(
        self, key: str, identity: Identity, recheck: Callable[[Session], Identity | None]
    ) -> Identity:
        now = time.monotonic()
        with self._cache_lock:
            if len(self._cache) >= AUTH_CACHE_ENTRIES:
                self._cache.clear()
            self._cache[key] = _Verified(identity, recheck, now + AUTH_CACHE_SECONDS, now)
        return identity

    def forget_credentials(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    def _by_password(
        self, username: str, password: str
    ) -> tuple[Identity, Callable[[Session], Identity | None]] | None:
        with self._database.unit_of_work() as db:
            user = db.scalar(select(User).where(User.name == username))
            stored = user.password_hash if user is not None else None
            if not _check_password(stored, password) or user is None:
                return None
            user_id, stamp = user.id, _stamp(user.password_hash)
            identity = Identity(user.id, user.name, user.is_admin)
        return identity, lambda db: _user_identity(db, user_id, stamp)

    def _by_token(self, token: str) -> tuple[Identity, Callable[[Session], Identity | None]] | None:
        with self._database.unit_of_work() as db:
            row = db.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(token)))
            if row is None or row.revoked_at is not None:
                _check_password(None, token)  # as slow as a wrong password
                return None
            row.last_used_at = utcnow()
            token_id = row.id
            identity = Identity(row.user.id, row.user.name, row.user.is_admin, row.index)
        return identity, lambda db: _token_identity(db, token_id)


def _user_identity(
    db: Session, user_id: int, stamp: str, epoch: int | None = None
) -> Identity | None:
    """The user, if its password (and, for a session, its epoch) is still the one checked."""
    user = db.get(User, user_id)
    if user is None or _stamp(user.password_hash) != stamp:
        return None
    if epoch is not None and user.session_epoch != epoch:
        return None
    return Identity(user.id, user.name, user.is_admin)


def _token_identity(db: Session, token_id: int) -> Identity | None:
    """The token's user, if the token is not revoked."""
    row = db.execute(
        select(ApiToken.revoked_at, ApiToken.index, User.id, User.name, User.is_admin)
        .join(User)
        .where(ApiToken.id == token_id)
    ).first()
    if row is None or row.revoked_at is not None:
        return None
    return Identity(row.id, row.name, row.is_admin, row.index)


def _audit(db: Session, action: str, actor: str | None, detail: str) -> None:
    if actor is not None:
        db.add(AuditEntry(at=utcnow(), action=action, project="", actor=actor, detail=detail))


def _role(admin: bool) -> str:
    return "admin" if admin else "uploader"


def _stamp(password_hash: str | None) -> str:
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]


@cache
def _decoy_hash() -> str:
    """What an unknown user's password is checked against (made once, at start-up)."""
    return hash_password(secrets.token_urlsafe(16))


def prepare_decoy() -> None:
    """Make the decoy hash now, so the first unknown user costs no more than the next."""
    _decoy_hash()


def _checked(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")
    return password
