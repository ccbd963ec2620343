"""PEP 691 content negotiation: which rendering of a simple page an Accept header gets."""

from __future__ import annotations

import re
from functools import lru_cache

from pypicache.cache.rendering import HTML_TYPE, JSON_TYPE, TEXT_HTML

# Ties go to the most expressive format, text/html is the last resort (PEP 691).
OFFERS = (JSON_TYPE, HTML_TYPE, TEXT_HTML)
_LATEST = {
    "application/vnd.pypi.simple.latest+json": JSON_TYPE,
    "application/vnd.pypi.simple.latest+html": HTML_TYPE,
}


@lru_cache(maxsize=512)
def select_media_type(accept: str | None) -> str | None:
    """The media type to send, or None when nothing is acceptable (406).

    No Accept header, or one that only says ``*/*``, gets text/html like PyPI
    gives it: that is what browsers, curl and old tools expect.  Cached per
    header value, because pip and uv send the same few strings every time.
    """
    ranges = _parse(accept or "")
    if not ranges or all(media == "*/*" for media, _ in ranges):
        return TEXT_HTML if all(q > 0 for _, q in ranges) else None
    best, best_q = None, 0.0
    for offer in OFFERS:
        q = _quality(offer, ranges)
        if q > best_q:
            best, best_q = offer, q
    return best


def _parse(header: str) -> list[tuple[str, float]]:
    ranges = []
    for item in header.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        media = media.lower()
        if not media or "/" not in media:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                q = _qvalue(value.strip())
        ranges.append((_LATEST.get(media, media), q))
    return ranges


_QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?", re.ASCII)


def _qvalue(text: str) -> float:
    """RFC 9110's qvalue; anything else (``nan``, ``1e9``, non-ASCII digits) means 0."""
    return float(text) if _QVALUE.fullmatch(text) else 0.0


def _quality(offer: str, ranges: list[tuple[str, float]]) -> float:
    """The q of the most specific range matching ``offer`` (RFC 9110 section 12.5.1)."""
    kind = offer.split("/", 1)[0]
    best_specificity, q = -1, 0.0
    for media, quality in ranges:
        if media == offer:
            specificity = 2
        elif media == f"{kind}/*":
            specificity = 1
        elif media == "*/*":
            specificity = 0
        else:
            continue
        if specificity > best_specificity:
            best_specificity, q = specificity, quality
    return q


@lru_cache(maxsize=512)
def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding header takes gzip (RFC 9110 section 12.5.3).

    ``gzip`` (or its old alias ``x-gzip``) with a q above 0, or ``*`` above 0 when
    gzip is not named: ``gzip;q=0`` refuses it whatever ``*`` says.  No header means
    the identity coding, like curl without ``--compressed``.
    """
    named: float | None = None
    anything: float | None = None
    for item in (accept_encoding or "").split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        coding = coding.lower()
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                q = _qvalue(value.strip())
        if coding in ("gzip", "x-gzip"):
            named = q if named is None else max(named, q)
        elif coding == "*":
            anything = q
    if named is not None:
        return named > 0
    return anything is not None and anything > 0
