"""Small HTTP helpers shared by the views and the hot path: validators and byte ranges."""

from __future__ import annotations

import re
from dataclasses import dataclass


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 section 13.1.2)."""
    if not if_none_match:
        return False
    opaque = etag.removeprefix("W/")
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == opaque:
            return True
    return False


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class Unsatisfiable(Exception):
    """The Range cannot be served from a file of this size (416)."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single byte range to send, or None to send the whole file.

    Only RFC 9110's grammar counts: ASCII digits (``str.isdigit`` and ``int`` also take
    Arabic-Indic or fullwidth ones), no signs, no inner whitespace; anything else is an
    invalid header, ignored (the whole file).  Multiple ranges are answered with the whole
    file (allowed, and simpler than multipart/byteranges); a suffix longer than the file
    means the whole file (RFC 9110 section 14.1.3, where WebOb answers 416).  Numbers of
    any length are compared without ``int()``, which refuses more than 4300 digits.
    """
    if not header:
        return None
    unit, equals, spec = header.partition("=")
    if not equals or not unit.isascii() or unit.lower() != "bytes":
        return None
    spec = spec.strip(_OWS)
    if "," in spec:
        return None
    match = _RANGE_SPEC.fullmatch(spec)
    if match is None:
        return None
    first, last = (_digits(group) for group in match.groups())
    if first is None:
        if last is None:
            return None  # "bytes=-"
        if last == "0" or size == 0:
            raise Unsatisfiable
        return ByteRange(size - _capped(last, size), size - 1)
    if last is not None and _less(last, first):
        return None  # syntactically invalid: ignore the header
    if not _less(first, str(size)):
        raise Unsatisfiable
    end = size - 1 if last is None else _capped(last, size - 1)
    return ByteRange(int(first), end)


_OWS = " \t"
_RANGE_SPEC = re.compile(r"([0-9]*)-([0-9]*)", re.ASCII)


def _digits(text: str) -> str | None:
    """ASCII digits without leading zeros ("0" stays), or None for an empty position."""
    if not text:
        return None
    return text.lstrip("0") or "0"


def _less(left: str, right: str) -> bool:
    """``int(left) < int(right)`` for digit strings without leading zeros, of any length."""
    return (len(left), left) < (len(right), right)


def _capped(digits: str, cap: int) -> int:
    """``min(int(digits), cap)`` without converting a huge number."""
    return cap if not _less(digits, str(cap)) else int(digits)
