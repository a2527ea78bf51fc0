"""The nftables back end: everything in one table of our own, `table inet logknock`.

    render(plan) -> str     the commented ruleset, for `nft -f`
    apply(plan, run)        load it in one transaction

Loading twice leaves one copy, and keeps the grants: the file first declares
every object (declaring one that exists changes nothing), then flushes our
chains and our own sets, then fills them. The grant sets are declared but
never flushed, so the elements the hooks added survive a reload, timeouts
still running.
"""

from __future__ import annotations

from .firewall_model import Plan, PortRange, Run, checked, comment_safe, summary_comment

TABLE = "inet logknock"
INPUT_HOOK = "type filter hook input priority filter - 10; policy accept;"
GRANT_SETS = {"grants4": "ipv4_addr", "grants6": "ipv6_addr"}
PORT_SETS = ("knocks", "protected", "services")
RATE_SETS = {"rate4": "ipv4_addr", "rate6": "ipv6_addr"}
RATE_SET_SIZE = 65536  # addresses metered at once; see docs/firewall.md
CHAINS = ("input", "log_drop")
PORT_SET_ABOUT = {
    "knocks": "Knock ports: every step of every knock and one-time line, and TOTP ranges.",
    "protected": "Protected ports: what the sequences open; dropped unless granted.",
    "services": "Public services (--services): never logged or dropped as closed ports.",
}
_TAB = "\t"
_ROW_BREAK = ",\n" + _TAB * 2 + " " * 13  # under the first element


def render(plan: Plan) -> str:
    """The whole file: header, declarations, flushes, then sets and rules."""
    parts = [_header(plan), _declare(), _flushes(), _fill(plan)]
    return "\n".join(line for part in parts for line in part) + "\n"


def apply(plan: Plan, run: Run) -> None:
    """Load the rules atomically; FirewallError with nft's message if it refuses."""
    checked(run, ["nft", "-f", "-"], render(plan).encode())


def _header(plan: Plan) -> list[str]:
    lines = [
        "#!/usr/sbin/nft -f",
        f"# logknock firewall rules (nftables) for {comment_safe(plan.config_path)}",
        "# Rendered by `logknock firewall render`. Check with `nft -c -f FILE`, load with",
        "# `nft -f FILE` or `logknock firewall render --apply`.",
        "#",
        "# Only table inet logknock is touched. Loading again replaces its rules and the",
        "# contents of its port sets in one transaction, and keeps the elements of the",
        "# grant sets grants4 and grants6: the hooks add them with a timeout, the kernel",
        "# removes them when it runs out.",
        "#",
        "# The input chain runs before the usual filter chains (priority filter - 10) and",
        "# accepts by default. Its accept cannot undo a drop in another chain: your own",
        "# rules must let the protected ports through; this chain drops them unless granted.",
        "#",
        *summary_comment(plan),
        "",
    ]
    return lines


def _declare() -> list[str]:
    lines = ["# 1. Make sure every object exists, so that the flushes below cannot fail."]
    lines += ["table inet logknock {"]
    for name in (*GRANT_SETS, *PORT_SETS, *RATE_SETS):
        lines += [f"{_TAB}set {name} {{ {'; '.join(_set_head(name))}; }}"]
    lines += [f"{_TAB}chain input {{ {INPUT_HOOK} }}", f"{_TAB}chain log_drop {{", f"{_TAB}}}"]
    return [*lines, "}", ""]


def _set_head(name: str) -> list[str]:
    """A set's type and flags, the same wherever it is declared."""
    if name in GRANT_SETS:
        return [f"type {GRANT_SETS[name]} . inet_proto . inet_service", "flags timeout"]
    if name in RATE_SETS:
        return [f"type {RATE_SETS[name]}", f"size {RATE_SET_SIZE}", "flags dynamic,timeout"]
    return ["type inet_proto . inet_service", "flags interval"]


def _flushes() -> list[str]:
    lines = ["# 2. Empty our chains and our own sets; the grant sets keep their elements."]
    lines += [f"flush chain {TABLE} {chain}" for chain in CHAINS]
    lines += [f"flush set {TABLE} {name}" for name in (*PORT_SETS, *RATE_SETS)]
    return [*lines, ""]


