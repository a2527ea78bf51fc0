"""The cases of `patterns selftest --live`: a packet, a log rule, the lines expected.

Every case logs in the server namespace of a `Lab`. Inbound cases log the
client's packet on the way in; the ICMP error cases log the server's answer
to a UDP datagram sent to a closed port, whose quoted ports must not be taken
for the event's; the fragment cases log each fragment before reassembly.
"""

from __future__ import annotations

import ipaddress
import json
import math
from dataclasses import dataclass
from typing import Any

from .lab import Lab
from .models import IPAddress
from .packets import Packet

MTU = 1280  # the lab's veth MTU: a 3000-byte datagram leaves in three fragments
FRAGMENTED_SIZE = 3000
IPT_PREFIX_MAX = 29  # iptables truncates longer prefixes silently
NFT_PREFIX_MAX = 127
NFT_LEVELS = ("emerg", "alert", "crit", "err", "warn", "notice", "info", "debug")
IPT_ALL_OPTIONS = ("--log-tcp-sequence", "--log-tcp-options", "--log-ip-options",
                   "--log-uid", "--log-macdecode")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Expected:
    """The event fields one log line must parse to."""

    src: IPAddress
    dst: IPAddress
    proto: str
    spt: int | None = None
    dpt: int | None = None
    flags: frozenset[str] = frozenset()
    fragment: bool = False
    in_iface: str = ""
    out_iface: str = ""

    def describe(self) -> str:
        src = _endpoint(self.src, self.spt)
        dst = _endpoint(self.dst, self.dpt)
        extra = "".join(f" {flag}" for flag in sorted(self.flags))
        extra += " fragment" if self.fragment else ""
        return f"{self.proto} {src} -> {dst}{extra} in={self.in_iface} out={self.out_iface}"

    def as_fixture(self) -> dict[str, object]:
        """The expectation in a pattern fixture's `#> {...}` line."""
        return {
            "src": str(self.src),
            "dst": str(self.dst),
            "proto": self.proto,
            "spt": self.spt,
            "dpt": self.dpt,
            "flags": sorted(self.flags),
            "fragment": self.fragment,
            "in": self.in_iface,
            "out": self.out_iface,
            "origin": "kernel",
        }


def _endpoint(addr: IPAddress, port: int | None) -> str:
    if port is None:
        return str(addr)
    return f"[{addr}]:{port}" if addr.version == 6 else f"{addr}:{port}"


@dataclass(frozen=True, slots=True)
class Rule:
    """One log rule of the server namespace, for any back end."""

    chain: str  # "prerouting" (before reassembly), "input" or "output"
    src: IPAddress
    dst: IPAddress
    proto: str  # as nft and iptables name it: tcp, udp, icmp, icmpv6
    dport: int | None = None
    icmp_type: str | None = None
    level: int = 4
    all_options: bool = False

    @property
    def family(self) -> int:
        return self.src.version

    def nft(self, prefix: str) -> str:
        """The nft rule text after `add rule TABLE CHAIN`."""
        ip = "ip" if self.family == 4 else "ip6"
        parts = [f"{ip} saddr {self.src} {ip} daddr {self.dst} meta l4proto {self.proto}"]
        if self.dport is not None:
            parts.append(f"{self.proto} dport {self.dport}")
        if self.icmp_type is not None:
            parts.append(f"{self.proto} type {self.icmp_type}")
        parts.append(f"log prefix {json.dumps(prefix)} level {NFT_LEVELS[self.level]}")
        return " ".join(parts + (["flags all"] if self.all_options else []))

    def iptables(self, tool: str, prefix: str) -> list[str]:
        """The `iptables`/`ip6tables` (`tool`) command line that appends the rule."""
        table = "mangle" if self.chain == "prerouting" else "filter"
        argv = [tool, "-w", "-t", table, "-A", self.chain.upper()]
        argv += ["-s", str(self.src), "-d", str(self.dst), "-p", self.proto]
        if self.dport is not None:
            argv += ["--dport", str(self.dport)]
        if self.icmp_type is not None:
            argv += [f"--{self.proto}-type", self.icmp_type]
        argv += ["-j", "LOG", "--log-prefix", prefix, "--log-level", str(self.level)]
        return argv + list(IPT_ALL_OPTIONS if self.all_options else ())


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    core: str  # the unique start of the prefix: "lkst<run token>-<number>"
    prefix: str
    packet: Packet
    rule: Rule
    expected: tuple[Expected, ...]
    from_server: bool = False  # the packet leaves the server namespace


