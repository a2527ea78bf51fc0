"""Time-based knock sequences: the ports for a period come from a shared secret.

For counter `c = floor(t / period)`, take `digest = HMAC-SHA256(secret, c as 8
bytes big-endian)` and `size = port_high - port_low + 1`. Step `i` (from 0)
reads the 2-byte big-endian chunk `digest[2i:2i+2]` and takes `offset = chunk %
size`; when that offset equals the previous step's, it moves to `(offset + 1) %
size`, so two consecutive ports are never equal (ports further apart may
repeat). The port is `port_low + offset`. The digest has 32 bytes, so a
sequence has at most 16 steps. docs/configuration.md has test vectors.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re

from .schema import Step, Totp

MAX_STEPS = 16
_BASE32_TEXT = re.compile(rb"[A-Za-z2-7]+=*")


def decode_secret(data: bytes) -> bytes:
    """The key a secret file holds; raise ValueError when there is none.

    A file holding only base32 characters (A-Z, a-z, 2-7, trailing "=") and
    whitespace is base32 text, decoded with the whitespace removed and any
    missing padding added. Anything else is the key itself, byte for byte.
    """
    text = re.sub(rb"\s+", b"", data)
    if not text:
        raise ValueError("is empty")
    if not _BASE32_TEXT.fullmatch(text):
        return data
    text = text.rstrip(b"=")
    try:
        return base64.b32decode(text + b"=" * (-len(text) % 8), casefold=True)
    except binascii.Error as exc:
        raise ValueError(f"holds base32 text that does not decode ({exc})") from None


def counter_at(totp: Totp, t: float) -> int:
    """The period counter at time `t` (seconds since the epoch)."""
    return math.floor(t / totp.period)


def totp_ports(totp: Totp, counter: int) -> tuple[int, ...]:
    """The `totp.steps` ports to knock during period `counter`, in order."""
    size = totp.port_high - totp.port_low + 1
    if not 1 <= totp.steps <= MAX_STEPS or size < 2:
        raise ValueError(f"needs 1..{MAX_STEPS} steps and a range of at least 2 ports")
    digest = hmac.new(totp.secret, counter.to_bytes(8, "big"), hashlib.sha256).digest()
    offsets: list[int] = []
    for i in range(totp.steps):
        offset = int.from_bytes(digest[2 * i : 2 * i + 2], "big") % size
        if offsets and offset == offsets[-1]:
            offset = (offset + 1) % size
        offsets.append(offset)
    return tuple(totp.port_low + offset for offset in offsets)


def totp_steps(totp: Totp, counter: int) -> tuple[Step, ...]:
    """The knock sequence for period `counter`, as steps the tracker can follow."""
    return tuple(Step(port, totp.proto) for port in totp_ports(totp, counter))