def _fill(plan: Plan) -> list[str]:
    lines = ["# 3. The contents of the sets, and the rules.", "table inet logknock {"]
    lines += _grant_sets()
    for name, ranges in zip(PORT_SETS, (plan.knocks, plan.protected, plan.services), strict=True):
        lines += _port_set(name, ranges)
    lines += _rate_sets()
    lines += _chain("input", [INPUT_HOOK], _input_rules(plan))
    lines += _chain("log_drop", [], _log_rules(plan))
    return [*lines[:-1], "}"]  # no blank line before the closing brace


def _grant_sets() -> list[str]:
    lines = [f"{_TAB}# Grants: the hooks add SRC . PROTO . PORT with a timeout, e.g."]
    lines += [f"{_TAB}# {{ 198.51.100.7 . tcp . 22 timeout 30s }}; the kernel expires them."]
    for name in GRANT_SETS:
        lines += _block(f"set {name}", _set_head(name))
    return lines


def _port_set(name: str, ranges: tuple[PortRange, ...]) -> list[str]:
    body = _set_head(name)
    if ranges:
        items = [f"{r.proto} . {r.low}" + (f"-{r.high}" if r.high > r.low else "") for r in ranges]
        rows = [", ".join(items[at : at + 6]) for at in range(0, len(items), 6)]
        body += [f"elements = {{ {_ROW_BREAK.join(rows)} }}"]
    return [f"{_TAB}# {PORT_SET_ABOUT[name]}", *_block(f"set {name}", body)]


def _rate_sets() -> list[str]:
    lines = [f"{_TAB}# Per-source meters of the log limit (IPv4 address, IPv6 /64);"]
    lines += [f"{_TAB}# an entry goes once its source has earned its whole allowance back."]
    for name in RATE_SETS:
        lines += _block(f"set {name}", _set_head(name))
    return lines


def _block(head: str, body: list[str]) -> list[str]:
    return [f"{_TAB}{head} {{", *(f"{_TAB * 2}{line}" for line in body), f"{_TAB}}}", ""]


def _chain(name: str, head: list[str], rules: list[str]) -> list[str]:
    return _block(f"chain {name}", [*head, *rules])


def _input_rules(plan: Plan) -> list[str]:
    rules = [
        "# Connections already allowed, loopback and ICMPv6 are not ours to judge.",
        'ct state established,related accept comment "a connection already allowed"',
        'iif "lo" accept comment "loopback"',
        'meta l4proto ipv6-icmp accept comment "ICMPv6, neighbour discovery included, '
        'is never dropped here"',
        "# A grant opens a protected port to one address; without one it is dropped.",
        'ip saddr . meta l4proto . th dport @grants4 accept comment "granted to this IPv4 address"',
        "ip6 saddr . meta l4proto . th dport @grants6 accept"
        ' comment "granted to this IPv6 address"',
        'meta l4proto . th dport @protected drop comment "protected port, no grant"',
        "# Knock ports: a log line for the daemon, then dropped without a reply.",
        'meta l4proto . th dport @knocks jump log_drop comment "knock port"',
    ]
    return rules + (_closed_rules() if plan.log_closed else [])


def _closed_rules() -> list[str]:
    return [
        "# Closed ports (nothing listens) are logged like knocks, so a port scan resets",
        "# knock progress, and dropped like them, so knock ports do not stand out.",
        'meta l4proto . th dport @services accept comment "public service (--services)"',
        "meta l4proto { tcp, udp } socket transparent { 0, 1 } accept"
        ' comment "a socket listens: not closed"',
        "meta pkttype host meta l4proto { tcp, udp } jump log_drop"
        ' comment "closed port, unicast to us"',
    ]


def _log_rules(plan: Plan) -> list[str]:
    rate, prefix = plan.rate, plan.prefix
    limit = f"timeout {rate.refill_seconds}s limit rate {rate} burst {rate.burst} packets"
    log = f'log prefix "{prefix}" level warn'
    return [
        "# The limit counts per source, so a flood from elsewhere cannot keep a real",
        "# knock out of the log. Over the limit: dropped without a log line.",
        f"meta nfproto ipv4 update @rate4 {{ ip saddr {limit} }} {log}"
        f' comment "at most {rate} per IPv4 address"',
        f"meta nfproto ipv6 update @rate6 {{ ip6 saddr and ffff:ffff:ffff:ffff:: {limit} }}"
        f' {log} comment "at most {rate} per IPv6 /64"',
        'drop comment "silently: no RST or ICMP error tells a knock port apart"',
    ]
