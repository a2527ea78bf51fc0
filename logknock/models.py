"""The values that cross logknock's layers.

A line travels one way: a source yields a `LogRecord`, the envelope parser turns
its text into an `Envelope`, the matcher turns the envelope's message into an
`Event` (or a `Rejection`), the tracker turns events into `Knock`s and returns
`Decision`s, and the hook runner turns a decision into a `HookResult`.

Every class here is immutable (frozen slotted dataclasses, and NamedTuples for
the two made once per line): a layer can hand its output to another thread or
keep it in a table without anyone changing it underneath.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field
from typing import Any, NamedTuple

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
KNOCK_PROTOS = {"TCP": "tcp", "UDP": "udp"}  # event protocols a knock can use


class Origin(enum.Enum):
    """Who wrote a line, as far as its envelope can prove."""

    KERNEL = "kernel"  # provably the kernel: _TRANSPORT=kernel, kmsg facility 0
    NOT_KERNEL = "not-kernel"  # provably someone else: a client wrote it
    UNKNOWN = "unknown"  # plain text: nothing in it can prove who wrote it


class Clock(enum.Enum):
    """What an envelope timestamp counts from."""

    REALTIME = "realtime"  # seconds since the epoch
    MONOTONIC = "monotonic"  # seconds since boot (kmsg, plain dmesg)


class LogRecord(NamedTuple):
    """One raw record as a source read it, before any parsing.

    A NamedTuple rather than a dataclass: as immutable, and made for every line
    a source reads, where a frozen dataclass costs five times as much.
    """

    source: str  # the configured source name: "journal", "kmsg", "file:/var/log/x"
    data: bytes  # the record's text, without its line ending
    at: float | None = None  # the source's own timestamp, when it has one
    position: str | None = None  # cursor / seqnum / offset to resume after this record
    trusted: bool = False  # the source itself guarantees the kernel wrote it
    envelope: str = "auto"  # the envelope kind of `data`: "journal-message", "kmsg", ...


class Digested(NamedTuple):
    """Consecutive records a replay scanning process already read.

    `digests` holds `Pipeline.digest`'s plain-data reading of each (origin,
    time and the packet's fields, unchecked; or a rejection): what crosses the
    pipe from the child instead of the lines. `Pipeline.feed_digested` takes
    them on, in order.
    """

    source: str
    trusted: bool
    digests: list[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class Envelope:
    """A line split into its transport header and the kernel message."""

    format: str  # the envelope kind that matched: "kmsg", "dmesg", "syslog", ...
    origin: Origin
    message: str
    at: float | None = None
    clock: Clock = Clock.REALTIME
    note: str | None = None  # why the origin is what it is, for `patterns match`


@dataclass(frozen=True, slots=True)
class Event:
    """One netfilter log line, parsed and validated.

    Addresses are `ipaddress` values; ports and numbers are ints. Only fields
    from the outer packet header are here, never from the quoted packet inside
    an ICMP error.
    """

    prefix: str
    in_iface: str
    out_iface: str
    src: IPAddress
    dst: IPAddress
    proto: str  # "TCP", "UDP", "UDPLITE", "ICMP", "ICMPv6", "SCTP", or the number
    spt: int | None = None
    dpt: int | None = None
    tcp_flags: frozenset[str] = field(default_factory=frozenset)
    fragment: bool = False  # a non-first fragment: no transport header

    @property
    def family(self) -> int:
        return self.src.version

    def as_json(self) -> dict[str, object]:
        """The event as `patterns match --json` prints it."""
        data: dict[str, object] = {
            "prefix": self.prefix,
            "in": self.in_iface,
            "out": self.out_iface,
            "src": str(self.src),
            "dst": str(self.dst),
            "proto": self.proto,
            "spt": self.spt,
            "dpt": self.dpt,
            "family": self.family,
        }
        if self.tcp_flags:
            data["flags"] = sorted(self.tcp_flags)
        if self.fragment:
            data["fragment"] = True
        return data


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a line produced no event. `code` is stable; `detail` is for people."""

    code: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}" if self.detail else self.code


@dataclass(frozen=True, slots=True)
class Match:
    """The matcher's answer for one line: an event, or the reason there is none."""

    envelope: Envelope | None
    event: Event | None
    rejection: Rejection | None = None
    pack: str | None = None  # "netfilter@1.0.0"
    pattern: str | None = None  # the pattern id that parsed the line


class Knock(NamedTuple):
    """An event the tracker acts on: our prefix, TCP or UDP, a destination port.

    A NamedTuple, like `LogRecord`: one is made for every knock line.
    """

    src: IPAddress
    dst: IPAddress
    proto: str  # "tcp" or "udp"
    dport: int
    at: float
    flags: frozenset[str] = frozenset()

    @classmethod
    def of_event(cls, event: Event, at: float) -> Knock | None:
        """An event is a knock when it is TCP or UDP with a destination port."""
        proto = KNOCK_PROTOS.get(event.proto)
        if proto is None or event.dpt is None or event.fragment:
            return None
        return cls(event.src, event.dst, proto, event.dpt, at, event.tcp_flags)


class Action(enum.Enum):
    OPEN = "open"
    CLOSE = "close"
    BAN = "ban"
    UNBAN = "unban"


@dataclass(frozen=True, slots=True)
class Decision:
    """What the tracker decided; hooks carry it out."""

    at: float
    action: Action
    src: IPAddress
    sequence: str | None = None  # None for ban/unban
    ports: tuple[str, ...] = ()  # "22/tcp"
    expires: float | None = None

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Decision:
        """The inverse of `as_json`; raises ValueError on anything else."""
        try:
            expires = data.get("expires")
            return cls(
                at=float(data["at"]),  # type: ignore[arg-type]
                action=Action(data["action"]),
                src=ipaddress.ip_address(str(data["src"])),
                sequence=None if data.get("sequence") is None else str(data["sequence"]),
                ports=tuple(str(p) for p in data.get("ports") or ()),  # type: ignore[attr-defined]
                expires=None if expires is None else float(expires),  # type: ignore[arg-type]
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a decision: {data!r}") from exc

    def as_json(self) -> dict[str, object]:
        return {
            "at": round(self.at, 6),
            "action": self.action.value,
            "sequence": self.sequence,
            "src": str(self.src),
            "ports": list(self.ports),
            "expires": None if self.expires is None else round(self.expires, 6),
        }
