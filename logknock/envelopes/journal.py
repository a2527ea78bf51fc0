"""Journal entries: a `journalctl -o json` line, or the bare MESSAGE of an entry.

Only journald's own fields say who wrote an entry: clients cannot set fields
that start with "_". `_TRANSPORT=kernel` means journald read the entry from
/dev/kmsg, where a process (root) can write too; journald then stores the
record's facility, never 0 for a process, in SYSLOG_FACILITY (old journald
versions store it only when it is not 0). SYSLOG_IDENTIFIER, PRIORITY and, on
the other transports, SYSLOG_FACILITY are whatever the client sent.
"""

from __future__ import annotations

import json
from json.scanner import make_scanner

from ..models import Envelope, Origin, Rejection
from .common import NO_MESSAGE, Result


def entry(line: str) -> Result:
    """One `journalctl -o json` object."""
    try:
        fields = _loads(line)
    except (ValueError, RecursionError) as exc:
        return Rejection("bad-json", str(exc)[:200])
    if not isinstance(fields, dict):
        return Rejection("bad-json", f"a JSON {type(fields).__name__}, not an object")
    message = _message(fields.get("MESSAGE"))
    if isinstance(message, Rejection):
        return message
    origin, note = _origin(fields)
    return Envelope("journal-json", origin, message, _realtime(fields), note=note)


# What json.loads runs, in C where it can (typeshed types the context oddly).
_scan = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
_SPACE = " \t\n\r"  # JSON's white space


def _loads(line: str) -> object:
    """`json.loads(line)` without its layers of Python (replay reads every journal
    line through here): the same value, or ValueError where json.loads raises one."""
    start = len(line) - len(line.lstrip(_SPACE))
    try:
        value, end = _scan(line, start)
    except StopIteration as stop:
        raise json.JSONDecodeError("Expecting value", line, stop.value) from None
    if line[end:].strip(_SPACE):
        raise json.JSONDecodeError("Extra data", line, end)
    return value


def message(line: str, trusted: bool) -> Result:
    """The bare MESSAGE of an entry; `trusted`: the source read it with _TRANSPORT=kernel."""
    if not line:
        return NO_MESSAGE
    if trusted:
        return Envelope("journal-message", Origin.KERNEL, line, note="journal kernel entry")
    return Envelope("journal-message", Origin.UNKNOWN, line, note="journal MESSAGE alone")


def _message(value: object) -> str | Rejection:
    """MESSAGE is text, a byte array (not UTF-8 or has control characters) or null."""
    if isinstance(value, list) and all(type(b) is int and 0 <= b < 256 for b in value):
        value = bytes(value).decode("utf-8", "replace")
    if value is None or value == "":
        return NO_MESSAGE
    if not isinstance(value, str):
        return Rejection("bad-json", f"MESSAGE is a JSON {type(value).__name__}")
    return value


def _origin(fields: dict[str, object]) -> tuple[Origin, str]:
    transport = fields.get("_TRANSPORT")
    if transport is None:
        return Origin.UNKNOWN, "no _TRANSPORT"
    if transport != "kernel":
        return Origin.NOT_KERNEL, f"_TRANSPORT={_short(transport)}"
    facility = fields.get("SYSLOG_FACILITY", "0")
    if facility != "0":
        return Origin.NOT_KERNEL, (
            f"_TRANSPORT=kernel, SYSLOG_FACILITY={_short(facility)}: a process wrote /dev/kmsg"
        )
    return Origin.KERNEL, "_TRANSPORT=kernel"


def _realtime(fields: dict[str, object]) -> float | None:
    value = fields.get("__REALTIME_TIMESTAMP")
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        return int(value) / 1e6
    return None


def _short(value: object) -> str:
    return str(value)[:40]
