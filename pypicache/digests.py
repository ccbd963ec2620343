"""Blob names: a sha256 digest is accepted only as 64 lower-case hex characters.

Blobs are stored under their digest, so a digest is a path (or an object key).
Every digest from outside (an upstream page, its core-metadata hash, a bundle
manifest, an old database row) is checked here before it names anything.
"""

from __future__ import annotations

import re

from pypicache.errors import InvalidDigest

_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_sha256(value: object) -> bool:
    """Whether ``value`` is exactly 64 lower-case hex characters (and so a safe blob name)."""
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def checked_sha256(value: str) -> str:
    """``value`` itself if it is a sha256 hex digest; InvalidDigest otherwise."""
    if not is_sha256(value):
        raise InvalidDigest(f"not a sha256 hex digest: {value!r:.100}")
    return value
