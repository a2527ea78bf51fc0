"""The iptables back end: chains of our own, ipsets for the grants.

    render(plan) -> str               one file for iptables-restore and ip6tables-restore
    apply(plan, run, variant="")      ipsets, both restores (--noflush), the jumps

Chains, per family:

    INPUT  -> LOGKNOCK (IPv6: LOGKNOCK6)   the hooks' chain: the `iptables` hook puts
                                          its grant rules at the top; ends with a jump to
              LOGKNOCK-RULES              our rules, refilled by every load, and
              LOGKNOCK-LOG                log (limited per source), then drop

One file serves both families: a rule starting `-4` is read by
iptables-restore only, `-6` by ip6tables-restore only. `--noflush` leaves
every other chain alone, and declaring LOGKNOCK-RULES and LOGKNOCK-LOG empties
them first, so loading twice leaves one copy. The hooks' chains and the grant
ipsets (created with `-exist`) are never emptied: grants survive a reload.
`variant` picks the tools: "" (`iptables`), "-nft" or "-legacy".
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator

from .errors import UsageError
from .firewall_model import (
    IPTABLES_PREFIX_MAX,
    Plan,
    PortRange,
    Run,
    checked,
    comment_safe,
    summary_comment,
)

RULES_CHAIN = "LOGKNOCK-RULES"
LOG_CHAIN = "LOGKNOCK-LOG"
HOOK_CHAINS = {"iptables": "LOGKNOCK", "ip6tables": "LOGKNOCK6"}
GRANT_SETS = {"4": ("logknock-grants4", "inet"), "6": ("logknock-grants6", "inet6")}
MULTIPORT_MAX = 15  # ports per multiport match; a range takes two


def render(plan: Plan) -> str:
    """The whole file, for both iptables-restore and ip6tables-restore."""
    if len(plan.prefix) > IPTABLES_PREFIX_MAX:
        raise UsageError(
            f"prefix {plan.prefix!r} has {len(plan.prefix)} characters: iptables' LOG keeps "
            f"only {IPTABLES_PREFIX_MAX}, and the daemon would not find its lines; "
            "shorten it or use the nft back end"
        )
    lines = [*_header(plan), "*filter", f":{RULES_CHAIN} - [0:0]", f":{LOG_CHAIN} - [0:0]"]
    lines += _input_rules(plan) + _log_rules(plan) + ["COMMIT"]
    return "\n".join(lines) + "\n"


def ipset_commands() -> list[list[str]]:
    """`ipset create -exist` for both grant sets: creates them, keeps their entries."""
    return [
        ["ipset", "create", "-exist", name, "hash:ip,port", "family", family, "timeout", "0"]
        for name, family in GRANT_SETS.values()
    ]


def jumps(chain: str) -> list[tuple[str, list[str]]]:
    """(chain, rule) pairs that must exist once: `chain` -> LOGKNOCK-RULES, INPUT -> `chain`."""
    return [
        (chain, ["-m", "comment", "--comment", "logknock rules", "-j", RULES_CHAIN]),
        ("INPUT", ["-m", "comment", "--comment", "logknock", "-j", chain]),
    ]


def _add(into: str) -> list[str]:
    """Where a jump goes: first in INPUT, last in the hooks' chain (after their grants)."""
    return ["-I", into, "1"] if into == "INPUT" else ["-A", into]


def apply(plan: Plan, run: Run, variant: str = "") -> None:
    """Create the grant ipsets, load our chains in both families, add each jump once."""
    text = render(plan).encode()
    for argv in ipset_commands():
        checked(run, argv)
    for family_tool, chain in HOOK_CHAINS.items():
        tool = family_tool + variant
        checked(run, [f"{tool}-restore", "--noflush"], text)
        if run([tool, "-n", "-L", chain], None).returncode != 0:
            checked(run, [tool, "-N", chain])
        for into, rule in jumps(chain):
            if run([tool, "-C", into, *rule], None).returncode != 0:
                checked(run, [tool, *_add(into), *rule])


