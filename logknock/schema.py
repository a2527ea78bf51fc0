"""The configuration as frozen objects: what `config.load()` returns.

Nothing here reads files or validates text: the loader in `config.py` does
that and reports problems with file:line:column. These objects are what the
tracker, the daemon and the renderers receive; they never change after load.
Durations are float seconds; ports are ints; protocols are lower case.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .models import Knock

TCP_FLAGS = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR")


@dataclass(frozen=True, slots=True)
class Step:
    """One knock of a sequence: `9000/tcp:syn,!ack`."""

    port: int
    proto: str  # "tcp" | "udp"
    flags_set: frozenset[str] = frozenset()  # flags that must be set ("SYN")
    flags_unset: frozenset[str] = frozenset()  # flags that must not be set ("ACK")

    def accepts(self, knock: Knock) -> bool:
        if knock.dport != self.port or knock.proto != self.proto:
            return False
        return self.flags_set <= knock.flags and not (self.flags_unset & knock.flags)

    def __str__(self) -> str:
        flags = [f.lower() for f in sorted(self.flags_set)]
        flags += ["!" + f.lower() for f in sorted(self.flags_unset)]
        text = f"{self.port}/{self.proto}"
        return f"{text}:{','.join(flags)}" if flags else text


@dataclass(frozen=True, slots=True)
class PortSpec:
    """A port a grant opens: `22/tcp`."""

    port: int
    proto: str

    def __str__(self) -> str:
        return f"{self.port}/{self.proto}"


@dataclass(frozen=True, slots=True)
class Totp:
    """Time-based sequence: ports derived from HMAC-SHA256(secret, period)."""

    secret: bytes
    secret_file: str
    period: float = 30.0
    steps: int = 3
    port_low: int = 20000
    port_high: int = 29999
    proto: str = "udp"


@dataclass(frozen=True, slots=True)
class Sequence:
    """A named way in: its knocks (or one-time or TOTP steps) and what it opens."""

    name: str
    knock: tuple[Step, ...] = ()  # empty for one-time and TOTP sequences
    open: tuple[PortSpec, ...] = ()
    open_for: float = 30.0
    step_timeout: float = 5.0
    sequence_timeout: float = 15.0
    hook: str | None = None
    closes: str | None = None  # the sequence whose grant this one closes
    toggle: bool = False
    one_time_file: str | None = None
    one_time: tuple[tuple[Step, ...], ...] = ()  # the lines of one_time_file, in order
    totp: Totp | None = None


@dataclass(frozen=True, slots=True)
class Bruteforce:
    """When a source that keeps knocking wrong is banned, and for how long."""

    max_failures: int = 5
    window: float = 600.0
    ban_for: float = 3600.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on the tracker's memory."""

    max_tracked: int = 100_000


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """Where log lines are read from."""

    kind: str  # "journal" | "kmsg" | "file"
    path: str | None = None  # for "file"
    trust: str | None = None  # "kernel-only" marks a file only the kernel writes
    envelope: str = "auto"


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; the defaults are the daemon's."""

    path: str = "<defaults>"
    sources: tuple[SourceSpec, ...] = (SourceSpec("journal"),)
    prefix: str = "logknock: "
    pack: str = "netfilter"  # "name" or "name@version"
    patterns_dir: str | None = None  # None: the installed packs
    state_dir: str = "/var/lib/logknock"
    hooks_dir: str = "/etc/logknock/hooks"
    control_socket: str = "/run/logknock/control"
    hook_timeout: float = 10.0
    duplicate_window: float = 1.0
    close_on_stop: bool = False
    bruteforce: Bruteforce = field(default_factory=Bruteforce)
    limits: Limits = field(default_factory=Limits)
    sequences: tuple[Sequence, ...] = ()

    def sequence(self, name: str) -> Sequence | None:
        return next((s for s in self.sequences if s.name == name), None)

    @property
    def longest_window(self) -> float:
        """The longest time a knock can still matter: replay and restart skip older."""
        windows = [s.sequence_timeout for s in self.sequences]
        windows += [s.totp.period * 2 for s in self.sequences if s.totp]
        return max(windows, default=15.0)
