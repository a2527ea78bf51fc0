"""Durations as the configuration writes them: "500ms", "5s", "2m", "1h", "1d", "1h30m".

Units go from the largest to the smallest, each at most once, without spaces
between them; a number may have a fraction ("1.5h"). A bare number, or text
holding only a number, counts seconds. Values are float seconds.
"""

from __future__ import annotations

import math
import re

_NUMBER = r"\d+(?:\.\d+)?"
_DURATION = re.compile(
    rf"(?:(?P<d>{_NUMBER})d)?(?:(?P<h>{_NUMBER})h)?(?:(?P<m>{_NUMBER})m(?!s))?"
    rf"(?:(?P<s>{_NUMBER})s)?(?:(?P<ms>{_NUMBER})ms)?"
)
_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_HINT = "write it like 500ms, 5s, 2m, 1h, 1d or 1h30m"


def parse_duration(text: str | int | float) -> float:
    """Seconds in `text`; raise ValueError saying what is wrong."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"expected a duration, not {type(text).__name__} ({_HINT})")
    if isinstance(text, str):
        return _parse_text(text.strip())
    if not math.isfinite(text) or text < 0:
        raise ValueError(f"{text} is not a duration: it must be a finite number of seconds >= 0")
    return float(text)


def _parse_text(text: str) -> float:
    if re.fullmatch(_NUMBER, text):
        return float(text)
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"'{text}' is not a duration ({_HINT})")
    parts = match.groupdict()
    return sum(float(value) * _SECONDS[unit] for unit, value in parts.items() if value)


def format_duration(seconds: float) -> str:
    """The shortest text `parse_duration` reads back as `seconds` (to the millisecond)."""
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    text = ""
    for unit in ("d", "h", "m", "s", "ms"):
        size = round(_SECONDS[unit] * 1000)
        count, millis = divmod(millis, size)
        text += f"{count}{unit}" if count else ""
    return text
