"""What the tracker keeps across restarts, as frozen values and JSON.

    {"version": 1,
     "grants": [{"src": "198.51.100.7", "sequence": "ssh", "ports": ["22/tcp"],
                 "expires": 1700000030.0, "opened": 1700000000.0}],
     "bans": [{"src": "203.0.113.9", "until": 1700003600.0}],
     "one_time": {"vault": ["7000/udp 8000/tcp"]},
     "totp": [{"src": "198.51.100.7", "sequence": "rolling", "counter": 56666666}]}

Progress through sequences is not kept: a restart forgets half-typed knocks.
`from_json` raises ValueError on anything it cannot read.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from .models import IPAddress

VERSION = 1


@dataclass(frozen=True, slots=True)
class GrantState:
    """An open grant: `ports` stay open for `src` until `expires`."""

    src: IPAddress
    sequence: str
    ports: tuple[str, ...]
    expires: float
    opened: float  # when the last open decision for it was emitted


@dataclass(frozen=True, slots=True)
class BanState:
    src: IPAddress
    until: float


@dataclass(frozen=True, slots=True)
class TotpUse:
    """A TOTP period a source has already opened with: it cannot open again."""

    src: IPAddress
    sequence: str
    counter: int


@dataclass(frozen=True, slots=True)
class TrackerState:
    grants: tuple[GrantState, ...] = ()
    bans: tuple[BanState, ...] = ()
    one_time: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (sequence, used lines)
    totp: tuple[TotpUse, ...] = ()

    def to_json(self) -> str:
        """Compact: an indent would make `json` use its pure-Python encoder, and this
        runs for every decision, before its hook starts (2 ms at 200 grants)."""
        return json.dumps(
            {
                "version": VERSION,
                "grants": [_grant_json(g) for g in self.grants],
                "bans": [{"src": str(b.src), "until": b.until} for b in self.bans],
                "one_time": {name: list(lines) for name, lines in self.one_time},
                "totp": [_totp_json(u) for u in self.totp],
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> TrackerState:
        try:
            data = json.loads(text)
            if data.get("version") != VERSION:
                raise ValueError(f"state version {data.get('version')!r} is not {VERSION}")
            return cls(
                grants=tuple(_grant(item) for item in data.get("grants", [])),
                bans=tuple(
                    BanState(_ip(b["src"]), _time(b["until"])) for b in data.get("bans", [])
                ),
                one_time=tuple(_one_time(data.get("one_time", {}))),
                totp=tuple(_totp(item) for item in data.get("totp", [])),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed tracker state: {exc!r}") from None


def _grant_json(grant: GrantState) -> dict[str, object]:
    return {
        "src": str(grant.src),
        "sequence": grant.sequence,
        "ports": list(grant.ports),
        "expires": grant.expires,
        "opened": grant.opened,
    }


def _totp_json(use: TotpUse) -> dict[str, object]:
    return {"src": str(use.src), "sequence": use.sequence, "counter": use.counter}


def _grant(item: dict[str, Any]) -> GrantState:
    ports = tuple(_text(port) for port in item["ports"])
    expires, opened = _time(item["expires"]), _time(item["opened"])
    return GrantState(_ip(item["src"]), _text(item["sequence"]), ports, expires, opened)


def _totp(item: dict[str, Any]) -> TotpUse:
    counter = item["counter"]
    if not isinstance(counter, int) or isinstance(counter, bool):
        raise ValueError(f"TOTP counter {counter!r} is not an integer")
    return TotpUse(_ip(item["src"]), _text(item["sequence"]), counter)


def _one_time(data: dict[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
    return [(_text(name), tuple(_text(line) for line in lines)) for name, lines in data.items()]


def _ip(value: object) -> IPAddress:
    return ipaddress.ip_address(_text(value))


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    return value


def _time(value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{value!r} is not a time")
    return float(value)
