"""The matcher's fast paths give the answers of the plain checks they stand for:
token shapes remembered per matcher, the ASCII test before the control-character
regex, and addresses in the kernel's own forms read without ipaddress's parser."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st
from testpaths import PATTERNS

from logknock.matcher import INVISIBLE, Matcher, check_tokens, parse_address
from logknock.models import Rejection
from logknock.packs import load_pack_dir

PACK = load_pack_dir(PATTERNS / "netfilter")
KEYS = ["IN", "OUT", "SRC", "DST", "LEN", "ID", "PROTO", "SPT", "DPT", "TTL", "XX", ""]
tokens = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), st.sampled_from(["1", "", "a=b"])),
    st.sampled_from(
        ["DF", "SYN", "[", "]", "(", ")", "OPT", "(0A)", "[x]", "TRUNCATED", "xTRUNCATED"]
    ),
)
bodies = st.lists(tokens, max_size=14).map(lambda ts: " ".join(["IN=eth0", *ts]) + " ")


def reference_body(body: str) -> Rejection | None:
    if not body.isascii():
        return Rejection("non-ascii", "the kernel prints fields in ASCII")
    if "TRUNCATED" in body.split(" "):
        return Rejection("truncated", "the kernel could not read the packet header")
    return check_tokens(body, PACK, {key: n for n, key in enumerate(PACK.checks.order)})


@settings(max_examples=400)
@given(st.lists(bodies, min_size=1, max_size=4))
def test_remembered_shapes_give_check_tokens_verdict(batch: list[str]) -> None:
    matcher = Matcher(PACK, "logknock: ")
    for body in batch + batch:  # the second time, the shape's verdict is remembered
        assert matcher._check_body(body) == reference_body(body)


@given(st.text(max_size=40))
def test_message_check_agrees_with_the_regex(text: str) -> None:
    matcher = Matcher(PACK, "logknock: ")
    bad = INVISIBLE.search(text)
    assert (matcher._check_message(text) is None) == (bad is None)


def reference_address(text: str) -> object:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


address_texts = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda a: a.exploded),
    st.ip_addresses(v=6).map(lambda a: a.exploded.upper()),
    st.lists(st.integers(0, 999), min_size=3, max_size=5).map(lambda o: ".".join(map(str, o))),
    st.lists(st.sampled_from(["0", "00", "01", "255", "256", "1"]), min_size=4, max_size=4).map(
        ".".join
    ),
    st.text(alphabet="0123456789abcdef:.", max_size=45),
)


@settings(max_examples=500)
@given(address_texts)
def test_addresses_parse_as_ipaddress_parses_them(text: str) -> None:
    got = parse_address(text)
    want = reference_address(text) if "%" not in text else None
    assert (None if isinstance(got, Rejection) else got) == want
    assert type(got) is type(want) or (want is None and isinstance(got, Rejection))
