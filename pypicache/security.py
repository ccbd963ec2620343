"""Who is asking (HTTP basic: a password, or ``__token__`` and a token) and what they may do."""

from __future__ import annotations

import base64
import binascii

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.security import Allowed, Denied

from .accounts import Accounts, Identity

READ = "read"
UPLOAD = "upload"
ADMIN = "admin"
REALM = 'Basic realm="pypicache", charset="UTF-8"'


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, separator, password = decoded.partition(":")
    return (username, password) if separator else None


class BasicAuthSecurityPolicy:
    """Pyramid's security policy: identity from basic auth, permissions from roles."""

    def __init__(self, accounts: Accounts, read_auth: bool) -> None:
        self.accounts = accounts
        self.read_auth = read_auth

    def identity(self, request: Request) -> Identity | None:
        credentials = basic_credentials(request.headers.get("Authorization"))
        return self.accounts.authenticate(*credentials) if credentials else None

    def authenticated_userid(self, request: Request) -> str | None:
        identity = request.identity
        return identity.name if identity is not None else None

    def permits(self, request: Request, context: object, permission: str) -> Allowed | Denied:
        identity: Identity | None = request.identity
        if permission == READ and not self.read_auth:
            return Allowed("anonymous reads are allowed")
        if identity is None:
            return Denied("authentication required")
        if permission in (READ, UPLOAD) or identity.is_admin:
            return Allowed(f"{identity.name} may {permission}")
        return Denied(f"{identity.name} may not {permission}")

    def remember(self, request: Request, userid: str, **kw: object) -> list[tuple[str, str]]:
        return []

    def forget(self, request: Request, **kw: object) -> list[tuple[str, str]]:
        return []

    def may_read(self, authorization: str | None) -> bool:
        """For the hot path, which answers outside Pyramid."""
        if not self.read_auth:
            return True
        credentials = basic_credentials(authorization)
        return credentials is not None and self.accounts.authenticate(*credentials) is not None


def includeme(config: Configurator) -> None:
    settings = config.registry["pypicache.settings"]
    accounts = Accounts(config.registry["dbsession_factory"])
    policy = BasicAuthSecurityPolicy(accounts, settings.read_auth)
    config.registry["accounts"] = accounts
    config.registry["security_policy"] = policy
    config.set_security_policy(policy)
