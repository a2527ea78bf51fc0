"""The firewall rules that make the kernel log knocks, and the grant sets hooks fill.

    render(config, backend="nft", options=Options()) -> str
    apply(config, backend="nft", options=Options(), run=run_command) -> Plan
    problems(config, backend="nft") -> list[str]     what cannot work, from the config alone
    live_problems(config, run=run_command) -> list[str]   the loaded nft table against config

Back ends: "nft" (table inet logknock, `firewall_nft`) and "iptables"
(chains LOGKNOCK-RULES and LOGKNOCK-LOG behind the hooks' LOGKNOCK and
LOGKNOCK6, and two ipsets, `firewall_iptables`); "iptables-nft" and
"iptables-legacy" render the same and load with those tools. The plan both
render from is in `firewall_model`. docs/firewall.md is the contract between
these rules and the hooks.
"""

from __future__ import annotations

from collections.abc import Iterator

from . import firewall_iptables, firewall_nft
from .errors import UsageError
from .firewall_live import live_problems
from .firewall_model import (
    IPTABLES_PREFIX_MAX,
    FirewallError,
    Options,
    Plan,
    PortRange,
    Rate,
    Run,
    knock_ranges,
    parse_rate,
    parse_services,
    plan,
    run_command,
)
from .schema import Config

__all__ = [
    "BACKENDS",
    "FirewallError",
    "Options",
    "Plan",
    "PortRange",
    "Rate",
    "apply",
    "live_problems",
    "parse_rate",
    "parse_services",
    "plan",
    "problems",
    "render",
]

BACKENDS = ("nft", "iptables", "iptables-nft", "iptables-legacy")


def render(config: Config, backend: str = "nft", options: Options | None = None) -> str:
    """The commented ruleset for `backend`; UsageError if it cannot serve `config`."""
    the_plan = plan(config, options or Options())
    if backend == "nft":
        return firewall_nft.render(the_plan)
    _iptables_variant(backend)
    return firewall_iptables.render(the_plan)


def apply(
    config: Config, backend: str = "nft", options: Options | None = None, run: Run = run_command
) -> Plan:
    """Load the rules (idempotent, grants kept) and return what was loaded."""
    the_plan = plan(config, options or Options())
    if backend == "nft":
        firewall_nft.apply(the_plan, run)
    else:
        firewall_iptables.apply(the_plan, run, _iptables_variant(backend))
    return the_plan


def _iptables_variant(backend: str) -> str:
    """The tools' suffix: none for plain iptables, "-nft" or "-legacy"; UsageError if unknown."""
    if backend not in BACKENDS or backend == "nft":
        raise UsageError(f"unknown firewall back end {backend!r}; known: {', '.join(BACKENDS)}")
    return backend.removeprefix("iptables")


def problems(config: Config, backend: str = "nft") -> list[str]:
    """Ports and settings of `config` that the rules cannot serve as meant."""
    found = [*_knocks_on_protected(config), *_totp_overlaps(config)]
    if backend != "nft" and len(config.prefix) > IPTABLES_PREFIX_MAX:
        found.append(
            f"prefix is {len(config.prefix)} characters: iptables' LOG keeps only "
            f"{IPTABLES_PREFIX_MAX}, so the daemon would never find the lines it writes"
        )
    return found


def _knocks_on_protected(config: Config) -> Iterator[str]:
    """A knock port that a grant protects is dropped unlogged: it can never be knocked."""
    openers: dict[PortRange, list[str]] = {}
    for sequence in config.sequences:
        for spec in sequence.open:
            port = PortRange(spec.proto, spec.port, spec.port)
            openers.setdefault(port, []).append(f"'{sequence.name}'")
    for sequence in config.sequences:
        for knock in sorted(set(knock_ranges(sequence))):
            for port in sorted(p for p in openers if p in knock):
                where = f"the TOTP range {knock} holds" if knock != port else "knock port"
                yield (
                    f"sequence '{sequence.name}': {where} {port}, a protected port (opened by "
                    f"{', '.join(openers[port])}): the rules drop it without a log line "
                    "until it is granted, so a knock there is lost"
                )


def _totp_overlaps(config: Config) -> Iterator[str]:
    """A TOTP range that holds knock ports of another sequence."""
    for sequence in config.sequences:
        if sequence.totp is None:
            continue
        totp = PortRange(sequence.totp.proto, sequence.totp.port_low, sequence.totp.port_high)
        for other in config.sequences:
            inside = {str(r) for r in knock_ranges(other) if r.overlaps(totp)}
            if other is not sequence and inside:
                yield (
                    f"sequence '{sequence.name}': the TOTP range {totp} overlaps knock ports "
                    f"of sequence '{other.name}' ({', '.join(sorted(inside))}): knocks of "
                    "one count as stray knocks of the other"
                )
