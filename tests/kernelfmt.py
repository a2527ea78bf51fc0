"""Formats packets the way the kernel's nf_log_syslog.c prints them.

Test support only: the property tests generate packets, print them with this,
and check the matcher parses them back to the same fields.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

TCP_FLAG_ORDER = ("AE", "CWR", "ECE", "URG", "ACK", "PSH", "RST", "SYN", "FIN")


@dataclass(frozen=True)
class Packet:
    src: ipaddress.IPv4Address | ipaddress.IPv6Address
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address
    proto: str  # TCP UDP UDPLITE ICMP ICMPv6 or a number
    spt: int = 0
    dpt: int = 0
    flags: frozenset[str] = field(default_factory=frozenset)
    in_iface: str = "eth0"
    out_iface: str = ""
    mac: bool = True
    tcp_sequence: bool = False
    uid: bool = False
    mark: int = 0


def v6_full(addr: ipaddress.IPv6Address) -> str:
    return addr.exploded


def ip_part(p: Packet) -> str:
    if p.src.version == 4:
        return f"SRC={p.src} DST={p.dst} LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=4321 DF "
    return (
        f"SRC={v6_full(p.src)} DST={v6_full(p.dst)} "  # type: ignore[arg-type]
        "LEN=80 TC=0 HOPLIMIT=64 FLOWLBL=12345 "
    )


def transport(p: Packet) -> str:
    if p.proto == "TCP":
        seq = "SEQ=1234 ACK=0 " if p.tcp_sequence else ""
        flags = "".join(f + " " for f in TCP_FLAG_ORDER if f in p.flags)
        return f"PROTO=TCP SPT={p.spt} DPT={p.dpt} {seq}WINDOW=64240 RES=0x00 {flags}URGP=0 "
    if p.proto in ("UDP", "UDPLITE"):
        return f"PROTO={p.proto} SPT={p.spt} DPT={p.dpt} LEN=8 "
    if p.proto in ("ICMP", "ICMPv6"):
        return f"PROTO={p.proto} TYPE=8 CODE=0 ID=77 SEQ=1 "
    return f"PROTO={p.proto} "


def format_line(prefix: str, p: Packet) -> str:
    mac = "MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 " if p.mac and p.in_iface else ""
    tail = ("UID=0 GID=0 " if p.uid else "") + (f"MARK=0x{p.mark:x} " if p.mark else "")
    return f"{prefix}IN={p.in_iface} OUT={p.out_iface} {mac}{ip_part(p)}{transport(p)}{tail}"