def _header(plan: Plan) -> list[str]:
    by_hand = [shlex.join(argv) for argv in ipset_commands()]
    by_hand += ["iptables-restore --noflush FILE && ip6tables-restore --noflush FILE"]
    by_hand += ["then, for IPv4 (for IPv6: ip6tables and LOGKNOCK6), unless already done:"]
    by_hand += ["iptables -N LOGKNOCK"]
    by_hand += [shlex.join(["iptables", *_add(into), *rule]) for into, rule in jumps("LOGKNOCK")]
    return [
        f"# logknock firewall rules (iptables) for {comment_safe(plan.config_path)}",
        "# Rendered by `logknock firewall render --backend iptables`. One file for both",
        "# families: rules with -4 are read by iptables-restore only, -6 by ip6tables-restore.",
        "# `logknock firewall render --backend iptables --apply` loads it; by hand:",
        *(f"#   {line}" for line in by_hand),
        "# (`--test` needs the ipsets too.) Loading again empties and refills only",
        f"# {RULES_CHAIN} and {LOG_CHAIN}: the grant ipsets and the hooks' chains LOGKNOCK",
        "# and LOGKNOCK6 keep their grants.",
        "#",
        *summary_comment(plan),
    ]


def _rule(match: str, comment: str, target: str, chain: str = RULES_CHAIN) -> str:
    parts = [f"-A {chain}", match, f'-m comment --comment "{comment}"', f"-j {target}"]
    return " ".join(part for part in parts if part)


def _log_rule(match: str, comment: str, target: str) -> str:
    return _rule(match, comment, target, LOG_CHAIN)


def _input_rules(plan: Plan) -> list[str]:
    rules = [
        _rule("-m conntrack --ctstate RELATED,ESTABLISHED", "connection already allowed", "ACCEPT"),
        _rule("-i lo", "loopback", "ACCEPT"),
        _rule("-6 -p ipv6-icmp", "ICMPv6 (neighbour discovery): left to your rules", "RETURN"),
    ]
    for family, (name, _) in GRANT_SETS.items():
        match = f"-{family} -m set --match-set {name} src,dst"
        rules.append(_rule(match, f"granted to this IPv{family} address", "ACCEPT"))
    rules += _port_rules(plan.protected, "protected port, no grant", "DROP")
    rules += _port_rules(plan.knocks, "knock port", LOG_CHAIN)
    return rules + (_closed_rules(plan) if plan.log_closed else [])


def _closed_rules(plan: Plan) -> list[str]:
    rules = _port_rules(plan.services, "public service (--services)", "RETURN")
    for proto in ("tcp", "udp"):
        rules.append(_rule(f"-p {proto} -m socket --nowildcard", "a socket listens", "RETURN"))
    for proto in ("tcp", "udp"):
        match = f"-p {proto} -m pkttype --pkt-type unicast"
        rules.append(_rule(match, "closed port: logged so a scan resets knocks", LOG_CHAIN))
    return rules


def _port_rules(ranges: tuple[PortRange, ...], comment: str, target: str) -> list[str]:
    rules = []
    for proto in ("tcp", "udp"):
        for chunk in _chunks([r for r in ranges if r.proto == proto]):
            ports = ",".join(str(r.low) if r.low == r.high else f"{r.low}:{r.high}" for r in chunk)
            rules.append(_rule(f"-p {proto} -m multiport --dports {ports}", comment, target))
    return rules


def _chunks(ranges: list[PortRange]) -> Iterator[list[PortRange]]:
    """Groups that fit one multiport match (15 slots; a range takes two)."""
    chunk: list[PortRange] = []
    used = 0
    for item in ranges:
        size = 1 if item.low == item.high else 2
        if used + size > MULTIPORT_MAX:
            yield chunk
            chunk, used = [], 0
        chunk.append(item)
        used += size
    if chunk:
        yield chunk


def _log_rules(plan: Plan) -> list[str]:
    rate = plan.rate
    unit = {"second": "sec", "minute": "min"}[rate.unit]
    limit = (
        f"-m hashlimit --hashlimit-upto {rate.count}/{unit} --hashlimit-burst {rate.burst}"
        " --hashlimit-mode srcip --hashlimit-htable-max 65536"
        f" --hashlimit-htable-expire {rate.refill_seconds * 1000}"
    )
    log = f'LOG --log-prefix "{plan.prefix}" --log-level 4'
    name = f"{rate.count}{unit[0]}"  # the rate in the name: a new rate gets a new table
    drop = "silently: no RST or ICMP error tells a knock port apart"
    return [
        _log_rule(
            f"-4 {limit} --hashlimit-name lk4-{name}", f"at most {rate} per IPv4 address", log
        ),
        _log_rule(
            f"-6 {limit} --hashlimit-srcmask 64 --hashlimit-name lk6-{name}",
            f"at most {rate} per IPv6 /64",
            log,
        ),
        _log_rule("", drop, "DROP"),
    ]
