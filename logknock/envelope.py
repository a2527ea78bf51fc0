"""The envelope parser: one raw text line → (timestamp, origin, kernel message).

`parse(line, kind)` strips the transport header a log source wrapped around a
kernel message and says who wrote the line, as far as the header can prove:

    kind             what a line looks like                        origin
    kmsg             4,1234,83325088,-;logknock: IN=...            facility 0: kernel, else not
    dmesg            [   83.325088] msg, and every dmesg option     -x kern: kernel; -x other,
                     (-x, -r, -T, -t, -d, --time-format ...)        -r <8>+: not; else unknown
    journal-json     {"MESSAGE": ..., "_TRANSPORT": "kernel", ...}  _TRANSPORT=kernel (and
                                                                    SYSLOG_FACILITY 0): kernel;
                                                                    other transport: not
    journal-message  the bare MESSAGE of a journal entry            kernel if trusted, else unknown
    syslog           Nov 21 05:04:17 host kernel: msg, RFC 3339,    tag kernel: unknown; any
                     RFC 5424, busybox, journalctl -o short*        other tag, or kernel[PID]: not
    ulogd            Nov 21 05:04:17 host logknock:  IN=...         unknown
    auto             any of the above, told apart line by line;     as above; "raw": unknown
                     "raw" for a line with no header we know

A syslog line never proves the kernel wrote it (tag `kernel:` is "unknown"):
any process can send one. A source that only the kernel can fill says so with
`LogRecord.trusted`; only journal-message reads `trusted` here (its text has no
header at all), for the other kinds the caller weighs it against the origin.

kmsg, dmesg -x and journal-json prove "kernel" only if the whole line came from
/dev/kmsg, dmesg or journalctl. Text whose lines a process can write whole (a
`journalctl -o cat` dump, a syslog file with a message-only template) must not
be read as kmsg, dmesg, journal-json or auto: a forged `0,1,2,-;...` is a line.

`parse` never raises for any line; only an unknown `kind` raises ValueError.
A line that yields no message is a `Rejection` with one of these codes:

    no-envelope        the line is not in the form of the kind asked for
    kmsg-continuation  a /dev/kmsg dictionary line (" SUBSYSTEM=net")
    indented           starts with white space: a continuation line of a
                       multi-line entry (journalctl indents them), never
                       judged alone (auto and dmesg)
    bad-json           journal-json: not a JSON object, or MESSAGE of a wrong type
    bad-time           the header's timestamp names no real moment (Feb 30)
    no-message         the envelope holds an empty message (or MESSAGE null)

Auto mode looks at the first character before it tries any pattern, so most
lines meet one or two regexes. A kernel message with nothing around it (dmesg
-t, journalctl -o cat) cannot be told from any other text: "raw", unknown.
"""

from __future__ import annotations

from collections.abc import Callable

from .envelopes import journal, kernel, stamps, syslog
from .envelopes.common import NO_MESSAGE, indented, raw
from .models import Envelope, Rejection

ENVELOPES: tuple[str, ...] = (
    "auto",
    "kmsg",
    "dmesg",
    "journal-json",
    "journal-message",
    "syslog",
    "ulogd",
)

_Parser = Callable[[str, bool, int | None], Envelope | Rejection | None]


def parse(
    line: str, kind: str = "auto", *, trusted: bool = False, year: int | None = None
) -> Envelope | Rejection:
    """Split `line` (decoded, without its line ending) in the envelope `kind`.

    `year` is the year of timestamps that have none (traditional syslog);
    default: the current one, or the last one for a time more than a day ahead.
    `trusted` only matters to journal-message (see the module docstring).
    """
    parser = _PARSERS.get(kind)
    if parser is None:
        raise ValueError(f"unknown envelope kind {kind!r}: expected one of {', '.join(ENVELOPES)}")
    result = parser(line, trusted, year)
    return result if result is not None else Rejection("no-envelope", f"not a {kind} line")


def _auto(line: str, _trusted: bool, year: int | None) -> Envelope | Rejection:
    route = _ROUTES.get(line[:1])
    if route is not None:
        return route(line, year) or raw(line)
    if not line:
        return NO_MESSAGE
    return indented(line) if line[0].isspace() else raw(line)


def _auto_bracket(line: str, year: int | None) -> Envelope | Rejection | None:
    return syslog.monotonic(line) or kernel.dmesg(line, year, header=True)


def _auto_digit(line: str, year: int | None) -> Envelope | Rejection | None:
    if line[4:5] == "-":  # 2026-11-21T05:04:17: dmesg --time-format iso has a comma
        if line[19:20] == ",":
            return kernel.dmesg(line, year, header=True)
        return syslog.parse(line, year)
    return kernel.kmsg(line) or syslog.parse(line, year)


def _auto_upper(line: str, year: int | None) -> Envelope | Rejection | None:
    word = line[:3]
    if word in stamps.MONTHS:
        return syslog.traditional(line, year)
    if word in stamps.WEEKDAYS:
        return syslog.parse(line, year)
    return None


def _auto_angle(line: str, year: int | None) -> Envelope | Rejection | None:
    end = line.find(">", 1, 6)
    if end > 0 and line[end + 1 : end + 3] == "1 ":
        return syslog.rfc5424(line)
    return kernel.dmesg(line, year, header=True)


def _auto_lower(line: str, year: int | None) -> Envelope | Rejection | None:
    return kernel.dmesg(line, year, header=True)  # dmesg -x: "kern  :warn  : "


def _auto_json(line: str, _year: int | None) -> Envelope | Rejection | None:
    return journal.entry(line)


_Route = Callable[[str, int | None], Envelope | Rejection | None]
_ROUTES: dict[str, _Route] = {
    "{": _auto_json,
    "[": _auto_bracket,
    "<": _auto_angle,
    **dict.fromkeys("0123456789", _auto_digit),
    **dict.fromkeys("ABCDEFGHIJKLMNOPQRSTUVWXYZ", _auto_upper),
    **dict.fromkeys("abcdefghijklmnopqrstuvwxyz", _auto_lower),
}

_PARSERS: dict[str, _Parser] = {
    "auto": _auto,
    "kmsg": lambda line, _trusted, _year: kernel.kmsg(line),
    "dmesg": lambda line, _trusted, year: kernel.dmesg(line, year),
    "journal-json": lambda line, _trusted, _year: journal.entry(line),
    "journal-message": lambda line, trusted, _year: journal.message(line, trusted),
    "syslog": lambda line, _trusted, year: syslog.parse(line, year),
    "ulogd": lambda line, _trusted, year: syslog.ulogd(line, year),
}
