"""The packets the live selftest sends are what it claims to send."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from logknock.packets import Packet, checksum, icmp_echo, send, tcp_segment

V4 = ("198.18.0.2", "198.18.0.1")
V6 = ("2001:db8:18::2", "2001:db8:18::1")


def test_checksum_of_the_rfc_1071_example() -> None:
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_checksum_pads_an_odd_length() -> None:
    assert checksum(b"\x01") == checksum(b"\x01\x00")


def _pseudo_header(packet: Packet, length: int) -> bytes:
    src, dst = ipaddress.ip_address(packet.src), ipaddress.ip_address(packet.dst)
    if src.version == 4:
        return src.packed + dst.packed + struct.pack("!BBH", 0, 6, length)
    return src.packed + dst.packed + struct.pack("!I3xB", length, 6)


@pytest.mark.parametrize("addrs", [V4, V6])
@pytest.mark.parametrize(
    ("flags", "bits"),
    [(("SYN",), 0x02), (("FIN", "PSH", "URG"), 0x29), (("SYN", "ECE", "CWR"), 0xC2)],
)
def test_tcp_segment_has_the_ports_flags_and_a_valid_checksum(
    addrs: tuple[str, str], flags: tuple[str, ...], bits: int
) -> None:
    packet = Packet("tcp-raw", *addrs, sport=40013, dport=7013, flags=flags)
    segment = tcp_segment(packet)
    sport, dport, _, _, offset, got_bits = struct.unpack("!HHIIBB", segment[:14])
    assert (sport, dport, offset >> 4, got_bits) == (40013, 7013, 5, bits)
    assert checksum(_pseudo_header(packet, len(segment)) + segment) == 0


def test_icmp_echo_request_checksums() -> None:
    message = icmp_echo(4)
    assert message[0] == 8
    assert checksum(message) == 0
    assert icmp_echo(6)[0] == 128  # the kernel computes ICMPv6 checksums itself


def test_packet_survives_its_trip_through_json() -> None:
    packet = Packet("tcp-raw", *V6, sport=1, dport=2, flags=("SYN", "ECE"), ip_options="")
    assert Packet.from_json(packet.to_json()) == packet


@pytest.mark.parametrize(
    ("packet", "proto", "flags", "text"),
    [
        (Packet("tcp-connect", *V4, 40001, 7001), "TCP", {"SYN"}, "TCP 198.18.0.2:40001 -> "),
        (Packet("udp", *V6, 40005, 7005, size=3000), "UDP", set(), "[2001:db8:18::1]:7005 3000B"),
        (Packet("icmp-echo", *V6), "ICMPv6", set(), "ICMPv6 echo 2001:db8:18::2 -> "),
        (Packet("icmp-echo", *V4), "ICMP", set(), "ICMP echo 198.18.0.2 -> 198.18.0.1"),
    ],
)
def test_packet_names_its_protocol_as_the_kernel_log_does(
    packet: Packet, proto: str, flags: set[str], text: str
) -> None:
    assert packet.proto == proto
    assert packet.tcp_flags() == flags
    assert text in packet.describe()


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown packet kind 'sctp'"):
        send(Packet("sctp", *V4))
