"""TOTP knock ports: fixed vectors (also in docs/configuration.md) and the rules behind them.

Secret for the vectors: the ASCII bytes "12345678901234567890" (RFC 6238's
test secret), base32 GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logknock.schema import Step, Totp
from logknock.totp import counter_at, decode_secret, totp_ports, totp_steps

SECRET = b"12345678901234567890"
BASE = Totp(secret=SECRET, secret_file="totp.key")  # 30s, 3 steps, 20000-29999, udp

VECTORS = [
    # (low, high, steps, counter, ports)
    (20000, 29999, 3, 0, (29129, 26347, 25875)),
    (20000, 29999, 3, 1, (20573, 20328, 21566)),
    (20000, 29999, 3, 56666666, (26762, 21839, 24471)),  # t = 1700000000
    # the HMAC chunks give offsets 4, 4, 5: the repeat moves on to 5, then 6
    (7000, 7009, 3, 10, (7004, 7005, 7006)),
    # offsets 1, 0, 0, 0: the third moves to 1, the fourth (0) differs from it
    (7000, 7001, 4, 1, (7001, 7000, 7001, 7000)),
    (20000, 29999, 16, 0, (
        29129, 26347, 25875, 21787, 25499, 24055, 23669, 23319,
        27521, 23995, 26409, 27273, 20084, 25949, 27991, 28377,
    )),
]  # fmt: skip


@pytest.mark.parametrize(("low", "high", "steps", "counter", "ports"), VECTORS)
def test_vectors(low: int, high: int, steps: int, counter: int, ports: tuple[int, ...]) -> None:
    totp = replace(BASE, port_low=low, port_high=high, steps=steps)
    assert totp_ports(totp, counter) == ports


@pytest.mark.parametrize(
    ("period", "t", "counter"),
    [
        (30, 0, 0),
        (30, 29.999, 0),
        (30, 30, 1),
        (30, 59, 1),
        (30, 1700000000, 56666666),
        (60, 1700000000, 28333333),
        (1, 1.5, 1),
    ],
)
def test_counter_at(period: float, t: float, counter: int) -> None:
    assert counter_at(replace(BASE, period=period), t) == counter


def test_totp_steps_carry_the_protocol() -> None:
    assert totp_steps(replace(BASE, proto="tcp"), 1) == (
        Step(20573, "tcp"),
        Step(20328, "tcp"),
        Step(21566, "tcp"),
    )


@given(
    secret=st.binary(min_size=1, max_size=64),
    counter=st.integers(min_value=0, max_value=2**64 - 1),
    low=st.integers(min_value=1, max_value=65534),
    size=st.integers(min_value=2, max_value=65535),
    steps=st.integers(min_value=1, max_value=16),
)
def test_ports_in_range_and_never_twice_in_a_row(
    secret: bytes, counter: int, low: int, size: int, steps: int
) -> None:
    high = min(low + size - 1, 65535)
    totp = Totp(secret, "k", steps=steps, port_low=low, port_high=high)
    ports = totp_ports(totp, counter)
    assert len(ports) == steps
    assert all(low <= port <= high for port in ports)
    assert all(a != b for a, b in pairwise(ports))


@pytest.mark.parametrize(("steps", "low", "high"), [(17, 20000, 29999), (0, 1, 9), (3, 7, 7)])
def test_ports_refuse_impossible_settings(steps: int, low: int, high: int) -> None:
    with pytest.raises(ValueError, match="steps"):
        totp_ports(replace(BASE, steps=steps, port_low=low, port_high=high), 0)


SECRETS = [
    (b"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n", SECRET),
    (b"gezd gnbv gy3t qojq\ngezd gnbv gy3t qojq\n", SECRET),  # lower case, spaced
    (b"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ========\n", SECRET),  # padding kept
    (b"JBSWY3DPEHPK3PXP", b"Hello!\xde\xad\xbe\xef"),  # 16 characters, no padding
    (b"\x00\x01\xfe\xff 10", b"\x00\x01\xfe\xff 10"),  # not base32: the bytes themselves
    (b"my secret 0\n", b"my secret 0\n"),  # '0' is no base32 letter
]


@pytest.mark.parametrize(("data", "secret"), SECRETS)
def test_decode_secret(data: bytes, secret: bytes) -> None:
    assert decode_secret(data) == secret


@pytest.mark.parametrize(
    ("data", "message"), [(b"", "empty"), (b" \n\t", "empty"), (b"GEZDGNBVG", "base32")]
)
def test_decode_secret_rejects(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_secret(data)
