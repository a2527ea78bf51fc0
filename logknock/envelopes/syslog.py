"""Syslog text: syslog daemons' files, journalctl's short outputs, ulogd's LOGEMU files.

Nothing in a syslog line proves the kernel wrote it: any process can send a
datagram with facility kern and tag "kernel" (see LAB-NOTES). The tag can prove
the opposite: another tag, or "kernel[PID]" (journald adds the PID of a client
process; kernel entries have none), means a process wrote the line.

After the timestamp comes `HOST [facility.level ]TAG[[PID]]: MESSAGE`:

    Nov 21 05:04:17 host kernel: [ 83.325088] msg  rsyslog traditional, syslog-ng,
                                                   journalctl -o short, busybox syslogd
    Nov 21 05:04:17.123456 host kernel: msg        journalctl -o short-precise
    2026-11-21T05:04:17.123456+00:00 host ...      RFC 3339: rsyslog default, syslog-ng
                                                   ts_format(iso), journalctl -o short-iso*
    Sat 2026-11-21 05:04:17 UTC host ...           journalctl -o short-full
    [   83.325088] host kernel: msg                journalctl -o short-monotonic
    1795237459.920000 host kernel: msg             journalctl -o short-unix
    Sat Nov 21 05:04:17 2026 kern.warn kernel: msg busybox / OpenWrt logread (no host)
    <4>1 2026-11-21T05:04:17Z host kernel - - - msg  RFC 5424

ulogd2's LOGEMU writes `Nov 21 05:04:17 host PREFIX IN=...`: no tag, the
nflog prefix, one space ulogd adds (removed here), then the packet fields.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ..models import Clock, Envelope, Origin, Rejection
from . import stamps
from .common import FACILITIES, LEVELS, NO_MESSAGE, TEXT_FILE, Result, strip_kernel_stamp

_FRACTION = r"(?:\.(\d{1,9}))?"
_TRADITIONAL = re.compile(rf"([A-Z][a-z]{{2}}) ([ \d]\d) (\d\d:\d\d:\d\d){_FRACTION} ", re.ASCII)
_ISO = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?) ", re.ASCII)
_UNIX = re.compile(r"(\d{1,12}\.\d{1,9}) ", re.ASCII)
_FULL = re.compile(r"[A-Z][a-z]{2} (\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d) (\S{1,64}) ", re.ASCII)
_MONOTONIC = re.compile(r"\[ *(\d{1,12}\.\d{1,9})\] ", re.ASCII)
_LOGREAD = re.compile(r"([A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}) ", re.ASCII)
_HOST = re.compile(r"\S+ ")
_TAG = re.compile(
    rf"(?:(?P<fl>(?:{FACILITIES})\.(?:{LEVELS})) )?"
    r"(?:(?P<tag>[^\s\[\]:]{1,128})(?:\[(?P<pid>[^\]]{0,32})\])?:(?: |\Z))?"
)
_RFC5424 = re.compile(
    r"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) "
    r"(-|(?:\[(?:[^\]\"\\]|\"(?:[^\"\\]|\\.)*\"|\\.)*\])+)(?: |\Z)",
    re.DOTALL,
)
_PACKET = re.compile(r"(?<= )IN=\S* OUT=\S* ")  # ulogd: the kernel glues IN= to the prefix
# Fields only ulogd prints: TOS=00 and MARK=0 (the kernel prints 0x..), and
# IPv6 addresses in compressed form (the kernel prints all eight groups).
_ULOGD_ONLY = re.compile(
    r" (?:TOS=[0-9A-F]{2} |MARK=(?!0x)"
    r"|SRC=(?![0-9a-f]{4}(?::[0-9a-f]{4}){7} )[0-9a-f]*:[0-9a-f:]* )"
)


class _Head(NamedTuple):
    at: float | None
    clock: Clock
    end: int  # where the host (or, for logread, the tag) starts
    host: bool = True


def parse(line: str, year: int | None) -> Result:
    """Any syslog form."""
    if line[:1] == "<":
        return rfc5424(line)
    try:
        head = _head(line, year)
    except stamps.BadTime as exc:
        return Rejection("bad-time", str(exc))
    fields = _fields(line, head) if head else None
    return _syslog(line, fields, head) if head and fields else None


def monotonic(line: str) -> Result:
    """short-monotonic for auto mode: only with tag `kernel:` or `name[PID]:`, else it is dmesg."""
    head = _monotonic(line)
    fields = _fields(line, head) if head else None
    if head is None or fields is None or fields["fl"]:
        return None
    if fields["tag"] == "kernel" or fields["pid"] is not None:
        return _syslog(line, fields, head)
    return None


def traditional(line: str, year: int | None) -> Result:
    """A traditional-timestamp line for auto mode: ulogd when its packet fields say so."""
    try:
        head = _traditional(line, year)
    except stamps.BadTime as exc:
        return Rejection("bad-time", str(exc))
    fields = _fields(line, head) if head else None
    if head is None or fields is None:
        return None
    if _ulogd_like(line, fields):
        return _ulogd(line, head, fields.start())
    return _syslog(line, fields, head)


def ulogd(line: str, year: int | None) -> Result:
    """A ulogd2 LOGEMU line."""
    try:
        head = _traditional(line, year)
    except stamps.BadTime as exc:
        return Rejection("bad-time", str(exc))
    host = _HOST.match(line, head.end) if head else None
    return _ulogd(line, head, host.end()) if head and host else None


def rfc5424(line: str) -> Result:
    m = _RFC5424.match(line)
    if m is None:
        return None
    try:
        at = None if m[2] == "-" else stamps.iso(m[2])
    except stamps.BadTime as exc:
        return Rejection("bad-time", str(exc))
    app, procid = m[4], m[5]
    message = line[m.end() :].removeprefix("\ufeff").lstrip(" ")
    if app == "kernel":
        message = strip_kernel_stamp(message)
    if not message:
        return NO_MESSAGE
    tag, pid = (None if app == "-" else app), (None if procid == "-" else procid)
    origin, note = _origin(tag, pid)
    return Envelope("syslog", origin, message, at, Clock.REALTIME, note)


def _head(line: str, year: int | None) -> _Head | None:
    first = line[:1]
    if first == "[":
        return _monotonic(line)
    if "0" <= first <= "9":
        return _iso(line) if line[4:5] == "-" else _unix(line)
    word = line[:3]
    if word in stamps.MONTHS:
        return _traditional(line, year)
    if word in stamps.WEEKDAYS:
        return _full(line) if "0" <= line[4:5] <= "9" else _logread(line)
    return None


def _traditional(line: str, year: int | None) -> _Head | None:
    m = _TRADITIONAL.match(line)
    if m is None or m[1] not in stamps.MONTHS:
        return None
    return _Head(stamps.yearless(m[1], int(m[2]), m[3], m[4], year), Clock.REALTIME, m.end())


def _iso(line: str) -> _Head | None:
    m = _ISO.match(line)
    return _Head(stamps.iso(m[1]), Clock.REALTIME, m.end()) if m else None


def _unix(line: str) -> _Head | None:
    m = _UNIX.match(line)
    return _Head(float(m[1]), Clock.REALTIME, m.end()) if m else None


def _full(line: str) -> _Head | None:
    m = _FULL.match(line)
    return _Head(stamps.full(m[1], m[2], m[3]), Clock.REALTIME, m.end()) if m else None


def _monotonic(line: str) -> _Head | None:
    m = _MONOTONIC.match(line)
    return _Head(float(m[1]), Clock.MONOTONIC, m.end()) if m else None


def _logread(line: str) -> _Head | None:
    m = _LOGREAD.match(line)
    return _Head(stamps.ctime(m[1]), Clock.REALTIME, m.end(), host=False) if m else None


def _fields(line: str, head: _Head) -> re.Match[str] | None:
    """The tag (and busybox's facility.level) after the host; None: no host."""
    start = head.end
    if head.host:
        host = _HOST.match(line, start)
        if host is None:
            return None
        start = host.end()
    return _TAG.match(line, start)


def _syslog(line: str, fields: re.Match[str], head: _Head) -> Result:
    tag, pid = fields["tag"], fields["pid"]
    message = line[fields.end() :]
    if tag == "kernel" and pid is None:
        message = strip_kernel_stamp(message)
    if not message:
        return NO_MESSAGE
    origin, note = _origin(tag, pid)
    return Envelope("syslog", origin, message, head.at, head.clock, note)


def _origin(tag: str | None, pid: str | None) -> tuple[Origin, str]:
    if tag is None:
        return Origin.UNKNOWN, f"no syslog tag, {TEXT_FILE}"
    if pid is not None:
        return Origin.NOT_KERNEL, f"tag {tag}[{pid}]: has a PID, so a process wrote it"
    if tag == "kernel":
        return Origin.UNKNOWN, f"tag kernel, {TEXT_FILE}"
    return Origin.NOT_KERNEL, f"tag {tag}: not the kernel"


def _ulogd_like(line: str, fields: re.Match[str]) -> bool:
    """No PID, not `kernel:`, and fields only ulogd prints (TOS=00, MARK=0) after IN= OUT=."""
    if fields["pid"] is not None or fields["fl"] or fields["tag"] == "kernel":
        return False
    packet = _PACKET.search(line, fields.start())
    return packet is not None and _ULOGD_ONLY.search(line, packet.end()) is not None


def _ulogd(line: str, head: _Head, start: int) -> Result:
    packet = _PACKET.search(line, start)
    if packet is None:
        return None
    prefix = line[start : packet.start()]
    message = prefix.removesuffix(" ") + line[packet.start() :]
    note = f"ulogd LOGEMU, {TEXT_FILE}"
    return Envelope("ulogd", Origin.UNKNOWN, message, head.at, head.clock, note)
