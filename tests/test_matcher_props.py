"""Property tests: kernel-formatted packets parse back to their fields, and no
input of any kind makes the matcher raise."""

from __future__ import annotations

import ipaddress

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernelfmt import TCP_FLAG_ORDER, Packet, format_line
from testpaths import PATTERNS

from logknock.matcher import Matcher
from logknock.models import Origin
from logknock.packs import load_pack_dir

PACK = load_pack_dir(PATTERNS / "netfilter")
MATCHER = Matcher(PACK, "logknock: ", "kmsg")
ANY_PREFIX = Matcher(PACK, None, "auto")

ports = st.integers(min_value=0, max_value=65535)
v4 = st.ip_addresses(v=4)
v6 = st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None)
# Interface names: up to 15 characters, none of whitespace, '/' or ':' (the
# kernel's dev_valid_name), so '=' is allowed: IN=SRC=6.6.6.6 is a real name.
ifnames = st.text(  # (a sampled alphabet: Debian 12's hypothesis lacks exclude_characters)
    alphabet=st.sampled_from([chr(c) for c in range(33, 127) if chr(c) not in "/:[]()"]),
    min_size=1,
    max_size=15,
)


@st.composite
def packets(draw: st.DrawFn) -> Packet:
    family = draw(st.sampled_from([v4, v6]))
    proto = draw(st.sampled_from(["TCP", "UDP", "UDPLITE", "ICMP", "47"]))
    if proto == "ICMP" and family is v6:
        proto = "ICMPv6"
    return Packet(
        src=draw(family),
        dst=draw(family),
        proto=proto,
        spt=draw(ports),
        dpt=draw(ports),
        flags=frozenset(draw(st.lists(st.sampled_from(TCP_FLAG_ORDER), unique=True))),
        in_iface=draw(ifnames),
        out_iface=draw(st.one_of(st.just(""), ifnames)),
        mac=draw(st.booleans()),
        tcp_sequence=draw(st.booleans()),
        uid=draw(st.booleans()),
        mark=draw(st.integers(min_value=0, max_value=2**32 - 1)),
    )


def kmsg(message: str) -> bytes:
    return f"4,1234,83325088,-;{message}".encode()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(packets())
def test_kernel_lines_parse_back_to_the_packet(packet: Packet) -> None:
    match = MATCHER.match(kmsg(format_line("logknock: ", packet)))
    assert match.event is not None, match.rejection
    event = match.event
    assert (event.src, event.dst, event.proto) == (packet.src, packet.dst, packet.proto)
    assert event.in_iface == packet.in_iface and event.out_iface == packet.out_iface
    has_ports = packet.proto in ("TCP", "UDP", "UDPLITE")
    assert (event.spt, event.dpt) == ((packet.spt, packet.dpt) if has_ports else (None, None))
    assert event.tcp_flags == (packet.flags if packet.proto == "TCP" else frozenset())
    assert match.envelope is not None and match.envelope.origin is Origin.KERNEL


@given(packets(), st.sampled_from(["SRC", "DST", "PROTO", "DPT", "SPT"]), ports)
def test_an_appended_key_is_refused(packet: Packet, key: str, value: int) -> None:
    original = format_line("logknock: ", packet)
    match = MATCHER.match(kmsg(original + f"{key}={value} "))
    assert match.event is None and match.rejection is not None
    if f" {key}=" in original:  # a second one: named as such, whatever else is wrong
        assert match.rejection.code in ("repeated-key", "field-order")


@given(packets(), st.integers(min_value=1, max_value=400))
def test_a_cut_line_never_yields_a_different_event(packet: Packet, cut: int) -> None:
    line = format_line("logknock: ", packet)
    match = MATCHER.match(kmsg(line[: max(len("logknock: "), len(line) - cut)]))
    if match.event is not None:  # cut inside trailing optional fields: same packet
        assert (match.event.src, match.event.dst) == (packet.src, packet.dst)
        assert match.event.dpt in (None, packet.dpt) or str(packet.dpt).startswith(
            str(match.event.dpt)
        )


@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data: bytes) -> None:
    for matcher in (MATCHER, ANY_PREFIX):
        result = matcher.match(data)
        assert (result.event is None) != (result.rejection is None)


@given(packets(), st.binary(min_size=1, max_size=40), st.integers(min_value=0, max_value=300))
def test_mutated_kernel_lines_never_raise(packet: Packet, junk: bytes, at: int) -> None:
    line = kmsg(format_line("logknock: ", packet))
    at = min(at, len(line))
    result = MATCHER.match(line[:at] + junk + line[at:])
    assert (result.event is None) != (result.rejection is None)
    if result.event is not None:
        assert isinstance(result.event.src, ipaddress.IPv4Address | ipaddress.IPv6Address)
