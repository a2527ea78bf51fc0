"""Records read from the kernel ring buffer: /dev/kmsg records and dmesg output.

Both carry the facility the kernel stored with the record, where they show it:
the kernel gives every record it writes itself facility 0 (kern) and every
record a process writes to /dev/kmsg a facility of 1 or more.

dmesg -r caveat, seen on Debian 12 (util-linux 2.38.1; fixed in util-linux
issue #2325): it prints `<facility | level>` instead of `<facility * 8 + level>`,
so a process's record at user.warn shows as `<5>`. `<0>` to `<7>` therefore
prove nothing; `<8>` and above, and `<-1>`, prove a process wrote the record.
"""

from __future__ import annotations

import re

from ..models import Clock, Envelope, Origin, Rejection
from . import stamps
from .common import FACILITIES, LEVELS, NO_MESSAGE, TEXT_FILE, Result, indented

# pri,seq,usec[,flags[,caller=T1]];message (kernels before 3.6 have no flags)
_KMSG = re.compile(r"(\d{1,10}),(\d{1,20}),(\d{1,20})(?:,[^;\s]*)?;", re.ASCII)

_NUM = r"\d{1,12}\.\d{1,9}"
_DMESG = re.compile(
    # -x: "kern  :warn  : "; -r: "<4>"
    rf"(?:(?P<fac>{FACILITIES}) *:(?:{LEVELS}) *: |<(?P<pri>-?\d{{1,4}})>)?"
    r"(?:\[(?:"
    rf" *(?P<mono>{_NUM})(?: < *{_NUM}>)?"  # [   83.325088] and -d [  83.3 <  0.1>]
    rf"|(?P<delta>< *{_NUM}>)"  # --time-format delta
    rf"|(?P<plus> *\+{_NUM})"  # --time-format reltime, after the first line of a minute
    rf"|(?P<ctime>[A-Z][a-z]{{2}} [A-Z][a-z]{{2}} [ \d]\d \d\d:\d\d:\d\d \d{{4}})(?: < *{_NUM}>)?"
    r"|(?P<minute>[A-Z][a-z]{2}\d\d \d\d:\d\d)"  # --time-format reltime: [Nov21 05:04]
    r")\](?: |\Z)"
    r"|(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d,\d{1,9}[+-]\d\d:\d\d)(?: |\Z))?"  # --time-format iso
    r"(?:\[ *[TC]\d{1,10}\] )?",  # caller id (util-linux 2.40 and later)
    re.ASCII,
)


def kmsg(line: str) -> Result:
    """A /dev/kmsg record: `4,1234,83325088,-;message`."""
    if line[:1].isspace():
        return Rejection("kmsg-continuation", "a /dev/kmsg dictionary line (' KEY=value')")
    m = _KMSG.match(line)
    if m is None:
        return None
    message = line[m.end() :]
    if not message:
        return NO_MESSAGE
    facility = int(m[1]) >> 3
    if facility == 0:
        origin, note = Origin.KERNEL, "kmsg facility 0"
    else:
        origin, note = Origin.NOT_KERNEL, f"kmsg facility {facility}: a process wrote it"
    return Envelope("kmsg", origin, message, int(m[3]) / 1e6, Clock.MONOTONIC, note)


def dmesg(line: str, year: int | None, *, header: bool = False) -> Result:
    """dmesg output in any of its forms; `header=True`: None unless a dmesg header is there."""
    if line[:1].isspace():
        return indented(line)
    m = _DMESG.match(line)
    if m is None or (header and m.end() == 0):
        return None
    message = line[m.end() :]
    if not message:
        return NO_MESSAGE
    try:
        at, clock = _when(m, year)
    except stamps.BadTime as exc:
        return Rejection("bad-time", str(exc))
    origin, note = _origin(m)
    return Envelope("dmesg", origin, message, at, clock, note)


def _when(m: re.Match[str], year: int | None) -> tuple[float | None, Clock]:
    if m["mono"]:
        return float(m["mono"]), Clock.MONOTONIC
    if m["ctime"]:
        return stamps.ctime(m["ctime"]), Clock.REALTIME
    if m["minute"]:
        return stamps.minute(m["minute"], year), Clock.REALTIME
    if m["iso"]:
        return stamps.iso(m["iso"]), Clock.REALTIME
    return None, Clock.REALTIME  # -t, delta and relative times: no point in time


def _origin(m: re.Match[str]) -> tuple[Origin, str]:
    if m["fac"]:
        if m["fac"] == "kern":
            return Origin.KERNEL, "dmesg -x facility kern"
        return Origin.NOT_KERNEL, f"dmesg -x facility {m['fac']}: a process wrote it"
    if m["pri"]:
        pri = int(m["pri"])
        if pri < 0 or pri >= 8:
            return Origin.NOT_KERNEL, f"dmesg -r <{pri}>: not facility kern, a process wrote it"
        return (
            Origin.UNKNOWN,
            f"dmesg -r <{pri}>: may be user.warn (util-linux < 2.39 prints <fac|level>)",
        )
    return Origin.UNKNOWN, f"dmesg without facility, {TEXT_FILE}"