class _Builder:
    """Numbers the cases of one back end: ports and prefixes never repeat."""

    def __init__(self, lab: Lab, token: str, backend_index: int, prefix_max: int) -> None:
        self.lab, self.token, self.prefix_max = lab, token, prefix_max
        self.base_port = 40000 + 100 * backend_index
        self.number = 0

    def addresses(self, family: int) -> tuple[IPAddress, IPAddress]:
        """(client, server) of one family."""
        if family == 4:
            return self.lab.client_v4, self.lab.server_v4
        return self.lab.client_v6, self.lab.server_v6

    def packet(self, kind: str, family: int, reverse: bool = False, **extra: Any) -> Packet:
        """The next packet: client to server (server to client if `reverse`)."""
        self.number += 1
        src, dst = self.addresses(family)
        if reverse:
            src, dst = dst, src
        sport, dport = self.base_port + self.number, 7000 + self.number
        return Packet(kind, str(src), str(dst), sport, dport, **extra)

    def case(
        self,
        name: str,
        packet: Packet,
        rule: Rule,
        expected: tuple[Expected, ...],
        *,
        tail: str = ": ",
        from_server: bool = False,
    ) -> Case:
        core = f"lkst{self.token}-{self.number:02d}"
        if tail == "long":
            tail = " " + "x" * (self.prefix_max - len(core) - 3) + ": "
        return Case(name, core, core + tail, packet, rule, expected, from_server)

    def inbound(
        self,
        name: str,
        family: int,
        kind: str,
        *,
        level: int = 4,
        all_options: bool = False,
        tail: str = ": ",
        **extra: Any,
    ) -> Case:
        """The client's packet, logged on the server's way in."""
        pkt = self.packet(kind, family, **extra)
        echo = kind == "icmp-echo"
        rule = Rule(
            "input",
            ipaddress.ip_address(pkt.src),
            ipaddress.ip_address(pkt.dst),
            pkt.proto.lower(),
            dport=None if echo else pkt.dport,
            icmp_type="echo-request" if echo else None,
            level=level,
            all_options=all_options,
        )
        return self.case(name, pkt, rule, (self.seen(pkt, inbound=True),), tail=tail)

    def seen(self, pkt: Packet, inbound: bool) -> Expected:
        """The packet itself as its log line must show it."""
        ports = pkt.kind != "icmp-echo"
        return Expected(
            ipaddress.ip_address(pkt.src),
            ipaddress.ip_address(pkt.dst),
            pkt.proto,
            spt=pkt.sport if ports else None,
            dpt=pkt.dport if ports else None,
            flags=pkt.tcp_flags() if pkt.proto == "TCP" else frozenset(),
            in_iface=self.lab.server_if if inbound else "",
            out_iface="" if inbound else self.lab.server_if,
        )

    def outbound(self, name: str, family: int) -> Case:
        """A datagram the server sends, logged with every option (UID= included)."""
        pkt = self.packet("udp", family, reverse=True)
        src, dst = ipaddress.ip_address(pkt.src), ipaddress.ip_address(pkt.dst)
        rule = Rule("output", src, dst, "udp", dport=pkt.dport, all_options=True)
        return self.case(name, pkt, rule, (self.seen(pkt, inbound=False),), from_server=True)

    def icmp_error(self, name: str, family: int) -> Case:
        """The server's port-unreachable answer: ICMP, no ports of its own."""
        pkt = self.packet("udp", family)
        client, server = self.addresses(family)
        proto = "icmp" if family == 4 else "icmpv6"
        rule = Rule("output", server, client, proto, icmp_type="destination-unreachable")
        logged = "ICMP" if family == 4 else "ICMPv6"
        expected = Expected(server, client, logged, out_iface=self.lab.server_if)
        return self.case(name, pkt, rule, (expected,))

    def fragments(self, name: str, family: int) -> Case:
        """A datagram over the MTU: the first fragment has ports, the others none."""
        pkt = self.packet("udp", family, size=FRAGMENTED_SIZE)
        src, dst = ipaddress.ip_address(pkt.src), ipaddress.ip_address(pkt.dst)
        rule = Rule("prerouting", src, dst, "udp")
        first = self.seen(pkt, inbound=True)
        rest = Expected(src, dst, "UDP", fragment=True, in_iface=self.lab.server_if)
        count = fragment_count(FRAGMENTED_SIZE + 8, family)
        return self.case(name, pkt, rule, (first,) + (rest,) * (count - 1))


def fragment_count(payload: int, family: int, mtu: int = MTU) -> int:
    """How many fragments an IP payload of `payload` bytes leaves in."""
    header = 20 if family == 4 else 40 + 8  # IPv6 adds its fragment header
    per_fragment = (mtu - header) // 8 * 8
    return math.ceil(payload / per_fragment)


def build_cases(lab: Lab, token: str, backend_index: int, backend: str) -> list[Case]:
    """The cases for one back end, numbered and ported apart from the others."""
    limit = NFT_PREFIX_MAX if backend == "nft" else IPT_PREFIX_MAX
    b = _Builder(lab, token, backend_index, limit)
    return [
        b.inbound("tcp-syn", 4, "tcp-connect"),
        b.inbound("udp", 4, "udp"),
        b.inbound("icmp-echo", 4, "icmp-echo"),
        b.inbound("tcp6-syn", 6, "tcp-connect"),
        b.inbound("udp6", 6, "udp"),
        b.inbound("icmp6-echo", 6, "icmp-echo"),
        b.icmp_error("icmp-error", 4),
        b.icmp_error("icmp6-error", 6),
        b.fragments("udp-fragments", 4),
        b.fragments("udp6-fragments", 6),
        b.inbound("tcp-all-options", 4, "tcp-connect", all_options=True, ip_options="01010100"),
        b.inbound("tcp6-all-options", 6, "tcp-connect", all_options=True),
        b.inbound("tcp-fin-psh-urg", 4, "tcp-raw", flags=("FIN", "PSH", "URG")),
        b.inbound("tcp6-syn-ece-cwr", 6, "tcp-raw", flags=("SYN", "ECE", "CWR")),
        b.outbound("udp-output-uid", 4),
        b.inbound("udp-level-info", 4, "udp", level=6),
        b.inbound("tcp6-level-debug", 6, "tcp-connect", level=7),
        b.inbound("udp-prefix-no-space", 4, "udp", tail=":"),
        b.inbound("udp-prefix-brackets", 4, "udp", tail=" [knock test] "),
        b.inbound("udp6-prefix-longest", 6, "udp", tail="long"),
    ]
