"""The fast lane: the common kernel knock line read in one regex, same answer as the matcher.

Most lines with our prefix have one of a handful of shapes: a TCP or UDP
packet, IPv4 or IPv6, with or without MAC=, DF, SEQ=/ACK=, UID=/GID=, MARK=,
logged by the kernel in syslog text (RFC 3339 or traditional timestamp, tag
`kernel:`) or inside another envelope (kmsg, journal). The matcher answers such
a line through an envelope parser, a header search, token checks, the pack's
pattern and an `Event`; the fast lane reads it with one strict, anchored
regex and hands the tracker a `Knock` straight away.

It only ever *accepts* lines: anything it cannot vouch for (another shape,
another envelope, a value the matcher would reject, a prefix it cannot
anchor) gets `None`, and the caller asks the matcher. So the fast lane may
be narrower than the matcher but never wider, and for what it accepts it
must give the matcher's knock. Three things hold it there:

- every value it passes on goes through the matcher's own readers
  (`parse_address`, the port bound) and the envelope's own time functions;
- it is built only for packs it was proven against (`netfilter` 1.x, whose
  patterns accept every line the regex below does and whose token checks pass
  its fixed key order), and at construction it runs a sample of each shape
  through both paths and stays off if any answer differs;
- tests/test_fastlane.py feeds it every fixture line and lines generated from
  its own regex (hypothesis), and compares with the matcher.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from .envelopes import stamps
from .matcher import Matcher, parse_address
from .models import Envelope, IPAddress, Knock, Origin

PROVEN_PACKS = {"netfilter": "1"}  # pack name -> major versions the lane is proven against
MAX_FAST_LINE = 1024  # longer lines take the matcher's way, with its size checks
FLAG_SETS = 64  # distinct TCP flag texts remembered
ADDRESSES = 4096  # address texts remembered (a source sends several knocks)
STAMPS = 256  # timestamp texts remembered
# The groups are taken by position, all in one `groups()` call (named lookups cost
# twice as much): the header's six (STAMP) come first in a line, then the packet's
# eight (PACKET), alone in a message. FastLane.__init__ checks the order.
STAMP = ("iso", "isec", "trad", "tsec", "fraction", "zone")
PACKET = ("src", "dst", "src6", "dst6", "tcp", "spt", "dpt", "flags")
NO_FLAGS: frozenset[str] = frozenset()
_new = tuple.__new__  # a Knock straight from its fields, without NamedTuple's Python __new__
Reading = tuple[float, tuple[Any, ...]]  # a line's time and its PACKET groups, unchecked

_IFNAME = r"[A-Za-z0-9_.@+-]{0,15}"
_NUM = r"[0-9]{1,10}"
_PORTS = r"SPT=(?P<spt>0|[1-9][0-9]{0,4}) DPT=(?P<dpt>0|[1-9][0-9]{0,4}) "
TCP_FLAGS = ("AE", "CWR", "ECE", "URG", "ACK", "PSH", "RST", "SYN", "FIN")  # the kernel's order
_FLAGS = "".join(f"(?:{flag} )?" for flag in TCP_FLAGS)
_BODY = (
    rf"IN={_IFNAME} OUT={_IFNAME} (?:MAC=(?:[0-9a-f]{{2}}(?::[0-9a-f]{{2}}){{0,39}})? )?"
    r"(?:SRC=(?P<src>[0-9.]{7,15}) DST=(?P<dst>[0-9.]{7,15}) "
    rf"LEN={_NUM} TOS=0x[0-9A-F]{{2}} PREC=0x[0-9A-F]{{2}} TTL={_NUM} ID={_NUM} (?:CE )?(?:DF )?"
    r"|SRC=(?P<src6>[0-9a-f:]{39}) DST=(?P<dst6>[0-9a-f:]{39}) "
    rf"LEN={_NUM} TC={_NUM} HOPLIMIT={_NUM} FLOWLBL={_NUM} )"
    rf"PROTO=(?:(?P<tcp>TCP)|UDP) {_PORTS}(?(tcp)(?:SEQ={_NUM} ACK={_NUM} )?WINDOW={_NUM} "
    rf"RES=0x[0-9a-f]{{2}} (?P<flags>{_FLAGS})URGP={_NUM} |LEN={_NUM} )"
    rf"(?:UID={_NUM} GID={_NUM} )?(?:MARK=0x[0-9a-f]{{1,8}} )?"
)
_ISO = r"(?P<iso>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}):(?P<isec>[0-9]{2})"
_TRAD = r"(?P<trad>[A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}):(?P<tsec>[0-9]{2})"
_FRACTION = r"(?:\.(?P<fraction>[0-9]{1,9}))?"
_SYSLOG = (
    rf"(?:{_ISO}|{_TRAD}){_FRACTION}(?(iso)(?P<zone>Z|[+-][0-9]{{2}}:?[0-9]{{2}})?) "
    r"[!-~]{1,255} kernel: (?:\[ *[0-9]{1,12}\.[0-9]{1,9}\] )?"
)


class FastLane:
    """Knocks from the common lines of one matcher's pack and prefix; see the module doc.

    `for_matcher` gives None when the lane cannot be proven for that matcher.
    `read_line(text)` reads a whole syslog line, `read_message(text, at)` a
    kernel message some other envelope carried, into a `Reading` (plain data,
    so a replay child can send it); `knock(reading)` checks its values and
    makes the knock. Each returns None for "ask the matcher".
    """

    def __init__(self, prefix: str) -> None:
        escaped = re.escape(prefix)
        self.message_pattern = re.compile(escaped + _BODY, re.ASCII)
        self.line_pattern = re.compile(_SYSLOG + escaped + _BODY, re.ASCII)
        self._message = self.message_pattern.fullmatch
        self._line = self.line_pattern.fullmatch
        if _names(self.line_pattern) != STAMP + PACKET or _names(self.message_pattern) != PACKET:
            raise AssertionError("the fast lane's groups are not where it reads them")
        self._flags: dict[str, frozenset[str]] = {}
        self._addresses: dict[str, IPAddress | None] = {}
        self._stamps: dict[str, float | None] = {}

    @classmethod
    def for_matcher(cls, matcher: Matcher) -> FastLane | None:
        prefix, pack = matcher.prefix, matcher.pack
        if not prefix or not _anchorable(prefix):
            return None
        if PROVEN_PACKS.get(pack.name) != pack.version.split(".")[0]:
            return None
        lane = cls(prefix)
        return lane if lane.agrees_with(matcher) else None

    def message(self, text: str, at: float) -> Knock | None:
        """A kernel message (the envelope already judged and stripped) at time `at`."""
        reading = self.read_message(text, at)
        return None if reading is None else self.knock(reading)

    def read_line(self, text: str, at: float | None = None) -> Reading | None:
        """The time and packet groups of a whole syslog line from tag `kernel:`, before
        their values are checked (`knock` does that); `at` overrides the line's time.

        Every token the kernel prints ends in a space; syslog daemons and the
        journal may drop the last one, so the regexes see it put back."""
        if len(text) > MAX_FAST_LINE:
            return None
        m = self._line(text if text[-1:] == " " else text + " ")
        if m is None:
            return None
        groups = m.groups()
        if at is None:
            at = self._seconds(groups[:6])
            if at is None:
                return None
        return at, groups[6:]

    def read_message(self, text: str, at: float) -> Reading | None:
        """`read_line` for a kernel message some other envelope carried."""
        if len(text) > MAX_FAST_LINE:
            return None
        m = self._message(text if text[-1:] == " " else text + " ")
        return None if m is None else (at, m.groups())

    def knock(self, reading: Reading) -> Knock | None:
        """The knock of a reading, or None where the matcher must judge a value."""
        at, (src4, dst4, src6, dst6, tcp, spt, dpt, flags) = reading
        src, dst = self._address(src4 or src6), self._address(dst4 or dst6)
        port = int(dpt)
        if src is None or dst is None or int(spt) > 65535 or port > 65535:
            return None
        if tcp:
            return _new(Knock, (src, dst, "tcp", port, at, self._flag_set(flags or "")))
        return _new(Knock, (src, dst, "udp", port, at, NO_FLAGS))

    def agrees_with(self, matcher: Matcher) -> bool:
        """Whether the matcher reads every sample shape as this lane does."""
        for body in sample_bodies():
            message = matcher.prefix + body if matcher.prefix else body
            mine = self.message(message, 0.0)
            event = matcher.match_envelope(Envelope("raw", Origin.UNKNOWN, message)).event
            theirs = Knock.of_event(event, 0.0) if event else None
            if mine is None or mine != theirs:
                return False
        return True

    def _address(self, text: str) -> IPAddress | None:
        """The matcher's reading of an address (None: it rejects it), remembered."""
        value = self._addresses.get(text, _UNSEEN)
        if value is _UNSEEN:
            value = _remember(self._addresses, ADDRESSES, text, _valid(parse_address(text)))
        return value  # type: ignore[return-value]

    def _flag_set(self, text: str) -> frozenset[str]:
        try:
            return self._flags[text]
        except KeyError:
            return _remember(self._flags, FLAG_SETS, text, frozenset(text.split()))

    def _seconds(self, groups: tuple[Any, ...]) -> float | None:
        """The header's time (its STAMP groups), as the syslog envelope reads it; None
        where it names no moment.

        The start of each minute is remembered: lines come in time order, so
        the envelope's own functions run about once per minute of log. The sum
        is made in the envelope's order, so it is the same float to the bit.
        """
        iso, isec, trad, tsec, fraction, zone = groups
        key = iso + (zone or "") if iso else trad
        try:
            minute = self._stamps[key]
        except KeyError:
            minute = _remember(self._stamps, STAMPS, key, _read_minute(iso, zone, trad))
        seconds = int(isec or tsec)
        if minute is None or seconds > 59:
            return None
        return minute + seconds + stamps.fraction_of(fraction)

    def forget(self) -> None:
        """Drop remembered timestamps: the local zone or the year to guess may have changed."""
        self._stamps.clear()


