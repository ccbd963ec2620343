"""The upstreams in priority order, and the routes that tie project names to one of them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

# The name of the one upstream of ``pypicache.upstream_url``; the URLs /u/<name>/ use it.
DEFAULT_UPSTREAM = "pypi"
UPSTREAM_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
NAME_LENGTH = 63
# What a pattern on normalized names may hold: name characters and fnmatch's own.
_PATTERN = re.compile(r"[a-z0-9*?!\[\]-]+")
_SEPARATORS = re.compile(r"[-_.]+")


@dataclass(frozen=True)
class Upstream:
    """One configured upstream: its name, its simple index URL (None: nothing to ask) and
    the XML-RPC changelog its follower tries first (None: none)."""

    name: str
    url: str | None
    changelog_url: str | None = None


@dataclass(frozen=True)
class Route:
    """Projects whose normalized name matches ``pattern`` come from ``upstream`` only."""

    pattern: str
    upstream: str

    def matches(self, name: str) -> bool:
        return fnmatchcase(name, self.pattern)


def route_for(routes: Sequence[Route], name: str) -> str | None:
    """The upstream the first matching route names, or None: any upstream, by priority."""
    for route in routes:
        if route.matches(name):
            return route.upstream
    return None


def valid_upstream_name(name: str) -> bool:
    return len(name) <= NAME_LENGTH and UPSTREAM_NAME.fullmatch(name) is not None


def normalize_pattern(pattern: str) -> str | None:
    """The pattern as normalized names spell it (PEP 503), or None when it cannot match one."""
    normalized = _SEPARATORS.sub("-", pattern.lower())
    return normalized if _PATTERN.fullmatch(normalized) else None
