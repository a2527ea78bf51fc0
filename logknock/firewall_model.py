"""What the firewall rules must do, worked out from the configuration.

    plan(config, options) -> Plan     the port ranges and settings both renderers use
    parse_rate("20/second") -> Rate
    parse_services("22/tcp,60000-61000/udp") -> tuple[PortRange, ...]

A `Plan` holds merged, sorted, disjoint port ranges per role (knock,
protected, public service), so a renderer never has to deduplicate, and an
nft interval set never sees overlapping elements. Running the firewall tools
goes through a `Run` callable, which tests replace to reach a namespace.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from .errors import LogknockError, UsageError
from .schema import Config, Step
from .schema import Sequence as KnockSequence

Run = Callable[[Sequence[str], bytes | None], subprocess.CompletedProcess[bytes]]
PROTOS = ("tcp", "udp")
UNITS = {"second": 1, "minute": 60}
IPTABLES_PREFIX_MAX = 29  # iptables' LOG target keeps this many characters
_RANGE_RE = re.compile(r"(\d{1,5})(?:-(\d{1,5}))?/(tcp|udp)", re.IGNORECASE)
_RATE_RE = re.compile(r"(\d{1,5})(?:/(second|minute))?")
RATE_MAX = 10_000  # per unit; hashlimit and nft both take it


class FirewallError(LogknockError):
    """A firewall tool refused the rules or could not be run."""


@dataclass(frozen=True, slots=True, order=True)
class PortRange:
    """Ports `low` to `high` (inclusive) of one protocol: `40000-49999/udp`."""

    proto: str
    low: int
    high: int

    def __contains__(self, other: object) -> bool:
        if not isinstance(other, PortRange):
            return False
        return other.proto == self.proto and self.low <= other.low and other.high <= self.high

    def overlaps(self, other: PortRange) -> bool:
        return self.proto == other.proto and self.low <= other.high and other.low <= self.high

    def __str__(self) -> str:
        ports = str(self.low) if self.low == self.high else f"{self.low}-{self.high}"
        return f"{ports}/{self.proto}"


@dataclass(frozen=True, slots=True)
class Rate:
    """How many log lines one source may cause: `count` per `unit`, burst twice that."""

    count: int = 20
    unit: str = "second"

    @property
    def burst(self) -> int:
        return 2 * self.count

    @property
    def refill_seconds(self) -> int:
        """How long an idle source takes to earn its whole allowance back.

        A meter entry idle this long is as good as a new one, so entries
        expire after it: the meter never holds addresses it no longer needs.
        """
        return math.ceil((self.count + self.burst) / self.count * UNITS[self.unit])

    def __str__(self) -> str:
        return f"{self.count}/{self.unit}"


@dataclass(frozen=True, slots=True)
class Options:
    """The choices of `logknock firewall render` beyond the configuration."""

    log_closed: bool = True  # log (and drop) hits on ports nothing listens on
    rate: Rate = field(default_factory=Rate)
    services: tuple[PortRange, ...] = ()  # never logged or dropped as closed


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a renderer needs; port tuples are merged, sorted and disjoint."""

    config_path: str
    prefix: str
    knocks: tuple[PortRange, ...]
    protected: tuple[PortRange, ...]
    services: tuple[PortRange, ...]
    log_closed: bool
    rate: Rate
    notes: tuple[str, ...]  # one line per sequence, for the header comment


def plan(config: Config, options: Options) -> Plan:
    """The plan for `config`; UsageError when a public service clashes with it."""
    knocks = merge(r for s in config.sequences for r in knock_ranges(s))
    protected = merge(protected_ranges(config))
    services = merge(options.services)
    _refuse_clashes(services, knocks, "a knock port")
    _refuse_clashes(services, protected, "a protected port")
    return Plan(
        config_path=config.path,
        prefix=config.prefix,
        knocks=knocks,
        protected=protected,
        services=services,
        log_closed=options.log_closed,
        rate=options.rate,
        notes=tuple(describe(s) for s in config.sequences),
    )


def _refuse_clashes(
    services: tuple[PortRange, ...], others: tuple[PortRange, ...], what: str
) -> None:
    for service in services:
        clash = next((other for other in others if service.overlaps(other)), None)
        if clash is not None:
            raise UsageError(f"--services {service} overlaps {what} ({clash})")


