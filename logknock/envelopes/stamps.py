"""Timestamps as log envelopes print them, turned into seconds.

Wall-clock forms become seconds since the epoch; a form without a UTC offset
is local time (the zone of this process, as `time.tzset` left it). Forms
without a year take the `year` given, or else the current year, and the
previous one when that would put the line more than a day in the future.
Every parser raises `BadTime` for text that names no real moment.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import time

MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
WEEKDAYS = frozenset(("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"))
UTC_NAMES = frozenset(("UTC", "GMT", "Z", "UT"))
FUTURE_SLACK = 86400.0

# 2026-11-21T05:04:17.123456+00:00, also with "," (dmesg), "+0000", "Z" or no zone.
_ISO = re.compile(
    r"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d):(\d\d)(?:[.,](\d{1,9}))?(Z|[+-]\d\d:?\d\d)?",
    re.ASCII,
)


_Parts = tuple[int, int, int, int, int, int]


class BadTime(ValueError):
    """A timestamp that names no real moment (February 30, hour 25, ...)."""


def fraction_of(digits: str | None) -> float:
    return int(digits) / 10 ** len(digits) if digits else 0.0


def _moment(parts: _Parts, offset: int | None) -> float:
    """Epoch seconds of (y, m, d, H, M, S); `offset` seconds east of UTC, None: local."""
    secs = parts[5]
    if not 0 <= secs <= 59:
        raise BadTime(f"no such time: {parts}")
    local = _local_zone() if offset is None else None
    return _minute(parts[:5], offset, local) + secs


def _local_zone() -> object:
    """What the local zone is now: part of the cache keys, so `time.tzset` starts afresh."""
    return (time.timezone, time.altzone, time.tzname)


@functools.lru_cache(maxsize=256)
def _minute(start: tuple[int, int, int, int, int], offset: int | None, _local: object) -> float:
    """The first second of a minute. Log lines come in order: most lines hit this cache."""
    zone = None if offset is None else dt.UTC
    try:
        moment = dt.datetime(*start, tzinfo=zone).timestamp()
    except (ValueError, OverflowError, OSError) as exc:
        raise BadTime(f"no such time: {start}") from exc
    return moment - (offset or 0)


def _clock(text: str) -> tuple[int, int, int]:
    """'05:04:17' or '05:04' as (hours, minutes, seconds)."""
    return int(text[0:2]), int(text[3:5]), int(text[6:8] or 0)


def _month(name: str) -> int:
    month = MONTHS.get(name)
    if month is None:
        raise BadTime(f"no month {name!r}")
    return month


def yearless(
    month: str,
    day: int,
    clock: str,
    fraction: str | None,
    year: int | None,
    *,
    now: float | None = None,
) -> float:
    """'Nov 21 05:04:17.123456' (traditional syslog): local time in `year` or a guessed one."""
    date = (_month(month), day, *_clock(clock))
    if year is not None:
        return _moment((year, *date), None) + fraction_of(fraction)
    now = time.time() if now is None else now
    this_year = time.localtime(now).tm_year
    try:
        at = _moment((this_year, *date), None)
    except BadTime:  # February 29 of the last leap year
        at = now + 2 * FUTURE_SLACK
    if at > now + FUTURE_SLACK:
        at = _moment((this_year - 1, *date), None)
    return at + fraction_of(fraction)


def iso(text: str) -> float:
    """RFC 3339 / ISO 8601: with '.' or ',' before the fraction, 'Z', '+hh:mm' or '+hhmm'."""
    m = _ISO.fullmatch(text)
    if m is None:
        raise BadTime(f"not an ISO 8601 time: {text!r}")
    secs = int(m[2])
    if secs > 59:
        raise BadTime(f"no such time: {text!r}")
    local = _local_zone() if m[4] is None else None
    return _iso_minute(m[1], m[4], local) + secs + fraction_of(m[3])


@functools.lru_cache(maxsize=256)
def _iso_minute(start: str, zone: str | None, _local: object) -> float:
    """'2026-11-21T05:04' in `zone` ('Z', '+01:00', '-0500'; None: local, as `_local` says)."""
    parts = (int(start[0:4]), int(start[5:7]), int(start[8:10]), int(start[11:13]))
    offset = None if zone is None else _offset(zone)
    return _moment((*parts, int(start[14:16]), 0), offset)


def _offset(zone: str) -> int:
    """Seconds east of UTC of 'Z', '+01:00' or '-0500'."""
    if zone == "Z":
        return 0
    hours, mins = int(zone[1:3]), int(zone[-2:])
    if hours > 23 or mins > 59:
        raise BadTime(f"no such UTC offset: {zone!r}")
    return (1 if zone[0] == "+" else -1) * (hours * 3600 + mins * 60)


def ctime(text: str) -> float:
    """'Sat Nov 21 05:04:17 2026' (dmesg -T, busybox logread): local time."""
    _weekday, month, day, clock, year = text.split()
    return _moment((int(year), _month(month), int(day), *_clock(clock)), None)


def minute(text: str, year: int | None) -> float:
    """'Nov21 05:04' (dmesg --time-format reltime): local time, to the minute."""
    return yearless(text[:3], int(text[3:5]), text[6:11], None, year)


def full(date: str, clock: str, zone: str) -> float:
    """'2026-11-21', '05:04:17', 'UTC' (journalctl -o short-full): UTC or local time."""
    offset = 0 if zone in UTC_NAMES else None
    parts = (int(date[0:4]), int(date[5:7]), int(date[8:10]), *_clock(clock))
    return _moment(parts, offset)
