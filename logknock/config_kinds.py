"""The settings that need another file: `one_time:` and `totp:` sequences."""

from __future__ import annotations

from . import config_values as values
from .config_reader import Reader
from .config_yaml import Node
from .errors import ConfigError
from .onetime import parse_one_time
from .schema import Step, Totp
from .totp import MAX_STEPS, decode_secret

TOTP_KEYS = ("secret_file", "period", "steps", "ports", "proto")
OneTime = tuple[tuple[Step, ...], ...]


def read_one_time(r: Reader, node: Node | None) -> tuple[str | None, OneTime]:
    """The one-time file's path and its sequences (none when it cannot be read)."""
    if node is None:
        return None, ()
    path = r.value(node, "one_time", r.resolve, None)
    data = None if path is None else r.read(node, path, "one_time")
    if path is None or data is None:
        return path, ()
    try:
        return path, parse_one_time(data.decode("utf-8"), path)
    except UnicodeDecodeError as exc:
        r.error(node.loc, f"one_time: {path} is not UTF-8 text (byte {exc.start})")
    except ConfigError as exc:
        r.problems.extend(exc.problems)
    return path, ()


def read_totp(r: Reader, node: Node | None) -> Totp | None:
    """The `totp:` mapping with its secret read, or None when it is absent or unusable."""
    if node is None:
        return None
    f = r.fields(node, TOTP_KEYS, "totp")
    if "secret_file" not in f:
        r.error(node.key_loc, "totp: needs secret_file")
        return None
    path = r.get(f, "secret_file", r.resolve, "")
    secret = _secret(r, f["secret_file"], path) if path else None
    base = Totp(b"", "")
    low, high = r.get(f, "ports", values.parse_port_range, (base.port_low, base.port_high))
    return Totp(
        secret=secret or b"",
        secret_file=path,
        period=r.get(f, "period", values.duration(1, strict=False), base.period),
        steps=r.get(f, "steps", values.integer(1, MAX_STEPS), base.steps),
        port_low=low,
        port_high=high,
        proto=r.get(f, "proto", values.protocol, base.proto),
    )


def _secret(r: Reader, node: Node, path: str) -> bytes | None:
    data = r.read(node, path, "secret_file")
    if data is None:
        return None
    try:
        return decode_secret(data)
    except ValueError as exc:
        r.error(node.loc, f"secret_file: {path} {exc}")
        return None