_Value = TypeVar("_Value")
_UNSEEN = object()


def _names(pattern: re.Pattern[str]) -> tuple[str, ...]:
    """A pattern's group names in group order."""
    return tuple(sorted(pattern.groupindex, key=pattern.groupindex.__getitem__))


def _remember(memo: dict[str, _Value], limit: int, key: str, value: _Value) -> _Value:
    if len(memo) >= limit:
        memo.clear()
    memo[key] = value
    return value


def _valid(value: object) -> IPAddress | None:
    return value if isinstance(value, IPAddress) else None


def _read_minute(iso: str | None, zone: str | None, trad: str | None) -> float | None:
    """The first second of the header's minute, read by the envelope's own functions."""
    try:
        if iso:
            return stamps.iso(iso + ":00" + (zone or ""))
        month, day, clock = (trad or "").split(maxsplit=2)
        return stamps.yearless(month, int(day), clock + ":00", None, None)
    except stamps.BadTime:
        return None


def _anchorable(prefix: str) -> bool:
    """A prefix the matcher finds exactly where the regex puts it: plain printable
    ASCII that holds no header of its own and ends where the kernel's fields start."""
    return prefix.isascii() and prefix.isprintable() and "IN=" not in prefix


def sample_bodies() -> list[str]:
    """One body of each shape the lane reads, each option on and off at least once."""
    v4 = "SRC=198.18.0.2 DST=198.18.0.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=4321 "
    v6 = (
        "SRC=2001:0db8:0000:0000:0000:0000:0000:0002 DST=2001:0db8:0000:0000:0000:0000:0000:0001 "
        "LEN=80 TC=0 HOPLIMIT=64 FLOWLBL=12345 "
    )
    tcp = "PROTO=TCP SPT=40000 DPT=7000 WINDOW=64240 RES=0x00 SYN URGP=0 "
    tcp_all = "PROTO=TCP SPT=1 DPT=65535 SEQ=1 ACK=2 WINDOW=1 RES=0x00 " + " ".join(TCP_FLAGS)
    tcp_all += " URGP=0 "
    udp = "PROTO=UDP SPT=53 DPT=0 LEN=20 "
    mac = "MAC=52:54:00:12:34:56:52:54:00:ab:cd:ef:08:00 "
    head = "IN=eth0 OUT= "
    return [
        head + v4 + tcp,
        head + mac + v4 + "DF " + tcp_all + "UID=0 GID=0 MARK=0x1 ",
        "IN= OUT=lo MAC= " + v4 + "CE " + udp + "MARK=0xffffffff ",
        head + v6 + udp + "UID=1000 GID=1000 ",
        head + mac + v6 + tcp,
    ]