def knock_ranges(sequence: KnockSequence) -> Iterator[PortRange]:
    """Every port a knock of `sequence` may hit: steps, one-time lines, the TOTP range."""
    for step in _steps(sequence):
        yield PortRange(step.proto, step.port, step.port)
    if sequence.totp is not None:
        totp = sequence.totp
        yield PortRange(totp.proto, totp.port_low, totp.port_high)


def _steps(sequence: KnockSequence) -> Iterator[Step]:
    yield from sequence.knock
    for line in sequence.one_time:
        yield from line


def protected_ranges(config: Config) -> Iterator[PortRange]:
    """The ports grants open: the `open:` ports of every sequence."""
    for sequence in config.sequences:
        for spec in sequence.open:
            yield PortRange(spec.proto, spec.port, spec.port)


def merge(ranges: Iterable[PortRange]) -> tuple[PortRange, ...]:
    """Sorted, disjoint ranges covering the same ports; touching ranges join."""
    merged: list[PortRange] = []
    for item in sorted(ranges):
        last = merged[-1] if merged else None
        if last is not None and last.proto == item.proto and item.low <= last.high + 1:
            merged[-1] = PortRange(last.proto, last.low, max(last.high, item.high))
        else:
            merged.append(item)
    return tuple(merged)


def describe(sequence: KnockSequence) -> str:
    """One line saying what `sequence` listens for and what it opens."""
    if sequence.totp is not None:
        totp = sequence.totp
        knock = f"TOTP ports in {PortRange(totp.proto, totp.port_low, totp.port_high)}"
    elif sequence.one_time_file is not None:
        knock = f"one-time lines of {sequence.one_time_file} ({len(sequence.one_time)} left)"
    else:
        knock = " ".join(f"{step.port}/{step.proto}" for step in sequence.knock)
    effect = f"closes {sequence.closes}" if sequence.closes else "opens "
    if not sequence.closes:
        effect += " ".join(str(spec) for spec in sequence.open)
    return f"{sequence.name}: knock {knock}; {effect}"


def parse_rate(text: str) -> Rate:
    """`20/second`, `1/minute` or a bare `20` (per second)."""
    found = _RATE_RE.fullmatch(text.strip())
    if found is None or not 1 <= int(found[1]) <= RATE_MAX:
        raise UsageError(
            f"--log-rate {text!r}: expected N/second or N/minute, N from 1 to {RATE_MAX}"
        )
    return Rate(int(found[1]), found[2] or "second")


def parse_services(text: str) -> tuple[PortRange, ...]:
    """`22/tcp,80/tcp,60000-61000/udp` (commas and/or spaces between items)."""
    return tuple(_service(item) for item in re.split(r"[,\s]+", text.strip()) if item)


def _service(item: str) -> PortRange:
    found = _RANGE_RE.fullmatch(item)
    low = int(found[1]) if found else 0
    high = int(found[2] or low) if found else 0
    if found is None or not 1 <= low <= high <= 65535:
        raise UsageError(f"--services: {item!r} is not PORT/PROTO or LOW-HIGH/PROTO (tcp, udp)")
    return PortRange(found[3].lower(), low, high)


def run_command(
    argv: Sequence[str], input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a firewall tool (no shell) and return the finished process."""
    try:
        return subprocess.run(argv, input=input, capture_output=True, timeout=60, check=False)
    except FileNotFoundError:
        raise FirewallError(f"{argv[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise FirewallError(f"{' '.join(argv)}: still running after 60s") from None


def checked(run: Run, argv: Sequence[str], input: bytes | None = None) -> str:
    """Run argv through `run`; its stdout, or FirewallError with its stderr."""
    proc = run(argv, input)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise FirewallError(f"{' '.join(argv)}: exit {proc.returncode}: {err}")
    return proc.stdout.decode(errors="replace")


def comment_safe(text: str) -> str:
    """Text fit for a `#` comment line: printable, no line breaks."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def summary_comment(plan: Plan) -> list[str]:
    """The part of a rendered file's header both back ends share."""
    closed = "logged and dropped" if plan.log_closed else "left alone (--no-log-closed)"
    services = " ".join(map(str, plan.services)) or "none"
    return [
        "# Sequences:",
        *(f"#   {comment_safe(note)}" for note in plan.notes),
        "#",
        f"# Log lines: at most {plan.rate} (burst {plan.rate.burst}) per IPv4 address"
        " and per IPv6 /64.",
        f"# Closed ports (nothing listens): {closed}. Public services: {services}.",
    ]
