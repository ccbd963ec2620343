"""Durations and moments as people and RFC 3339 spell them: the values rules are made of."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from pypicache.errors import PypicacheError


class BadTime(PypicacheError, ValueError):
    """A duration or a moment that cannot be read; the message says what was expected."""


# Bounded digits: a huge number is refused, never handed to int() or timedelta.
_SHORT = re.compile(r"([0-9]{1,6})([wdhms])", re.ASCII)
_SHORTS = re.compile(r"(?:[0-9]{1,6}[wdhms]){1,5}", re.ASCII)
_ISO = re.compile(
    r"P(?:([0-9]{1,6})W)?(?:([0-9]{1,6})D)?"
    r"(?:T(?:([0-9]{1,6})H)?(?:([0-9]{1,6})M)?(?:([0-9]{1,6})S)?)?",
    re.ASCII,
)
_UNITS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
# Longer than any sensible cooldown, short enough that now + it is always a datetime.
MAX_DURATION = timedelta(days=3_650)
DURATION_HELP = "a duration such as 7d, 36h, 90m, 1d12h or P7D (0: off)"


def parse_duration(text: str) -> timedelta:
    """``7d``, ``36h``, ``90m``, ``1d12h``, ``P7D``, ``PT36H``; ``0`` is none."""
    value = text.strip()
    if value == "0":
        return timedelta(0)
    seconds: int | None = None
    iso = _ISO.fullmatch(value.upper())
    if _SHORTS.fullmatch(value):
        seconds = sum(int(n) * _UNITS[unit] for n, unit in _SHORT.findall(value))
    elif iso is not None and any(iso.groups()) and not value.upper().endswith("T"):
        weeks, days, hours, minutes, secs = (int(g or 0) for g in iso.groups())
        seconds = weeks * 604_800 + days * 86_400 + hours * 3_600 + minutes * 60 + secs
    if seconds is None:
        raise BadTime(f"{value!r:.40} is not {DURATION_HELP}")
    duration = timedelta(seconds=seconds)
    if duration > MAX_DURATION:
        raise BadTime(f"{value!r:.40} is longer than {MAX_DURATION.days} days")
    return duration


def format_duration(duration: timedelta) -> str:
    """The short spelling ``parse_duration`` reads back (``0`` when off)."""
    seconds = int(duration.total_seconds())
    if seconds == 0:
        return "0"
    parts = []
    for unit in ("d", "h", "m", "s"):
        count, seconds = divmod(seconds, _UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?"
    r"(Z|z|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)


def parse_moment(text: str) -> datetime:
    """An RFC 3339 time with its offset (``2026-12-01T00:00:00Z``), as naive UTC."""
    value = text.strip()
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise BadTime(f"{value!r:.40} is not an RFC 3339 time such as 2026-12-01T00:00:00Z")
    fraction = (match.group(7) or ".0")[1:7].ljust(6, "0")
    offset = match.group(8).upper()
    try:
        moment = datetime.fromisoformat(
            f"{value[:10]}T{value[11:19]}.{fraction}{'+00:00' if offset == 'Z' else offset}"
        )
        return moment.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise BadTime(f"{value!r:.40} is no time that exists") from None


def format_moment(moment: datetime) -> str:
    """Naive UTC as RFC 3339, to the second: what a reason names and a client can parse."""
    return moment.replace(microsecond=0).isoformat() + "Z"
