"""Users and API tokens: scrypt password hashes, tokens kept only as hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache

import transaction
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from .db import get_tm_session
from .errors import AccountError
from .index import utcnow
from .models import ApiToken, AuditEntry, User

TOKEN_USERNAME = "__token__"  # noqa: S105 - the conventional user name, not a secret
TOKEN_PREFIX = "pypicache-"  # noqa: S105 - marks our tokens in logs and scanners
MIN_PASSWORD_LENGTH = 8
# Verified credentials are remembered this long, so pip's request-per-file does
# not pay for a memory-hard hash every time.  Revocation clears it in-process.
AUTH_CACHE_SECONDS = 60.0
_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


@dataclass(frozen=True)
class Identity:
    user_id: int
    name: str
    is_admin: bool


@dataclass(frozen=True)
class Login:
    """A password accepted by the admin page's login form."""

    identity: Identity
    # What the session keeps: the user's id and a stamp of the password hash, so a new
    # password ends every session of the old one.
    ticket: str


@dataclass(frozen=True)
class TokenInfo:
    id: int
    user: str
    prefix: str
    description: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


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


def token_hash(token: str) -> str:
    # Tokens are 256 random bits: a fast hash is enough, and lets us look them up.
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._session_factory = session_factory
        self._cache: dict[str, tuple[Identity, float]] = {}
        self._cache_lock = threading.Lock()

    @contextmanager
    def _unit_of_work(self) -> Iterator[Session]:
        manager = transaction.TransactionManager(explicit=True)
        with manager:
            yield get_tm_session(self._session_factory, manager)

    # -- users -----------------------------------------------------------------------------

    # Changes made on the admin page name their ``actor`` and go to the audit log.

    def add_user(
        self, name: str, password: str | None, *, admin: bool = False, actor: str | None = None
    ) -> None:
        if not _USER_NAME.match(name) or name == TOKEN_USERNAME:
            raise AccountError(f"invalid user name {name!r}: letters, digits, '.', '_', '-'")
        with self._unit_of_work() as db:
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
        with self._unit_of_work() as db:
            self._user(db, name).password_hash = hash_password(_checked(password))
            _audit(db, "set-password", actor, name)
        self.forget_credentials()

    def set_admin(self, name: str, admin: bool, *, actor: str | None = None) -> None:
        with self._unit_of_work() as db:
            self._user(db, name).is_admin = admin
            _audit(db, "set-role", actor, f"{name}: {_role(admin)}")
        self.forget_credentials()

    def users(self) -> list[tuple[str, bool, datetime]]:
        with self._unit_of_work() as db:
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
        self, name: str, description: str | None = None, *, actor: str | None = None
    ) -> str:
        """A new token for user ``name``; the only time it is ever seen."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        prefix = token[: len(TOKEN_PREFIX) + 6]
        with self._unit_of_work() as db:
            user = self._user(db, name)
            db.add(
                ApiToken(
                    user_id=user.id,
                    token_hash=token_hash(token),
                    prefix=prefix,
                    description=description,
                    created_at=utcnow(),
                )
            )
            _audit(db, "create-token", actor, f"{prefix}… for {name}")
        return token

    def tokens(self, name: str | None = None) -> list[TokenInfo]:
        with self._unit_of_work() as db:
            query = select(ApiToken, User.name).join(User).order_by(ApiToken.id)
            if name is not None:
                query = query.where(User.name == name)
            return [
                TokenInfo(
                    t.id, user, t.prefix, t.description, t.created_at, t.last_used_at, t.revoked_at
                )
                for t, user in db.execute(query)
            ]

    def revoke_token(self, token_id: int, *, actor: str | None = None) -> None:
        with self._unit_of_work() as db:
            token = db.get(ApiToken, token_id)
            if token is None:
                raise AccountError(f"no token with id {token_id}")
            token.revoked_at = token.revoked_at or utcnow()
            _audit(db, "revoke-token", actor, f"{token.prefix}… of {token.user.name}")
        self.forget_credentials()

    # -- authentication --------------------------------------------------------------------

    def authenticate(self, username: str, password: str) -> Identity | None:
        """The identity for HTTP basic credentials: a password, or ``__token__`` + a token."""
        key = hashlib.sha256(f"{username}\0{password}".encode()).hexdigest()
        return self._cached(
            key,
            lambda: (
                self._by_token(password)
                if username == TOKEN_USERNAME
                else self._by_password(username, password)
            ),
        )

    def login(self, username: str, password: str) -> Login | None:
        """Check the admin page's login form; every attempt goes to the audit log."""
        with self._unit_of_work() as db:
            user = db.scalar(select(User).where(User.name == username))
            # An unknown name costs the same scrypt as a wrong password: no user enumeration.
            stored = user.password_hash if user is not None else _decoy_hash()
            accepted = verify_password(stored, password)
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
            return Login(identity, f"{user.id}:{_stamp(user.password_hash)}")

    def identity_for_ticket(self, ticket: str) -> Identity | None:
        """Who a session's ticket stands for, while the user and its password are unchanged."""
        user_id, _, stamp = ticket.partition(":")
        if not user_id.isdigit():
            return None

        def look_up() -> Identity | None:
            with self._unit_of_work() as db:
                user = db.get(User, int(user_id))
                if user is None or _stamp(user.password_hash) != stamp:
                    return None
                return Identity(user.id, user.name, user.is_admin)

        return self._cached(f"ticket:{ticket}", look_up)

    def _cached(self, key: str, look_up: Callable[[], Identity | None]) -> Identity | None:
        now = time.monotonic()
        with self._cache_lock:
            cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        identity = look_up()
        if identity is not None:
            with self._cache_lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[key] = (identity, now + AUTH_CACHE_SECONDS)
        return identity

    def forget_credentials(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    def _by_password(self, username: str, password: str) -> Identity | None:
        with self._unit_of_work() as db:
            user = db.scalar(select(User).where(User.name == username))
            if user is None or not verify_password(user.password_hash, password):
                return None
            return Identity(user.id, user.name, user.is_admin)

    def _by_token(self, token: str) -> Identity | None:
        with self._unit_of_work() as db:
            row = db.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(token)))
            if row is None or row.revoked_at is not None:
                return None
            row.last_used_at = utcnow()
            return Identity(row.user.id, row.user.name, row.user.is_admin)


def _audit(db: Session, action: str, actor: str | None, detail: str) -> None:
    if actor is not None:
        db.add(AuditEntry(at=utcnow(), action=action, project="", actor=actor, detail=detail))


def _role(admin: bool) -> str:
    return "admin" if admin else "uploader"


def _stamp(password_hash: str | None) -> str:
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]


@cache
def _decoy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def _checked(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")
    return password
