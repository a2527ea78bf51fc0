"""Converters for single configuration values.

Each takes the value YAML produced and returns what the schema holds, or
raises ValueError with a message for the operator. None of them knows where
the value came from: the reader adds file:line:column.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .durations import parse_duration
from .schema import TCP_FLAGS, PortSpec, Step

PROTOCOLS = ("tcp", "udp")
MAX_PREFIX = 127  # nft's limit; iptables keeps only 29 (a warning in `check`)
_STEP = re.compile(r"(?P<port>[^/:\s]+)/(?P<proto>[^:\s]*)(?::(?P<flags>.*))?", re.DOTALL)
_KNOCKD_STEP = re.compile(r"\d+:(?:tcp|udp)", re.IGNORECASE)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_PACK = re.compile(r"[a-z0-9][a-z0-9_-]*(?:@[0-9][0-9A-Za-z.+-]*)?")
_TYPE_NAMES = {bool: "true/false", int: "a number", float: "a number", str: "text"}
_TYPE_NAMES |= {list: "a list", dict: "a mapping", type(None): "nothing"}


def describe(value: object) -> str:
    """How to name a value's type in a message: "a number", "a list"."""
    return _TYPE_NAMES.get(type(value), f"a {type(value).__name__}")


def text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, not {describe(value)}")
    if not value:
        raise ValueError("must not be empty")
    return value


def boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, not {describe(value)}")
    return value


def integer(low: int, high: int | None = None) -> Callable[[object], int]:
    """A converter for whole numbers from `low` to `high` (no upper bound if None)."""

    def convert(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a whole number, not {describe(value)}")
        if value < low or (high is not None and value > high):
            bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise ValueError(f"{value} is out of range: must be {bounds}")
        return value

    return convert


def duration(minimum: float, *, strict: bool = True) -> Callable[[object], float]:
    """A converter for durations above `minimum` (or equal to it when not strict)."""

    def convert(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"expected a duration like 5s, not {describe(value)}")
        seconds = parse_duration(value)
        if seconds < minimum or (strict and seconds == minimum):
            limit = "more than" if strict else "at least"
            raise ValueError(f"{value} is too short: must be {limit} {minimum:g}s")
        return seconds

    return convert


def parse_port(word: str) -> int:
    if not word.isascii() or not word.isdigit():
        raise ValueError(f"'{word}' is not a port number")
    if not 1 <= int(word) <= 65535:
        raise ValueError(f"port {int(word)} is out of range: ports go from 1 to 65535")
    return int(word)


def parse_proto(word: str) -> str:
    if word.lower() not in PROTOCOLS:
        raise ValueError(f"unknown protocol '{word}': use tcp or udp")
    return word.lower()


def protocol(value: object) -> str:
    return parse_proto(text(value))


def step(value: object) -> Step:
    """`parse_step` for a value of any type."""
    if not isinstance(value, str):
        raise ValueError(f"expected a step like 7000/udp, not {describe(value)}")
    return parse_step(value)


def parse_step(text: str) -> Step:
    """A knock step: "7000/udp", "9000/tcp", "9000/tcp:syn,!ack" (flags for tcp only)."""
    match = _STEP.fullmatch(text.strip())
    if match is None:
        raise ValueError(_step_hint(text.strip()))
    port, proto = parse_port(match["port"]), parse_proto(match["proto"])
    if match["flags"] is None:
        return Step(port, proto)
    if proto != "tcp":
        raise ValueError(f"'{text}': flags are only for tcp steps")
    required, forbidden = _parse_flags(match["flags"])
    return Step(port, proto, required, forbidden)


def _step_hint(text: str) -> str:
    if _KNOCKD_STEP.fullmatch(text):
        port, proto = text.split(":")
        return f"'{text}' is knockd's spelling: write {port}/{proto.lower()}"
    return f"'{text}' is not a knock step: write PORT/PROTO like 7000/udp or 9000/tcp:syn,!ack"


def _parse_flags(text: str) -> tuple[frozenset[str], frozenset[str]]:
    required: set[str] = set()
    forbidden: set[str] = set()
    for word in (part.strip() for part in text.split(",")):
        name = word.removeprefix("!").strip().upper()
        if name not in TCP_FLAGS:
            known = ", ".join(flag.lower() for flag in TCP_FLAGS)
            raise ValueError(f"unknown TCP flag '{word}' (flags are {known}, '!' negates)")
        if name in required | forbidden:
            raise ValueError(f"TCP flag {name.lower()} is named twice")
        (forbidden if word.startswith("!") else required).add(name)
    return frozenset(required), frozenset(forbidden)


def parse_port_spec(value: object) -> PortSpec:
    """A port a grant opens: "22/tcp"."""
    if not isinstance(value, str) or "/" not in value:
        shown = f"'{value}'" if isinstance(value, str | int) else describe(value)
        raise ValueError(f"{shown} is not a port: write PORT/PROTO like 22/tcp")
    port, _, proto = value.strip().partition("/")
    return PortSpec(parse_port(port), parse_proto(proto))


def parse_port_range(value: object) -> tuple[int, int]:
    """A range of at least two ports: "20000-29999"."""
    low, sep, high = value.partition("-") if isinstance(value, str) else ("", "", "")
    if not sep:
        raise ValueError(f"expected a port range like 20000-29999, not {describe(value)}")
    first, last = parse_port(low.strip()), parse_port(high.strip())
    if last <= first:
        raise ValueError(f"'{value}' is not a range: the first port must be lower than the last")
    return first, last


def sequence_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"'{value}' is not a usable sequence name: use letters, digits, '-' and '_' "
            "(64 at most, not starting with '-' or '_')"
        )
    return value


def prefix(value: object) -> str:
    """The log prefix: printable ASCII, no quotes or backslash, not `IN=`."""
    found = text(value)
    if len(found) > MAX_PREFIX:
        raise ValueError(f"is {len(found)} characters long; nft allows {MAX_PREFIX} at most")
    bad = sorted({c for c in found if not " " <= c <= "~" or c in "\"'\\"})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise ValueError(f"must be printable ASCII without quotes or backslashes (has {shown})")
    if "IN=" in found:
        raise ValueError("must not contain 'IN=': the kernel writes it right after the prefix")
    return found


def pack(value: object) -> str:
    found = text(value)
    if not _PACK.fullmatch(found):
        raise ValueError(f"'{found}' is not a pack name: write NAME or NAME@VERSION")
    return found


def hook(value: object) -> str:
    found = text(value)
    if found in (".", "..") or found.endswith("/"):
        raise ValueError(f"'{found}' is not a hook: name a file in hooks_dir, or a path")
    return found


def choice(*choices: str) -> Callable[[object], str]:
    def convert(value: object) -> str:
        if value not in choices:
            raise ValueError(f"'{value}' is not one of {', '.join(choices)}")
        return str(value)

    return convert
