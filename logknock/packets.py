"""Send one known packet: what `patterns selftest --live` logs and checks.

A `Packet` says exactly what goes on the wire (addresses, both ports, TCP
flags, size), so the test knows every field the kernel's log line must show.
It crosses into a network namespace as JSON on the command line:

    ip netns exec NS python -m logknock.packets '{"kind": "udp", ...}'

Kinds: `tcp-connect` (a real connect(): one SYN, answered by a reset),
`tcp-raw` (one TCP segment with any flags, built here), `udp` (one datagram;
IPv4 ones larger than the MTU leave fragmented, DF off) and `icmp-echo`.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

KINDS = ("tcp-connect", "tcp-raw", "udp", "icmp-echo")
TCP_FLAG_BITS = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08,
                 "ACK": 0x10, "URG": 0x20, "ECE": 0x40, "CWR": 0x80}  # fmt: skip
IP_MTU_DISCOVER = 10  # linux/in.h; not exported by Python 3.11's socket module
IP_PMTUDISC_DONT = 0
ECHO_ID = 0x4C4B  # "LK"


@dataclass(frozen=True, slots=True)
class Packet:
    kind: str
    src: str
    dst: str
    sport: int = 0
    dport: int = 0
    flags: tuple[str, ...] = ()  # tcp-raw: the flags to set; tcp-connect: SYN
    size: int = 1  # udp payload bytes
    ip_options: str = ""  # hex of IPv4 options set on the socket (IP_OPTIONS)

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.src).version

    @property
    def proto(self) -> str:
        """The protocol as the kernel's log line names it."""
        if self.kind == "icmp-echo":
            return "ICMP" if self.family == 4 else "ICMPv6"
        return "UDP" if self.kind == "udp" else "TCP"

    def tcp_flags(self) -> frozenset[str]:
        return frozenset(("SYN",) if self.kind == "tcp-connect" else self.flags)

    def describe(self) -> str:
        """A short human form: `UDP 198.18.0.2:40002 -> 198.18.0.1:7002 1B`."""
        if self.kind == "icmp-echo":
            return f"{self.proto} echo {self.src} -> {self.dst}"
        src, dst = _endpoint(self.src, self.sport), _endpoint(self.dst, self.dport)
        extra = f"{self.size}B" if self.kind == "udp" else " ".join(sorted(self.tcp_flags()))
        options = f" ipopt={self.ip_options}" if self.ip_options else ""
        return f"{self.proto} {src} -> {dst} {extra}{options}"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Packet:
        data = json.loads(text)
        data["flags"] = tuple(data.get("flags", ()))
        return cls(**data)


def _endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_segment(packet: Packet) -> bytes:
    """A bare TCP header with `packet.flags` and a valid checksum."""
    bits = sum(TCP_FLAG_BITS[flag] for flag in packet.flags)
    header = struct.pack("!HHIIBBHHH", packet.sport, packet.dport, 1, 0, 5 << 4, bits, 1024, 0, 0)
    src, dst = ipaddress.ip_address(packet.src), ipaddress.ip_address(packet.dst)
    if src.version == 4:
        pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(header))
    else:
        pseudo = src.packed + dst.packed + struct.pack("!I3xB", len(header), socket.IPPROTO_TCP)
    return header[:16] + struct.pack("!H", checksum(pseudo + header)) + header[18:]


def icmp_echo(family: int) -> bytes:
    """An echo request; for ICMPv6 the kernel fills in the checksum."""
    kind = 8 if family == 4 else 128
    message = struct.pack("!BBHHH", kind, 0, 0, ECHO_ID, 1) + b"logknock"
    if family == 6:
        return message
    return message[:2] + struct.pack("!H", checksum(message)) + message[4:]


def _socket(packet: Packet, kind: int, proto: int = 0) -> socket.socket:
    family = socket.AF_INET if packet.family == 4 else socket.AF_INET6
    sock = socket.socket(family, kind, proto)
    sock.settimeout(2)
    if packet.ip_options:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, bytes.fromhex(packet.ip_options))
    return sock


def send(packet: Packet) -> None:
    """Put `packet` on the wire from this process's network namespace."""
    if packet.kind == "tcp-connect":
        _send_connect(packet)
    elif packet.kind == "tcp-raw":
        with _socket(packet, socket.SOCK_RAW, socket.IPPROTO_TCP) as sock:
            sock.bind((packet.src, 0))
            sock.sendto(tcp_segment(packet), (packet.dst, 0))
    elif packet.kind == "udp":
        with _socket(packet, socket.SOCK_DGRAM) as sock:
            if packet.family == 4:
                sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
            sock.bind((packet.src, packet.sport))
            sock.sendto(b"k" * packet.size, (packet.dst, packet.dport))
    elif packet.kind == "icmp-echo":
        proto = socket.IPPROTO_ICMP if packet.family == 4 else socket.IPPROTO_ICMPV6
        with _socket(packet, socket.SOCK_RAW, proto) as sock:
            sock.bind((packet.src, 0))
            sock.sendto(icmp_echo(packet.family), (packet.dst, 0))
    else:
        raise ValueError(f"unknown packet kind {packet.kind!r}; known: {', '.join(KINDS)}")


def _send_connect(packet: Packet) -> None:
    """One SYN: the closed port answers with a reset, refusing the connection."""
    with _socket(packet, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((packet.src, packet.sport))
        try:
            sock.connect((packet.dst, packet.dport))
        except ConnectionRefusedError:
            return


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print("usage: python -m logknock.packets PACKET-JSON", file=sys.stderr)
        return 2
    send(Packet.from_json(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
