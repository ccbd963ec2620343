"""Project names: the valid format and the normalized form (the name-normalization spec)."""

from __future__ import annotations

import re

from pypicache.errors import InvalidName

_VALID = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])\Z", re.IGNORECASE)
_SEPARATORS = re.compile(r"[-_.]+")


def normalize_project(name: str) -> str:
    """The normalized name; InvalidName for anything that is not a project name at all.

    Checked before any upstream URL is built from it, so ``..%2f`` and friends
    never reach the upstream.
    """
    if not _VALID.match(name):
        raise InvalidName(f"not a valid project name: {name!r}")
    return _SEPARATORS.sub("-", name).lower()
